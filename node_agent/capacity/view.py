"""Free capacity of this node: allocatable, minus what the VMs pinned to it use, minus live reservations.

The agent is the single writer of its node's capacity; nothing about it is kept in ZooKeeper. Everything
here is read from the agent's watch-fed caches (its Node, the VMs pinned to it, the instancetypes), never
from the API server, so an offer costs the API nothing.
"""

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from rackmesh.informer import Informer
from rackmesh.quantities import Resources
from rackmesh_node_agent.capacity.reservations import Pinned, Reservations

if TYPE_CHECKING:
    from rackmesh_node_agent.own_node import OwnNode

logger = logging.getLogger(__name__)


def instancetype_size(instancetype: dict[str, Any]) -> Resources:
    """What one VM of a VirtualMachineClusterInstancetype uses (``spec.cpu.guest`` vCPUs, ``spec.memory.guest``)."""
    spec = instancetype["spec"]
    return Resources.parse(spec["cpu"]["guest"], spec["memory"]["guest"])


class CapacityView:
    """Computes free capacity from the caches. A node that is gone (deleted, or out-of-service) has no room.

    Hold ``lock`` around reading free capacity and changing reservations, so two offers never
    promise the same room.
    """

    def __init__(self, own_node: "OwnNode", vms: Informer, instancetypes: Informer) -> None:
        self._own_node = own_node
        self._vms = vms
        self._instancetypes = instancetypes
        self.reservations = Reservations()
        self.lock = asyncio.Lock()
        # Sizes seen, with the resourceVersion they were read at: a VM keeps the size it was created with
        # (KubeVirt keeps a revision of its instancetype), even once the instancetype is deleted.
        self._sizes: dict[str, tuple[str, Resources]] = {}
        # What the pinned VMs use, as of the VM and instancetype caches' change counts: an offer on a node
        # with a hundred VMs would otherwise add them all up again.
        self._pinned: tuple[tuple[int, int], Resources | None, frozenset[tuple[str, str]]] | None = None

    def size_of(self, instancetype_name: str) -> Resources | None:
        """One VM's size, or None when the instancetype does not exist (and never did, as far as we saw)."""
        found = self._instancetypes.get("", instancetype_name)
        known = self._sizes.get(instancetype_name)
        if found is not None:
            version = str(found["metadata"].get("resourceVersion", ""))
            if known is None or known[0] != version:  # parsed once per version: an offer counts every VM
                known = self._sizes[instancetype_name] = (version, instancetype_size(found))
        return known[1] if known is not None else None

    @property
    def allocatable(self) -> Resources:
        state = self._own_node.state
        return Resources() if state is None or state.out_of_service else state.allocatable

    def free(self) -> Resources:
        return self.look()[0]

    def look(self) -> tuple[Resources, Pinned]:
        """Free capacity, and the (namespace, name) of every VM pinned here."""
        used, names = self._pinned_use()
        if used is None:  # a VM whose size is unknown: promise nothing rather than too much
            return Resources(), names
        for reservation in self.reservations.live():
            used += reservation.size * reservation.outstanding(names)
        return self.allocatable - used, names

    def _pinned_use(self) -> tuple[Resources | None, frozenset[tuple[str, str]]]:
        seen = (self._vms.changes, self._instancetypes.changes)
        if self._pinned is None or self._pinned[0] != seen:
            pinned = self._vms.objects()
            used: Resources | None = Resources()
            for vm in pinned:
                name = vm["spec"]["instancetype"]["name"]
                size = self.size_of(name)
                if size is None:
                    logger.warning("a VM on this node has an instancetype never seen; offering no room",
                                   extra={"vm": vm["metadata"]["name"], "instancetype": name})
                    used = None
                    break
                used += size
            names = frozenset((vm["metadata"]["namespace"], vm["metadata"]["name"]) for vm in pinned)
            self._pinned = (seen, used, names)
        return self._pinned[1], self._pinned[2]
