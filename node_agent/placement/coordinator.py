"""The coordinator: a compute rack leader the operator handed a request to. It brings the request's VMs to
the order's replicas in *rounds*, recording each decision in ZooKeeper (``requests/<uid>``) first.

A round: drop the VMs the operator saw lost; on scale-in, choose the surplus (``spread.surplus``) and
have its agents delete it; to place the missing VMs, run the handshake (offers from every rack leader,
decide where the request has fewest, commit, release the rest), have the agents look up the image, and
have them write the VMs. All or nothing: a round that cannot be met now releases what it reserved and
ends ``Waiting`` with the reason; the operator retries it.

A request is resumable: another coordinator given the same request reads the record and first finishes
the recorded round from its stage. Every step it repeats is idempotent on the agents.
"""

import asyncio
import dataclasses
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kazoo.exceptions import KazooException

from rackmesh import request_record
from rackmesh.config import Settings
from rackmesh.labels import Role
from rackmesh.logs import flow_step, request_fields
from rackmesh.peer_client import Peer
from rackmesh.protocol import (
    NODE_COMMITS,
    NODE_DEPLOYMENTS,
    NODE_RELEASES,
    NODE_REMOVALS,
    RACK_OFFERS,
    RACK_RELEASES,
    Commit,
    CommitAnswer,
    Deployed,
    Deployment,
    ImageHolder,
    NodeOffer,
    OfferAsk,
    Order,
    OrderAccepted,
    RackOffers,
    RackRelease,
    RackReleased,
    Removal,
    RequestKey,
    RequestRef,
)
from rackmesh.request_record import IN_FLIGHT, Portion, RecordChanged, RequestRecord, Stage
from rackmesh_node_agent.http_api import Refusal
from rackmesh_node_agent.images.locate import ImageLookupFailed, find_image
from rackmesh_node_agent.membership.fan_out import Failure, describe, gather
from rackmesh_node_agent.placement import spread
from rackmesh_node_agent.placement.rack_leader import rack_offers, rack_release

if TYPE_CHECKING:
    from rackmesh_node_agent.agent import Agent

logger = logging.getLogger(__name__)
# An offer ask fans out once more; a deployment waits for the agent's writes (it answers 202 after 3).
RACK_CALL_DEPTH = 2
DEPLOY_CALL_DEPTH = 4
# Racks (or agents) that did not answer an offer ask are asked again this many times, after these pauses,
# before the round is decided without them (and the record names them).
UNANSWERED_PAUSES_SECONDS = (0.25, 0.5)
# Offers short only because other requests' offers in flight hold the room: those are released or
# committed within moments, so the handshake is tried again soon, at random moments, up to this many times.
CONTENTION = "CapacityHeld"
CONTENTION_ATTEMPTS = 10
CONTENTION_PAUSE_SECONDS = 0.05
# Offers short while some rack or agent did not answer: the room may be there once it is replaced.
UNANSWERED = "RacksUnanswered"
TRANSIENT_SHORTAGES = frozenset({CONTENTION, UNANSWERED})
# Any other failure (a leader or agent gone, a storage leader being replaced) is retried with capped
# exponential backoff for as long as ZooKeeper takes to replace a dead member, and a little more.
RETRY_FIRST_SECONDS = 0.25
RETRY_MAX_SECONDS = 2.0
# What only a change in the world can cure: the round waits at once instead of trying the handshake again.
WORLD_REASONS = frozenset({"InsufficientCapacity", "InsufficientImageReplicas", "UnknownInstancetype",
                           "NoStorageLeaders"})


class PlacementFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason, self.message = reason, message


class Coordinator:
    def __init__(self, agent: "Agent") -> None:
        self.agent = agent
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._latest: dict[str, Order] = {}
        self._releasing: set[asyncio.Task[None]] = set()

    def accept(self, order: Order) -> OrderAccepted:
        """Take the order and converge on it in the background; an order that comes while a round runs
        is taken up when that round ends (the newest wins)."""
        self.agent.require_leadership(Role.COMPUTE)
        uid = order.request.uid
        flow_step(logger, 3, "accepted order", order.request, coordinator=self.agent.node.name,
                  replicas=order.replicas, generation=order.generation, lost=order.lost)
        self._latest[uid] = order
        running = self._runs.get(uid)
        if running is None or running.done():
            self._runs[uid] = asyncio.create_task(self._run(uid))
        return OrderAccepted(coordinator=self.agent.node.name)

    def busy(self, uid: str) -> bool:
        run = self._runs.get(uid)
        return run is not None and not run.done()

    async def stop(self) -> None:
        tasks = [*self._runs.values(), *self._releasing]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, uid: str) -> None:
        request = request_fields(self._latest[uid].request)
        try:
            while True:
                order = self._latest[uid]
                try:
                    await self._converge(order)
                except KazooException as exc:
                    # The connection to one ZooKeeper server broke: the session lives on through another,
                    # and every step repeats safely, so go on from the record once reconnected.
                    logger.warning("zookeeper connection lost mid-round; resuming once reconnected",
                                   extra={**request, "error": repr(exc)})
                    await self._reconnected()
                    continue
                if self._latest[uid] is order:
                    return
        except RecordChanged as exc:
            logger.warning("request record changed under us (another coordinator, or the request was deleted)",
                           extra={**request, "error": str(exc)})
        except Exception:
            logger.exception("coordinating the request failed; the operator will hand it again",
                             extra=request)
        finally:
            self._latest.pop(uid, None)

    async def _reconnected(self) -> None:
        """Wait until this agent leads its compute rack on a live connection again (else raise NotLeader,
        and the operator hands the request to whoever leads then)."""
        deadline = time.monotonic() + self.agent.settings.zk_session_timeout + self.agent.settings.call_timeout
        while not (self.agent.zk.connected and self.agent.leads(Role.COMPUTE)):
            if time.monotonic() > deadline:
                raise Refusal(409, "NotLeader", f"{self.agent.node_name} did not lead again on a live connection")
            await asyncio.sleep(RETRY_FIRST_SECONDS)

    async def _converge(self, order: Order) -> None:
        agent, uid = self.agent, order.request.uid
        found = await request_record.read(agent.zk, agent.layout, uid)
        if found is not None and found[0].stage in IN_FLIGHT:
            record, version = found
            record = dataclasses.replace(record, coordinator=agent.node.name)
            version = await request_record.write(agent.zk, agent.layout, record, version)
            logger.info("resuming the recorded round", extra={**request_fields(order.request),
                                                              "stage": str(record.stage)})
            found = await self._finish(record, version)
        if found is None or _needs_round(found[0], found[1], order):
            await self._round(found, order)

    async def _round(self, found: tuple[RequestRecord, int] | None, order: Order) -> None:
        """Start a round for ``order``: drop the lost VMs, remove the surplus, then place what is missing."""
        agent = self.agent
        record, version = found if found is not None else (None, None)
        portions = record.portions if record is not None else []
        lost = set(order.lost) if record is not None and order.basis == version else set()
        if record is not None and record.stage == Stage.WAITING:
            lost |= set(record.order.lost)  # lost VMs a waiting round could not re-place yet keep their names
        order = dataclasses.replace(order, lost=sorted(lost))
        portions = spread.without(portions, lost)
        surplus = spread.surplus(portions, sum(len(p.indices) for p in portions) - order.replicas)
        portions = spread.without(portions, {index for indices in surplus.values() for index in indices})
        wanted = order.replicas - sum(len(p.indices) for p in portions)
        waits = record.waits if record is not None and wanted else 0
        started = RequestRecord(order, agent.node.name, Stage.PLACING if wanted else Stage.SETTLED, portions,
                                waits=waits, timings=record.timings if record is not None else {},
                                changed_at=time.time())
        version = await request_record.write(agent.zk, agent.layout, started, version)
        logger.info("round started", extra={**request_fields(order.request), "replicas": order.replicas,
                                            "lost": sorted(lost), "removing": surplus, "placing": wanted})
        if surplus:
            await self._remove(order, record, surplus)
        if wanted:
            await self._finish(started, version)

    async def _finish(self, record: RequestRecord, version: int) -> tuple[RequestRecord, int]:
        """Take an in-flight round to SETTLED, or to WAITING when it cannot be met now."""
        request = request_fields(record.order.request)
        retry = Retry(self.agent.settings)
        while True:
            try:
                if record.stage == Stage.PLACING:
                    record, version = await self._place(record, version)
                if record.stage == Stage.COMMITTED:
                    record, version = await self._commit(record, version)
                return await self._deploy(record, version)
            except PlacementFailed as failure:
                pause = retry.pause(failure.reason)
                if pause is None:
                    reason = "InsufficientCapacity" if failure.reason in TRANSIENT_SHORTAGES else failure.reason
                    return await self._wait(record, version, PlacementFailed(reason, failure.message))
                logger.warning("placement attempt failed; handshaking again", extra={
                    **request, "reason": failure.reason, "error": failure.message, "pause": round(pause, 3)})
                if record.stage != Stage.PLACING:
                    record = dataclasses.replace(record, stage=Stage.PLACING, placing=[], changed_at=time.time())
                    version = await request_record.write(self.agent.zk, self.agent.layout, record, version)
                await asyncio.sleep(pause)

    async def _place(self, record: RequestRecord, version: int) -> tuple[RequestRecord, int]:
        """Offers, decision, record of the decision; the offers not used are released."""
        with self.agent.service_times.measure("handshake", record.order.request.uid), \
                self.agent.metrics.handshake_seconds.time():
            return await self._handshake(record, version)

    async def _handshake(self, record: RequestRecord, version: int) -> tuple[RequestRecord, int]:
        agent, order = self.agent, record.order
        taken = record.indices()
        wanted = order.replicas - len(taken)
        started = time.monotonic()
        offers, unanswered = await self._gather_offers(order, wanted)
        for pause in UNANSWERED_PAUSES_SECONDS:
            if not unanswered:
                break
            logger.warning("racks or agents did not answer; asking them again", extra={
                **request_fields(order.request), "unanswered": sorted(unanswered), "pause": pause})
            await asyncio.sleep(pause)
            offers, unanswered = await self._gather_offers(order, wanted, offers, unanswered)
        counts = spread.decide(offers, wanted, record.portions)
        if counts is None:
            await self._release_offers(offers, set(), order)
            message = _capacity_message(order, wanted, offers, list(unanswered.values()))
            if sum(offer.count + offer.held for offer in offers) >= wanted:
                raise PlacementFailed(CONTENTION, message)
            if unanswered:  # the missing room may be there: its leader or agents are being replaced
                raise PlacementFailed(UNANSWERED, message)
            raise PlacementFailed("InsufficientCapacity", message)
        placing = spread.portions(offers, counts, spread.new_indices(taken, order.lost, wanted))
        flow_step(logger, 5, "decided portions", order.request,
                  portions={p.node: len(p.indices) for p in placing}, offered={o.node: o.count for o in offers})
        if unanswered:
            logger.warning("placed without racks or agents that did not answer", extra={
                **request_fields(order.request), "unanswered": sorted(unanswered.values())})
        timings = {**record.timings, "handshake": round(time.monotonic() - started, 3)}
        record = dataclasses.replace(record, stage=Stage.COMMITTED, placing=placing, timings=timings,
                                     unanswered=sorted(unanswered.values()), changed_at=time.time())
        version = await request_record.write(agent.zk, agent.layout, record, version)
        chosen = {portion.node for portion in placing}
        # The offers not chosen are released beside the commits, not before them: releasing is best effort.
        releasing = asyncio.create_task(self._release_offers(offers, chosen, order))
        self._releasing.add(releasing)
        releasing.add_done_callback(self._releasing.discard)
        return record, version

    async def _gather_offers(self, order: Order, wanted: int, offers: list[NodeOffer] | None = None,
                             again: dict[str, str] | None = None) -> tuple[list[NodeOffer], dict[str, str]]:
        """Every rack's offers (``again``: ask only those racks, keeping the other ``offers``), and what did
        not answer: rack -> "rack R (why)" or "node N"."""
        agent = self.agent
        leaders = await agent.directory.leaders(Role.COMPUTE)
        if again is not None:
            leaders = [leader for leader in leaders if leader.rack in again]
        ask = OfferAsk(order=order, wanted=wanted, ttl_seconds=agent.settings.reservation_ttl)
        flow_step(logger, 4, "asking rack leaders for offers", order.request, wanted=wanted,
                  rackLeaders={leader.rack: leader.node for leader in leaders})
        timeout = agent.settings.call_timeout * RACK_CALL_DEPTH
        calls = {leader.rack: agent.call(leader, lambda: rack_offers(agent, ask), RACK_OFFERS, ask, RackOffers, timeout)
                 for leader in leaders}
        answers, failures = await gather(calls)
        racks = {rack: answer for rack, answer in answers.items() if answer is not None}
        asked = {leader.rack for leader in leaders}
        offers = [*(offer for offer in offers or [] if offer.rack not in asked),
                  *_own_rack_offers(racks, order.request)]
        unanswered = {rack: f"rack {rack} ({why})" for rack, why in describe(failures).items()}
        unanswered |= {rack.rack: ", ".join(f"node {node}" for node in rack.unanswered)
                       for rack in racks.values() if rack.unanswered}
        if again is not None:  # a rack that had a leader before and has none now did not answer either
            unanswered |= {rack: why for rack, why in again.items() if rack not in asked}
        flow_step(logger, 5, "received offers", order.request, offers={o.node: o.count for o in offers},
                  unanswered=sorted(unanswered.values()))
        return offers, unanswered

    async def _commit(self, record: RequestRecord, version: int) -> tuple[RequestRecord, int]:
        """Commit every new portion and, meanwhile, look the image up once for all of them (steps 6-9);
        record the holders (stage Deploying)."""
        agent, order = self.agent, record.order
        lookup, committed = await asyncio.gather(self._locate(order), gather({
            p.node: agent.peers.post(p, NODE_COMMITS, Commit(order, p.indices), CommitAnswer)
            for p in record.placing}), return_exceptions=True)
        if isinstance(committed, BaseException):
            raise committed
        _, failures = committed
        if isinstance(lookup, BaseException) and not isinstance(lookup, ImageLookupFailed):
            raise lookup
        if failures or isinstance(lookup, ImageLookupFailed):
            await self._release(record.placing, order)
            if isinstance(lookup, ImageLookupFailed) and (lookup.reason in WORLD_REASONS or not failures):
                raise PlacementFailed(lookup.reason, lookup.message)
            raise PlacementFailed(*_first_failure(failures))
        holders, seconds = lookup
        placing = [dataclasses.replace(p, holders=holders) for p in record.placing]
        record = dataclasses.replace(record, stage=Stage.DEPLOYING, placing=placing, deploying_since=time.time(),
                                     timings={**record.timings, "imageLookup": seconds}, changed_at=time.time())
        return record, await request_record.write(agent.zk, agent.layout, record, version)

    async def _locate(self, order: Order) -> tuple[list[ImageHolder], float]:
        """The image's holders, for every portion of the round, and how long finding them took."""
        started = time.monotonic()
        with self.agent.metrics.image_lookup_seconds.time():
            holders = await find_image(self.agent, order.image, self.agent.settings.image_redundancy, order.request)
        return holders, round(time.monotonic() - started, 3)

    async def _deploy(self, record: RequestRecord, version: int) -> tuple[RequestRecord, int]:
        """Have every agent write its new VMs, then settle: the round's portions join the request's.

        An agent that is gone (no longer a member in ZooKeeper) is not waited for, nor is one that has not
        confirmed its VMs within the retry budget: the round settles, the operator sees those VMs missing,
        and another round places them again under their names.
        """
        agent, request = self.agent, record.order.request
        pending = {p.node: p for p in record.placing}
        retry = Retry(agent.settings)
        while pending:
            answers, failures = await gather({
                node: agent.peers.post(p, NODE_DEPLOYMENTS, Deployment(record.order, p.indices, p.holders),
                                       Deployed, agent.settings.call_timeout * DEPLOY_CALL_DEPTH)
                for node, p in pending.items()})
            flow_step(logger, 9, "deployments answered", request, written=sorted(n for n in answers if answers[n].done),
                      failed=describe(failures))
            gone = [node for node in failures if await self._gone(pending[node])]
            pending = {node: p for node, p in pending.items()
                       if node not in gone and not (node in answers and answers[node].done)}
            if gone:
                logger.warning("agents with a portion are gone; their VMs will be placed again", extra={
                    **request_fields(request), "nodes": gone})
            pause = retry.pause("DeploymentPending") if pending else None
            if pending and pause is None:
                logger.warning("agents did not confirm their VMs; settling the round, the operator heals what is "
                               "missing", extra={**request_fields(request), "nodes": sorted(pending)})
                break
            if pause is not None:
                await asyncio.sleep(pause)
        settled = dataclasses.replace(record, stage=Stage.SETTLED, portions=spread.merged(record.portions,
                                                                                          record.placing),
                                      placing=[], reason="", message="", waits=0, changed_at=time.time())
        return settled, await request_record.write(agent.zk, agent.layout, settled, version)

    async def _gone(self, portion: Portion) -> bool:
        return await self.agent.directory.member(Role.COMPUTE, portion.rack, portion.node) is None

    async def _remove(self, order: Order, before: RequestRecord | None, surplus: dict[str, list[int]]) -> None:
        """Best effort: a VM whose agent does not delete it is left over, and the operator sees it as surplus."""
        portions = {p.node: p for p in (before.portions if before is not None else [])}
        removed, failures = await gather({
            node: self.agent.peers.post(portions[node], NODE_REMOVALS, Removal(order.request, indices))
            for node, indices in surplus.items()})
        logger.info("removed surplus VMs", extra={**request_fields(order.request), "nodes": sorted(removed),
                                                  "failed": describe(failures)})

    async def _release_offers(self, offers: list[NodeOffer], keep: set[str], order: Order) -> None:
        """Release every offer but those of ``keep`` through its rack's leader (whose connections to its members
        are pooled, where this coordinator's to a thousand agents would be new); directly to the agents of a
        rack whose leader does not answer. Best effort, as ``_release``."""
        agent = self.agent
        unused = [offer for offer in offers if offer.count and offer.node not in keep]
        racks = {offer.rack for offer in unused}
        leaders = {leader.rack: leader for leader in await agent.directory.leaders(Role.COMPUTE)
                   if leader.rack in racks}

        def release(rack: str) -> RackRelease:
            return RackRelease(order.request.uid, sorted(o.node for o in offers if o.rack == rack and o.node in keep))

        _, failures = await gather({
            rack: agent.call(leader, lambda rack=rack: rack_release(agent, release(rack)), RACK_RELEASES,
                             release(rack), RackReleased, agent.settings.call_timeout * RACK_CALL_DEPTH)
            for rack, leader in leaders.items()})
        await self._release([offer for offer in unused if offer.rack in failures or offer.rack not in leaders], order)

    async def _release(self, peers: Sequence[Peer], order: Order) -> None:
        """Best effort: a release that is lost expires with the reservation's time limit."""
        key = RequestKey(order.request.uid)
        await gather({peer.node: self.agent.peers.post(peer, NODE_RELEASES, key) for peer in peers})

    async def _wait(self, record: RequestRecord, version: int, failure: PlacementFailed) -> tuple[RequestRecord, int]:
        logger.warning("round cannot be met now; waiting", extra={
            **request_fields(record.order.request), "reason": failure.reason, "error": failure.message})
        waiting = dataclasses.replace(record, stage=Stage.WAITING, placing=[], reason=failure.reason,
                                      message=failure.message, waits=record.waits + 1, changed_at=time.time())
        return waiting, await request_record.write(self.agent.zk, self.agent.layout, waiting, version)


class Retry:
    """How long to wait before the next attempt of a round, or None when it should wait for the world."""

    def __init__(self, settings: Settings) -> None:
        self._budget = 2 * settings.zk_session_timeout + settings.call_timeout
        self._started = time.monotonic()
        self._attempts: Counter[str] = Counter()

    def pause(self, reason: str) -> float | None:
        if reason in WORLD_REASONS:
            return None
        self._attempts[reason] += 1
        attempt = self._attempts[reason]
        if reason == CONTENTION:
            if attempt >= CONTENTION_ATTEMPTS:
                return None
            return random.uniform(CONTENTION_PAUSE_SECONDS, CONTENTION_PAUSE_SECONDS * (1 + attempt))
        if time.monotonic() - self._started > self._budget:
            return None
        return min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (attempt - 1))


def _own_rack_offers(racks: dict[str, RackOffers], request: RequestRef) -> list[NodeOffer]:
    """Each rack's offers from its own nodes, one per node. A leader entry is a claim anyone with an agent's
    certificate can write: an entry for a made-up rack can only bring offers of nodes of another rack (or
    the same node twice), which would skew the spread and double-book the node."""
    kept: dict[str, NodeOffer] = {}
    for rack, answer in racks.items():
        for offer in answer.offers:
            if offer.rack == rack and offer.node not in kept:
                kept[offer.node] = offer
            else:
                logger.warning("an offer not from the rack asked is ignored", extra={
                    **request_fields(request), "rack": rack, "node": offer.node, "nodeRack": offer.rack})
    return list(kept.values())


def _needs_round(record: RequestRecord, version: int, order: Order) -> bool:
    """A new round is due when the spec changed, a wait is retried, or a VM the record places was lost."""
    return (record.stage == Stage.WAITING or record.order.replicas != order.replicas
            or record.order.generation != order.generation
            or (order.basis == version and bool(set(order.lost) & record.indices())))


def _first_failure(failures: dict[str, Failure]) -> tuple[str, str]:
    """The most telling failure: one only the world can cure first (every agent reports the same shortage)."""
    ordered = sorted(failures.items(), key=lambda item: (item[1].reason not in WORLD_REASONS, item[0]))
    node, error = ordered[0]
    if error.reason in WORLD_REASONS:
        return error.reason, error.message
    return error.reason, f"commit to {node} failed: {error.message}"


def _capacity_message(order: Order, wanted: int, offers: list[NodeOffer], unanswered: list[str]) -> str:
    by_rack: dict[str, int] = {}
    for offer in offers:
        by_rack[offer.rack] = by_rack.get(offer.rack, 0) + offer.count
    total = sum(by_rack.values())
    held = sum(offer.held for offer in offers)
    racks = ", ".join(f"{rack}: {count}" for rack, count in sorted(by_rack.items())) or "no offers"
    asked = (f"{wanted} x {order.instancetype} requested" if wanted == order.replicas else
             f"{wanted} more x {order.instancetype} requested ({order.replicas - wanted} placed already)")
    message = (f"{asked}, but the {len(offers)} compute nodes that answered can host only {total} ({racks}); "
               f"nothing was created")
    if held:
        message += f"; room for {held} more is held by other requests being placed"
    if unanswered:
        message += f"; no answer from {', '.join(unanswered)}"
    return message

