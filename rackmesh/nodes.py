"""What rackmesh reads of a Node (the operator, and an agent of its own Node): rack, roles, allocatable,
whether it is Ready, and whether it is gone.

A node is *gone* when its Node object was deleted or it carries the taint
``node.kubernetes.io/out-of-service``, Kubernetes' signal that the node was shut down and fenced
(non-graceful node shutdown): its VMs cannot be running, so they are re-placed elsewhere. A node that is
merely NotReady may be cut off from the control plane while its VMs still run; re-placing them could run
two copies of a VM against the same disk, so they are left in place and the status says so.
"""

import dataclasses
from typing import Any

from rackmesh.labels import DEFAULT_RACK, Role, roles_of
from rackmesh.quantities import Resources

OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service"


@dataclasses.dataclass(frozen=True)
class NodeState:
    name: str
    rack: str
    ready: bool
    out_of_service: bool
    roles: tuple[Role, ...]
    allocatable: Resources


def node_state(node: dict[str, Any], rack_label: str) -> NodeState:
    meta, spec, status = node["metadata"], node.get("spec") or {}, node.get("status") or {}
    labels = meta.get("labels") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    allocatable = status.get("allocatable") or {}
    return NodeState(
        name=meta["name"],
        rack=labels.get(rack_label) or DEFAULT_RACK,
        # A node that never reported is not known to be down: only an explicit False/Unknown is NotReady.
        ready=conditions.get("Ready", "True") == "True",
        out_of_service=any(t.get("key") == OUT_OF_SERVICE_TAINT for t in spec.get("taints") or []),
        roles=tuple(roles_of(labels)),
        allocatable=Resources.parse(allocatable.get("cpu", 0), allocatable.get("memory", 0)),
    )


def could_add_room(before: NodeState | None, after: NodeState) -> bool:
    """Whether this change to a Node could let a waiting request fit (a node joined, grew, or came back)."""
    if Role.COMPUTE not in after.roles or after.out_of_service:
        return False
    return (before is None or Role.COMPUTE not in before.roles or before.out_of_service
            or after.allocatable.cpu_millis > before.allocatable.cpu_millis
            or after.allocatable.memory_bytes > before.allocatable.memory_bytes)
