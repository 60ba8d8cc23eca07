"""A compute agent's side of the handshake: offer from its own free capacity, commit a portion (and
look up the image for it), release, and write the portion's VMs.

Each step is idempotent per request uid, so a retried or resumed coordinator never double-books.
"""

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from rackmesh.kube_client import KubeApiError
from rackmesh.logs import flow_step
from rackmesh.protocol import Commit, CommitAnswer, ImageHolder, NodeOffer, OfferAsk, Order, RequestKey
from rackmesh.quantities import Resources
from rackmesh_node_agent.capacity.reservations import Reservation
from rackmesh_node_agent.http_api import Refusal
from rackmesh_node_agent.images.locate import ImageLookupFailed, find_image
from rackmesh_node_agent.vms.writer import write_vms

if TYPE_CHECKING:
    from rackmesh_node_agent.agent import Agent

logger = logging.getLogger(__name__)
WRITE_RETRY_SECONDS = 1.0


@dataclasses.dataclass
class CommittedPortion:
    order: Order
    start: int
    count: int
    holders: list[ImageHolder]


class NodeSide:
    def __init__(self, agent: "Agent") -> None:
        self.agent = agent
        self._committed: dict[str, CommittedPortion] = {}
        self._writers: dict[str, asyncio.Task[None]] = {}

    async def offer(self, ask: OfferAsk) -> NodeOffer:
        """Reserve as many VMs of the order as fit (at most all of them) for ``ttl_seconds``."""
        agent, order = self.agent, ask.order
        capacity = agent.require_capacity()
        size = await self._size_of(order.instancetype)
        async with capacity.lock:
            held = capacity.reservations.get(order.request.uid)
            if held is not None and held.committed:
                count = held.count  # a repeated ask after the commit: the commit stands
            else:
                capacity.reservations.release(order.request.uid)
                count = min(order.replicas, (await capacity.free()).fits_times(size))
                if count:
                    capacity.reservations.hold(Reservation(
                        order.request, order.instancetype, size, count,
                        capacity.reservations.expires_in(ask.ttl_seconds)))
        flow_step(logger, 5, "offered capacity", order.request.uid, node=agent.node.name, count=count,
                  instancetype=order.instancetype, ttlSeconds=ask.ttl_seconds)
        return NodeOffer(node=agent.node.name, rack=agent.node.rack, endpoint=agent.endpoint, count=count)

    async def commit(self, commit: Commit) -> CommitAnswer:
        """Turn the reservation into the portion ``start .. start+count-1``, then find the image's holders."""
        agent, order = self.agent, commit.order
        uid = order.request.uid
        await self._hold_portion(commit)
        flow_step(logger, 5, "committed portion", uid, node=agent.node.name, start=commit.start, count=commit.count)
        started = time.monotonic()
        try:
            holders = await find_image(agent, order.image, agent.settings.image_redundancy, uid)
        except ImageLookupFailed as failure:
            raise Refusal(409, failure.reason, failure.message) from None
        self._committed[uid] = CommittedPortion(order, commit.start, commit.count, holders)
        return CommitAnswer(node=agent.node.name, holders=holders,
                            image_lookup_seconds=round(time.monotonic() - started, 3))

    async def release(self, key: RequestKey) -> None:
        capacity = self.agent.require_capacity()
        async with capacity.lock:
            released = capacity.reservations.release(key.uid)
        self._committed.pop(key.uid, None)
        if released is not None:
            logger.info("released reservation", extra={"request": key.uid, "count": released.count})

    def deploy(self, key: RequestKey) -> None:
        """Start writing the committed portion's VMs (in the background; the VMs themselves show progress)."""
        portion = self._committed.get(key.uid)
        if portion is None:
            raise Refusal(409, "NotCommitted", f"no committed portion of request {key.uid} on this node")
        running = self._writers.get(key.uid)
        if running is None or running.done():
            self._writers[key.uid] = asyncio.create_task(self._write(portion))

    async def stop(self) -> None:
        for task in self._writers.values():
            task.cancel()
        await asyncio.gather(*self._writers.values(), return_exceptions=True)

    async def _size_of(self, instancetype: str) -> Resources:
        try:
            return await self.agent.require_capacity().size_of(instancetype)
        except KubeApiError as exc:
            if exc.status == 404:
                raise Refusal(422, "UnknownInstancetype",
                              f"VirtualMachineClusterInstancetype {instancetype!r} does not exist") from None
            raise

    async def _hold_portion(self, commit: Commit) -> None:
        """Pin the reservation to the committed count; without one (expired, or a resumed request),
        reserve the portion's VMs not yet written, if they still fit."""
        capacity = self.agent.require_capacity()
        order = commit.order
        async with capacity.lock:
            held = capacity.reservations.get(order.request.uid)
            if held is not None and held.committed and (held.start, held.count) != (commit.start, commit.count):
                raise Refusal(409, "ConflictingCommit", f"this node already holds VMs {held.start}.."
                              f"{held.start + held.count - 1} of request {order.request.uid}")
            if held is not None and not held.committed and commit.count > held.count:
                raise Refusal(409, "ExceedsOffer", f"commit of {commit.count} VMs exceeds the {held.count} offered")
            if held is None:
                size = await self._size_of(order.instancetype)
                free, written = await capacity.look()
                if free.fits_times(size) < commit.count - written[(order.request.namespace, order.request.name)]:
                    raise Refusal(409, "ReservationExpired",
                                  "the offer's reservation expired and the portion no longer fits on this node")
                held = Reservation(order.request, order.instancetype, size, commit.count, 0.0)
                capacity.reservations.hold(held)
            held.count, held.start, held.committed = commit.count, commit.start, True
            capacity.reservations.extend(order.request.uid, self.agent.settings.commit_ttl)

    async def _write(self, portion: CommittedPortion) -> None:
        """Write until every VM of the portion exists (409 counts as written), then drop the reservation.

        Failed writes are retried while the commit holds (``commit_ttl``); the names make retries safe.
        """
        agent, uid = self.agent, portion.order.request.uid
        started = time.monotonic()
        deadline = started + agent.settings.commit_ttl
        while True:
            try:
                written = await write_vms(agent.kube, portion.order, agent.node.name, portion.start, portion.count,
                                          portion.holders, agent.settings.vm_disk_size)
                break
            except (KubeApiError, OSError) as exc:
                if time.monotonic() > deadline:
                    logger.error("gave up writing VMs", extra={"request": uid, "error": str(exc)})
                    await self.release(RequestKey(uid))
                    return
                logger.warning("writing VMs failed; retrying", extra={"request": uid, "error": str(exc)})
                await asyncio.sleep(WRITE_RETRY_SECONDS)
        flow_step(logger, 9, "wrote VirtualMachines", uid, node=agent.node.name, count=written,
                  first=portion.start, seconds=round(time.monotonic() - started, 3))
        await self.release(RequestKey(uid))
