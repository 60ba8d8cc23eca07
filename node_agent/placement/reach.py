"""The reachability round: an empty message down the placement tree (rack leaders, then their agents).

It costs what the handshake's transport costs and nothing else, so it is the floor a handshake is
measured against, and a quick answer to "which compute agents can be reached right now".
"""

import dataclasses
from typing import TYPE_CHECKING

from rackmesh.labels import Role
from rackmesh.protocol import NODE_PINGS, RACK_PINGS, Ping, Pong, RackPongs
from rackmesh_node_agent.membership.fan_out import describe, gather
from rackmesh_node_agent.placement.coordinator import RACK_CALL_DEPTH

if TYPE_CHECKING:
    from rackmesh_node_agent.agent import Agent


@dataclasses.dataclass(frozen=True)
class Reach:
    racks: list[RackPongs]
    unanswered: dict[str, str]  # rack -> why its leader did not answer

    @property
    def agents(self) -> int:
        return sum(len(rack.answered) for rack in self.racks)


def pong(agent: "Agent") -> Pong:
    return Pong(node=agent.node.name)


async def rack_pings(agent: "Agent") -> RackPongs:
    """Ping every member of this leader's compute rack."""
    agent.require_leadership(Role.COMPUTE)
    rack = agent.node.rack
    members = await agent.directory.members(Role.COMPUTE, rack)

    async def local() -> Pong:
        return pong(agent)

    calls = {member.node: agent.call(member, local, NODE_PINGS, Ping(), Pong) for member in members}
    answers, failures = await gather(calls)
    return RackPongs(rack=rack, leader=agent.node.name, answered=sorted(answers), unanswered=sorted(failures))


async def reach_compute_agents(agent: "Agent") -> Reach:
    """Ping every compute rack leader, which pings its agents, as a coordinator asks for offers."""
    leaders = await agent.directory.leaders(Role.COMPUTE)
    timeout = agent.settings.call_timeout * RACK_CALL_DEPTH
    answers, failures = await gather({
        leader.rack: agent.call(leader, lambda: rack_pings(agent), RACK_PINGS, Ping(), RackPongs, timeout)
        for leader in leaders})
    return Reach(racks=[answers[rack] for rack in sorted(answers)], unanswered=describe(failures))
