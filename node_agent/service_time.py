"""How long an agent itself works on each step of a call, apart from the time it waits for the peers it asks.

Each agent keeps the latest service times (bounded), per request and step, so a benchmark can add up the
longest chain of a fan-out as if every agent had a machine of its own. Steps nest: a rack leader's
``rack-offers`` waits for its agents' ``node-offer``; only its own share counts as its service time.
"""

import contextlib
import contextvars
import dataclasses
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator

KEPT = 10_000


@dataclasses.dataclass
class _Waiting:
    seconds: float = 0.0


_waiting: contextvars.ContextVar[_Waiting | None] = contextvars.ContextVar("rackmesh_waiting", default=None)


@dataclasses.dataclass(frozen=True)
class ServiceTime:
    request: str  # uid
    step: str
    seconds: float


class ServiceTimes:
    """The latest ``KEPT`` service times of one agent."""

    def __init__(self) -> None:
        self._kept: deque[ServiceTime] = deque(maxlen=KEPT)

    @contextlib.contextmanager
    def measure(self, step: str, request: str) -> Iterator[None]:
        """Time the block as ``step``, less the time it spends in ``waiting_for_peers``."""
        waiting = _Waiting()
        token = _waiting.set(waiting)
        started = time.perf_counter()
        try:
            yield
        finally:
            _waiting.reset(token)
            self._kept.append(ServiceTime(request, step, time.perf_counter() - started - waiting.seconds))

    def drain(self) -> list[ServiceTime]:
        """Every kept service time, oldest first; forgets them."""
        kept = list(self._kept)
        self._kept.clear()
        return kept


@contextlib.asynccontextmanager
async def waiting_for_peers() -> AsyncIterator[None]:
    """Count the block as waiting on other agents: it is not the measured step's own work."""
    started = time.perf_counter()
    try:
        yield
    finally:
        waiting = _waiting.get()
        if waiting is not None:
            waiting.seconds += time.perf_counter() - started
