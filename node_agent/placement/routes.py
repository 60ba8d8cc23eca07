"""HTTP routes of the capacity handshake (see ``rackmesh/protocol.py`` for who calls which, and
``authorization`` for who may)."""

from typing import TYPE_CHECKING

from aiohttp import web

from rackmesh.labels import MAX_LABEL_VALUE, REQUEST_LABEL, Role
from rackmesh.protocol import (
    NODE_COMMITS,
    NODE_DEPLOYMENTS,
    NODE_OFFERS,
    NODE_PINGS,
    NODE_RELEASES,
    NODE_REMOVALS,
    ORDERS,
    RACK_OFFERS,
    RACK_PINGS,
    RACK_RELEASES,
    Commit,
    Deployment,
    OfferAsk,
    Order,
    Ping,
    RackRelease,
    Removal,
    RequestKey,
)
from rackmesh_node_agent import authorization
from rackmesh_node_agent.http_api import Refusal, agent_of, answer, read_message
from rackmesh_node_agent.placement.rack_leader import rack_offers, rack_release
from rackmesh_node_agent.placement.reach import pong, rack_pings

if TYPE_CHECKING:
    from rackmesh_node_agent.agent import Agent


def _compute_agent(request: web.Request) -> "Agent":
    agent = agent_of(request)
    if not agent.has_role(Role.COMPUTE):
        raise Refusal(409, "NotCompute", f"{agent.node_name} is not a compute node")
    return agent


def _writable(order: Order) -> Order:
    """Refuse (422 InvalidName) an order whose VMs could not carry the request's name in their label: the
    API would refuse each VM, and the agent would go on retrying the writes until ``commit_ttl``."""
    if len(order.request.name) > MAX_LABEL_VALUE:
        raise Refusal(422, "InvalidName", f"the request's name is {len(order.request.name)} characters long; "
                                          f"its VMs carry it in the label {REQUEST_LABEL}, which allows "
                                          f"{MAX_LABEL_VALUE}")
    return order


async def order(request: web.Request) -> web.Response:
    authorization.operator(request)
    accepted = _compute_agent(request).coordinator.accept(_writable(await read_message(request, Order)))
    return answer(accepted, status=202)


async def rack_offer(request: web.Request) -> web.Response:
    agent = _compute_agent(request)
    await authorization.compute_leader(request)
    ask = await read_message(request, OfferAsk)
    _writable(ask.order)
    return answer(await rack_offers(agent, ask))


async def rack_releases(request: web.Request) -> web.Response:
    agent = _compute_agent(request)
    release = await read_message(request, RackRelease)
    await authorization.coordinator(request, release.uid)
    return answer(await rack_release(agent, release))


async def node_offer(request: web.Request) -> web.Response:
    agent = _compute_agent(request)
    await authorization.rack_leader(request)
    ask = await read_message(request, OfferAsk)
    _writable(ask.order)
    return answer(await agent.node_side.offer(ask))


async def node_commit(request: web.Request) -> web.Response:
    agent = _compute_agent(request)
    commit = await read_message(request, Commit)
    await authorization.coordinator(request, commit.order.request.uid)
    _writable(commit.order)
    return answer(await agent.node_side.commit(commit))


async def node_release(request: web.Request) -> web.Response:
    agent = _compute_agent(request)
    key = await read_message(request, RequestKey)
    await authorization.coordinator(request, key.uid, or_rack_leader=True)
    await agent.node_side.release(key)
    return web.json_response({"status": "released"})


async def node_deployment(request: web.Request) -> web.Response:
    agent = _compute_agent(request)
    deployment = await read_message(request, Deployment)
    await authorization.coordinator(request, deployment.order.request.uid)
    _writable(deployment.order)
    deployed = await agent.node_side.deploy(deployment)
    return answer(deployed, status=200 if deployed.done else 202)


async def node_removal(request: web.Request) -> web.Response:
    agent = _compute_agent(request)
    removal = await read_message(request, Removal)
    await authorization.coordinator(request, removal.request.uid, or_operator=True)
    return answer(await agent.node_side.remove(removal))


async def rack_ping(request: web.Request) -> web.Response:
    agent = _compute_agent(request)
    authorization.any_agent(request)
    await read_message(request, Ping)
    return answer(await rack_pings(agent))


async def node_ping(request: web.Request) -> web.Response:
    agent = _compute_agent(request)
    await authorization.rack_leader(request)
    await read_message(request, Ping)
    return answer(pong(agent))


def routes() -> list[web.RouteDef]:
    return [
        web.post(ORDERS, order),
        web.post(RACK_OFFERS, rack_offer),
        web.post(NODE_OFFERS, node_offer),
        web.post(NODE_COMMITS, node_commit),
        web.post(RACK_RELEASES, rack_releases),
        web.post(NODE_RELEASES, node_release),
        web.post(NODE_DEPLOYMENTS, node_deployment),
        web.post(NODE_REMOVALS, node_removal),
        web.post(RACK_PINGS, rack_ping),
        web.post(NODE_PINGS, node_ping),
    ]
