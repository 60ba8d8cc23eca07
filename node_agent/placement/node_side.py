"""A compute agent's side of the handshake: offer from its own free capacity, commit VMs, release, write
its VMs (from the image holders the coordinator found), and delete those of its VMs a round removes.

Each step is idempotent per request uid and VM index, so a retried or resumed coordinator never
double-books and never writes a VM twice.
"""

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from rackmesh.kube_client import VIRTUAL_MACHINES, KubeApiError
from rackmesh.logs import flow_step, request_fields
from rackmesh.protocol import (
    Commit,
    CommitAnswer,
    Deployed,
    Deployment,
    ImageHolder,
    NodeOffer,
    OfferAsk,
    Order,
    Removal,
    Removed,
    RequestKey,
    RequestRef,
)
from rackmesh.quantities import Resources
from rackmesh.vm_fields import controller_uid
from rackmesh.vm_names import vm_name
from rackmesh_node_agent.capacity.request_watch import RequestWatch
from rackmesh_node_agent.http_api import Refusal
from rackmesh_node_agent.placement.request_check import require_request
from rackmesh_node_agent.vms.writer import write_vms

if TYPE_CHECKING:
    from rackmesh_node_agent.agent import Agent

logger = logging.getLogger(__name__)
WRITE_RETRY_SECONDS = 1.0
WRITE_RETRY_MAX_SECONDS = 30.0
# A deployment call waits this many call timeouts for the VMs, then answers 202 and the agent writes on.
DEPLOY_WAIT_CALLS = 3


class NodeSide:
    def __init__(self, agent: "Agent") -> None:
        self.agent = agent
        self._writers: dict[tuple[str, frozenset[int]], asyncio.Task[int]] = {}
        self._requests = RequestWatch(lambda: agent.zk, agent.layout, self._holds,
                                      lambda uid: self.release(RequestKey(uid)))

    def _holds(self, uid: str) -> bool:
        capacity = self.agent.capacity
        return capacity is not None and capacity.reservations.get(uid) is not None

    async def offer(self, ask: OfferAsk) -> NodeOffer:
        """Reserve room for as many more VMs of the order as fit (at most ``wanted``) for ``ttl_seconds``,
        in place of this request's earlier offer."""
        with self.agent.service_times.measure("node-offer", ask.order.request.uid):
            return await self._offer(ask)

    async def _offer(self, ask: OfferAsk) -> NodeOffer:
        agent, order = self.agent, ask.order
        capacity = agent.require_capacity()
        size = self._size_of(order)
        async with capacity.lock:
            earlier = capacity.reservations.get(order.request.uid)
            free, _ = capacity.look()
            free += size * (earlier.offered if earlier is not None else 0)
            count = min(ask.wanted, free.fits_times(size))
            others = sum((r.size * r.offered for r in capacity.reservations.live()
                          if r.request.uid != order.request.uid), Resources())
            held = min(ask.wanted, (free + others).fits_times(size)) - count
            capacity.reservations.offer(order.request, order.instancetype, size, count, ask.ttl_seconds)
        self._requests.follow(order.request)
        flow_step(logger, 5, "offered capacity", order.request, node=agent.node.name, count=count, held=held,
                  instancetype=order.instancetype, ttlSeconds=ask.ttl_seconds)
        return NodeOffer(node=agent.node.name, rack=agent.node.rack, endpoint=agent.endpoint, count=count,
                         held=held)

    async def commit(self, commit: Commit) -> CommitAnswer:
        """Turn the offer into VMs ``indices`` (held until they are written, at most ``commit_ttl``)."""
        agent = self.agent
        await require_request(agent.requests, commit.order, commit.indices, agent.settings.call_timeout)
        await self._hold(commit.order, commit.indices)
        flow_step(logger, 5, "committed portion", commit.order.request, node=agent.node.name,
                  count=len(commit.indices), indices=commit.indices)
        return CommitAnswer(node=agent.node.name)

    async def release(self, key: RequestKey) -> None:
        capacity = self.agent.require_capacity()
        async with capacity.lock:
            released = capacity.reservations.release(key.uid)
        self._requests.forget(key.uid)
        if released is not None:
            logger.info("released reservation", extra={**request_fields(released.request),
                                                        "offered": released.offered,
                                                        "committed": sorted(released.committed)})

    async def deploy(self, deployment: Deployment) -> Deployed:
        """Write the deployment's VMs (in the background); answer once they exist, or after a while
        with ``done: false`` while the writing goes on."""
        key = (deployment.order.request.uid, frozenset(deployment.indices))
        writer = self._writers.get(key)
        if writer is None:
            request = await require_request(self.agent.requests, deployment.order, deployment.indices,
                                            self.agent.settings.call_timeout)
            await self._hold(deployment.order, deployment.indices)
            # The template is immutable (the CRD's rule), so every agent writes its VMs from the same one.
            writer = asyncio.create_task(self._write(deployment, request["spec"].get("template")))
            self._writers[key] = writer
            writer.add_done_callback(lambda _: self._writers.pop(key, None))
        node = self.agent.node.name
        try:
            written = await asyncio.wait_for(asyncio.shield(writer),
                                             DEPLOY_WAIT_CALLS * self.agent.settings.call_timeout)
        except TimeoutError:
            return Deployed(node=node, written=0, done=False)
        return Deployed(node=node, written=written, done=True)

    async def remove(self, removal: Removal) -> Removed:
        """Delete the VMs ``indices`` of the request that are on this node (the others are not ours to touch)."""
        agent, request = self.agent, removal.request
        deleted = []
        for index in removal.indices:
            name = vm_name(request.name, index)
            vm = agent.vms.get(request.namespace, name)  # the cache holds only the VMs pinned to this node
            if vm is None or controller_uid(vm) != request.uid:
                continue
            try:
                await agent.kube.delete(VIRTUAL_MACHINES, name, request.namespace, uid=vm["metadata"]["uid"])
            except KubeApiError as exc:
                if exc.status not in (404, 409):  # gone already, or replaced by another object of that name
                    raise
            deleted.append(index)
        capacity = agent.require_capacity()
        async with capacity.lock:
            capacity.reservations.settle(request.uid, removal.indices)
            if capacity.reservations.get(request.uid) is None:
                self._requests.forget(request.uid)
        logger.info("deleted VirtualMachines", extra={**request_fields(request), "node": agent.node.name,
                                                      "indices": deleted})
        return Removed(node=agent.node.name, deleted=deleted)

    async def stop(self) -> None:
        writers = list(self._writers.values())
        for task in writers:
            task.cancel()
        await asyncio.gather(*writers, return_exceptions=True)

    def _size_of(self, order: Order) -> Resources:
        """One VM's room: of the order's instancetype, with the request's template."""
        size = self.agent.require_capacity().size_of(order.instancetype, order.request)
        if size is None:
            raise Refusal(422, "UnknownInstancetype",
                          f"VirtualMachineClusterInstancetype {order.instancetype!r} does not exist")
        return size

    async def _hold(self, order: Order, indices: list[int]) -> None:
        """Commit room for VMs ``indices`` out of the offer; without one (expired, or a resumed request),
        reserve the VMs not yet written, if they still fit."""
        capacity = self.agent.require_capacity()
        size = self._size_of(order)
        async with capacity.lock:
            held = capacity.reservations.get(order.request.uid)
            new = set(indices) - (held.committed if held is not None else set())
            if new and held is not None and held.offered:
                if len(new) > held.offered:
                    raise Refusal(409, "ExceedsOffer", f"commit of {len(new)} VMs exceeds the {held.offered} offered")
            elif new:
                free, pinned = capacity.look()
                unwritten = [i for i in new if (order.request.namespace, vm_name(order.request.name, i)) not in pinned]
                if free.fits_times(size) < len(unwritten):
                    raise Refusal(409, "ReservationExpired",
                                  "the offer's reservation expired and the VMs no longer fit on this node")
            capacity.reservations.commit(order.request, order.instancetype, size, indices,
                                         self.agent.settings.commit_ttl)
        self._requests.follow(order.request)

    async def _answering(self, request: RequestRef, holders: list[ImageHolder]) -> list[ImageHolder]:
        """The holders whose copy answers now, in their order; all of them if none does (the VMs then wait
        for a copy to come back). A holder found when the round was committed may have died since: its VMs
        would never boot."""
        checks = await asyncio.gather(*(self.agent.peers.answers(holder.node, holder.url,
                                                                 self.agent.settings.call_timeout)
                                        for holder in holders))
        answering = [holder for holder, answered in zip(holders, checks, strict=True) if answered]
        if len(answering) < len(holders):
            logger.warning("image copies that do not answer are left out of the VMs", extra={
                **request_fields(request),
                "holders": [h.node for h, answered in zip(holders, checks, strict=True) if not answered]})
        return answering or holders

    def _unwritten(self, deployment: Deployment) -> list[int]:
        """The deployment's VMs that this node's cache does not hold yet as this request's."""
        request = deployment.order.request
        cached = (self.agent.vms.get(request.namespace, vm_name(request.name, index)) for index in deployment.indices)
        return [index for index, vm in zip(deployment.indices, cached, strict=True)
                if vm is None or controller_uid(vm) != request.uid]

    async def _write(self, deployment: Deployment, template: dict[str, Any] | None) -> int:
        """Write until every VM of the deployment exists (409 from our own VM counts as written), then free
        its reservation. Failed writes are retried while the commitment holds (``commit_ttl``)."""
        agent, order = self.agent, deployment.order
        uid = order.request.uid
        started = time.monotonic()
        deadline = started + agent.settings.commit_ttl
        failures = 0
        try:
            while True:
                try:
                    holders = await self._answering(order.request, deployment.holders)
                    await write_vms(agent.kube, order, agent.node.name, self._unwritten(deployment), holders,
                                    agent.settings.vm_disk_size, template, agent.vms, agent.metrics.vm_writes)
                    written = len(deployment.indices)
                    break
                except (KubeApiError, OSError) as exc:
                    if time.monotonic() > deadline:
                        logger.error("gave up writing VMs", extra={**request_fields(order.request),
                                                                   "error": repr(exc)})
                        raise Refusal(503, "WriteFailed", f"could not write the VMs: {exc!r}") from None
                    # Backing off, with jitter: a thousand agents retrying at once would keep a slow API slow.
                    failures += 1
                    pause = min(WRITE_RETRY_MAX_SECONDS, WRITE_RETRY_SECONDS * 2 ** (failures - 1))
                    pause *= random.uniform(0.5, 1.0)
                    logger.warning("writing VMs failed; retrying those not written", extra={
                        **request_fields(order.request), "error": repr(exc), "pause": round(pause, 2)})
                    await asyncio.sleep(pause)
        finally:
            capacity = agent.require_capacity()
            async with capacity.lock:
                capacity.reservations.settle(uid, deployment.indices)
                if capacity.reservations.get(uid) is None:
                    self._requests.forget(uid)  # nothing held for it any more
        flow_step(logger, 9, "wrote VirtualMachines", order.request, node=agent.node.name, count=written,
                  indices=deployment.indices, seconds=round(time.monotonic() - started, 3))
        return written
