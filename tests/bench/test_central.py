"""The central baseline and the API floor, against the sandbox's Kubernetes API (no ZooKeeper, no agents).

Case matrix:
- a request that fits: every VM exists, pinned where the result says; no node gets more than its room, the
  VMs of other requests counted; the spread is ``spread.decide``'s over the agents' offers; storage-only and
  out-of-service nodes get nothing
- the request already has some VMs: only the missing ones are written, under the free names, and the
  spread counts the existing ones
- a node with a VM of an unknown instancetype gets nothing (its agent could not tell its room either)
- a request larger than the room, or of an unknown instancetype: an error, and no VM written
- the API floor creates exactly the VMs of the placement it is given, as the product's manifest writes them
"""

from collections import Counter
from collections.abc import AsyncIterator

import pytest

from rackmesh.config import Settings
from rackmesh.kube_client import DEPLOYMENT_REQUESTS, NODES, VIRTUAL_MACHINES, Credentials, KubeClient
from rackmesh.labels import NODE_LABEL, REQUEST_LABEL
from rackmesh.nodes import OUT_OF_SERVICE_TAINT
from rackmesh.protocol import ImageHolder, NodeOffer, Order, RequestRef
from rackmesh.request_record import Portion
from rackmesh_bench.api_floor import write_floor
from rackmesh_bench.central import CentralPlacementFailed, place_centrally
from rackmesh_node_agent.placement import spread
from rackmesh_node_agent.vms.manifest import virtual_machine
from rackmesh_node_agent.vms.writer import write_vms
from rackmesh_sandbox.cluster_seed import seed
from rackmesh_sandbox.kube_api import KubeApiServer
from rackmesh_sandbox.lifecycle import CRD_DIR
from rackmesh_sandbox.topology import Topology
from tests.support.builders import make_request, make_topology

SETTINGS = Settings.from_env({})
HOLDERS = [ImageHolder(f"s-0-{n}", "storage-0", f"http://127.0.1.{n + 1}:9000/images/lob123-rhel-6.0.img")
           for n in range(2)]
# 2 racks x 3 nodes of 8 vCPU / 34Gi: 4 u1.large each (8Gi plus ~300Mi of launcher overhead, rackmesh/vm_room.py);
# c-0-0 already holds 3 of another request's VMs.
ROOM = {"c-0-0": 1, "c-0-1": 4, "c-0-2": 4, "c-1-0": 4, "c-1-1": 4, "c-1-2": 4}
RACK = {node: f"compute-{node[2]}" for node in ROOM}
GONE = "c-gone"  # compute, with room, but tainted out-of-service


@pytest.fixture
async def kube() -> AsyncIterator[KubeClient]:
    topology = (make_topology().compute_racks(2, nodes=3, cpu=8, memory="34Gi").storage_racks(1, nodes=2)
                .node(GONE, "compute-1", ["compute"], cpu=64, memory="256Gi"))
    async with (KubeApiServer(crd_paths=sorted(CRD_DIR.glob("*.yaml"))) as api,
                KubeClient(Credentials(api.url, ssl_context=False)) as client):
        await seed(client, Topology.parse(topology.obj()), SETTINGS.rack_label)
        await client.patch(NODES, GONE, {"spec": {"taints": [{"key": OUT_OF_SERVICE_TAINT, "effect": "NoExecute"}]}})
        other = await stored_order(client, "other", 3)
        await write_vms(client, other, "c-0-0", [0, 1, 2], HOLDERS, "10Gi")
        yield client


async def stored_order(kube: KubeClient, name: str, replicas: int, instancetype: str = "u1.large") -> Order:
    """An order of a stored DeploymentRequest (the VMs' owner: without it, garbage collection removes them)."""
    stored = await kube.create(DEPLOYMENT_REQUESTS, make_request(name).replicas(replicas).instancetype(instancetype)
                               .obj(), "default")
    return Order(RequestRef(stored["metadata"]["uid"], "default", name), replicas, instancetype, "lob123-rhel-6.0")


async def pinned(kube: KubeClient, request: str) -> dict[str, str]:
    """VM name -> node, of the request's VMs."""
    vms = await kube.list(VIRTUAL_MACHINES, "default", f"{REQUEST_LABEL}={request}")
    return {vm["metadata"]["name"]: vm["metadata"]["labels"][NODE_LABEL] for vm in vms}


def offers(wanted: int, room: dict[str, int] = ROOM) -> list[NodeOffer]:
    """The offers the agents would make, with that room."""
    return [NodeOffer(node, RACK[node], "", min(wanted, left)) for node, left in room.items()]


async def test_a_request_that_fits_is_spread_within_each_nodes_room(kube):
    order = await stored_order(kube, "lob123", 18)
    result = await place_centrally(kube, order, HOLDERS, SETTINGS)

    assert result.placed == spread.decide(offers(18), 18)
    on_node = Counter((await pinned(kube, "lob123")).values())
    assert on_node == Counter(result.placed)
    assert sorted(await pinned(kube, "lob123")) == [f"lob123-{index:04d}" for index in range(18)]
    assert all(on_node[node] <= room for node, room in ROOM.items())
    assert set(on_node) <= set(ROOM)  # neither storage nor out-of-service nodes
    assert result.decision_seconds > 0
    assert result.write_seconds > 0


async def test_only_the_missing_vms_are_written_and_the_existing_ones_counted(kube):
    order = await stored_order(kube, "lob123", 12)
    await write_vms(kube, order, "c-1-0", [0, 3], HOLDERS, "10Gi")
    result = await place_centrally(kube, order, HOLDERS, SETTINGS)

    expected = spread.decide(offers(10, {**ROOM, "c-1-0": 2}), 10, [Portion("c-1-0", "compute-1", "", [0, 3])])
    assert result.placed == expected
    vms = await pinned(kube, "lob123")
    assert sorted(vms) == [f"lob123-{index:04d}" for index in range(12)]
    assert Counter(vms.values()) == Counter(expected) + Counter({"c-1-0": 2})


async def test_a_node_with_a_vm_of_unknown_size_gets_nothing(kube):
    odd = await stored_order(kube, "odd", 1, "u9.huge")
    await write_vms(kube, odd, "c-1-1", [0], HOLDERS, "10Gi")
    order = await stored_order(kube, "lob123", 12)
    result = await place_centrally(kube, order, HOLDERS, SETTINGS)

    assert result.placed == spread.decide(offers(12, {**ROOM, "c-1-1": 0}), 12)
    assert "c-1-1" not in result.placed


@pytest.mark.parametrize(("replicas", "instancetype", "message"), [
    (22, "u1.large", "22 VMs of u1.large do not fit: the 6 compute nodes have room for 21"),
    (1, "u9.huge", "instancetype 'u9.huge' does not exist"),
])
async def test_what_cannot_be_placed_writes_nothing(kube, replicas, instancetype, message):
    order = await stored_order(kube, "lob123", replicas, instancetype)
    with pytest.raises(CentralPlacementFailed, match=message):
        await place_centrally(kube, order, HOLDERS, SETTINGS)
    assert await pinned(kube, "lob123") == {}


async def test_the_api_floor_creates_exactly_the_placements_vms(kube):
    order = await stored_order(kube, "lob123", 5)
    placement = {"c-0-1": [0, 1, 4], "c-1-2": [2, 3]}
    seconds = await write_floor(kube, order, placement, HOLDERS, "10Gi", concurrency=2)

    assert seconds > 0
    assert await pinned(kube, "lob123") == {f"lob123-{index:04d}": node
                                             for node, indices in placement.items() for index in indices}
    for node, indices in placement.items():
        for index in indices:
            written = virtual_machine(order, node, index, HOLDERS, "10Gi")
            stored = await kube.get(VIRTUAL_MACHINES, written["metadata"]["name"], "default")
            assert stored["spec"] == written["spec"]
