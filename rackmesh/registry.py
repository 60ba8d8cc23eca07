"""Read who is alive and who leads, from ZooKeeper (the read side of ``zk_layout``).

A watching ``Directory`` answers from memory: each listing and record it reads leaves a ZooKeeper watch,
and the watch's event (or any change of the connection) drops what it read, so the next read goes to
ZooKeeper again. A handshake then costs no ZooKeeper reads while nobody joins, leaves or is elected.
"""

import asyncio
import dataclasses
from collections import Counter
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.protocol.states import KazooState, WatchedEvent

from rackmesh import zk_async
from rackmesh.labels import Role
from rackmesh.zk_layout import MemberRecord, ZkLayout


@dataclasses.dataclass(frozen=True)
class RackView:
    role: Role
    rack: str
    members: list[MemberRecord]
    leader: MemberRecord | None


class Directory:
    """Membership and leadership, read through a cache that ZooKeeper watches keep true (``watch=False``:
    every read goes to ZooKeeper, for one-off readers). ``reads`` counts the reads that reached ZooKeeper."""

    def __init__(self, client: KazooClient, layout: ZkLayout, *, watch: bool = True) -> None:
        self._client = client
        self._layout = layout
        self._watch = watch
        self._cached: dict[tuple[str, str], Any] = {}  # (kind, path) -> what was read
        # Bumped by every watch event and connection change: a read that started before a bump must not
        # be kept, as the event may have come before its answer was stored.
        self._epoch = 0
        self.reads: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        if watch:
            client.add_listener(self._connection_changed)

    def close(self) -> None:
        if self._watch:
            self._client.remove_listener(self._connection_changed)

    async def leaders(self, role: Role, *, fresh: bool = False) -> list[MemberRecord]:
        """The current leader of every rack of ``role``, in rack order (``fresh``: read past the cache)."""
        racks = await self._children(self._layout.leaders(role), fresh)
        found = await asyncio.gather(*(self._record(self._layout.leader(role, rack), fresh) for rack in racks))
        return [record for record in found if record is not None]

    async def leader(self, role: Role, rack: str, *, fresh: bool = False) -> MemberRecord | None:
        """The current leader of one rack, or None while it has none."""
        return await self._record(self._layout.leader(role, rack), fresh)

    async def member(self, role: Role, rack: str, node: str) -> MemberRecord | None:
        """The membership entry of ``node``, or None when its agent is not present."""
        return await self._record(self._layout.member(role, rack, node))

    async def members(self, role: Role, rack: str) -> list[MemberRecord]:
        """The live members of one rack, in node order."""
        names = await self._children(self._layout.members(role, rack))
        found = await asyncio.gather(*(self._record(self._layout.member(role, rack, name)) for name in names))
        return [member for member in found if member is not None]

    async def racks(self, role: Role) -> list[RackView]:
        """Every rack of ``role`` that has members, with its members and leader."""
        views = []
        for rack in await self._children(self._layout.members(role)):
            alive = await self.members(role, rack)
            if alive:
                views.append(RackView(role, rack, alive, await self._record(self._layout.leader(role, rack))))
        return views

    async def _children(self, path: str, fresh: bool = False) -> list[str]:
        try:
            names: list[str] = await self._read("children", path, self._client.get_children_async, fresh)
        except NoNodeError:  # nothing there yet; no watch is left on a missing node, so nothing is kept
            return []
        return sorted(names)

    async def _record(self, path: str, fresh: bool = False) -> MemberRecord | None:
        try:
            data, _ = await self._read("record", path, self._client.get_async, fresh)
        except NoNodeError:  # the owner's session ended between listing and reading
            return None
        return MemberRecord.decode(data)

    async def _read(self, kind: str, path: str, read: Any, fresh: bool = False) -> Any:
        key = (kind, path)
        if key in self._cached and not fresh:
            return self._cached[key]
        self.reads[kind] += 1
        if not self._watch:
            return await zk_async.wait(read(path))
        self._loop = asyncio.get_running_loop()
        epoch = self._epoch
        value = await zk_async.wait(read(path, watch=self._changed))
        if epoch == self._epoch:
            self._cached[key] = value
        return value

    def _from_zookeeper(self, callback: Any, *args: Any) -> None:
        """Run ``callback`` on the event loop (watches and state changes arrive on kazoo's thread)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    def _changed(self, event: WatchedEvent) -> None:
        self._from_zookeeper(self._forget, event.path)

    def _forget(self, path: str) -> None:
        self._epoch += 1
        self._cached.pop(("children", path), None)
        self._cached.pop(("record", path), None)

    def _forget_all(self) -> None:
        self._epoch += 1
        self._cached.clear()

    def _connection_changed(self, _state: KazooState) -> bool:
        # Suspended, lost or reconnected: watches may have been missed or dropped, so read afresh.
        self._from_zookeeper(self._forget_all)
        return False
