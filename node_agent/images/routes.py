"""HTTP routes of the image concern (filled in by the images work)."""

from aiohttp import web


def routes() -> list[web.RouteDef]:
    return []
