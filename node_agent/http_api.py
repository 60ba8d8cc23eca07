"""The agent's HTTP API: health for probes, and the agent's view for peers and operators.

Every route but ``/healthz`` requires the shared agent token when one is configured.
"""

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from rackmesh_node_agent.agent import Agent

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AGENT_KEY = web.AppKey("agent", "Agent")
OPEN_PATHS = frozenset({"/healthz"})


def error(status: int, reason: str, message: str) -> web.Response:
    """A 4xx/5xx answer peers can act on: a CamelCase reason and a human message."""
    return web.json_response({"reason": reason, "message": message}, status=status)


def token_auth(token: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token and request.path not in OPEN_PATHS:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return error(401, "Unauthorized", "missing or wrong agent token (Authorization: Bearer ...)")
        return await handler(request)

    return middleware


async def healthz(request: web.Request) -> web.Response:
    agent = request.app[AGENT_KEY]
    if not agent.ready:
        return error(503, "NotReady", "the agent has not joined its racks yet")
    return web.json_response({"status": "ok", "node": agent.identity.name if agent.identity else None})


async def view(request: web.Request) -> web.Response:
    return web.json_response(await request.app[AGENT_KEY].view())


def build_app(agent: "Agent", token: str) -> web.Application:
    app = web.Application(middlewares=[token_auth(token)])
    app[AGENT_KEY] = agent
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/view", view)
    return app
