"""Free capacity of this node, as the kube-scheduler will find it: allocatable, minus the requests of the
pods bound to the node, minus what the VMs pinned to it and the live reservations will request.

A VM counts as ``rackmesh/vm_room.py`` says (its launcher pod's requests, a full core per vCPU). Once a
VM's launcher pod exists, the VM counts as the larger of the two and the pod is not counted again. Every
other pod bound to the node (DaemonSets, system pods, another VM's launcher) counts at its requests
(``rackmesh/pod_requests.py``); a terminal one holds nothing.

The agent is the single writer of its node's capacity; nothing about it is kept in ZooKeeper. Everything
here is read from the agent's watch-fed caches (its Node, the VMs pinned to it, the pods bound to it, the
instancetypes, the requests), never from the API server, so an offer costs the API nothing.
"""

import asyncio
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from rackmesh.informer import Informer
from rackmesh.pod_requests import is_terminal, largest, pod_requests
from rackmesh.protocol import RequestRef
from rackmesh.quantities import Resources
from rackmesh.virt_launcher import Guest, launcher_vmi
from rackmesh.vm_room import request_instance_spec, vm_instance_spec, vm_room
from rackmesh_node_agent.capacity.reservations import Pinned, Reservations

if TYPE_CHECKING:
    from rackmesh_node_agent.own_node import OwnNode

logger = logging.getLogger(__name__)
# (VM changes, instancetype changes, pod changes) -> what they use (None: a VM's size is unknown), VM names
Use = tuple[tuple[int, int, int], Resources | None, frozenset[tuple[str, str]]]


class CapacityView:
    """Computes free capacity from the caches. A node that is gone (deleted, or out-of-service) has no room.

    Hold ``lock`` around reading free capacity and changing reservations, so two offers never
    promise the same room.
    """

    def __init__(self, own_node: "OwnNode", vms: Informer, instancetypes: Informer, pods: Informer,
                 requests: Informer) -> None:
        self._own_node = own_node
        self._vms = vms
        self._instancetypes = instancetypes
        self._pods = pods
        self._requests = requests
        self.reservations = Reservations()
        self.lock = asyncio.Lock()
        # Guests seen, with the resourceVersion they were read at: a VM keeps the size it was created with
        # (KubeVirt keeps a revision of its instancetype), even once the instancetype is deleted.
        self._guests: dict[str, tuple[str, Guest]] = {}
        # What the node's VMs and pods use, as of the caches' change counts: an offer on a node with a
        # hundred VMs would otherwise add them all up again.
        self._use: Use | None = None
        # Each VM's room, by uid, with the resourceVersion and guest (object) it was worked out for: a change on
        # a node with a hundred VMs then works out one.
        self._rooms: dict[str, tuple[str, Guest, Resources]] = {}

    def guest_of(self, instancetype_name: str) -> Guest | None:
        """The instancetype's guest, or None when it does not exist (and never did, as far as we saw)."""
        found = self._instancetypes.get("", instancetype_name)
        known = self._guests.get(instancetype_name)
        if found is not None:
            version = str(found["metadata"].get("resourceVersion", ""))
            if known is None or known[0] != version:  # parsed once per version: an offer counts every VM
                known = self._guests[instancetype_name] = (version, Guest.of(found))
        return known[1] if known is not None else None

    def size_of(self, instancetype_name: str, request: RequestRef | None = None) -> Resources | None:
        """One VM's room, of ``request``'s template when the cache holds that request; None when the
        instancetype is unknown."""
        guest = self.guest_of(instancetype_name)
        if guest is None:
            return None
        found = self._requests.get(request.namespace, request.name) if request is not None else None
        if found is not None and found["metadata"].get("uid") == request.uid:
            return vm_room(guest, request_instance_spec(found))
        return vm_room(guest)

    @property
    def allocatable(self) -> Resources:
        state = self._own_node.state
        return Resources() if state is None or state.out_of_service else state.allocatable

    def free(self) -> Resources:
        return self.look()[0]

    def look(self) -> tuple[Resources, Pinned]:
        """Free capacity, and the (namespace, name) of every VM pinned here."""
        used, names = self._node_use()
        if used is None:  # a VM whose size is unknown: promise nothing rather than too much
            return Resources(), names
        for reservation in self.reservations.live():
            used += reservation.size * reservation.outstanding(names)
        return self.allocatable - used, names

    def _node_use(self) -> tuple[Resources | None, frozenset[tuple[str, str]]]:
        seen = (self._vms.changes, self._instancetypes.changes, self._pods.changes)
        if self._use is None or self._use[0] != seen:
            pinned = self._vms.objects()
            names = frozenset((vm["metadata"]["namespace"], vm["metadata"]["name"]) for vm in pinned)
            self._use = (seen, self._used_by(pinned), names)
        return self._use[1], self._use[2]

    def _used_by(self, pinned: list[dict[str, Any]]) -> Resources | None:
        launchers: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        pods = Resources()
        for pod in self._pods.objects():
            if is_terminal(pod):
                continue
            vmi = launcher_vmi(pod)
            if vmi is None:
                pods += pod_requests(pod)
            else:
                launchers[(pod["metadata"]["namespace"], vmi)].append(pod)
        rooms: dict[str, tuple[str, Guest, Resources]] = {}
        cpu = memory = 0  # summed as integers: this runs over every VM of the node on each change
        for vm in pinned:
            name = vm["spec"]["instancetype"]["name"]
            guest = self.guest_of(name)
            if guest is None:
                logger.warning("a VM on this node has an instancetype never seen; offering no room",
                               extra={"vm": vm["metadata"]["name"], "instancetype": name})
                return None
            room = self._room_of(vm, guest, rooms)
            own = self._own_launcher(vm, launchers) if launchers else None
            if own is not None:
                room = largest(room, pod_requests(own))
            cpu, memory = cpu + room.cpu_millis, memory + room.memory_bytes
        self._rooms = rooms  # the VMs gone since take theirs with them
        # Launcher pods of VMs not pinned here (another's, or of a VM deleted a moment ago) are pods like any.
        others = sum((pod_requests(pod) for found in launchers.values() for pod in found), Resources())
        return Resources(cpu, memory) + pods + others

    def _room_of(self, vm: dict[str, Any], guest: Guest, rooms: dict[str, tuple[str, Guest, Resources]]
                 ) -> Resources:
        """The VM's room, worked out again only when the VM or its guest changed; kept in ``rooms``."""
        meta = vm["metadata"]
        uid, version = meta.get("uid", ""), meta.get("resourceVersion", "")
        known = self._rooms.get(uid)
        if known is None or known[0] != version or known[1] is not guest:
            known = (version, guest, vm_room(guest, vm_instance_spec(vm)))
        rooms[uid] = known
        return known[2]

    @staticmethod
    def _own_launcher(vm: dict[str, Any], launchers: dict[tuple[str, str], list[dict[str, Any]]]
                      ) -> dict[str, Any] | None:
        """Take the VM's launcher pod out of ``launchers``: the newest one of its name created since the VM
        was (one of a deleted VM of the same name is not this VM's)."""
        meta = vm["metadata"]
        candidates = launchers.get((meta["namespace"], meta["name"]), [])
        since = str(meta.get("creationTimestamp", ""))
        own = [pod for pod in candidates if str(pod["metadata"].get("creationTimestamp", "")) >= since]
        if not own:
            return None
        newest = max(own, key=lambda pod: str(pod["metadata"].get("creationTimestamp", "")))
        candidates.remove(newest)
        return newest
