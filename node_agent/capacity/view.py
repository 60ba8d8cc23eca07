"""Free capacity of this node: allocatable, minus what the VMs pinned to it use, minus live reservations.

The agent is the single writer of its node's capacity; nothing about it is kept in ZooKeeper.
"""

import asyncio
from collections import Counter
from typing import Any

from rackmesh.kube_client import CLUSTER_INSTANCETYPES, VIRTUAL_MACHINES, KubeClient
from rackmesh.labels import NODE_LABEL, REQUEST_LABEL
from rackmesh.quantities import Resources
from rackmesh_node_agent.capacity.reservations import Reservations


def instancetype_size(instancetype: dict[str, Any]) -> Resources:
    """What one VM of a VirtualMachineClusterInstancetype uses (``spec.cpu.guest`` vCPUs, ``spec.memory.guest``)."""
    spec = instancetype["spec"]
    return Resources.parse(spec["cpu"]["guest"], spec["memory"]["guest"])


class CapacityView:
    """Computes free capacity from the API; instancetype sizes are cached (they are immutable in practice).

    Hold ``lock`` around reading free capacity and changing reservations, so two offers never
    promise the same room.
    """

    def __init__(self, kube: KubeClient, node_name: str, allocatable: Resources) -> None:
        self._kube = kube
        self._node_name = node_name
        self.allocatable = allocatable
        self.reservations = Reservations()
        self.lock = asyncio.Lock()
        self._sizes: dict[str, Resources] = {}

    async def size_of(self, instancetype_name: str) -> Resources:
        if instancetype_name not in self._sizes:
            found = await self._kube.get(CLUSTER_INSTANCETYPES, instancetype_name)
            self._sizes[instancetype_name] = instancetype_size(found)
        return self._sizes[instancetype_name]

    async def _pinned(self) -> list[dict[str, Any]]:
        return await self._kube.list(VIRTUAL_MACHINES, label_selector=f"{NODE_LABEL}={self._node_name}")

    async def free(self) -> Resources:
        return (await self.look())[0]

    async def look(self) -> tuple[Resources, Counter[tuple[str, str]]]:
        """Free capacity, and how many VMs of each request (namespace, name) are pinned here, from one listing."""
        pinned = await self._pinned()
        used = Resources()
        for vm in pinned:
            used += await self.size_of(vm["spec"]["instancetype"]["name"])
        written = Counter((vm["metadata"]["namespace"], vm["metadata"]["labels"].get(REQUEST_LABEL, ""))
                          for vm in pinned)
        for reservation in self.reservations.live():
            request = reservation.request
            outstanding = max(0, reservation.count - written[(request.namespace, request.name)])
            used += reservation.size * outstanding
        return self.allocatable - used, written
