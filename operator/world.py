"""Changes in the world that could let a waiting request fit, so it is retried at once instead of at its
next backoff: a Node added or grown, a VM deleted (a request deleted or scaled in frees room), an
instancetype created, a storage agent joining (a new image copy).

Followers compare ``World.version`` with the version they last acted on.
"""

import asyncio
import logging
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.recipe.watchers import ChildrenWatch

from rackmesh import zk_async
from rackmesh.labels import Role
from rackmesh.zk_layout import ZkLayout

logger = logging.getLogger(__name__)


class World:
    def __init__(self) -> None:
        self.version = 0

    def changed(self, why: str, **details: object) -> None:
        self.version += 1
        logger.info("the world changed; waiting requests are retried", extra={"why": why, **details})


class StorageMembers:
    """Watches ``members/storage/<rack>/<node>`` and reports each storage agent that joins."""

    def __init__(self, client: KazooClient, layout: ZkLayout, on_join: Callable[[str, str], None]) -> None:
        self._client = client
        self._layout = layout
        self._on_join = on_join
        self._known: dict[str, set[str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        root = self._layout.members(Role.STORAGE)
        await zk_async.wait(self._client.ensure_path_async(root))
        ChildrenWatch(self._client, root, self._racks_changed)

    def _racks_changed(self, racks: list[str]) -> None:  # kazoo's thread
        for rack in racks:
            if rack not in self._known:
                self._known[rack] = set()
                ChildrenWatch(self._client, self._layout.members(Role.STORAGE, rack),
                              lambda nodes, rack=rack: self._members_changed(rack, nodes))

    def _members_changed(self, rack: str, nodes: list[str]) -> None:  # kazoo's thread
        joined = set(nodes) - self._known[rack]
        self._known[rack] = set(nodes)
        assert self._loop is not None
        for node in sorted(joined):
            self._loop.call_soon_threadsafe(self._on_join, rack, node)
