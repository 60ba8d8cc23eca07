"""Deleting a request frees its room within seconds, whatever stage it is in.

Case matrix (real agents, real ZooKeeper): offers held on every compute node and a commitment on one;
the request's record is deleted (as the operator's finalizer does) -> every agent drops the request's
reservations within 2 s of following it (it follows room still held 2 s after offering it), long before
their time limits; another request's reservation stays. An offer for a request that has no record (it is
gone, or never was) is freed as soon as it is followed.
"""

import pytest

from rackmesh import request_record
from rackmesh.protocol import NODE_COMMITS, NODE_OFFERS, Commit, CommitAnswer, NodeOffer, OfferAsk
from rackmesh.request_record import RequestRecord, Stage
from rackmesh_node_agent.capacity.request_watch import FOLLOW_AFTER_SECONDS
from tests.agent.test_handshake import order, stored_order, topology
from tests.support.waiting import async_eventually

pytestmark = pytest.mark.zookeeper


async def test_deleting_the_record_frees_offers_and_commitments_within_seconds(mesh):
    mesh = await mesh(topology())
    gone, kept = await stored_order(mesh, "gone", 4), order("u-kept", 1)
    for placed in (gone, kept):
        await request_record.write(mesh.zk, mesh.layout, RequestRecord(placed, "c-0-0", Stage.PLACING), None)
    compute = [name for name in mesh.agents if name.startswith("c-")]
    for node in compute:
        leader = await mesh.as_rack_leader_of(node)
        offered = await leader.post(mesh.peer(node), NODE_OFFERS, OfferAsk(gone, 2, 300), NodeOffer)
        assert offered.count > 0
    coordinator = await mesh.as_agent("c-0-0")  # the one the record names
    await coordinator.post(mesh.peer(compute[0]), NODE_COMMITS, Commit(gone, [0, 1]), CommitAnswer)
    leader = await mesh.as_rack_leader_of(compute[1])
    await leader.post(mesh.peer(compute[1]), NODE_OFFERS, OfferAsk(kept, 1, 300), NodeOffer)

    def held(uid: str) -> list[str]:
        return [name for name in compute
                if mesh.agent(name).capacity.reservations.get(uid) is not None]

    assert held(gone.request.uid) == compute
    await request_record.delete(mesh.zk, mesh.layout, gone.request.uid)

    async def freed() -> bool:
        return held(gone.request.uid) == []

    await async_eventually(freed, timeout=FOLLOW_AFTER_SECONDS + 2.0,
                           what="every reservation of the deleted request freed")
    assert held("u-kept") == [compute[1]]


async def test_room_offered_to_a_request_without_a_record_is_freed_at_once(mesh):
    mesh = await mesh(topology())
    leader = await mesh.as_rack_leader_of("c-0-0")
    offered = await leader.post(mesh.peer("c-0-0"), NODE_OFFERS, OfferAsk(order("u-none", 2), 2, 300),
                                    NodeOffer)
    assert offered.count == 2

    async def freed() -> bool:
        return mesh.agent("c-0-0").capacity.reservations.get("u-none") is None

    await async_eventually(freed, timeout=FOLLOW_AFTER_SECONDS + 2.0,
                           what="the offer to a request without a record freed")
