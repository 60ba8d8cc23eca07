"""What a request's status says, computed from what is observed: its VMs (by controller ownerReference),
the nodes they are on, and the coordinator's record in ZooKeeper. Pure functions, so the rules are
easy to read and to test.

kstatus conventions: ``Ready`` is True only when exactly ``spec.replicas`` VMs exist and all are ready;
``Reconciling`` is True while the request converges (placing, scaling, healing, VMs being written or
booting); ``Stalled`` is True while it waits on the world (or, for phase Failed, forever).
``observedGeneration`` reaches the generation once the status describes that spec: once the coordinator
took an order of that generation, or the operator found the spec cannot be met now.
"""

import dataclasses
from collections import Counter
from typing import Any

from rackmesh.labels import REQUEST_LABEL
from rackmesh.request_record import RequestRecord, Stage
from rackmesh.vm_fields import controller_uid, disk_source_url, is_ready
from rackmesh.vm_names import vm_index
from rackmesh_operator.status import (
    READY_CONDITION,
    RECONCILING_CONDITION,
    STALLED_CONDITION,
    Phase,
    condition,
)

UNKNOWN_RACK = "unknown"


@dataclasses.dataclass(frozen=True)
class VmState:
    """One VirtualMachine of a request, as the operator's index keeps it."""

    name: str
    index: int
    node: str
    ready: bool
    source_url: str
    uid: str


def vm_state(vm: dict[str, Any], node_label: str) -> tuple[str, VmState] | None:
    """(uid of the controlling request, state) of a VM that is one of its request's VMs, else None: a VM
    without the ownerReference, or with a name that is not the request's, is not the request's to count."""
    meta = vm["metadata"]
    owner, request = controller_uid(vm), (meta.get("labels") or {}).get(REQUEST_LABEL, "")
    index = vm_index(request, meta["name"])
    if owner is None or index is None:
        return None
    return owner, VmState(name=meta["name"], index=index, node=(meta.get("labels") or {}).get(node_label, ""),
                          ready=is_ready(vm), source_url=disk_source_url(vm), uid=meta.get("uid", ""))


@dataclasses.dataclass(frozen=True)
class Blocker:
    """Why the operator itself does not hand the request over: waiting (``final`` False) or never."""

    reason: str
    message: str
    final: bool = False


@dataclasses.dataclass(frozen=True)
class Verdict:
    phase: Phase
    ready: tuple[str, str]  # reason, message of Ready (True only in phase Ready)
    reconciling: tuple[str, str] | None  # reason, message while converging
    stalled: tuple[str, str] | None  # reason, message while waiting on the world
    observed: bool  # the status describes the current generation


def assess(replicas: int, generation: int, vms: list[VmState], record: RequestRecord | None,
           blocker: Blocker | None = None, unready_nodes: dict[str, int] | None = None) -> Verdict:
    """The phase and conditions for what is observed."""
    ready = sum(vm.ready for vm in vms)
    counts = f"{ready}/{replicas} VMs ready"
    if unready_nodes:
        where = ", ".join(f"{count} on {node}" for node, count in sorted(unready_nodes.items()))
        counts += (f"; VMs on NotReady nodes ({where}) are left in place: a NotReady node may only be cut off "
                   "and still run them")
    if blocker is not None:
        phase = Phase.FAILED if blocker.final else Phase.PENDING
        return Verdict(phase, (blocker.reason, counts), None, (blocker.reason, blocker.message), True)
    if record is None:
        return Verdict(Phase.PENDING, ("Pending", counts),
                       ("Pending", f"waiting for a coordinator to place {replicas} VMs"), None, False)
    taken = record.order.generation == generation
    if not taken:
        before = record.order.replicas
        return Verdict(Phase.PLACING, ("Scaling", counts),
                       ("Scaling", f"scaling from {before} to {replicas} VMs"), None, False)
    if record.stage == Stage.WAITING:
        return Verdict(Phase.PENDING, (record.reason, counts), None, (record.reason, record.message), True)
    if record.stage in (Stage.PLACING, Stage.COMMITTED, Stage.DEPLOYING):
        phase = Phase.DEPLOYING if record.stage == Stage.DEPLOYING else Phase.PLACING
        return Verdict(phase, (str(phase), counts), round_activity(record), None, True)
    if len(vms) == replicas and ready == replicas:
        return Verdict(Phase.READY, ("Ready", counts), None, None, True)
    if len(vms) < replicas:
        missing = replicas - len(vms)
        return Verdict(Phase.DEPLOYING, ("Healing", counts),
                       ("Healing", f"{missing} VM{_s(missing)} missing; re-placing under the same names"), None, True)
    if len(vms) > replicas:
        extra = len(vms) - replicas
        return Verdict(Phase.DEPLOYING, ("Scaling", counts),
                       ("Scaling", f"{extra} VM{_s(extra)} more than requested; removing"), None, True)
    return Verdict(Phase.DEPLOYING, ("Deploying", counts),
                   ("Deploying", f"{replicas - ready} VM{_s(replicas - ready)} not ready yet"), None, True)


def round_activity(record: RequestRecord) -> tuple[str, str]:
    """What the round in flight does, in words: placing a new request, healing, or scaling."""
    order = record.order
    placed = sum(len(p.indices) for p in record.portions)
    wanted = order.replicas - placed
    where = f" on {len(record.placing)} node{_s(len(record.placing))}" if record.placing else ""
    if order.lost:
        return "Healing", f"re-placing {len(order.lost)} lost VM{_s(len(order.lost))}{where}"
    if placed:
        return "Scaling", f"scaling from {placed} to {order.replicas} VMs: placing {wanted} more{where}"
    return str(Phase.PLACING if record.stage != Stage.DEPLOYING else Phase.DEPLOYING), (
        f"placing {wanted} x {order.instancetype} from image {order.image}{where}")


def conditions(verdict: Verdict, generation: int, previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``Ready``, ``Reconciling`` and ``Stalled``, keeping each one's lastTransitionTime while its status
    does not change."""
    reconciling = verdict.reconciling or ("Settled", "nothing to converge")
    stalled = verdict.stalled or ("NotStalled", "nothing blocks the request")
    fresh = [
        condition(READY_CONDITION, verdict.phase == Phase.READY, *verdict.ready, generation),
        condition(RECONCILING_CONDITION, verdict.reconciling is not None, *reconciling, generation),
        condition(STALLED_CONDITION, verdict.stalled is not None, *stalled, generation),
    ]
    before = {c["type"]: c for c in previous}
    for entry in fresh:
        old = before.get(entry["type"])
        if old is not None and old.get("status") == entry["status"]:
            entry["lastTransitionTime"] = old.get("lastTransitionTime", entry["lastTransitionTime"])
    return fresh


def placements(vms: list[VmState], racks: dict[str, str]) -> list[dict[str, Any]]:
    """Where the VMs are: per node, with its rack, in (rack, node) order."""
    counts = Counter(vm.node for vm in vms)
    rows = [{"node": node, "rack": racks.get(node, UNKNOWN_RACK), "count": count} for node, count in counts.items()]
    return sorted(rows, key=lambda row: (row["rack"], row["node"]))


def image_copies(vms: list[VmState], record: RequestRecord | None) -> list[dict[str, Any]]:
    """The holders the agents were given, with how many VMs import from each."""
    if record is None:
        return []
    used = Counter(vm.source_url for vm in vms)
    holders = {holder.url: holder for portion in (*record.portions, *record.placing) for holder in portion.holders}
    return [{"node": h.node, "rack": h.rack, "url": h.url, "vms": used.get(url, 0)}
            for url, h in sorted(holders.items(), key=lambda item: (item[1].rack, item[1].node))]


def _s(count: int) -> str:
    return "" if count == 1 else "s"
