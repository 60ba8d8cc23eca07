"""HTTP routes of the placement concern (in progress)."""

from aiohttp import web


def routes() -> list[web.RouteDef]:
    return []
