"""Who may call what: each forged call comes with a valid rackmesh certificate of the wrong identity, and is
refused with a 403 that says which rule it broke; nothing it asked for happens.

Case matrix (real agents, mutual TLS, real ZooKeeper):
- an order from an agent (only the operator hands out orders)
- rack offers from an agent that leads no compute rack
- node offers and pings from an agent that is not the node's rack leader
- a commit, a deployment, a release (node and rack) and a removal from an agent that is not the
  coordinator recorded for the request: the reservation stays, no VM is written or deleted
- the operator may remove VMs (its stray sweep); it may not commit
- a deployment from the recorded coordinator for a request that does not exist, or exists with another
  namespace, uid or image, or beyond its replicas: 403 UnknownRequest, no VM written
- a leader entry for a made-up rack naming the coordinator itself: its offers (of another rack's nodes) are
  ignored, and the round places exactly the request's VMs, one portion a node
- an agent's view: read by any agent and the operator; the metrics scraper's and ZooKeeper's certificates
  (rackmesh's CA, no agent route's caller) get 403
"""

import dataclasses

import aiohttp
import pytest

from rackmesh import request_record, zk_async
from rackmesh.identity.names import Identity
from rackmesh.identity.names import Role as IdentityRole
from rackmesh.labels import Role
from rackmesh.metrics import SCRAPER
from rackmesh.peer_client import PeerClient, PeerError
from rackmesh.protocol import (
    NODE_COMMITS,
    NODE_DEPLOYMENTS,
    NODE_OFFERS,
    NODE_PINGS,
    NODE_RELEASES,
    NODE_REMOVALS,
    ORDERS,
    RACK_OFFERS,
    RACK_RELEASES,
    VIEW,
    Commit,
    Deployed,
    Deployment,
    ImageHolder,
    NodeOffer,
    OfferAsk,
    OrderAccepted,
    Ping,
    RackRelease,
    Removal,
    Removed,
    RequestKey,
    RequestRef,
)
from rackmesh.request_record import RequestRecord, Stage
from rackmesh.zk_layout import MemberRecord
from tests.agent.test_handshake import leader_of, settled_round, stored_order, topology, vms_of
from tests.support.agent_tls import Callers, agent_name

pytestmark = pytest.mark.zookeeper


async def refused(client: PeerClient, peer, route: str, message, answer=None) -> str:
    """The reason of the 403 ``client`` gets for ``message``; fails if the call is not refused so."""
    with pytest.raises(PeerError) as refusal:
        await client.post(peer, route, message, answer)
    assert refusal.value.status == 403, refusal.value
    return f"{refusal.value.reason}: {refusal.value.message}"


def follower_in(mesh, rack: str) -> str:
    return next(name for name, agent in mesh.agents.items()
                if agent.node.rack == rack and not agent.leads(Role.COMPUTE))


async def test_only_the_operator_orders_and_only_compute_leaders_gather_offers(mesh):
    mesh = await mesh(topology())
    web = await stored_order(mesh, "web", 2)
    coordinator, intruder = leader_of(mesh), follower_in(mesh, "compute-0")
    as_intruder = await mesh.as_agent(intruder)

    reason = await refused(as_intruder, mesh.peer(coordinator), ORDERS, web, OrderAccepted)
    assert reason == f"Forbidden: {intruder}.agent.rackmesh may not call this route: only the operator hands out orders"
    assert "leader of a compute rack" in await refused(as_intruder, mesh.peer(coordinator), RACK_OFFERS,
                                                       OfferAsk(web, 2, 30))
    assert not mesh.agent(coordinator).coordinator.busy(web.request.uid)
    assert await request_record.read(mesh.zk, mesh.layout, web.request.uid) is None


async def test_node_offers_and_pings_come_only_from_the_nodes_rack_leader(mesh):
    mesh = await mesh(topology())
    web = await stored_order(mesh, "web", 2)
    target = follower_in(mesh, "compute-0")
    other_leader = await mesh.as_agent(leader_of(mesh, "compute-1"))  # leads a rack, but not this one

    assert "leader of compute rack compute-0" in await refused(other_leader, mesh.peer(target), NODE_OFFERS,
                                                               OfferAsk(web, 2, 30), NodeOffer)
    assert "leader of compute rack compute-0" in await refused(other_leader, mesh.peer(target), NODE_PINGS, Ping())
    assert mesh.agent(target).capacity.reservations.get(web.request.uid) is None
    operator_asks = await refused(mesh.peers, mesh.peer(target), NODE_OFFERS, OfferAsk(web, 2, 30))
    assert "only the leader of compute rack" in operator_asks


async def test_commits_releases_and_removals_come_only_from_the_recorded_coordinator(mesh):
    mesh = await mesh(topology())
    web = await stored_order(mesh, "web", 2)
    target, rack_leader = follower_in(mesh, "compute-0"), leader_of(mesh, "compute-0")
    coordinator = leader_of(mesh, "compute-1")
    await request_record.write(mesh.zk, mesh.layout, RequestRecord(web, coordinator, Stage.PLACING), None)
    holders = [ImageHolder("s-0-0", "storage-0", mesh.endpoint("s-0-0") + "/images/lob123-rhel-6.0.img")]
    as_leader = await mesh.as_agent(rack_leader)
    offered = await as_leader.post(mesh.peer(target), NODE_OFFERS, OfferAsk(web, 2, 300), NodeOffer)
    assert offered.count == 2

    # The rack leader asked for the offer, but only the coordinator the record names may commit, deploy, or
    # release through the rack; an agent elsewhere may do none of it, nor delete the VMs.
    intruder = await mesh.as_agent(follower_in(mesh, "compute-1"))
    for client in (as_leader, intruder):
        assert f"coordinator recorded for request {web.request.uid}" in await refused(
            client, mesh.peer(target), NODE_COMMITS, Commit(web, [0, 1]))
        await refused(client, mesh.peer(target), NODE_DEPLOYMENTS, Deployment(web, [0, 1], holders), Deployed)
        await refused(client, mesh.peer(rack_leader), RACK_RELEASES, RackRelease(web.request.uid, []))
    await refused(intruder, mesh.peer(target), NODE_RELEASES, RequestKey(web.request.uid))
    await refused(intruder, mesh.peer(target), NODE_REMOVALS, Removal(web.request, [0, 1]))
    await refused(mesh.peers, mesh.peer(target), NODE_COMMITS, Commit(web, [0, 1]))  # nor the operator
    held = mesh.agent(target).capacity.reservations.get(web.request.uid)
    assert held is not None and held.offered == 2 and not held.committed

    # The rack leader may release what it asked for (it forwards the coordinator's rack releases).
    await as_leader.post(mesh.peer(target), NODE_RELEASES, RequestKey(web.request.uid))
    assert mesh.agent(target).capacity.reservations.get(web.request.uid) is None


async def test_no_vm_is_written_for_a_request_that_does_not_exist_as_ordered(mesh):
    mesh = await mesh(topology())
    web = await stored_order(mesh, "web", 2)
    coordinator = leader_of(mesh)
    await settled_round(mesh, coordinator, web)
    target = next(name for name in mesh.agents if name.startswith("c-") and name != coordinator)
    holders = [ImageHolder("s-0-0", "storage-0", mesh.endpoint("s-0-0") + "/images/lob123-rhel-6.0.img")]
    forgeries = {
        "another namespace": dataclasses.replace(web, request=RequestRef(web.request.uid, "victim", "web")),
        "a made-up uid": dataclasses.replace(web, request=RequestRef("0000-made-up", "default", "web")),
        "a made-up request": dataclasses.replace(web, request=RequestRef("0000-made-up", "default", "evil")),
        "another image": dataclasses.replace(web, image="evil-image"),
        "more replicas": dataclasses.replace(web, replicas=5),
    }
    as_coordinator = await mesh.as_agent(coordinator)
    for what, forged in forgeries.items():
        await request_record.write(mesh.zk, mesh.layout, RequestRecord(forged, coordinator, Stage.DEPLOYING),
                                   None if forged.request.uid != web.request.uid else
                                   (await request_record.read(mesh.zk, mesh.layout, web.request.uid))[1])
        reason = await refused(as_coordinator, mesh.peer(target), NODE_DEPLOYMENTS,
                               Deployment(forged, [2, 3, 4], holders), Deployed)
        assert reason.startswith("UnknownRequest: no VMs are written for this order"), (what, reason)
        if forged.request.uid != web.request.uid:
            await request_record.delete(mesh.zk, mesh.layout, forged.request.uid)
    assert sorted(vm["metadata"]["name"] for vm in await vms_of(mesh, "web")) == ["web-0000", "web-0001"]
    assert await vms_of(mesh, "evil") == []


async def test_the_operator_may_remove_vms(mesh):
    mesh = await mesh(topology())
    web = await stored_order(mesh, "web", 2)
    coordinator = leader_of(mesh)
    record, _ = await settled_round(mesh, coordinator, web)
    [portion, *_] = record.portions
    removed = await mesh.peers.post(portion, NODE_REMOVALS, Removal(web.request, portion.indices), Removed)
    assert removed.deleted == portion.indices


async def test_a_made_up_rack_naming_the_coordinator_itself_changes_nothing(mesh):
    """Any agent may write a leader entry: one for a rack that does not exist, naming the coordinator (so
    its certificate fits, and the call is even in-process), brings only offers of another rack's nodes."""
    mesh = await mesh(topology())
    coordinator = leader_of(mesh)
    fake = MemberRecord(coordinator, "rack-evil", Role.COMPUTE, mesh.endpoint(coordinator))
    await zk_async.wait(mesh.zk.create_async(mesh.layout.leader(Role.COMPUTE, "rack-evil"), fake.encode(),
                                             ephemeral=True, makepath=True))
    web = await stored_order(mesh, "web", 6)
    record, _ = await settled_round(mesh, coordinator, web)
    assert record.stage == Stage.SETTLED and sorted(record.indices()) == list(range(6))
    assert {portion.rack for portion in record.portions} <= {"compute-0", "compute-1"}
    assert len({portion.node for portion in record.portions}) == len(record.portions)  # one portion a node
    assert sorted(vm["metadata"]["name"] for vm in await vms_of(mesh, "web")) == [f"web-000{i}" for i in range(6)]


async def test_only_agents_and_the_operator_read_an_agents_view(mesh):
    mesh = await mesh(topology())
    callers, node = Callers(mesh.pki), "c-0-0"
    answers = {}
    for caller in (Identity.agent("c-1-0"), Identity(IdentityRole.OPERATOR), SCRAPER, Identity(IdentityRole.ZOOKEEPER)):
        async with aiohttp.ClientSession() as session, session.get(
                mesh.endpoint(node) + VIEW, ssl=callers.context(caller), server_hostname=agent_name(node)) as answer:
            answers[caller] = (answer.status, await answer.json())
    for reader in (Identity.agent("c-1-0"), Identity(IdentityRole.OPERATOR)):
        assert answers[reader][0] == 200 and answers[reader][1]["node"] == node, answers[reader]
    for outsider in (SCRAPER, Identity(IdentityRole.ZOOKEEPER)):
        assert answers[outsider] == (403, {"reason": "Forbidden", "message": f"{outsider} may not call this route: "
                                                                             "only agents and the operator read an "
                                                                             "agent's view"})
