"""A compute rack leader's side of the handshake: ask every agent of its rack for an offer, in parallel; after
the decision, release the offers of the members that were not chosen."""

import logging
from typing import TYPE_CHECKING

from rackmesh.labels import Role
from rackmesh.logs import flow_step, request_fields
from rackmesh.protocol import (
    NODE_OFFERS,
    NODE_RELEASES,
    NodeOffer,
    OfferAsk,
    RackOffers,
    RackRelease,
    RackReleased,
    RequestKey,
)
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
    rack, request = agent.node.rack, ask.order.request
    members = await agent.directory.members(Role.COMPUTE, rack)
    flow_step(logger, 5, "asking rack agents for offers", request, rack=rack, agents=[m.node for m in members])
    calls = {member.node: agent.call(member, lambda: agent.node_side.offer(ask), NODE_OFFERS, ask, NodeOffer)
             for member in members}
    answers, failures = await gather(calls)
    if failures:
        logger.warning("rack agents did not answer",
                       extra={**request_fields(request), "rack": rack, "failures": describe(failures)})
    return RackOffers(rack=rack, leader=agent.node.name, offers=[answers[node] for node in sorted(answers)],
                      unanswered=sorted(failures))


async def rack_release(agent: "Agent", release: RackRelease) -> RackReleased:
    """Release the request's offers on every member of this rack but ``keep``."""
    agent.require_leadership(Role.COMPUTE)
    rack, key = agent.node.rack, RequestKey(release.uid)
    members = [m for m in await agent.directory.members(Role.COMPUTE, rack) if m.node not in release.keep]
    calls = {member.node: agent.call(member, lambda: agent.node_side.release(key), NODE_RELEASES, key, None)
             for member in members}
    answers, failures = await gather(calls)
    return RackReleased(rack=rack, released=sorted(answers), unanswered=sorted(failures))
