"""Reservations: capacity an agent has offered or committed to a request, held for a limited time.

A reservation counts against free capacity only for the VMs of its request not yet written on this
node, so a VM is never counted twice (once reserved, once pinned) while its portion is deployed.
"""

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from rackmesh.protocol import RequestRef
from rackmesh.quantities import Resources


@dataclasses.dataclass
class Reservation:
    request: RequestRef
    instancetype: str
    size: Resources  # of one VM
    count: int
    expires_at: float  # monotonic
    committed: bool = False
    start: int = 0  # the portion's first VM index, once committed


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

    def hold(self, reservation: Reservation) -> None:
        self._held[reservation.request.uid] = reservation

    def extend(self, uid: str, seconds: float) -> None:
        self._held[uid].expires_at = self._clock() + seconds

    def expires_in(self, seconds: float) -> float:
        return self._clock() + seconds

    def release(self, uid: str) -> Reservation | None:
        return self._held.pop(uid, None)

    def describe(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [{"request": f"{r.request.namespace}/{r.request.name}", "uid": r.request.uid,
                 "instancetype": r.instancetype, "count": r.count, "committed": r.committed,
                 "expiresInSeconds": round(r.expires_at - now, 1)} for r in self.live()]

    def _expire(self) -> None:
        now = self._clock()
        for uid in [uid for uid, r in self._held.items() if r.expires_at <= now]:
            del self._held[uid]
