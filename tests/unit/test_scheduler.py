"""The sandbox's simulated kube-scheduler (sandbox/scheduler.py): where a pod fits, and the kube-scheduler's
words when it fits nowhere.

Case matrix: a pod fits the node its nodeSelector names and the room is taken; the next pod that no longer
fits gets "Insufficient memory" for that node and "didn't match Pod's node affinity/selector" for the others,
with preemption's verdict per node, counts sorted as the scheduler sorts them; cpu and memory short at once;
the pod count; a terminal pod holds nothing; an untolerated NoSchedule taint, and a tolerated one; a cordoned
node.
"""

from rackmesh_sandbox.cluster_seed import node_object, node_status
from rackmesh_sandbox.scheduler import place, rooms
from rackmesh_sandbox.topology import Topology


def nodes(*specs: tuple[str, int, str]) -> list[dict]:
    topology = Topology.parse({"nodes": [{"name": name, "rack": "r", "roles": ["compute"], "cpu": cpu,
                                          "memory": memory} for name, cpu, memory in specs]})
    return [{**node_object(node, "rack"), **node_status(node)} for node in topology.nodes]


def pod(cpu: str, memory: str, node: str | None = None, on: str | None = None, phase: str = "Running",
        tolerations: list | None = None) -> dict:
    spec = {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}],
            **({"nodeSelector": {"kubernetes.io/hostname": node}} if node else {}),
            **({"nodeName": on} if on else {}), **({"tolerations": tolerations} if tolerations else {})}
    return {"metadata": {"name": "p"}, "spec": spec, "status": {"phase": phase}}


CLUSTER = nodes(("a", 8, "32Gi"), ("b", 8, "32Gi"), ("c", 8, "32Gi"))


def test_a_pod_fits_its_node_and_takes_the_room():
    found = rooms(CLUSTER, [pod("1", "20Gi", on="a")])
    assert place(pod("1", "10Gi", node="a"), found).node == "a"
    refused = place(pod("1", "4Gi", node="a"), found)
    assert refused.node is None
    assert refused.message == (
        "0/3 nodes are available: 1 Insufficient memory, 2 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, "
        "2 Preemption is not helpful for scheduling.")


def test_every_short_resource_is_named():
    found = rooms(CLUSTER[:1], [pod("7500m", "31Gi", on="a")])
    assert place(pod("1", "2Gi"), found).message == (
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. "
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.")


def test_the_pod_count_is_a_limit_too():
    found = rooms(CLUSTER[:1], [pod("0", "0", on="a") for _ in range(110)])
    assert place(pod("0", "0"), found).message.startswith("0/1 nodes are available: 1 Too many pods.")


def test_a_terminal_pod_holds_nothing():
    found = rooms(CLUSTER[:1], [pod("8", "32Gi", on="a", phase="Succeeded")])
    assert place(pod("8", "32Gi"), found).node == "a"


def test_taints_and_cordons_keep_pods_off_unless_tolerated():
    tainted, cordoned = nodes(("t", 8, "32Gi"), ("u", 8, "32Gi"))
    tainted["spec"] = {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}
    cordoned["spec"] = {"unschedulable": True}
    refused = place(pod("1", "1Gi"), rooms([tainted, cordoned], []))
    assert refused.message == (
        "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable. "
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    tolerating = pod("1", "1Gi", tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu"}])
    assert place(tolerating, rooms([tainted, cordoned], [])).node == "t"
