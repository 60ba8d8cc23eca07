"""Calls to agents: one persistent HTTP session over mutual TLS, a timeout on every call, typed answers.

Each call names the node it is meant for, and the TLS handshake checks that the peer's certificate names
that node (``<node>.agent.rackmesh``): an endpoint read from ZooKeeper is only trusted as far as the
certificate behind it.
"""

from collections import Counter
from typing import Any, Protocol, TypeVar

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from prometheus_client import CollectorRegistry

from rackmesh import messages
from rackmesh.http_session import SessionClient
from rackmesh.identity.credentials import Credentials
from rackmesh.identity.names import Identity
from rackmesh.metrics import PeerCalls
from rackmesh.protocol import IMAGE_FILE_ROUTE

T = TypeVar("T")


class Peer(Protocol):
    """Anything that says which node an agent is and where it listens (MemberRecord, Portion, ...)."""

    @property
    def node(self) -> str: ...

    @property
    def endpoint(self) -> str: ...


class PeerError(Exception):
    """A peer refused (4xx/5xx with its reason) or could not be reached (status 0, ``Unreachable``)."""

    def __init__(self, endpoint: str, status: int, reason: str, message: str) -> None:
        super().__init__(f"{endpoint}: {status} {reason}: {message}")
        self.endpoint = endpoint
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def unreachable(self) -> bool:
        return self.status == 0 or self.status >= 500


class _CountingConnector(aiohttp.TCPConnector):
    """Counts the connections it opens. (aiohttp's request tracing would too, at a cost on every request.)"""

    opened = 0

    async def _create_connection(self, req: ClientRequest, traces: list[Any],
                                 timeout: aiohttp.ClientTimeout) -> ResponseHandler:
        self.opened += 1
        return await super()._create_connection(req, traces, timeout)


class PeerClient(SessionClient):
    """Pooled, keep-alive connections to every peer; counts what it sends (``sent``, by route) and the
    connections it had to open (``connections_opened``), so reuse can be measured. Each call is counted by
    route and answer in ``calls``, the component's metric (a client of its own counts into a registry of its
    own)."""

    def __init__(self, credentials: Credentials, timeout: float, calls: PeerCalls | None = None) -> None:
        self.timeout = timeout
        self.sent: Counter[str] = Counter()
        self.calls = calls or PeerCalls(CollectorRegistry())
        # A coordinator of a 10,000-VM request talks to every agent with a portion at once.
        self._connector = _CountingConnector(limit=1024, ssl=credentials.client_context())
        super().__init__(aiohttp.ClientSession(connector=self._connector))

    @property
    def connections_opened(self) -> int:
        return self._connector.opened

    async def answers(self, node: str, url: str, timeout: float) -> bool:
        """Whether ``url`` on ``node`` serves its first byte now (an image copy)."""
        status = None
        try:
            async with self._session.get(url, headers={"Range": "bytes=0-0"}, server_hostname=_name(node),
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                await response.read()
                status = response.status
                return status in (200, 206)
        except (aiohttp.ClientError, TimeoutError):
            return False
        finally:
            self.calls.record(IMAGE_FILE_ROUTE, status)

    async def post(self, peer: Peer, route: str, message: Any, answer: type[T] | None = None,
                   timeout: float | None = None) -> T | None:
        """POST ``message`` to ``peer``'s ``route``; decode the answer as ``answer`` (None: ignore the body)."""
        limit = aiohttp.ClientTimeout(total=timeout or self.timeout)
        endpoint = peer.endpoint
        self.sent[route] += 1
        status = None
        try:
            async with self._session.post(endpoint + route, json=messages.encode(message), timeout=limit,
                                          server_hostname=_name(peer.node)) as response:
                body = await response.read()
                status = response.status
                if status >= 400:
                    raise refusal(endpoint, status, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerError(endpoint, 0, "Unreachable", f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        finally:
            self.calls.record(route, status)
        if answer is None:
            return None
        try:
            return messages.decode_bytes(answer, body)
        except messages.MessageError as exc:
            raise PeerError(endpoint, response.status, "BadAnswer", str(exc)) from None


def _name(node: str) -> str:
    return Identity.agent(node).dns_name


def refusal(endpoint: str, status: int, body: bytes) -> PeerError:
    """The ``PeerError`` for a 4xx/5xx answer, with the reason and message of its JSON body."""
    try:
        payload = messages.decode_bytes(dict[str, str], body)
    except messages.MessageError:
        payload = {}
    return PeerError(endpoint, status, payload.get("reason", "Error"), payload.get("message", body[:200].decode(
        errors="replace")))
