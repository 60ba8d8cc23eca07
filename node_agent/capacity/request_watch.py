"""Reservations go with their request: an agent watches the ZooKeeper record of every request it holds
room for, and frees that room as soon as the record is deleted (the operator's finalizer deletes it when
the DeploymentRequest goes), or at once if there is none (the coordinator writes it before it asks for
offers, so a request without one is gone), instead of waiting for the reservation's time limit.

One watch per request held, set by listing the record's children (it has none): a child watch fires when
the record is deleted, and not when the coordinator rewrites it, so following a request costs one
ZooKeeper read however many times its record changes. The watch is set only for room still held
``FOLLOW_AFTER_SECONDS`` after it was offered: most offers are committed or released within a handshake,
and a ZooKeeper call per offer in the middle of one slows it down (the calls cross kazoo's threads).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.interfaces import IAsyncResult
from kazoo.protocol.states import EventType, WatchedEvent

from rackmesh.logs import request_fields
from rackmesh.protocol import RequestRef
from rackmesh.zk_layout import ZkLayout

logger = logging.getLogger(__name__)
FOLLOW_AFTER_SECONDS = 2.0


class RequestWatch:
    def __init__(self, client: Callable[[], KazooClient], layout: ZkLayout, holds: Callable[[str], bool],
                 on_gone: Callable[[str], Awaitable[None]]) -> None:
        self._client = client
        self._layout = layout
        self._holds = holds
        self._on_gone = on_gone
        self._followed: dict[str, RequestRef] = {}
        self._watched: set[str] = set()
        self._soon: set[str] = set()  # to be watched once FOLLOW_AFTER_SECONDS have passed, if still held
        self._tasks: set[asyncio.Task[None]] = set()

    def follow(self, request: RequestRef) -> None:
        """Free ``request``'s room when its record is deleted, or within moments if it has none (idempotent)."""
        uid = request.uid
        self._followed[uid] = request
        if uid not in self._watched and uid not in self._soon:
            self._soon.add(uid)
            loop = asyncio.get_running_loop()
            loop.call_later(FOLLOW_AFTER_SECONDS, self._arm_if_held, uid, loop)

    def forget(self, uid: str) -> None:
        """Nothing is held for ``uid`` any more; a watch still armed fires into nothing."""
        self._followed.pop(uid, None)
        self._watched.discard(uid)
        self._soon.discard(uid)

    def _arm_if_held(self, uid: str, loop: asyncio.AbstractEventLoop) -> None:
        self._soon.discard(uid)
        if uid in self._watched:
            return
        if self._holds(uid):
            self._watched.add(uid)
            self._arm(uid, loop)
        else:
            self._followed.pop(uid, None)

    def _arm(self, uid: str, loop: asyncio.AbstractEventLoop) -> None:
        def fired(event: WatchedEvent) -> None:  # kazoo's thread
            loop.call_soon_threadsafe(self._fired, uid, event.type, loop)

        def answered(result: IAsyncResult) -> None:  # kazoo's thread
            try:
                result.get_nowait()
            except NoNodeError:
                loop.call_soon_threadsafe(self._fired, uid, EventType.DELETED, loop)
            except KazooException:  # a connection problem: the reservation's time limit still frees the room
                return

        self._client().get_children_async(self._layout.request(uid), watch=fired).rawlink(answered)

    def _fired(self, uid: str, kind: str, loop: asyncio.AbstractEventLoop) -> None:
        if uid not in self._watched:
            return
        if kind != EventType.DELETED:
            self._arm(uid, loop)  # a child was added (never, by design): keep watching
            return
        self._watched.discard(uid)
        logger.info("the request's record was deleted; freeing its room",
                    extra=request_fields(self._followed.pop(uid)))
        task = loop.create_task(self._on_gone(uid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
