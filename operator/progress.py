"""What a request's status says, computed from what is observed: its VMs (by label and owner) and the
coordinator's record in ZooKeeper. Pure functions, so the rules are easy to read and to test."""

import dataclasses
from collections import Counter
from typing import Any

from rackmesh.request_record import RequestRecord
from rackmesh.vm_fields import disk_source_url, is_ready
from rackmesh_operator.status import PLACED_CONDITION, READY_CONDITION, Phase, condition

UNKNOWN_RACK = "unknown"


@dataclasses.dataclass(frozen=True)
class VmState:
    """One VirtualMachine of a request, as the operator's index keeps it."""

    name: str
    node: str
    ready: bool
    source_url: str


def vm_state(vm: dict[str, Any], node_label: str) -> VmState:
    return VmState(name=vm["metadata"]["name"], node=(vm["metadata"].get("labels") or {}).get(node_label, ""),
                   ready=is_ready(vm), source_url=disk_source_url(vm))


def placements(vms: list[VmState], record: RequestRecord | None) -> list[dict[str, Any]]:
    """Where the VMs are: per node, with its rack, in (rack, node) order."""
    racks = {portion.node: portion.rack for portion in record.portions} if record else {}
    counts = Counter(vm.node for vm in vms)
    rows = [{"node": node, "rack": racks.get(node, UNKNOWN_RACK), "count": count} for node, count in counts.items()]
    return sorted(rows, key=lambda row: (row["rack"], row["node"]))


def image_copies(vms: list[VmState], record: RequestRecord | None) -> list[dict[str, Any]]:
    """The holders the agents were given, with how many VMs import from each."""
    if record is None:
        return []
    used = Counter(vm.source_url for vm in vms)
    holders = {holder.url: holder for portion in record.portions for holder in portion.holders}
    return [{"node": h.node, "rack": h.rack, "url": h.url, "vms": used.get(url, 0)}
            for url, h in sorted(holders.items(), key=lambda item: (item[1].rack, item[1].node))]


def deployed_phase(wanted: int, vms: list[VmState]) -> Phase:
    return Phase.READY if len(vms) >= wanted and sum(vm.ready for vm in vms) >= wanted else Phase.DEPLOYING


def conditions(phase: Phase, reason: str, message: str, generation: int,
               previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``Placed`` (the handshake committed every VM) and ``Ready`` (every VM ready), keeping each
    condition's lastTransitionTime while its status does not change."""
    placed = phase in (Phase.DEPLOYING, Phase.READY)
    placed_reason = "Placed" if placed else (reason if phase == Phase.FAILED else str(phase))
    fresh = [
        condition(PLACED_CONDITION, placed, placed_reason, message if not placed else "every VM has a node",
                  generation),
        condition(READY_CONDITION, phase == Phase.READY, "Ready" if phase == Phase.READY else reason, message,
                  generation),
    ]
    before = {c["type"]: c for c in previous}
    for entry in fresh:
        old = before.get(entry["type"])
        if old is not None and old.get("status") == entry["status"]:
            entry["lastTransitionTime"] = old.get("lastTransitionTime", entry["lastTransitionTime"])
    return fresh
