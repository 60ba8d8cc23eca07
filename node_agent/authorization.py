"""Who may call which route of an agent: each caller is the identity in its client certificate, and each
route allows only the callers the protocol has for it (``rackmesh/protocol.py``):

    /v1/orders                       the operator
    /v1/rack/offers                  the current compute leader of some rack (a coordinator)
    /v1/rack/releases                the coordinator recorded for the request in ZooKeeper
    /v1/node/offers, /v1/node/pings  the current leader of this node's compute rack
    /v1/node/commits, deployments    the coordinator recorded for the request
    /v1/node/releases                the coordinator recorded for the request, or this node's rack leader
    /v1/node/removals                the coordinator recorded for the request, or the operator
    /v1/rack/pings, image lookups    any agent
    /v1/view                         any agent, or the operator (``rackmesh status``)
    GET /images/<image>.img          any agent, or a namespace's image credential (basic auth; CDI)

A refusal is a 403 with a reason saying which rule the caller failed. Leadership and the record are read
through the agent's ZooKeeper caches; a check that fails on the cache is tried once on a fresh read, since
a leader elected a moment ago may call before this agent's watch has told it.
"""

from aiohttp import web

from rackmesh import request_record
from rackmesh.identity.names import Identity, Role
from rackmesh.image_access import REALM, basic_credentials
from rackmesh.labels import Role as NodeRole
from rackmesh_node_agent.http_api import Refusal, agent_of, caller, caller_if_any


def _refuse(who: Identity, rule: str) -> Refusal:
    return Refusal(403, "Forbidden", f"{who} may not call this route: {rule}")


def operator(request: web.Request) -> None:
    who = caller(request)
    if who.role is not Role.OPERATOR:
        raise _refuse(who, "only the operator hands out orders")


def agent_or_operator(request: web.Request) -> None:
    """Not the scraper, nor ZooKeeper's certificate: a view names requests and the room held for them."""
    who = caller(request)
    if who.role not in (Role.AGENT, Role.OPERATOR):
        raise _refuse(who, "only agents and the operator read an agent's view")


def any_agent(request: web.Request) -> Identity:
    who = caller(request)
    if who.role is not Role.AGENT:
        raise _refuse(who, "only agents call it")
    return who


async def image_reader(request: web.Request) -> None:
    """An agent (its certificate) or an importer with a namespace's image credential (401 otherwise)."""
    who = caller_if_any(request)
    if who is not None and who.role is Role.AGENT:
        return
    credentials = basic_credentials(request.headers.get("Authorization", ""))
    if credentials is not None and await agent_of(request).image_access.allows(*credentials):
        return
    raise Refusal(401, "Unauthenticated", "image files need a namespace's image credential (basic auth, the "
                                          "Secret rackmesh-image-access) or an agent's certificate",
                  {"WWW-Authenticate": f'Basic realm="{REALM}"'})


async def compute_leader(request: web.Request) -> None:
    who, agent = any_agent(request), agent_of(request)
    for fresh in (False, True):
        if any(leader.node == who.node for leader in await agent.directory.leaders(NodeRole.COMPUTE, fresh=fresh)):
            return
    raise _refuse(who, "only the current leader of a compute rack coordinates requests")


async def rack_leader(request: web.Request) -> None:
    if not await _is_rack_leader(request):
        raise _refuse(caller(request), f"only the leader of compute rack {agent_of(request).node.rack} asks this "
                                       f"node")


async def coordinator(request: web.Request, uid: str, *, or_rack_leader: bool = False,
                      or_operator: bool = False) -> None:
    """The caller is the coordinator the request's record names (or one of the others allowed)."""
    who = caller(request)
    if or_operator and who.role is Role.OPERATOR:
        return
    if who.role is Role.AGENT:
        # The rack leader first: it is in the Directory's cache, where the coordinator is a ZooKeeper read
        # (and a rack leader's releases go to every member of its rack).
        if or_rack_leader and await _is_rack_leader(request):
            return
        if await request_record.coordinator_of(agent_of(request).zk, agent_of(request).layout, uid) == who.node:
            return
    raise _refuse(who, f"only the coordinator recorded for request {uid} in ZooKeeper"
                       + (" or this node's rack leader" if or_rack_leader else "")
                       + (" or the operator" if or_operator else "") + " may")


async def _is_rack_leader(request: web.Request) -> bool:
    who, agent = caller(request), agent_of(request)
    if who.role is not Role.AGENT:
        return False
    for fresh in (False, True):
        leader = await agent.directory.leader(NodeRole.COMPUTE, agent.node.rack, fresh=fresh)
        if leader is not None and leader.node == who.node:
            return True
    return False
