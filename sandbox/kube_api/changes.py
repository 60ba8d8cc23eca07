"""The ordered log of writes that watches replay from a resourceVersion (etcd's history, in short),
and the dispatch of each new write to the watches that can see it (the watch cache's job).

Docs: https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
A watch from ``resourceVersion=N`` gets every change after N; when N is older than what is kept
(etcd compaction), the answer is ``410 Gone`` and the client must list again.

Dispatch costs O(watches that receive a change), not O(watches): a watch subscribes with its
resource, its namespace and, when its selector has one, an exact-match :class:`IndexTerm`
(``metadata.name=x`` or a label ``k=v``); a change is offered only to the subscriptions of its
resource and namespace whose term admits the object's new or previous state. The watch still
checks its whole selector on what it is offered (a term is necessary, not sufficient).

History is kept for a time window, as etcd keeps it until kube-apiserver compacts it (every 5
minutes by default, ``--etcd-compaction-interval``), so a burst of writes does not force every
watcher to relist; a count bound guards memory. A subscription's undelivered changes are the
log's own: once compaction drops one the watch has not taken yet, the watch expires with 410, as
one following the log from that version would, so a slow watcher never silently loses events and
never holds more than the log.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import dataclasses
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from rackmesh_sandbox.kube_api import errors
from rackmesh_sandbox.kube_api.selectors import IndexTerm, field_value


@dataclasses.dataclass(frozen=True)
class Change:
    revision: int
    type: str  # ADDED, MODIFIED, DELETED
    key: Any  # the storage key of the resource (kmock.resource)
    obj: dict[str, Any]
    prev: dict[str, Any] | None = None  # the object before this change (for selector transitions)


def _namespace(obj: dict[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("namespace")


def _label(obj: dict[str, Any] | None, key: str) -> str | None:
    labels = (obj.get("metadata") or {}).get("labels") if obj is not None else None
    value = labels.get(key) if isinstance(labels, dict) else None
    return value if isinstance(value, str) else None


class Subscription:
    """One watch's queue of the changes offered to it, filled by :meth:`ChangeLog.append`."""

    def __init__(self, log: ChangeLog, resource: Any, namespace: str | None, term: IndexTerm | None, since: int):
        self.resource = resource
        self.namespace = namespace  # None: every namespace (and cluster-scoped resources)
        self.term = term
        self.cursor = since  # the revision of the last change taken (at first: the one watched from)
        self._log = log
        self._pending: collections.deque[Change] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: errors.ApiError | None = None

    def wants(self, change: Change) -> bool:
        """Whether the index would offer this change (used to replay the log the same way)."""
        if change.key != self.resource or change.revision <= self.cursor:
            return False
        if self.namespace is not None and _namespace(change.obj) != self.namespace:
            return False
        return self.term is None or self.term.admits(change.obj) or self.term.admits(change.prev)

    @property
    def pending(self) -> int:
        """How many offered changes the watch has not taken yet."""
        return len(self._pending)

    def oldest_pending(self) -> int | None:
        """The revision of the oldest change offered and not taken yet."""
        return self._pending[0].revision if self._pending else None

    def offer(self, change: Change) -> None:
        if change.revision > self.cursor:  # a watch from a future version skips what precedes it
            self._pending.append(change)
            self.wake()

    def expire(self, error: errors.ApiError) -> None:
        self._pending.clear()
        self._error = error
        self.wake()

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def follow(self, *, idle: float | None = None) -> AsyncGenerator[Change | None, None]:
        """Yield offered changes in order until the log closes; ``None`` after ``idle`` quiet seconds;
        raise the 410 :class:`errors.ApiError` once expired."""
        while not self._log.closed:
            if self._pending:
                change = self._pending.popleft()
                self.cursor = change.revision
                yield change
                continue
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            quiet = False
            try:
                async with asyncio.timeout(idle):
                    await self._waiter
            except TimeoutError:
                quiet = True
            finally:
                self._waiter = None
            if quiet:
                yield None  # lets the follower check its deadline and its client's connection

    def close(self) -> None:
        """Stop being offered changes (the watch ended)."""
        self._log.unsubscribe(self)


class _Watchers:
    """The subscriptions to one resource in one namespace (None: all), by their index term."""

    __slots__ = ("by_label", "by_name", "unindexed")

    def __init__(self) -> None:
        self.unindexed: set[Subscription] = set()
        self.by_name: dict[str, set[Subscription]] = {}
        self.by_label: dict[str, dict[str, set[Subscription]]] = {}  # label key -> value -> subscriptions

    def _bucket(self, term: IndexTerm, create: bool) -> set[Subscription] | None:
        if term.kind == "name":
            return self.by_name.setdefault(term.value, set()) if create else self.by_name.get(term.value)
        values = self.by_label.setdefault(term.key, {}) if create else self.by_label.get(term.key, {})
        return values.setdefault(term.value, set()) if create else values.get(term.value)

    def add(self, sub: Subscription) -> None:
        bucket = self._bucket(sub.term, create=True) if sub.term is not None else self.unindexed
        assert bucket is not None
        bucket.add(sub)

    def remove(self, sub: Subscription) -> None:
        term = sub.term
        if term is None:
            self.unindexed.discard(sub)
            return
        bucket = self._bucket(term, create=False)
        if bucket is None:
            return
        bucket.discard(sub)
        if not bucket:  # drop empty buckets, or one per ever-watched name/value would stay forever
            if term.kind == "name":
                del self.by_name[term.value]
            else:
                del self.by_label[term.key][term.value]
                if not self.by_label[term.key]:
                    del self.by_label[term.key]

    def empty(self) -> bool:
        return not (self.unindexed or self.by_name or self.by_label)

    def offer(self, change: Change) -> None:
        for sub in self.unindexed:
            sub.offer(change)
        if self.by_name:
            for sub in self.by_name.get(field_value(change.obj, "metadata.name"), ()):
                sub.offer(change)
        for key, values in self.by_label.items():
            now = _label(change.obj, key)
            if now is not None:
                for sub in values.get(now, ()):
                    sub.offer(change)
            before = _label(change.prev, key)
            if before is not None and before != now:
                for sub in values.get(before, ()):
                    sub.offer(change)


WINDOW = 300.0  # seconds of history kept: kube-apiserver's default etcd compaction interval
CAPACITY = 200_000  # changes kept at most, whatever their age (a memory guard)


class ChangeLog:
    """An in-memory list of the changes of the last ``window`` seconds (at most ``capacity`` of them),
    and the watches subscribed to new ones."""

    def __init__(
        self, capacity: int = CAPACITY, window: float = WINDOW, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.window = window
        self.clock = clock
        self.closed = False
        self._changes: list[Change] = []
        self._times: list[float] = []  # when each change was appended (the clock's reading)
        self._compacted = 0  # the newest revision no longer in the log
        self._watchers: dict[tuple[Any, str | None], _Watchers] = {}
        self._subscriptions: set[Subscription] = set()

    @property
    def subscriptions(self) -> int:
        """How many watches are subscribed now."""
        return len(self._subscriptions)

    @property
    def undelivered(self) -> int:
        """How many offered changes the subscribed watches have not taken yet."""
        return sum(sub.pending for sub in self._subscriptions)

    def subscribe(
        self, resource: Any, namespace: str | None, term: IndexTerm | None, since: int
    ) -> Subscription:
        """Subscribe to the changes after revision ``since``: the log's replayed now, new ones as written.

        Replay and registration happen together (no await), so no change is lost or doubled. A
        compacted ``since`` gives a subscription that only raises 410.
        """
        sub = Subscription(self, resource, namespace, term, since)
        self._compact_old(self.clock())
        if since < self._compacted:
            sub.expire(errors.expired(since, self._compacted + 1))
            return sub
        start = bisect.bisect_right(self._changes, since, key=lambda change: change.revision)
        for change in self._changes[start:]:
            if sub.wants(change):
                sub.offer(change)
        self._watchers.setdefault((resource, namespace), _Watchers()).add(sub)
        self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub not in self._subscriptions:
            return
        self._subscriptions.discard(sub)
        watchers = self._watchers.get((sub.resource, sub.namespace))
        if watchers is not None:
            watchers.remove(sub)
            if watchers.empty():
                del self._watchers[(sub.resource, sub.namespace)]

    def append(self, change: Change) -> None:
        now = self.clock()
        self._changes.append(change)
        self._times.append(now)
        everywhere = self._watchers.get((change.key, None))
        if everywhere is not None:
            everywhere.offer(change)
        namespace = _namespace(change.obj)
        if namespace is not None:
            here = self._watchers.get((change.key, namespace))
            if here is not None:
                here.offer(change)
        if len(self._changes) > self.capacity:
            # Down to 90%, so this runs once per tenth of the capacity in writes, not on each.
            self._compact(len(self._changes) - self.capacity * 9 // 10)
        else:
            self._compact_old(now)

    def _compact_old(self, now: float) -> None:
        """Drop what is older than the window, once the oldest is a tenth of the window past it (so
        this runs at most once per tenth of the window, as etcd compacts at intervals too)."""
        if self._times and now - self._times[0] > self.window * 1.1:
            self._compact(bisect.bisect_left(self._times, now - self.window))

    def _compact(self, dropped: int) -> None:
        """Drop the oldest ``dropped`` changes; expire the watches that had not taken them yet."""
        if dropped <= 0:
            return
        self._compacted = self._changes[dropped - 1].revision
        del self._changes[:dropped]
        del self._times[:dropped]
        # Amortized: compaction is rare (see the callers) and looks at each watch once.
        for sub in list(self._subscriptions):
            oldest = sub.oldest_pending()
            if oldest is not None and oldest <= self._compacted:
                self.unsubscribe(sub)
                sub.expire(errors.expired(sub.cursor, self._compacted + 1))

    def close(self) -> None:
        """End all follows (server shutdown): a real server closes watch connections too."""
        self.closed = True
        for sub in self._subscriptions:
            sub.wake()
