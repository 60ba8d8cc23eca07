"""Writing a portion's VirtualMachines to the Kubernetes API (flow step 9)."""

import asyncio

from rackmesh.kube_client import VIRTUAL_MACHINES, KubeApiError, KubeClient
from rackmesh.protocol import ImageHolder, Order
from rackmesh_node_agent.vms.manifest import virtual_machine

# Enough to hide the API's latency, few enough not to flood it when every agent writes at once.
WRITE_CONCURRENCY = 8


async def write_vms(kube: KubeClient, order: Order, node: str, start: int, count: int,
                    holders: list[ImageHolder], disk_size: str) -> int:
    """Create VMs ``start .. start+count-1`` of ``order`` on ``node``; returns how many of them exist.

    Idempotent: a VM that already exists for this request (409 AlreadyExists, same owner uid) counts
    as written. Every write is attempted before the first error is raised, so a retry has less to do.
    """
    limit = asyncio.Semaphore(WRITE_CONCURRENCY)

    async def write(index: int) -> None:
        body = virtual_machine(order, node, index, holders, disk_size)
        async with limit:
            try:
                await kube.create(VIRTUAL_MACHINES, body, order.request.namespace)
            except KubeApiError as exc:
                if exc.status != 409 or exc.reason != "AlreadyExists":
                    raise
                await _check_ours(kube, order, body["metadata"]["name"])

    results = await asyncio.gather(*(write(index) for index in range(start, start + count)),
                                   return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return count


async def _check_ours(kube: KubeClient, order: Order, name: str) -> None:
    """A VM of the same name may still belong to a deleted request of the same name that the garbage
    collector has not removed yet; counting it would leave this request short once it goes."""
    existing = await kube.get(VIRTUAL_MACHINES, name, order.request.namespace)
    owners = {ref.get("uid") for ref in existing["metadata"].get("ownerReferences") or []}
    if order.request.uid not in owners:
        raise KubeApiError(409, "AlreadyExists",
                           f"VirtualMachine {order.request.namespace}/{name} belongs to another object; "
                           "waiting for it to be removed")
