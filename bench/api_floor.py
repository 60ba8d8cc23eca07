"""The API floor: how fast one client can create a placement's VMs in the API, with no decision at all.

No placement, central or decentralized, can write its VMs faster than this in the same API, so the bench
divides rackmesh's write time by it. The objects are the product's own manifests, so each create costs
the API what rackmesh's creates cost (schema validation, labels, ownerReferences).
"""

import asyncio
import time

from rackmesh.kube_client import VIRTUAL_MACHINES, KubeClient
from rackmesh.protocol import ImageHolder, Order
from rackmesh_node_agent.vms.manifest import virtual_machine


async def write_floor(kube: KubeClient, order: Order, placement: dict[str, list[int]], holders: list[ImageHolder],
                      disk_size: str, concurrency: int = 64) -> float:
    """Create the VMs ``placement`` names (node -> indices), ``concurrency`` creates in flight; the wall seconds.

    The manifests are built before the clock starts, so only the API's work is timed. Any failed create
    (a 409 included: the VM was there already) raises, as the time would no longer be the floor.
    ``KubeClient``'s connection pool (aiohttp's default, 100) caps what is really in flight.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    bodies = iter([virtual_machine(order, node, index, holders, disk_size)
                   for node, indices in placement.items() for index in indices])

    async def creator() -> None:
        for body in bodies:  # one iterator shared by every creator: each body is taken once
            await kube.create(VIRTUAL_MACHINES, body, order.request.namespace)

    started = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(creator())
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return time.perf_counter() - started
