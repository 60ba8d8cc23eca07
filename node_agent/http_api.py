"""The agent's HTTP API: the shared plumbing (authentication, errors, message decoding, server limits) and
the app. It is served over TLS only.

Each concern (placement, images) contributes its own routes; this module only assembles them. Every route
but ``/healthz`` and the image files needs a client certificate from the rackmesh CA; who may call which
route is decided by ``authorization``.
"""

import asyncio
import dataclasses
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from rackmesh import messages
from rackmesh.identity.names import Identity
from rackmesh.protocol import IMAGE_FILE_ROUTE
from rackmesh.tls_site import TlsSite

if TYPE_CHECKING:
    from rackmesh_node_agent.agent import Agent

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Health probes and CDI importers carry no client certificate; these routes are read-only.
OPEN_ROUTES = frozenset({"/healthz", IMAGE_FILE_ROUTE})


@dataclasses.dataclass(frozen=True)
class ServerLimits:
    """How long one client may keep the agent waiting for its request (bodies are also bounded in size,
    by ``messages.MAX_MESSAGE_BYTES``)."""

    # From connecting (or the last answer) until the request's headers are complete; the connection is then
    # closed without an answer. It is aiohttp's keep-alive timeout, which guards a connection's first request
    # too from aiohttp 3.14.4 on. It also closes idle connections, so it is longer than the 15 s aiohttp's
    # client pools keep an idle connection (peers' PeerClient): the client always gives one up first.
    header_timeout: float = 20.0
    # Reading the body; callers give up after call_timeout (5 s) and a maximal body is 1 MiB, so a body
    # still arriving after this is someone holding the connection open: 408.
    body_timeout: float = 10.0
    # After an answer that left the body unread (401, 408, 413), how long the rest is read and dropped before
    # the connection closes (aiohttp's default is 10 s).
    lingering_time: float = 2.0


DEFAULT_LIMITS = ServerLimits()
AGENT_KEY = web.AppKey("agent", "Agent")
LIMITS_KEY = web.AppKey("limits", ServerLimits)
CALLER_KEY = web.RequestKey("caller", Identity)


class Refusal(Exception):
    """Raised by a handler to answer ``status`` with a reason and message."""

    def __init__(self, status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message, self.headers = status, reason, message, headers


def error(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """A 4xx/5xx answer peers can act on: a CamelCase reason and a human message."""
    return web.json_response({"reason": reason, "message": message}, status=status, headers=headers)


def answer(message: Any, status: int = 200) -> web.Response:
    return web.json_response(messages.encode(message), status=status)


async def read_message(request: web.Request, kind: type[T]) -> T:
    """The request body as ``kind``; a malformed body is a 400 ``BadMessage`` naming the field, a body too
    large a 413, a body too slow a 408."""
    limit = request.app[LIMITS_KEY].body_timeout
    if (request.content_length or 0) > request.client_max_size:  # refused without reading it
        raise web.HTTPRequestEntityTooLarge(max_size=request.client_max_size, actual_size=request.content_length)
    try:
        async with asyncio.timeout(limit):
            raw = await request.read()  # raises HTTPRequestEntityTooLarge past client_max_size (chunked bodies)
    except TimeoutError:
        raise Refusal(408, "RequestTimeout", f"the body did not arrive within {limit} s") from None
    except web.RequestPayloadError as exc:  # e.g. broken chunked encoding
        raise Refusal(400, "BadMessage", f"the body could not be read: {exc}") from None
    try:
        return messages.decode_bytes(kind, raw)
    except messages.MessageError as exc:
        raise Refusal(400, "BadMessage", str(exc)) from None


def agent_of(request: web.Request) -> "Agent":
    return request.app[AGENT_KEY]


def route_of(request: web.Request) -> str | None:
    """The route that matched, as declared (``/images/{file}``); None when none did."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def is_open(request: web.Request) -> bool:
    # By the route that matched, not by a path prefix, so no spelling of a path can borrow an open route.
    return route_of(request) in OPEN_ROUTES


def caller(request: web.Request) -> Identity:
    """Who is calling: the identity in the client certificate the TLS handshake verified."""
    return request[CALLER_KEY]


def caller_if_any(request: web.Request) -> Identity | None:
    """The caller's identity on an open route, where a client certificate is optional."""
    return request.get(CALLER_KEY)


def authenticated() -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Authenticates, turns refusals into their answers, and counts every answer by route and status."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await answered(request, handler)
        except Exception:  # aiohttp answers it 500
            agent_of(request).metrics.served(route_of(request), 500)
            raise
        agent_of(request).metrics.served(route_of(request), response.status)
        return response

    async def answered(request: web.Request, handler: Handler) -> web.StreamResponse:
        identity = Identity.of_peer(request.transport.get_extra_info("peercert") if request.transport else None)
        if identity is not None:
            request[CALLER_KEY] = identity
        elif not is_open(request):
            return error(401, "Unauthenticated", "this route needs a client certificate from the rackmesh CA")
        try:
            return await handler(request)
        except Refusal as refusal:
            return error(refusal.status, refusal.reason, refusal.message, refusal.headers)
        except web.HTTPException as exc:  # aiohttp's own: unknown route, wrong method, body too large
            if exc.status < 400:
                raise
            return error(exc.status, type(exc).__name__.removeprefix("HTTP"), exc.text or exc.reason)

    return middleware


async def healthz(request: web.Request) -> web.Response:
    agent = agent_of(request)
    if not agent.ready:
        return error(503, "NotReady", "the agent has not joined its racks yet")
    return web.json_response({"status": "ok", "node": agent.node_name, "joined": agent.presence is not None})


async def view(request: web.Request) -> web.Response:
    from rackmesh_node_agent import authorization  # imported here: it builds on this module

    authorization.agent_or_operator(request)
    return web.json_response(await agent_of(request).view())


def build_app(agent: "Agent", routes: Iterable[web.RouteDef], limits: ServerLimits = DEFAULT_LIMITS) -> web.Application:
    app = web.Application(middlewares=[authenticated()], client_max_size=messages.MAX_MESSAGE_BYTES)
    app[AGENT_KEY] = agent
    app[LIMITS_KEY] = limits
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/view", view)
    app.router.add_routes(list(routes))
    return app


def serve_tls(runner: web.AppRunner, host: str, port: int, ssl_context: ssl.SSLContext) -> Awaitable[None]:
    """Serve ``runner`` (an ``app_runner``) on ``host:port`` over TLS, within its app's ``ServerLimits`` (the
    handshake too, within ``header_timeout``)."""
    limits = runner.app[LIMITS_KEY]
    return TlsSite(runner, host, port, ssl_context, limits.header_timeout).start()


def app_runner(app: web.Application) -> web.AppRunner:
    """A runner that serves ``app`` within its ``ServerLimits`` (aiohttp's own waits for headers for an hour).

    Bodies are taken as sent, never decompressed: peers send plain JSON, and a compressed body could inflate
    far past the size limit (or name an encoding aiohttp refuses before any route can answer with a reason).
    """
    limits = app[LIMITS_KEY]
    return web.AppRunner(app, access_log=None, keepalive_timeout=limits.header_timeout,
                         lingering_time=limits.lingering_time, auto_decompress=False)
