"""Which namespaces' credentials open this storage agent's image files: the password digests the operator
publishes in ZooKeeper (``image-access/<namespace>``), read once per namespace and kept until a watch says
the entry changed (``rackmesh/image_access.py``)."""

import asyncio
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.protocol.states import WatchedEvent

from rackmesh import image_access, zk_async
from rackmesh.labels import is_dns_label
from rackmesh.zk_layout import ZkLayout


class ImageAccess:
    def __init__(self, zk: Callable[[], KazooClient], layout: ZkLayout) -> None:
        self._zk = zk
        self._layout = layout
        self._digests: dict[str, str | None] = {}  # namespace -> digest, None: no entry (watched too)

    async def allows(self, namespace: str, password: str) -> bool:
        if not is_dns_label(namespace):
            return False
        if namespace not in self._digests:
            loop = asyncio.get_running_loop()

            def changed(_: WatchedEvent) -> None:
                loop.call_soon_threadsafe(self._digests.pop, namespace, None)

            path = self._layout.image_access(namespace)
            try:
                data, _ = await zk_async.wait(self._zk().get_async(path, watch=changed))
                self._digests[namespace] = data.decode()
            except NoNodeError:  # an exists-watch fires when the operator creates it
                if await zk_async.wait(self._zk().exists_async(path, watch=changed)) is None:
                    self._digests[namespace] = None
        digest = self._digests.get(namespace)
        return digest is not None and image_access.matches(digest, password)
