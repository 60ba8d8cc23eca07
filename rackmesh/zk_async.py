"""Bridge kazoo (thread-based) into asyncio without blocking either side.

kazoo completes its ``*_async`` calls and fires watches on its own threads; those threads
only ever hand results to the event loop with ``call_soon_threadsafe``, and the loop only
awaits futures, so neither waits on the other.
"""

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionClosedError, SessionExpiredError
from kazoo.interfaces import IAsyncResult
from kazoo.protocol.states import KazooState, WatchedEvent

from rackmesh.identity.credentials import TlsFiles
from rackmesh.metrics import ZooKeeperSession
from rackmesh.zk_acl import rackmesh_acl

T = TypeVar("T")


def _settle(future: asyncio.Future[Any], value: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the awaiting side was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


async def wait(result: IAsyncResult) -> Any:
    """Await a kazoo ``IAsyncResult`` from asyncio."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def on_done(done: IAsyncResult) -> None:
        try:
            value = done.get_nowait()
        except Exception as exc:
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, value)

    result.rawlink(on_done)
    return await future


def watch_event(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Event, Callable[[WatchedEvent], None]]:
    """An asyncio event and a kazoo watch callback that sets it (from kazoo's thread)."""
    fired = asyncio.Event()

    def on_watch(_: WatchedEvent) -> None:
        loop.call_soon_threadsafe(fired.set)

    return fired, on_watch


class SessionStates:
    """kazoo connection states delivered to an asyncio queue, in order."""

    def __init__(self, client: KazooClient, loop: asyncio.AbstractEventLoop) -> None:
        self.queue: asyncio.Queue[KazooState] = asyncio.Queue()
        self._client = client
        self._loop = loop
        client.add_listener(self._listener)

    def _listener(self, state: KazooState) -> bool:
        self._loop.call_soon_threadsafe(self.queue.put_nowait, state)
        return False  # keep listening

    def close(self) -> None:
        self._client.remove_listener(self._listener)


async def start_client(hosts: str, session_timeout: float, connect_timeout: float = 15.0,
                       tls: TlsFiles | None = None, session: ZooKeeperSession | None = None) -> KazooClient:
    """A connected kazoo client; the blocking connect runs in a worker thread.

    With ``tls``: mutual TLS (the server must present a certificate from ``tls.ca_file`` naming the host
    it is reached at), and every node this client creates, parents made by ``ensure_path`` or
    ``makepath`` included, gets the rackmesh ACL. Without: plaintext, and nodes open to anyone.
    ``session`` (a metric) follows the session's state from the first connection on."""
    options: dict[str, Any] = {}
    if tls is not None:
        # kazoo reads the files again on each connection, so a renewed certificate is used on the next
        # one. It also trusts the system's CAs besides ``ca``; the host name check keeps that harmless
        # for the cluster-internal names and loopback addresses ZooKeeper is reached at.
        options = {"use_ssl": True, "ca": str(tls.ca_file), "certfile": str(tls.cert_file),
                   "keyfile": str(tls.key_file), "verify_certs": True, "check_hostname": True,
                   "default_acl": rackmesh_acl()}
    client = KazooClient(hosts=hosts, timeout=session_timeout, connection_retry={"max_tries": -1}, **options)
    if session is not None:
        client.add_listener(_recorder(session))
    await asyncio.to_thread(client.start, connect_timeout)
    if session is not None:
        session.record(client.state)
    return client


def _recorder(session: ZooKeeperSession) -> Callable[[KazooState], bool]:
    def record(state: KazooState) -> bool:
        session.record(state)
        return False  # keep listening

    return record


async def stop_client(client: KazooClient) -> None:
    """Close the session (ephemeral nodes go at once) and release kazoo's threads."""
    await asyncio.to_thread(client.stop)
    await asyncio.to_thread(client.close)


# Errors that mean the session, and so every ephemeral node of ours, is gone.
SESSION_GONE: tuple[type[Exception], ...] = (SessionExpiredError, ConnectionClosedError)
