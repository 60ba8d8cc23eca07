"""Agents answer offers and commits from their watch-fed caches, not from the API server (real agents,
HTTP, ZooKeeper and the sandbox API, whose request counts are read from its metrics).

Case matrix:
- a request placed and written: the agents read nothing from the API during the round (no GET, no LIST);
  their only calls are the VM creates
- VMs written by someone else reach the agent's cache by its watch: a node they fill offers no room, and
  the request goes to the other nodes, still without a read
"""

import pytest

from rackmesh.kube_client import VIRTUAL_MACHINES
from rackmesh.protocol import ImageHolder
from rackmesh_node_agent.vms.manifest import virtual_machine
from tests.agent.test_handshake import leader_of, per_node, settled_round, stored_order, topology, vms_of
from tests.support.waiting import async_eventually

pytestmark = pytest.mark.zookeeper
HOLDER = ImageHolder("s-0-0", "storage-0", "http://127.0.1.9:1/images/lob123-rhel-6.0.img")


def reads(mesh) -> int:
    return mesh.api.metrics.requests(verb="GET") + mesh.api.metrics.requests(verb="LIST")


async def test_a_round_reads_nothing_from_the_api(mesh):
    mesh = await mesh(topology())
    web = await stored_order(mesh, "web", 10)
    before, creates = reads(mesh), mesh.api.metrics.requests(verb="POST", resource="virtualmachines")

    record, _ = await settled_round(mesh, leader_of(mesh), web)
    assert sorted(record.indices()) == list(range(10))
    assert reads(mesh) == before
    assert mesh.api.metrics.requests(verb="POST", resource="virtualmachines") - creates == 10


async def test_vms_written_by_others_count_through_the_watch(mesh):
    mesh = await mesh(topology())
    other = await stored_order(mesh, "other", 4)
    for index in range(4):  # fills c-0-0 (8 cpu, 2 per u1.large)
        await mesh.kube.create(VIRTUAL_MACHINES, virtual_machine(other, "c-0-0", index, [HOLDER], "1Gi"), "default")

    async def seen() -> bool:
        return mesh.agent("c-0-0").require_capacity().free().fits_times(
            mesh.agent("c-0-0").require_capacity().size_of("u1.large")) == 0

    await async_eventually(seen, what="c-0-0's cache holding the 4 VMs")
    db = await stored_order(mesh, "db", 12)
    before = reads(mesh)
    record, _ = await settled_round(mesh, leader_of(mesh), db)
    assert reads(mesh) == before
    assert sorted(record.indices()) == list(range(12))
    placed = per_node(await vms_of(mesh, "db"))
    assert "c-0-0" not in placed and sorted(map(len, placed.values())) == [4, 4, 4]
