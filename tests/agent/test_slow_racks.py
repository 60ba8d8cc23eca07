"""Racks and agents that do not answer an offer ask in time (real agents, HTTP and ZooKeeper).

Case matrix:
- an agent that misses the first ask but answers the next: asked again, the round is decided with it
- an agent that never answers in time: asked again twice, then the round is placed on the others and
  the record names the agent it was placed without
"""

import asyncio

import pytest

from rackmesh.protocol import NodeOffer, OfferAsk
from rackmesh.request_record import Stage
from tests.agent.test_handshake import leader_of, per_node, settled_round, stored_order, topology, vms_of

pytestmark = pytest.mark.zookeeper


def slow_for(mesh, node: str, asks: int) -> list[OfferAsk]:
    """Make ``node`` answer its first ``asks`` offer asks too late (after the rack leader's call timeout)."""
    agent = mesh.agent(node)
    answer_in_time = agent.node_side.offer
    seen: list[OfferAsk] = []

    async def offer(ask: OfferAsk) -> NodeOffer:
        seen.append(ask)
        if len(seen) <= asks:
            await asyncio.sleep(mesh.settings.call_timeout + 1)
        return await answer_in_time(ask)

    agent.node_side.offer = offer  # type: ignore[method-assign]
    return seen


def follower_in(mesh, rack: str) -> str:
    leader = leader_of(mesh, rack)
    return next(name for name, agent in mesh.agents.items() if agent.node.rack == rack and name != leader)


async def test_an_agent_that_missed_the_first_ask_is_asked_again_and_placed_on(mesh):
    mesh = await mesh(topology())
    slow = follower_in(mesh, "compute-1")
    asks = slow_for(mesh, slow, asks=1)
    web = await stored_order(mesh, "web", 4)

    record, _ = await settled_round(mesh, leader_of(mesh), web)
    assert record.stage == Stage.SETTLED and record.unanswered == []
    assert len(asks) == 2
    assert sorted(map(len, per_node(await vms_of(mesh, "web")).values())) == [1, 1, 1, 1]  # one per node


async def test_an_agent_that_never_answers_in_time_is_named_in_the_record(mesh):
    mesh = await mesh(topology())
    slow = follower_in(mesh, "compute-1")
    asks = slow_for(mesh, slow, asks=100)
    db = await stored_order(mesh, "db", 3)

    record, _ = await settled_round(mesh, leader_of(mesh), db)
    assert record.stage == Stage.SETTLED
    assert record.unanswered == [f"node {slow}"]
    assert len(asks) == 3  # the first ask and two more
    placed = per_node(await vms_of(mesh, "db"))
    assert slow not in placed and sorted(map(len, placed.values())) == [1, 1, 1]
