"""Concurrent requests do not starve each other, and never oversubscribe a node.

Case matrix (real agents, real ZooKeeper, two coordinators):
- 8 requests of 2 x u1.large handed at once, together asking for all 16 that fit: every one is placed
  (Settled, none Waiting), every node holds at most what it has room for, every VM exists once
- 9 such requests, one more than fits: 8 placed, the last waits with InsufficientCapacity
"""

import asyncio
from collections import Counter

import pytest

from rackmesh import request_record
from rackmesh.kube_client import VIRTUAL_MACHINES
from rackmesh.protocol import ORDERS, OrderAccepted
from rackmesh.request_record import Stage
from tests.agent.test_handshake import leader_of, stored_order, topology
from tests.support.waiting import async_eventually

pytestmark = pytest.mark.zookeeper
ROOM_PER_NODE = 4  # 8 cpu / 2 per u1.large


async def place_at_once(mesh, count: int):
    coordinators = [leader_of(mesh, "compute-0"), leader_of(mesh, "compute-1")]
    orders = [await stored_order(mesh, f"rush-{i}", 2) for i in range(count)]
    await asyncio.gather(*(mesh.peers.post(mesh.peer(coordinators[i % 2]), ORDERS, order, OrderAccepted)
                           for i, order in enumerate(orders)))

    async def ended():
        found = [await request_record.read(mesh.zk, mesh.layout, order.request.uid) for order in orders]
        busy = any(mesh.agent(c).coordinator.busy(o.request.uid) for c in coordinators for o in orders)
        done = all(f and f[0].stage in (Stage.SETTLED, Stage.WAITING) for f in found)
        return [f[0] for f in found] if done and not busy else None

    return await async_eventually(ended, timeout=60, what="every request's round ended")


async def pinned(mesh) -> Counter[str]:
    vms = await mesh.kube.list(VIRTUAL_MACHINES, "default")
    names = [vm["metadata"]["name"] for vm in vms]
    assert len(names) == len(set(names))
    return Counter(vm["metadata"]["labels"]["rackmesh.io/node"] for vm in vms)


async def test_requests_for_all_the_room_at_once_are_all_placed(mesh):
    mesh = await mesh(topology())
    records = await place_at_once(mesh, 8)
    assert [record.stage for record in records] == [Stage.SETTLED] * 8, [r.message for r in records]
    per_node = await pinned(mesh)
    assert sum(per_node.values()) == 16 and max(per_node.values()) <= ROOM_PER_NODE


async def test_one_request_more_than_fits_waits_and_the_others_are_placed(mesh):
    mesh = await mesh(topology())
    records = await place_at_once(mesh, 9)
    assert Counter(record.stage for record in records) == {Stage.SETTLED: 8, Stage.WAITING: 1}
    [waiting] = [record for record in records if record.stage == Stage.WAITING]
    assert waiting.reason == "InsufficientCapacity"
    per_node = await pinned(mesh)
    assert sum(per_node.values()) == 16 and max(per_node.values()) <= ROOM_PER_NODE
