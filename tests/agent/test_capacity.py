"""An agent's free room is what the kube-scheduler will find on its node: allocatable, minus the requests of
every pod bound there, minus its VMs as their virt-launcher pods will request them.

Case matrix (real agents, HTTP, ZooKeeper and the sandbox API; nodes of 8 cpu and 36Gi, 4 u1.large each):
- a foreign pod bound to a node, holding 500m and 20Gi: that node's free room is allocatable minus exactly
  that, its agent offers 1 u1.large where it offered 4, and a request for all the room left places 1 VM
  there; a pod bound to another node counts only there, one bound to none nowhere; the pod finishing
  (Succeeded) gives its room back
- a VM's launcher pod, as KubeVirt renders it, is not counted beside its VM; one that requests more than
  rackmesh's estimate counts at what it requests; a launcher pod of a VM not pinned to the node is a pod like
  any other
- the room a request's VMs are reserved at follows its template (an exec probe adds KubeVirt's probe overhead)
"""

from typing import Any

import pytest

from rackmesh.kube_client import DEPLOYMENT_REQUESTS, PODS
from rackmesh.pod_requests import pod_requests
from rackmesh.protocol import NODE_OFFERS, NODE_RELEASES, NodeOffer, OfferAsk, RequestKey, RequestRef
from rackmesh.quantities import Resources
from rackmesh.virt_launcher import Guest, memory_overhead
from rackmesh.vm_room import vm_room
from rackmesh_sandbox.kubevirt_simulation import VIRTUAL_MACHINE_INSTANCES, instance_object, launcher_pod
from tests.agent.test_handshake import leader_of, order, per_node, settled_round, stored_order, topology, vms_of
from tests.support.builders import make_request
from tests.support.waiting import async_eventually

pytestmark = pytest.mark.zookeeper
GI, MI = 2**30, 2**20
U1_LARGE = Guest(2, 8 * GI)
NODE = Resources.parse(8, "36Gi")


def foreign_pod(name: str, node: str | None, cpu: str, memory: str) -> dict[str, Any]:
    requests = {"cpu": cpu, "memory": memory}
    return {"metadata": {"name": name}, "spec": {**({"nodeName": node} if node else {}), "containers": [
        {"name": "main", "image": "busybox", "resources": {"requests": requests}}]}}


async def offered(mesh, node: str) -> int:
    """How many u1.large ``node``'s agent offers now (the offer is released again at once)."""
    leader = await mesh.as_rack_leader_of(node)
    answer = await leader.post(mesh.peer(node), NODE_OFFERS, OfferAsk(order("probe", 8), 8, 30), NodeOffer)
    await leader.post(mesh.peer(node), NODE_RELEASES, RequestKey("probe"))
    return answer.count


async def free_is(mesh, node: str, wanted: Resources) -> bool:
    return mesh.agent(node).require_capacity().free() == wanted


async def test_a_foreign_pod_leaves_only_what_remains(mesh):
    mesh = await mesh(topology())
    assert await offered(mesh, "c-0-0") == 4
    await mesh.kube.create(PODS, foreign_pod("unbound", None, "4", "30Gi"), "default")
    await mesh.kube.create(PODS, foreign_pod("elsewhere", "c-0-1", "0", "1Gi"), "default")
    await mesh.kube.create(PODS, foreign_pod("daemon", "c-0-0", "500m", "20Gi"), "default")
    await async_eventually(lambda: free_is(mesh, "c-0-0", NODE - Resources.parse("500m", "20Gi")),
                           what="the daemon's requests counted on c-0-0")
    await async_eventually(lambda: free_is(mesh, "c-0-1", NODE - Resources.parse(0, "1Gi")),
                           what="the other pod's counted on c-0-1")
    assert await offered(mesh, "c-0-0") == 1  # 16Gi left: one u1.large (8Gi + 276Mi + 35M), not two
    assert mesh.agent("c-1-0").require_capacity().free() == NODE

    rest = await stored_order(mesh, "rest", 1 + 4 + 4 + 4)
    record, _ = await settled_round(mesh, leader_of(mesh), rest)
    assert sorted(record.indices()) == list(range(13))
    assert {node: len(indices) for node, indices in per_node(await vms_of(mesh, "rest")).items()} == {
        "c-0-0": 1, "c-0-1": 4, "c-1-0": 4, "c-1-1": 4}

    await mesh.kube.patch(PODS, "daemon", {"status": {"phase": "Succeeded"}}, "default", "status")

    async def room_back() -> bool:
        return await offered(mesh, "c-0-0") == 3  # its VM stays

    await async_eventually(room_back, what="the finished pod's room given back")


async def test_a_vms_launcher_pod_is_not_counted_twice(mesh):
    mesh = await mesh(topology())
    web = await stored_order(mesh, "web", 4)
    await settled_round(mesh, leader_of(mesh), web)
    vms = {vm["metadata"]["labels"]["rackmesh.io/node"]: vm for vm in await vms_of(mesh, "web")}
    assert sorted(vms) == ["c-0-0", "c-0-1", "c-1-0", "c-1-1"]  # spread one per node
    one_vm = NODE - vm_room(U1_LARGE)

    async def launch(vm: dict[str, Any], node: str, extra_memory: int = 0) -> dict[str, Any]:
        """The VMI and launcher pod KubeVirt makes for ``vm``, bound to ``node``."""
        vmi = await mesh.kube.create(VIRTUAL_MACHINE_INSTANCES, instance_object(vm, U1_LARGE), "default")
        pod = launcher_pod(vm, vmi, U1_LARGE, node)
        compute = pod["spec"]["containers"][0]["resources"]["requests"]
        compute["memory"] = str(int(compute["memory"]) + extra_memory)
        return await mesh.kube.create(PODS, pod, "default")

    own = await launch(vms["c-0-0"], "c-0-0")
    await launch(vms["c-0-1"], "c-0-1", extra_memory=GI)
    stray = await launch(vms["c-1-1"], "c-1-0")
    await async_eventually(lambda: free_is(mesh, "c-0-1", one_vm - Resources(0, GI)),
                           what="a launcher pod above the estimate counted at its requests")
    await async_eventually(lambda: free_is(mesh, "c-1-0", one_vm - pod_requests(stray)),
                           what="another VM's launcher pod counted as any pod")
    await async_eventually(lambda: _cached(mesh, "c-0-0", own), what="c-0-0's agent seeing its VM's pod")
    assert mesh.agent("c-0-0").require_capacity().free() == one_vm
    assert mesh.agent("c-1-1").require_capacity().free() == one_vm


async def _cached(mesh, node: str, pod: dict[str, Any]) -> bool:
    return mesh.agent(node).pods.get("default", pod["metadata"]["name"]) is not None


async def test_the_room_reserved_follows_the_requests_template(mesh):
    mesh = await mesh(topology())
    probe = {"exec": {"command": ["cat", "/tmp/ready"]}}
    created = await mesh.kube.create(DEPLOYMENT_REQUESTS, make_request("probed").instancetype("u1.large")
                                     .template_field("spec.template.spec.readinessProbe", probe).obj(), "default")
    request = RequestRef(created["metadata"]["uid"], "default", "probed")
    assert memory_overhead(U1_LARGE, {"readinessProbe": probe}) == memory_overhead(U1_LARGE) + 110 * MI
    capacity = mesh.agent("c-0-0").require_capacity()

    async def sized() -> bool:
        return capacity.size_of("u1.large", request) == vm_room(U1_LARGE, {"readinessProbe": probe})

    await async_eventually(sized, what="the request's template in the agent's cache")
    assert capacity.size_of("u1.large") == vm_room(U1_LARGE)
