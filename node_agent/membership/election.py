"""Per-rack leader election, one per (role, rack), with ZooKeeper's ephemeral sequential recipe.

Each contender creates ``n_<seq>`` and watches only the contender just before it, so a
departure wakes exactly one agent (no herd effect). The lowest sequence leads and publishes
its MemberRecord under ``leaders/<role>/<rack>`` for everyone to find.
"""

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss, NodeExistsError, NoNodeError, OperationTimeoutError

from rackmesh import zk_async
from rackmesh.zk_layout import ELECTION_PREFIX, MemberRecord, ZkLayout

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE = (ConnectionLoss, OperationTimeoutError)


class OwnContenderGone(Exception):
    """Our election node vanished: the session that owned it has expired."""


class RackElection:
    def __init__(self, client: KazooClient, layout: ZkLayout, record: MemberRecord,
                 connected: asyncio.Event) -> None:
        self._client = client
        self._layout = layout
        self.record = record
        self._connected = connected
        self.is_leader = False
        self.contender_path: str | None = None

    async def enter(self) -> None:
        """Join the queue of contenders (call once per session, before ``run``)."""
        await self._retrying(self._create_contender)

    async def run(self) -> None:
        """Contend, lead while elected; returns never (cancel it), raises if the session is gone."""
        try:
            while True:
                predecessor = await self._retrying(self._predecessor)
                if predecessor is None:
                    await self._retrying(self._publish)
                    self._set_leader(True)
                    await asyncio.Future()  # lead until cancelled (stop, or session lost)
                await self._retrying(functools.partial(self._wait_gone, predecessor))
        finally:
            self._set_leader(False)

    async def _retrying(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run one step; on a connection hiccup wait for reconnection and run it again."""
        while True:
            try:
                return await step()
            except RETRYABLE:
                await self._connected.wait()

    async def _create_contender(self) -> None:
        path = self._layout.election(self.record.role, self.record.rack)
        await zk_async.wait(self._client.ensure_path_async(path))
        self.contender_path = await zk_async.wait(self._client.create_async(
            f"{path}/{ELECTION_PREFIX}", self.record.encode(), ephemeral=True, sequence=True))

    async def _predecessor(self) -> str | None:
        """The contender we must outlive, or None when we are first."""
        assert self.contender_path is not None
        path = self._layout.election(self.record.role, self.record.rack)
        mine = self.contender_path.rsplit("/", 1)[1]
        contenders = sorted(await zk_async.wait(self._client.get_children_async(path)))
        if mine not in contenders:
            raise OwnContenderGone(self.contender_path)
        index = contenders.index(mine)
        return f"{path}/{contenders[index - 1]}" if index else None

    async def _wait_gone(self, path: str) -> None:
        fired, watch = zk_async.watch_event(asyncio.get_running_loop())
        if await zk_async.wait(self._client.exists_async(path, watch=watch)) is not None:
            await fired.wait()

    async def _publish(self) -> None:
        """Write our record as the rack's leader; a stale record of an ended session is waited out."""
        path = self._layout.leader(self.record.role, self.record.rack)
        while True:
            try:
                await zk_async.wait(self._client.create_async(path, self.record.encode(), ephemeral=True,
                                                              makepath=True))
                return
            except NodeExistsError:
                try:
                    _, stat = await zk_async.wait(self._client.get_async(path))
                except NoNodeError:
                    continue
                if stat.ephemeralOwner == self._client.client_id[0]:
                    await zk_async.wait(self._client.set_async(path, self.record.encode()))
                    return
                await self._wait_gone(path)

    def _set_leader(self, leading: bool) -> None:
        if leading != self.is_leader:
            self.is_leader = leading
            logger.info("rack leadership %s", "gained" if leading else "released",
                        extra={"role": str(self.record.role), "rack": self.record.rack, "node": self.record.node})
