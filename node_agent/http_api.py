"""The agent's HTTP API: the shared plumbing (auth, errors, message decoding) and the app.

Each concern (placement, images) contributes its own routes; this module only assembles them.
Every route but ``/healthz`` and the image files requires the shared agent token when one is set.
"""

import hmac
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from rackmesh import messages
from rackmesh.protocol import IMAGE_FILES

if TYPE_CHECKING:
    from rackmesh_node_agent.agent import Agent

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AGENT_KEY = web.AppKey("agent", "Agent")


def is_open(path: str) -> bool:
    # Image files are read by CDI importers, which carry no agent token; they are read-only.
    return path == "/healthz" or path.startswith(IMAGE_FILES + "/")


class Refusal(Exception):
    """Raised by a handler to answer ``status`` with a reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


def error(status: int, reason: str, message: str) -> web.Response:
    """A 4xx/5xx answer peers can act on: a CamelCase reason and a human message."""
    return web.json_response({"reason": reason, "message": message}, status=status)


def answer(message: Any, status: int = 200) -> web.Response:
    return web.json_response(messages.encode(message), status=status)


async def read_message(request: web.Request, kind: type[T]) -> T:
    """The request body as ``kind``; a malformed body is a 400 ``BadMessage`` naming the field."""
    try:
        return messages.decode_bytes(kind, await request.read())
    except messages.MessageError as exc:
        raise Refusal(400, "BadMessage", str(exc)) from None


def agent_of(request: web.Request) -> "Agent":
    return request.app[AGENT_KEY]


def token_auth(token: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token and not is_open(request.path):
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return error(401, "Unauthorized", "missing or wrong agent token (Authorization: Bearer ...)")
        try:
            return await handler(request)
        except Refusal as refusal:
            return error(refusal.status, refusal.reason, refusal.message)

    return middleware


async def healthz(request: web.Request) -> web.Response:
    agent = agent_of(request)
    if not agent.ready:
        return error(503, "NotReady", "the agent has not joined its racks yet")
    return web.json_response({"status": "ok", "node": agent.node_name, "joined": agent.presence is not None})


async def view(request: web.Request) -> web.Response:
    return web.json_response(await agent_of(request).view())


def build_app(agent: "Agent", token: str, routes: Iterable[web.RouteDef]) -> web.Application:
    app = web.Application(middlewares=[token_auth(token)])
    app[AGENT_KEY] = agent
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/view", view)
    app.router.add_routes(list(routes))
    return app
