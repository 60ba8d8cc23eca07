"""A compute rack leader's side of the handshake: ask every agent of its rack for an offer, in parallel."""

import logging
from typing import TYPE_CHECKING

from rackmesh.labels import Role
from rackmesh.logs import flow_step
from rackmesh.protocol import NODE_OFFERS, NodeOffer, OfferAsk, RackOffers
from rackmesh_node_agent.membership.fan_out import describe, gather

if TYPE_CHECKING:
    from rackmesh_node_agent.agent import Agent

logger = logging.getLogger(__name__)


async def rack_offers(agent: "Agent", ask: OfferAsk) -> RackOffers:
    """Every member's offer (a member that does not answer in time is listed as unanswered)."""
    agent.require_leadership(Role.COMPUTE)
    with agent.service_times.measure("rack-offers", ask.order.request.uid):
        return await _rack_offers(agent, ask)


async def _rack_offers(agent: "Agent", ask: OfferAsk) -> RackOffers:
    rack, uid = agent.node.rack, ask.order.request.uid
    members = await agent.directory.members(Role.COMPUTE, rack)
    flow_step(logger, 5, "asking rack agents for offers", uid, rack=rack, agents=[m.node for m in members])
    calls = {member.node: (agent.node_side.offer(ask) if member.node == agent.node.name
                           else agent.peers.post(member.endpoint, NODE_OFFERS, ask, NodeOffer))
             for member in members}
    answers, failures = await gather(calls)
    if failures:
        logger.warning("rack agents did not answer",
                       extra={"request": uid, "rack": rack, "failures": describe(failures)})
    return RackOffers(rack=rack, leader=agent.node.name, offers=[answers[node] for node in sorted(answers)],
                      unanswered=sorted(failures))
