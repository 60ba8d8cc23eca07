"""The ordered log of writes that watches replay from a resourceVersion (etcd's history, in short).

Docs: https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
A watch from ``resourceVersion=N`` gets every change after N; when N is older than what is kept
(etcd compaction), the answer is ``410 Gone`` and the client must list again.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
from collections.abc import AsyncGenerator
from typing import Any

from rackmesh_sandbox.kube_api import errors


@dataclasses.dataclass(frozen=True)
class Change:
    revision: int
    type: str  # ADDED, MODIFIED, DELETED
    key: Any  # the storage key of the resource (kmock.resource)
    obj: dict[str, Any]
    prev: dict[str, Any] | None = None  # the object before this change (for selector transitions)


class ChangeLog:
    """A bounded, in-memory list of changes, with waiting for new ones."""

    def __init__(self, capacity: int = 5_000) -> None:
        self.capacity = capacity
        self._changes: list[Change] = []
        self._compacted = 0  # the newest revision no longer in the log
        self._wakeup = asyncio.Event()
        self._closed = False

    def append(self, change: Change) -> None:
        self._changes.append(change)
        if len(self._changes) > self.capacity:
            dropped = self._changes[: len(self._changes) - self.capacity // 2]
            self._compacted = dropped[-1].revision
            del self._changes[: len(dropped)]
        # Wake every follower; each waits on the event current when it found nothing new.
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def close(self) -> None:
        """End all follows (server shutdown): a real server closes watch connections too."""
        self._closed = True
        self._wakeup.set()

    async def follow(self, since: int, *, idle: float | None = None) -> AsyncGenerator[Change | None, None]:
        """Yield the changes after revision ``since`` until closed; ``None`` after ``idle`` quiet seconds."""
        cursor = since
        while not self._closed:
            if cursor < self._compacted:
                raise errors.expired(cursor, self._compacted + 1)
            start = bisect.bisect_right(self._changes, cursor, key=lambda change: change.revision)
            batch = self._changes[start:]
            if not batch:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), idle)
                except TimeoutError:
                    yield None  # lets the follower check its deadline and its client's connection
                continue
            for change in batch:
                yield change
                cursor = change.revision
