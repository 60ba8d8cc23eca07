"""Free capacity of this node: allocatable, minus what the VMs pinned to it use, minus live reservations.

The agent is the single writer of its node's capacity; nothing about it is kept in ZooKeeper.
"""

import asyncio
from typing import TYPE_CHECKING, Any

from rackmesh.kube_client import CLUSTER_INSTANCETYPES, VIRTUAL_MACHINES, KubeClient
from rackmesh.labels import NODE_LABEL
from rackmesh.quantities import Resources
from rackmesh_node_agent.capacity.reservations import Pinned, Reservations

if TYPE_CHECKING:
    from rackmesh_node_agent.own_node import OwnNode


def instancetype_size(instancetype: dict[str, Any]) -> Resources:
    """What one VM of a VirtualMachineClusterInstancetype uses (``spec.cpu.guest`` vCPUs, ``spec.memory.guest``)."""
    spec = instancetype["spec"]
    return Resources.parse(spec["cpu"]["guest"], spec["memory"]["guest"])


class CapacityView:
    """Computes free capacity from the own Node's watch and the API; instancetype sizes are cached (they
    are immutable in practice). A node that is gone (deleted, or out-of-service) has no room.

    Hold ``lock`` around reading free capacity and changing reservations, so two offers never
    promise the same room.
    """

    def __init__(self, kube: KubeClient, node_name: str, own_node: "OwnNode") -> None:
        self._kube = kube
        self._node_name = node_name
        self._own_node = own_node
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

    @property
    def allocatable(self) -> Resources:
        state = self._own_node.state
        return Resources() if state is None or state.out_of_service else state.allocatable

    async def free(self) -> Resources:
        return (await self.look())[0]

    async def look(self) -> tuple[Resources, Pinned]:
        """Free capacity, and the (namespace, name) of every VM pinned here, from one listing."""
        pinned = await self._pinned()
        used = Resources()
        for vm in pinned:
            used += await self.size_of(vm["spec"]["instancetype"]["name"])
        names = {(vm["metadata"]["namespace"], vm["metadata"]["name"]) for vm in pinned}
        for reservation in self.reservations.live():
            used += reservation.size * reservation.outstanding(names)
        return self.allocatable - used, names
