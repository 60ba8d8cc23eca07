"""kopf handlers for DeploymentRequests."""

import logging
from typing import Any

import kopf

from rackmesh.labels import GROUP, REQUEST_PLURAL, VERSION
from rackmesh_operator.status import READY_CONDITION, Phase, condition

logger = logging.getLogger(__name__)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Keep kopf's bookkeeping in annotations: our status has a strict schema and stays ours.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.INFO


@kopf.on.resume(GROUP, VERSION, REQUEST_PLURAL)
@kopf.on.create(GROUP, VERSION, REQUEST_PLURAL)
def accept(body: kopf.Body, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, **_: Any) -> None:
    """A new request waits for placement: phase Pending, Ready=False, and an Event saying so."""
    if status.get("phase"):
        return
    generation = meta.get("generation", 1)
    message = f"Waiting to place {body['spec']['replicas']} x {body['spec']['instancetype']}"
    patch.status["phase"] = str(Phase.PENDING)
    patch.status["observedGeneration"] = generation
    patch.status["replicas"] = 0
    patch.status["readyReplicas"] = 0
    patch.status["conditions"] = [condition(READY_CONDITION, False, "Pending", message, generation)]
    kopf.info(body, reason="Pending", message=message)
