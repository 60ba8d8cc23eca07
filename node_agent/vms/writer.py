"""Writing a portion's VirtualMachines to the Kubernetes API (flow step 9)."""

import asyncio
import logging
import time
from typing import Any

from rackmesh.informer import Informer
from rackmesh.kube_client import VIRTUAL_MACHINES, KubeApiError, KubeClient
from rackmesh.labels import NODE_LABEL
from rackmesh.logs import request_fields
from rackmesh.protocol import ImageHolder, Order
from rackmesh.vm_fields import controller_uid
from rackmesh_node_agent.metrics import VmWrites
from rackmesh_node_agent.vms.manifest import virtual_machine

logger = logging.getLogger(__name__)
# Enough to hide the API's latency, few enough not to flood it when every agent writes at once.
WRITE_CONCURRENCY = 8


async def write_vms(kube: KubeClient, order: Order, node: str, indices: list[int],
                    holders: list[ImageHolder], disk_size: str, template: dict[str, Any] | None = None,
                    cache: Informer | None = None, metrics: VmWrites | None = None) -> int:
    """Create VMs ``indices`` of ``order`` on ``node`` from the request's ``template``; returns how many of
    them exist.

    ``cache`` (the node's VMs) is told of each VM at once, so it counts before the watch event comes;
    ``metrics`` times each write and counts the VMs created.

    Idempotent: a VM that already exists for this request (409 AlreadyExists, same owner uid) counts
    as written. Every write is attempted before the first error is raised, so a retry has less to do.
    """
    limit = asyncio.Semaphore(WRITE_CONCURRENCY)

    async def write(index: int) -> None:
        body = virtual_machine(order, node, index, holders, disk_size, template)
        async with limit:
            started = time.monotonic()
            try:
                written = await kube.create(VIRTUAL_MACHINES, body, order.request.namespace)
                if metrics is not None:
                    metrics.written.inc()
            except KubeApiError as exc:
                if exc.status != 409 or exc.reason != "AlreadyExists":
                    raise
                written = await _check_ours(kube, order, node, body["metadata"]["name"])
            if metrics is not None:
                metrics.seconds.observe(time.monotonic() - started)
            if cache is not None and _node_of(written) == node:
                cache.wrote(written)

    results = await asyncio.gather(*(write(index) for index in indices), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return len(indices)


def _node_of(vm: dict[str, Any]) -> str | None:
    return (vm["metadata"].get("labels") or {}).get(NODE_LABEL)


async def _check_ours(kube: KubeClient, order: Order, node: str, name: str) -> dict[str, Any]:
    """A VM of the same name may still belong to a deleted request of the same name that the garbage
    collector has not removed yet; counting it would leave this request short once it goes."""
    existing = await kube.get(VIRTUAL_MACHINES, name, order.request.namespace)
    if controller_uid(existing) != order.request.uid:
        raise KubeApiError(409, "AlreadyExists",
                           f"VirtualMachine {order.request.namespace}/{name} belongs to another object; "
                           "waiting for it to be removed")
    elsewhere = _node_of(existing)
    if elsewhere != node:
        # Only that node's agent may touch it; the request has it, so it is not written twice.
        logger.warning("VM of this request exists on another node", extra={
            **request_fields(order.request), "vm": name, "node": elsewhere})
    return existing
