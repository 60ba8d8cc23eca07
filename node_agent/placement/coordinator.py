"""The coordinator: a compute rack leader the operator handed a request to. It runs the handshake
(offers from every rack leader, decide, commit, release the rest), has the agents look up the image,
and starts their deployments, recording each decision in ZooKeeper (``requests/<uid>``) first.

A request is resumable: another coordinator given the same order reads the record and goes on from
the last recorded stage. Every step it repeats is idempotent on the agents.
"""

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from rackmesh import registry, request_record
from rackmesh.labels import Role
from rackmesh.logs import flow_step
from rackmesh.protocol import (
    NODE_COMMITS,
    NODE_DEPLOYMENTS,
    NODE_RELEASES,
    RACK_OFFERS,
    Commit,
    CommitAnswer,
    NodeOffer,
    OfferAsk,
    Order,
    OrderAccepted,
    RackOffers,
    RequestKey,
)
from rackmesh.request_record import RecordChanged, RequestRecord, Stage
from rackmesh_node_agent.membership.fan_out import Failure, describe, gather
from rackmesh_node_agent.placement import spread
from rackmesh_node_agent.placement.rack_leader import rack_offers

if TYPE_CHECKING:
    from rackmesh_node_agent.agent import Agent

logger = logging.getLogger(__name__)
# A commit fans out twice more (storage leader, storage rack leaders); an offer ask once more.
RACK_CALL_DEPTH = 2
COMMIT_CALL_DEPTH = 4
HANDSHAKE_ATTEMPTS = 3
# Refusals that end the request; any other failure of a commit is retried with a fresh handshake.
TERMINAL_REASONS = frozenset({"InsufficientImageReplicas", "UnknownInstancetype", "NoStorageLeaders"})


class PlacementFailed(Exception):
    def __init__(self, reason: str, message: str, terminal: bool = True) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason, self.message, self.terminal = reason, message, terminal


class Coordinator:
    def __init__(self, agent: "Agent") -> None:
        self.agent = agent
        self._runs: dict[str, asyncio.Task[None]] = {}

    def accept(self, order: Order) -> OrderAccepted:
        """Take the order (once per uid at a time) and run it in the background."""
        self.agent.require_leadership(Role.COMPUTE)
        uid = order.request.uid
        flow_step(logger, 3, "accepted order", uid, coordinator=self.agent.node.name,
                  deploymentRequest=f"{order.request.namespace}/{order.request.name}", replicas=order.replicas)
        running = self._runs.get(uid)
        if running is None or running.done():
            self._runs[uid] = asyncio.create_task(self._run(order))
        return OrderAccepted(coordinator=self.agent.node.name)

    def busy(self, uid: str) -> bool:
        run = self._runs.get(uid)
        return run is not None and not run.done()

    async def stop(self) -> None:
        for task in self._runs.values():
            task.cancel()
        await asyncio.gather(*self._runs.values(), return_exceptions=True)

    async def _run(self, order: Order) -> None:
        uid = order.request.uid
        try:
            await self._drive(order)
        except RecordChanged as exc:
            logger.warning("request record changed under us (another coordinator, or the request was deleted)",
                           extra={"request": uid, "error": str(exc)})
        except Exception:
            logger.exception("coordinating the request failed; the operator will hand it again",
                             extra={"request": uid})

    async def _drive(self, order: Order) -> None:
        agent, uid = self.agent, order.request.uid
        found = await request_record.read(agent.zk, agent.layout, uid)
        if found is None:
            record, version = RequestRecord(order, agent.node.name, Stage.PLACING), None
        else:
            record, version = found
            if record.stage == Stage.FAILED:
                return
            record = dataclasses.replace(record, coordinator=agent.node.name)
        version = await request_record.write(agent.zk, agent.layout, record, version)
        for attempt in range(1, HANDSHAKE_ATTEMPTS + 1):
            try:
                if record.stage == Stage.PLACING:
                    record, version = await self._place(record, version)
                record, version = await self._commit(record, version)
                await self._deploy(record)
                return
            except PlacementFailed as failure:
                if failure.terminal or attempt == HANDSHAKE_ATTEMPTS:
                    await self._fail(record, version, failure)
                    return
                logger.warning("placement attempt failed; handshaking again",
                               extra={"request": uid, "attempt": attempt, "reason": failure.reason,
                                      "error": failure.message})
                record = dataclasses.replace(record, stage=Stage.PLACING, portions=[])
                version = await request_record.write(agent.zk, agent.layout, record, version)

    async def _place(self, record: RequestRecord, version: int) -> tuple[RequestRecord, int]:
        """Offers, decision, record of the decision; the offers not used are released."""
        agent, order = self.agent, record.order
        started = time.monotonic()
        offers, unanswered = await self._gather_offers(order)
        counts = spread.decide(offers, order.replicas)
        if counts is None:
            await self._release([offer.endpoint for offer in offers if offer.count], order)
            raise PlacementFailed("InsufficientCapacity", _capacity_message(order, offers, unanswered))
        portions = spread.portions(offers, counts)
        flow_step(logger, 5, "decided portions", order.request.uid,
                  portions={p.node: p.count for p in portions}, offered={o.node: o.count for o in offers})
        timings = {**record.timings, "handshake": round(time.monotonic() - started, 3)}
        record = dataclasses.replace(record, stage=Stage.COMMITTED, portions=portions, timings=timings)
        version = await request_record.write(agent.zk, agent.layout, record, version)
        chosen = {portion.node for portion in portions}
        await self._release([o.endpoint for o in offers if o.count and o.node not in chosen], order)
        return record, version

    async def _gather_offers(self, order: Order) -> tuple[list[NodeOffer], list[str]]:
        agent, uid = self.agent, order.request.uid
        leaders = await registry.leaders(agent.zk, agent.layout, Role.COMPUTE)
        ask = OfferAsk(order=order, ttl_seconds=agent.settings.reservation_ttl)
        flow_step(logger, 4, "asking rack leaders for offers", uid,
                  rackLeaders={leader.rack: leader.node for leader in leaders})
        timeout = agent.settings.call_timeout * RACK_CALL_DEPTH
        calls = {leader.rack: (rack_offers(agent, ask) if leader.node == agent.node.name
                               else agent.peers.post(leader.endpoint, RACK_OFFERS, ask, RackOffers, timeout))
                 for leader in leaders}
        answers, failures = await gather(calls)
        racks: list[RackOffers] = [answer for answer in answers.values() if answer is not None]
        offers = [offer for rack in racks for offer in rack.offers]
        unanswered = [f"rack {rack} ({why})" for rack, why in sorted(describe(failures).items())]
        unanswered += [f"node {node}" for rack in racks for node in rack.unanswered]
        flow_step(logger, 5, "received offers", uid, offers={o.node: o.count for o in offers}, unanswered=unanswered)
        return offers, unanswered

    async def _commit(self, record: RequestRecord, version: int) -> tuple[RequestRecord, int]:
        """Commit every portion (each agent looks up the image); record the holders (stage Deploying)."""
        agent, order = self.agent, record.order
        timeout = agent.settings.call_timeout * COMMIT_CALL_DEPTH
        calls = {p.node: agent.peers.post(p.endpoint, NODE_COMMITS, Commit(order, p.start, p.count), CommitAnswer,
                                          timeout)
                 for p in record.portions}
        answers, failures = await gather(calls)
        if failures:
            await self._release([p.endpoint for p in record.portions], order)
            reason, message = _first_failure(failures)
            terminal = reason in TERMINAL_REASONS
            raise PlacementFailed(reason, message, terminal)
        portions = [dataclasses.replace(p, holders=answers[p.node].holders) for p in record.portions]
        lookup = max(answer.image_lookup_seconds for answer in answers.values())
        record = dataclasses.replace(record, stage=Stage.DEPLOYING, portions=portions, deploying_since=time.time(),
                                     timings={**record.timings, "imageLookup": lookup})
        return record, await request_record.write(agent.zk, agent.layout, record, version)

    async def _deploy(self, record: RequestRecord) -> None:
        """Start every agent's deployment of its portion."""
        uid = record.order.request.uid
        started, failed = await gather({p.node: self.agent.peers.post(p.endpoint, NODE_DEPLOYMENTS, RequestKey(uid))
                                         for p in record.portions})
        flow_step(logger, 9, "deployments started", uid, nodes=sorted(started), failed=describe(failed))
        if failed:
            raise PlacementFailed("DeploymentNotStarted", f"agents did not start writing VMs: {describe(failed)}",
                                  terminal=False)

    async def _release(self, endpoints: list[str], order: Order) -> None:
        """Best effort: a release that is lost expires with the reservation's time limit."""
        key = RequestKey(order.request.uid)
        await gather({endpoint: self.agent.peers.post(endpoint, NODE_RELEASES, key) for endpoint in endpoints})

    async def _fail(self, record: RequestRecord, version: int, failure: PlacementFailed) -> None:
        logger.warning("request failed", extra={"request": record.order.request.uid, "reason": failure.reason,
                                                "error": failure.message})
        failed = dataclasses.replace(record, stage=Stage.FAILED, reason=failure.reason, message=failure.message)
        await request_record.write(self.agent.zk, self.agent.layout, failed, version)


def _first_failure(failures: dict[str, Failure]) -> tuple[str, str]:
    """The most telling failure: a terminal reason first (every agent reports the same image shortage)."""
    ordered = sorted(failures.items(), key=lambda item: (item[1].reason not in TERMINAL_REASONS, item[0]))
    node, error = ordered[0]
    if error.reason in TERMINAL_REASONS:
        return error.reason, error.message
    return error.reason, f"commit to {node} failed: {error.message}"


def _capacity_message(order: Order, offers: list[NodeOffer], unanswered: list[str]) -> str:
    by_rack: dict[str, int] = {}
    for offer in offers:
        by_rack[offer.rack] = by_rack.get(offer.rack, 0) + offer.count
    total = sum(by_rack.values())
    racks = ", ".join(f"{rack}: {count}" for rack, count in sorted(by_rack.items())) or "no offers"
    message = (f"{order.replicas} x {order.instancetype} requested, but the {len(offers)} compute nodes that "
               f"answered can host only {total} ({racks}); nothing was created")
    if unanswered:
        message += f"; no answer from {', '.join(unanswered)}"
    return message
