"""Calls to agents: one persistent HTTP session, a timeout on every call, typed answers."""

from collections import Counter
from typing import Any, TypeVar

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest

from rackmesh import messages
from rackmesh.http_session import SessionClient

T = TypeVar("T")


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
    connections it had to open (``connections_opened``), so reuse can be measured."""

    def __init__(self, token: str, timeout: float) -> None:
        self.timeout = timeout
        self.sent: Counter[str] = Counter()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # A coordinator of a 10,000-VM request talks to every agent with a portion at once.
        self._connector = _CountingConnector(limit=1024)
        super().__init__(aiohttp.ClientSession(headers=headers, connector=self._connector))

    @property
    def connections_opened(self) -> int:
        return self._connector.opened

    async def answers(self, url: str, timeout: float) -> bool:
        """Whether ``url`` serves its first byte now (an image copy: the one GET that needs no token)."""
        try:
            async with self._session.get(url, headers={"Range": "bytes=0-0"},
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                await response.read()
                return response.status in (200, 206)
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def post(self, endpoint: str, route: str, message: Any, answer: type[T] | None = None,
                   timeout: float | None = None) -> T | None:
        """POST ``message`` to ``endpoint + route``; decode the answer as ``answer`` (None: ignore the body)."""
        limit = aiohttp.ClientTimeout(total=timeout or self.timeout)
        self.sent[route] += 1
        try:
            async with self._session.post(endpoint + route, json=messages.encode(message), timeout=limit) as response:
                body = await response.read()
                if response.status >= 400:
                    raise _refusal(endpoint, response.status, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerError(endpoint, 0, "Unreachable", f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        if answer is None:
            return None
        try:
            return messages.decode_bytes(answer, body)
        except messages.MessageError as exc:
            raise PeerError(endpoint, response.status, "BadAnswer", str(exc)) from None


def _refusal(endpoint: str, status: int, body: bytes) -> PeerError:
    try:
        payload = messages.decode_bytes(dict[str, str], body)
    except messages.MessageError:
        payload = {}
    return PeerError(endpoint, status, payload.get("reason", "Error"), payload.get("message", body[:200].decode(
        errors="replace")))
