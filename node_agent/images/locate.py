"""Locating an image's holders (flow steps 6-9): compute agent -> storage leader -> storage rack leaders
-> storage agents, each level asking the next in parallel.

    find_image      compute agent: pick a storage leader (ZooKeeper), ask it; the next one if it cannot answer
    locate          storage leader: its own rack and every other storage rack leader; choose the holders
    rack_holders    storage rack leader: every storage agent of its rack
    node_holders    storage agent: itself (0 or 1 holder)
"""

import asyncio
import logging
from collections import defaultdict
from collections.abc import Collection
from typing import TYPE_CHECKING

from rackmesh import rendezvous
from rackmesh.labels import Role
from rackmesh.logs import flow_step, request_fields
from rackmesh.peer_client import PeerError
from rackmesh.protocol import (
    IMAGE_FILES,
    IMAGE_LOCATIONS,
    NODE_IMAGES,
    RACK_IMAGES,
    Holders,
    ImageHolder,
    LocateAsk,
    RequestRef,
    image_file_name,
)
from rackmesh_node_agent.http_api import Refusal
from rackmesh_node_agent.membership.fan_out import describe, gather

if TYPE_CHECKING:
    from rackmesh_node_agent.agent import Agent

logger = logging.getLogger(__name__)
# Each level waits for the fan-out below it: a rack leader asks its agents (1 call deep), the storage
# leader asks rack leaders (2 deep), the compute agent asks the storage leader (3 deep).
RACK_CALL_DEPTH = 2
LEADER_CALL_DEPTH = 3
# A leader that answers with one of these has looked at every rack: asking another leader cannot help.
DEFINITIVE_REASONS = frozenset({"InsufficientImageReplicas", "StorageUnreachable"})


class ImageLookupFailed(Exception):
    """The compute side could not get enough holders; ``reason`` is the request's failure reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason, self.message = reason, message


async def node_holders(agent: "Agent", ask: LocateAsk) -> Holders:
    """This storage agent, if it holds the image. The first lookup of an image hashes its file, which can
    take minutes for a real disk image: in a thread, so the agent keeps answering meanwhile."""
    node = agent.node
    sha256 = await asyncio.to_thread(agent.images.sha256, ask.image)
    if sha256 is None:
        return Holders(image=ask.image, holders=[])
    url = f"{agent.endpoint}{IMAGE_FILES}/{image_file_name(ask.image)}"
    return Holders(image=ask.image, holders=[ImageHolder(node=node.name, rack=node.rack, url=url, sha256=sha256)])


async def rack_holders(agent: "Agent", ask: LocateAsk) -> Holders:
    """Every holder in this leader's rack; a member that does not answer in time is left out (and logged)."""
    agent.require_leadership(Role.STORAGE)
    rack = agent.node.rack
    members = await agent.directory.members(Role.STORAGE, rack)
    flow_step(logger, 8, "asking rack storage agents for the image", ask.request, image=ask.image, rack=rack,
              agents=[member.node for member in members])

    calls = {member.node: agent.call(member, lambda: node_holders(agent, ask), NODE_IMAGES, ask, Holders)
             for member in members}
    answers, failures = await gather(calls)
    if failures:
        logger.warning("rack storage agents did not answer",
                       extra={**request_fields(ask.request), "rack": rack, "failures": describe(failures)})
    return Holders(image=ask.image, holders=[holder for node in sorted(answers) for holder in answers[node].holders])


async def locate(agent: "Agent", ask: LocateAsk) -> Holders:
    """Ask this rack and every other storage rack leader in parallel, then choose (see ``choose_holders``)."""
    agent.require_leadership(Role.STORAGE)
    rack = agent.node.rack
    others = [leader for leader in await agent.directory.leaders(Role.STORAGE) if leader.rack != rack]
    flow_step(logger, 8, "asking storage rack leaders for the image", ask.request, image=ask.image,
              racks=[rack, *(leader.rack for leader in others)])
    timeout = RACK_CALL_DEPTH * agent.settings.call_timeout
    calls = {rack: rack_holders(agent, ask),
             **{leader.rack: agent.peers.post(leader, RACK_IMAGES, ask, Holders, timeout=timeout)
                for leader in others}}
    answers, failures = await gather(calls)
    if failures:
        logger.warning("storage racks did not answer",
                       extra={**request_fields(ask.request), "image": ask.image, "failures": describe(failures)})
    found = Holders(image=ask.image, holders=[holder for answer in answers.values() for holder in answer.holders])
    chosen = choose_holders(found, ask.redundancy, unanswered=failures.keys())
    flow_step(logger, 9, "chose image holders", ask.request, image=ask.image, redundancy=ask.redundancy,
              holders=[holder.node for holder in chosen.holders])
    return chosen


def choose_holders(found: Holders, redundancy: int, unanswered: Collection[str] = ()) -> Holders:
    """Every holder (each node once), ordered so racks interleave: rack by rack in name order, a rack's nodes
    in name order, one node per rack per round. So the first ``redundancy`` are in distinct racks whenever
    that many racks hold the image, and the same holders always give the same order.

    Too few holders is ``InsufficientImageReplicas`` (409); but when some storage racks did not answer, the
    missing copies may be there, so it is ``StorageUnreachable`` (503), which a caller may retry.
    """
    by_rack: dict[str, dict[str, ImageHolder]] = defaultdict(dict)
    for holder in found.holders:
        by_rack[holder.rack].setdefault(holder.node, holder)
    columns = [[nodes[name] for name in sorted(nodes)] for _, nodes in sorted(by_rack.items())]
    ordered = [column[depth] for depth in range(max(map(len, columns), default=0))
               for column in columns if depth < len(column)]
    if len(ordered) >= redundancy:
        return Holders(image=found.image, holders=ordered)
    required = f"{redundancy} {'is' if redundancy == 1 else 'are'} required"
    have = _describe_holders(ordered)
    if unanswered:
        racks = ", ".join(sorted(unanswered))
        raise Refusal(503, "StorageUnreachable", f"image {found.image} has {have} in the storage racks that "
                                                 f"answered; {required}; storage racks that did not answer: {racks}")
    raise Refusal(409, "InsufficientImageReplicas", f"image {found.image} has {have}; {required}")


def _describe_holders(holders: list[ImageHolder]) -> str:
    if not holders:
        return "no holder"
    where = ", ".join(f"{holder.node} in {holder.rack}" for holder in holders)
    return f"{len(holders)} holder{'s' if len(holders) > 1 else ''} ({where})"


async def find_image(agent: "Agent", image: str, redundancy: int, request: RequestRef) -> list[ImageHolder]:
    """The image's holders, from a storage leader (ranked by this node's name, so compute agents spread
    over the storage leaders); raises ``ImageLookupFailed``."""
    me = agent.node.name
    leaders = rendezvous.ranked(await agent.directory.leaders(Role.STORAGE), me,
                                lambda leader: leader.node)
    flow_step(logger, 6, "storage leaders from ZooKeeper", request, node=me,
              leaders=[leader.node for leader in leaders])
    if not leaders:
        raise ImageLookupFailed("NoStorageLeaders", "no storage rack has a leader in ZooKeeper: no storage agent "
                                                    "is running, or none has joined yet")
    ask = LocateAsk(image=image, redundancy=redundancy, request=request)
    failures: list[str] = []
    for leader in leaders:
        flow_step(logger, 7, "asking a storage leader where the image is", request, node=me,
                  leader=leader.node, image=image)
        try:
            found = await agent.peers.post(leader, IMAGE_LOCATIONS, ask, Holders,
                                           timeout=LEADER_CALL_DEPTH * agent.settings.call_timeout)
        except PeerError as failure:
            if failure.reason in DEFINITIVE_REASONS:
                raise ImageLookupFailed(failure.reason, failure.message) from None
            # Not leading any more, not reachable, not ready: the next leader can answer as well.
            logger.warning("storage leader could not answer", extra={
                **request_fields(request), "leader": leader.node, "reason": failure.reason, "error": failure.message})
            failures.append(f"{leader.node}: {failure.reason}: {failure.message}")
            continue
        flow_step(logger, 7, "image located", request, node=me, leader=leader.node, image=image,
                  holders=[holder.node for holder in found.holders])
        return found.holders
    raise ImageLookupFailed("StorageUnreachable", "no storage leader answered: " + "; ".join(failures))
