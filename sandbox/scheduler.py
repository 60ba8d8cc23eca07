"""A SIMULATED kube-scheduler's decision, for the sandbox's launcher pods: which node a pod fits, or why
none does, worded as the kube-scheduler words it.

Pure: given the Nodes and the pods bound to each, ``place`` runs the default profile's filters that a
launcher pod meets, in its order (pkg/scheduler/apis/config/v1/default_plugins.go): NodeUnschedulable
(``spec.unschedulable``), TaintToleration (NoSchedule and NoExecute taints), NodeAffinity (the pod's
``nodeSelector``), and NodeResourcesFit (cpu, memory and the pod count against ``status.allocatable``, the
requests counted by ``rackmesh/pod_requests.py``, kube's own rule). A pod that fits no node gets the
message of the scheduler's ``FitError`` (pkg/scheduler/framework/types.go): the count of nodes per reason,
then what preemption found. Nothing here preempts: every pod has the same priority, so no node has a victim.
"""

import dataclasses
from collections import Counter
from typing import Any

from rackmesh.pod_requests import is_terminal, pod_requests
from rackmesh.quantities import Resources

SCHEDULER = "default-scheduler"
NODE_SELECTOR_MISMATCH = "node(s) didn't match Pod's node affinity/selector"
UNSCHEDULABLE_NODE = "node(s) were unschedulable"
NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"


@dataclasses.dataclass
class NodeRoom:
    """A node as the scheduler's cache holds it: its object, and what its bound pods request."""

    node: dict[str, Any]
    requested: Resources = dataclasses.field(default_factory=Resources)
    pods: int = 0

    @property
    def name(self) -> str:
        return str(self.node["metadata"]["name"])

    def allocatable(self) -> tuple[Resources, int]:
        listed = (self.node.get("status") or {}).get("allocatable") or {}
        return Resources.parse(listed.get("cpu", 0), listed.get("memory", 0)), int(listed.get("pods", 110))

    def take(self, pod: dict[str, Any]) -> None:
        self.requested += pod_requests(pod)
        self.pods += 1


def rooms(nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> dict[str, NodeRoom]:
    """Every node with what the live pods bound to it request."""
    found = {node["metadata"]["name"]: NodeRoom(node) for node in nodes}
    for pod in pods:
        bound = (pod.get("spec") or {}).get("nodeName")
        if bound in found and not is_terminal(pod):
            found[bound].take(pod)
    return found


@dataclasses.dataclass(frozen=True)
class Placement:
    node: str | None  # None: it fits nowhere
    message: str = ""  # why not, as the kube-scheduler's FailedScheduling says it


def place(pod: dict[str, Any], nodes: dict[str, NodeRoom]) -> Placement:
    """The first node (by name) ``pod`` fits, taken into its room; or why it fits none."""
    reasons: Counter[str] = Counter()
    preemption: Counter[str] = Counter()
    for name in sorted(nodes):
        room = nodes[name]
        refusal, resolvable = _filter(pod, room)
        if not refusal:
            room.take(pod)
            return Placement(name)
        reasons.update(refusal)
        preemption[NO_VICTIMS if resolvable else NOT_HELPFUL] += 1
    count = len(nodes)
    return Placement(None, f"0/{count} nodes are available: {_histogram(reasons)}. "
                           f"preemption: 0/{count} nodes are available: {_histogram(preemption)}.")


def _filter(pod: dict[str, Any], room: NodeRoom) -> tuple[list[str], bool]:
    """Why ``pod`` does not fit ``room`` (nothing: it fits), and whether preemption could help."""
    spec, node_spec = pod.get("spec") or {}, room.node.get("spec") or {}
    if node_spec.get("unschedulable") and not _tolerates(spec, {"key": "node.kubernetes.io/unschedulable",
                                                                 "effect": "NoSchedule"}):
        return [UNSCHEDULABLE_NODE], False
    for taint in node_spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(spec, taint):
            return [f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"], False
    labels = room.node["metadata"].get("labels") or {}
    if any(labels.get(key) != value for key, value in (spec.get("nodeSelector") or {}).items()):
        return [NODE_SELECTOR_MISMATCH], False
    allocatable, pods = room.allocatable()
    wanted = room.requested + pod_requests(pod)
    insufficient = ["Too many pods"] if room.pods + 1 > pods else []
    insufficient += ["Insufficient cpu"] if wanted.cpu_millis > allocatable.cpu_millis else []
    insufficient += ["Insufficient memory"] if wanted.memory_bytes > allocatable.memory_bytes else []
    return insufficient, True


def _tolerates(spec: dict[str, Any], taint: dict[str, Any]) -> bool:
    """Whether a toleration of the pod matches the taint (core/v1 ``Toleration.ToleratesTaint``)."""
    for toleration in spec.get("tolerations") or []:
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        if toleration.get("key") and toleration["key"] != taint.get("key"):
            continue
        operator = toleration.get("operator") or "Equal"
        if operator == "Exists" or (operator == "Equal" and toleration.get("value", "") == taint.get("value", "")):
            return True
    return False


def _histogram(reasons: Counter[str]) -> str:
    """``<count> <reason>`` per reason, sorted as the scheduler sorts them (as strings), comma-separated."""
    return ", ".join(sorted(f"{count} {reason}" for reason, count in reasons.items()))
