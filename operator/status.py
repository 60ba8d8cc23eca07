"""The DeploymentRequest's status vocabulary: phases and Kubernetes-style conditions."""

import datetime
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    PENDING = "Pending"
    PLACING = "Placing"
    DEPLOYING = "Deploying"
    READY = "Ready"
    FAILED = "Failed"


READY_CONDITION = "Ready"
PLACED_CONDITION = "Placed"
TERMINAL = frozenset({Phase.FAILED})


def condition(type_: str, status: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": type_, "status": "True" if status else "False", "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": now}
