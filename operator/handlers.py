"""kopf handlers for DeploymentRequests: the operator's whole public surface."""

import logging
from typing import Any

import kopf

from rackmesh import request_record
from rackmesh.labels import GROUP, NODE_LABEL, REQUEST_KIND, REQUEST_LABEL, REQUEST_PLURAL, VERSION
from rackmesh.logs import flow_step
from rackmesh_operator.follow import Follower
from rackmesh_operator.progress import VmState, vm_state
from rackmesh_operator.services import Services
from rackmesh_operator.status import READY_CONDITION, Phase, condition

logger = logging.getLogger(__name__)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Keep kopf's bookkeeping in annotations: our status has a strict schema and stays ours.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.INFO
    memo.services = await Services.open(memo.settings)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo.services.close()


@kopf.index("kubevirt.io", "v1", "virtualmachines", labels={REQUEST_LABEL: kopf.PRESENT})
def vms_by_request(body: kopf.Body, namespace: str, **_: Any) -> dict[tuple[str, str], VmState]:
    """Every rackmesh VM, by (namespace, uid of the owning request), kept current by a watch."""
    owners = [ref["uid"] for ref in body["metadata"].get("ownerReferences") or [] if ref.get("kind") == REQUEST_KIND]
    return {(namespace, owner): vm_state(dict(body), NODE_LABEL) for owner in owners}


@kopf.on.resume(GROUP, VERSION, REQUEST_PLURAL)
@kopf.on.create(GROUP, VERSION, REQUEST_PLURAL)
def accept(body: kopf.Body, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, **_: Any) -> None:
    """Step 1: a new request waits for placement: phase Pending, Ready=False, and an Event saying so."""
    if status.get("phase"):
        return
    generation = meta.get("generation", 1)
    message = f"Waiting to place {body['spec']['replicas']} x {body['spec']['instancetype']}"
    flow_step(logger, 1, "request seen", meta["uid"], deploymentRequest=f"{meta['namespace']}/{meta['name']}",
              replicas=body["spec"]["replicas"], instancetype=body["spec"]["instancetype"],
              image=body["spec"]["image"])
    patch.status["phase"] = str(Phase.PENDING)
    patch.status["observedGeneration"] = generation
    patch.status["replicas"] = 0
    patch.status["readyReplicas"] = 0
    patch.status["conditions"] = [condition(READY_CONDITION, False, "Pending", message, generation)]
    kopf.info(body, reason="Pending", message=message)


@kopf.daemon(GROUP, VERSION, REQUEST_PLURAL, cancellation_timeout=5.0)
async def follow(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, vms_by_request: kopf.Index,
                 **_: Any) -> None:
    """Drive the request through the flow and keep its status true, until it fails or is deleted."""
    key = (body["metadata"]["namespace"], body["metadata"]["uid"])
    follower = Follower(memo.services, body, lambda: list(vms_by_request.get(key, [])))
    while not stopped:
        try:
            if not await follower.step():
                return
        except Exception:
            logger.exception("following the request failed; retrying", extra={"request": key[1]})
        await stopped.wait(follower.interval)


@kopf.on.delete(GROUP, VERSION, REQUEST_PLURAL)
async def forget(meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """The VMs go with their owner (ownerReference garbage collection); the ZooKeeper record goes here."""
    services: Services = memo.services
    await request_record.delete(services.zk, services.layout, meta["uid"])
