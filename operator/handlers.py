"""kopf handlers for DeploymentRequests: the operator's whole public surface.

Indexes keep what the reconcile loop reads in memory, fed by watches: the request's VMs, the Nodes,
the instancetypes. Events on them that could let a waiting request fit bump the ``World``.
"""

import asyncio
import logging
from typing import Any

import kopf

from rackmesh import request_record
from rackmesh.labels import GROUP, NODE_LABEL, REQUEST_LABEL, REQUEST_PLURAL, VERSION
from rackmesh.logs import flow_step, request_fields
from rackmesh.nodes import NodeState, could_add_room, node_state
from rackmesh.protocol import RequestRef
from rackmesh_operator.progress import VmState, vm_state
from rackmesh_operator.reconcile import Reconciler
from rackmesh_operator.record_sweep import sweep_orphan_records
from rackmesh_operator.services import Services
from rackmesh_operator.status import READY_CONDITION, RECONCILING_CONDITION, STALLED_CONDITION, Phase, condition
from rackmesh_operator.world import StorageMembers, World

logger = logging.getLogger(__name__)
INSTANCETYPES = ("instancetype.kubevirt.io", "v1beta1", "virtualmachineclusterinstancetypes")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, requests_by_phase: kopf.Index,
                    **_: Any) -> None:
    # Keep kopf's bookkeeping in annotations: our status has a strict schema and stays ours.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.INFO
    memo.services = await Services.open(memo.settings, requests_by_phase)
    memo.world = World()
    memo.nodes_seen = {}
    await StorageMembers(memo.services.zk, memo.services.layout, lambda rack, node: memo.world.changed(
        "a storage agent joined", rack=rack, node=node)).start()
    memo.sweep = asyncio.create_task(sweep_orphan_records(memo.services))


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    memo.sweep.cancel()
    await asyncio.gather(memo.sweep, return_exceptions=True)
    await memo.services.close()


@kopf.index("kubevirt.io", "v1", "virtualmachines", labels={REQUEST_LABEL: kopf.PRESENT})
def vms_by_request(body: kopf.Body, namespace: str, **_: Any) -> dict[tuple[str, str], VmState]:
    """Every VM a DeploymentRequest controls, by (namespace, uid of the request), kept current by a watch."""
    found = vm_state(dict(body), NODE_LABEL)
    return {} if found is None else {(namespace, found[0]): found[1]}


@kopf.index(GROUP, VERSION, REQUEST_PLURAL)
def requests_by_phase(status: kopf.Status, uid: str, **_: Any) -> dict[str, str]:
    """Every DeploymentRequest's uid under its phase (Pending until the create handler gave it one): the
    operator's metrics count them."""
    return {status.get("phase") or str(Phase.PENDING): uid}


@kopf.index("v1", "nodes")
def nodes_by_name(body: kopf.Body, name: str, memo: kopf.Memo, **_: Any) -> dict[str, NodeState]:
    return {name: node_state(dict(body), memo.settings.rack_label)}


@kopf.index(*INSTANCETYPES)
def instancetypes(name: str, **_: Any) -> dict[str, bool]:
    return {name: True}


@kopf.on.event("kubevirt.io", "v1", "virtualmachines", labels={REQUEST_LABEL: kopf.PRESENT})
def vm_event(type: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":  # a request deleted or scaled in, or a VM lost: room is free again
        memo.world.changed("a VM was deleted", vm=name)


@kopf.on.event("v1", "nodes")
def node_event(type: str, body: kopf.Body, name: str, memo: kopf.Memo, **_: Any) -> None:
    before: NodeState | None = memo.nodes_seen.get(name)
    if type == "DELETED":
        memo.nodes_seen.pop(name, None)
        return
    after = node_state(dict(body), memo.settings.rack_label)
    memo.nodes_seen[name] = after
    if could_add_room(before, after):
        memo.world.changed("a compute node joined or grew", node=name)


@kopf.on.event(*INSTANCETYPES)
def instancetype_event(type: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    if type in ("ADDED", None):
        memo.world.changed("an instancetype exists", instancetype=name)


@kopf.on.resume(GROUP, VERSION, REQUEST_PLURAL)
@kopf.on.create(GROUP, VERSION, REQUEST_PLURAL)
def accept(body: kopf.Body, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, **_: Any) -> None:
    """Step 1: a new request waits for placement: phase Pending, Reconciling, and an Event saying so."""
    if status.get("phase"):
        return
    generation = meta.get("generation", 1)
    spec = body["spec"]
    message = f"Waiting to place {spec['replicas']} x {spec['instancetype']}"
    flow_step(logger, 1, "request seen", RequestRef(meta["uid"], meta["namespace"], meta["name"]),
              replicas=spec["replicas"], instancetype=spec["instancetype"], image=spec["image"])
    patch.status["phase"] = str(Phase.PENDING)
    patch.status["observedGeneration"] = generation
    patch.status["replicas"] = 0
    patch.status["readyReplicas"] = 0
    patch.status["selector"] = f"{REQUEST_LABEL}={meta['name']}"
    patch.status["conditions"] = [
        condition(READY_CONDITION, False, "Pending", f"0/{spec['replicas']} VMs ready", generation),
        condition(RECONCILING_CONDITION, True, "Pending", message, generation),
        condition(STALLED_CONDITION, False, "NotStalled", "nothing blocks the request", generation),
    ]
    kopf.info(body, reason="Pending", message=message)


@kopf.daemon(GROUP, VERSION, REQUEST_PLURAL, cancellation_timeout=5.0)
async def reconcile(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, vms_by_request: kopf.Index,
                    nodes_by_name: kopf.Index, instancetypes: kopf.Index, **_: Any) -> None:
    """Keep the request's VMs and status true to its spec, until it is deleted (or fails for good)."""
    key = (body["metadata"]["namespace"], body["metadata"]["uid"])
    reconciler = Reconciler(
        memo.services, memo.world, body,
        vms=lambda: list(vms_by_request.get(key, [])),
        nodes=lambda: {name: next(iter(states)) for name, states in nodes_by_name.items()},
        instancetype_exists=lambda name: name in instancetypes)
    while not stopped:
        try:
            if not await reconciler.step():
                return
        except Exception:
            logger.exception("reconciling the request failed; retrying", extra=request_fields(reconciler.request))
        await stopped.wait(reconciler.interval)


@kopf.on.delete(GROUP, VERSION, REQUEST_PLURAL)
async def forget(meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """The VMs go with their owner (ownerReference garbage collection); the ZooKeeper record goes here."""
    services: Services = memo.services
    await request_record.delete(services.zk, services.layout, meta["uid"])
