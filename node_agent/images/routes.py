"""HTTP routes of the image concern: locating holders (see ``rackmesh/protocol.py``) and serving image files."""

from typing import TYPE_CHECKING

from aiohttp import web

from rackmesh.labels import Role
from rackmesh.messages import shown
from rackmesh.protocol import (
    IMAGE_LOCATIONS,
    MAX_IMAGE_NAME,
    NODE_IMAGES,
    RACK_IMAGES,
    LocateAsk,
    image_file_name,
    is_image_name,
)
from rackmesh_node_agent import authorization
from rackmesh_node_agent.http_api import IMAGE_FILE_ROUTE, Refusal, agent_of, answer, error, read_message
from rackmesh_node_agent.images.locate import locate, node_holders, rack_holders

if TYPE_CHECKING:
    from rackmesh_node_agent.agent import Agent

IMAGE_SUFFIX = ".img"


def _storage_agent(request: web.Request) -> "Agent":
    agent = agent_of(request)
    if not agent.has_role(Role.STORAGE):
        raise Refusal(409, "NotStorage", f"{agent.node_name} is not a storage node; image lookups go to the "
                                         "storage leaders listed in ZooKeeper")
    return agent


async def node_images(request: web.Request) -> web.Response:
    agent = _storage_agent(request)
    authorization.any_agent(request)
    return answer(await node_holders(agent, await read_message(request, LocateAsk)))


async def rack_images(request: web.Request) -> web.Response:
    agent = _storage_agent(request)
    authorization.any_agent(request)
    return answer(await rack_holders(agent, await read_message(request, LocateAsk)))


async def image_locations(request: web.Request) -> web.Response:
    agent = _storage_agent(request)
    authorization.any_agent(request)
    return answer(await locate(agent, await read_message(request, LocateAsk)))


async def image_file(request: web.Request) -> web.StreamResponse:
    """The image's bytes; ``web.FileResponse`` answers Range requests with 206 (CDI importers resume with them)."""
    agent, name = agent_of(request), request.match_info["file"]
    image = name.removesuffix(IMAGE_SUFFIX)
    # Refused before the filesystem is touched: no other file of the directory (or outside it) can be named.
    if image_file_name(image) != name or not is_image_name(image):
        return error(404, "ImageNotFound", f"{shown(name)} is not an image file (<image>{IMAGE_SUFFIX}, with an "
                                           f"image name of at most {MAX_IMAGE_NAME} of a-z0-9-.)")
    await authorization.image_reader(request)
    path = agent.images.path(image) if agent.has_role(Role.STORAGE) else None
    if path is None:
        return error(404, "ImageNotFound", f"{agent.node_name} does not hold {name}")
    return web.FileResponse(path)


def routes() -> list[web.RouteDef]:
    return [
        web.post(NODE_IMAGES, node_images),
        web.post(RACK_IMAGES, rack_images),
        web.post(IMAGE_LOCATIONS, image_locations),
        web.get(IMAGE_FILE_ROUTE, image_file),
    ]
