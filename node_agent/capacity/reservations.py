"""Reservations: capacity an agent has offered or committed to a request, held for a limited time.

Per request, a node holds an *offer* (a count, for ``reservation_ttl``, until the coordinator commits or
releases it) and *commitments* (the VM indices it took, for ``commit_ttl``, until they are written). A
commitment counts against free capacity only for its VMs not yet written on this node, so a VM is never
counted twice (once reserved, once pinned) while its portion is deployed.
"""

import dataclasses
import time
from collections.abc import Callable, Collection
from typing import Any

from rackmesh.protocol import RequestRef
from rackmesh.quantities import Resources
from rackmesh.vm_names import vm_name

# (namespace, name) of the VirtualMachines pinned to this node
Pinned = Collection[tuple[str, str]]


@dataclasses.dataclass
class Reservation:
    request: RequestRef
    instancetype: str
    size: Resources  # of one VM
    offered: int = 0
    offer_expires_at: float = 0.0  # monotonic
    committed: set[int] = dataclasses.field(default_factory=set)
    commit_expires_at: float = 0.0

    def unwritten(self, pinned: Pinned) -> list[int]:
        """The committed VMs that do not exist on this node yet."""
        return sorted(index for index in self.committed
                      if (self.request.namespace, vm_name(self.request.name, index)) not in pinned)

    def outstanding(self, pinned: Pinned) -> int:
        """How many VMs' room this reservation still holds."""
        return self.offered + len(self.unwritten(pinned))


@dataclasses.dataclass(frozen=True)
class Held:
    """What a node's reservations hold together: how many requests, VMs' room, and its resources."""

    requests: int
    vms: int
    resources: Resources


class Reservations:
    """The single writer of this node's reservations; callers serialise through ``CapacityView.lock``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[str, Reservation] = {}

    def get(self, uid: str) -> Reservation | None:
        self._expire()
        return self._held.get(uid)

    def live(self) -> list[Reservation]:
        self._expire()
        return list(self._held.values())

    def offer(self, request: RequestRef, instancetype: str, size: Resources, count: int, seconds: float) -> None:
        """Hold ``count`` VMs' room for ``seconds``, replacing the request's earlier offer (not its commitments)."""
        held = self.get(request.uid) or Reservation(request, instancetype, size)
        held.offered, held.offer_expires_at = count, self._clock() + seconds
        self._store(held)

    def commit(self, request: RequestRef, instancetype: str, size: Resources, indices: Collection[int],
               seconds: float) -> Reservation:
        """Turn the offer into the VMs ``indices``, held for ``seconds``; the offer's remainder is given back."""
        held = self.get(request.uid) or Reservation(request, instancetype, size)
        held.committed |= set(indices)
        held.offered, held.commit_expires_at = 0, self._clock() + seconds
        self._store(held)
        return held

    def settle(self, uid: str, indices: Collection[int]) -> None:
        """The VMs ``indices`` are written (or given up): they no longer need reserved room."""
        held = self._held.get(uid)
        if held is not None:
            held.committed -= set(indices)
            self._store(held)

    def release(self, uid: str) -> Reservation | None:
        return self._held.pop(uid, None)

    def held(self, pinned: Pinned) -> Held:
        """Everything held now (VMs written already hold nothing)."""
        outstanding = [(r, r.outstanding(pinned)) for r in self.live()]
        outstanding = [(r, count) for r, count in outstanding if count]
        return Held(len(outstanding), sum(count for _, count in outstanding),
                    sum((r.size * count for r, count in outstanding), Resources()))

    def describe(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [{"request": f"{r.request.namespace}/{r.request.name}", "uid": r.request.uid,
                 "instancetype": r.instancetype, "offered": r.offered, "committed": sorted(r.committed),
                 "expiresInSeconds": round(max(r.offer_expires_at if r.offered else 0.0,
                                               r.commit_expires_at if r.committed else 0.0) - now, 1)}
                for r in self.live()]

    def _store(self, held: Reservation) -> None:
        if held.offered or held.committed:
            self._held[held.request.uid] = held
        else:
            self._held.pop(held.request.uid, None)

    def _expire(self) -> None:
        now = self._clock()
        for held in list(self._held.values()):
            if held.offered and held.offer_expires_at <= now:
                held.offered = 0
            if held.committed and held.commit_expires_at <= now:
                held.committed = set()
            self._store(held)
