"""The DeploymentRequest's status vocabulary: phases and kstatus-style conditions."""

import datetime
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    PENDING = "Pending"  # not handed to a coordinator yet, or waiting on the world (Stalled)
    PLACING = "Placing"  # a round's handshake is under way
    DEPLOYING = "Deploying"  # placed; VMs being written, or not all ready
    READY = "Ready"  # exactly spec.replicas VMs exist and are ready
    FAILED = "Failed"  # what no change in the world can fix


READY_CONDITION = "Ready"
RECONCILING_CONDITION = "Reconciling"
STALLED_CONDITION = "Stalled"
CONDITION_TYPES = (READY_CONDITION, RECONCILING_CONDITION, STALLED_CONDITION)


def condition(type_: str, status: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": type_, "status": "True" if status else "False", "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": now}
