"""The capacity handshake between real agents (real HTTP, real ZooKeeper), without the operator.

Case matrix:
- an order to a compute leader: offers from every node, portions spread over racks, recorded in
  ZooKeeper, VMs written by the agents that committed, reservations gone afterwards
- the same order again (a retried hand-off): no second copy of any VM
- more than the racks can hold: Failed / InsufficientCapacity in the record, every reservation released
- an order to an agent that does not lead: 409 NotLeader; a malformed order: 400 BadMessage naming the field
- an offer holds capacity for the next offer until released, and expires by itself
"""

import asyncio

import pytest

from rackmesh import request_record
from rackmesh.kube_client import DEPLOYMENT_REQUESTS, VIRTUAL_MACHINES
from rackmesh.labels import Role
from rackmesh.peer_client import PeerError
from rackmesh.protocol import (
    NODE_OFFERS,
    NODE_RELEASES,
    ORDERS,
    NodeOffer,
    OfferAsk,
    Order,
    OrderAccepted,
    RequestKey,
    RequestRef,
)
from rackmesh.request_record import Stage
from tests.support.builders import make_request, make_topology
from tests.support.waiting import async_eventually

pytestmark = pytest.mark.zookeeper


def topology():
    return make_topology().compute_racks(2, nodes=2, cpu=8, memory="32Gi").storage_racks(2, nodes=1)


def order(uid: str, replicas: int, instancetype: str = "u1.large") -> Order:
    return Order(RequestRef(uid, "default", f"req-{uid}"), replicas, instancetype, "lob123-rhel-6.0")


async def stored_order(mesh, name: str, replicas: int) -> Order:
    """An order for a DeploymentRequest that exists (the VMs' owner: without it, GC removes them)."""
    created = await mesh.kube.create(DEPLOYMENT_REQUESTS, make_request(name).replicas(replicas)
                                     .instancetype("u1.large").obj(), "default")
    return Order(RequestRef(created["metadata"]["uid"], "default", name), replicas, "u1.large", "lob123-rhel-6.0")


def leader_of(mesh, rack: str = "compute-0") -> str:
    [leader] = [name for name, agent in mesh.agents.items()
                if agent.node.rack == rack and agent.leads(Role.COMPUTE)]
    return leader


async def record_in(mesh, uid: str, *stages: Stage):
    async def reached():
        found = await request_record.read(mesh.zk, mesh.layout, uid)
        return found[0] if found and found[0].stage in stages else None

    return await async_eventually(reached, timeout=20, what=f"record of {uid} in {stages}")


async def vms_of(mesh, name: str) -> list[dict]:
    return await mesh.kube.list(VIRTUAL_MACHINES, "default", label_selector=f"rackmesh.io/request={name}")


async def test_an_order_is_offered_decided_recorded_and_written_once(mesh):
    mesh = await mesh(topology())
    coordinator = leader_of(mesh)
    web = await stored_order(mesh, "web", 10)
    accepted = await mesh.peers.post(mesh.endpoint(coordinator), ORDERS, web, OrderAccepted)
    assert accepted == OrderAccepted(coordinator=coordinator)

    record = await record_in(mesh, web.request.uid, Stage.DEPLOYING, Stage.FAILED)
    assert record.stage == Stage.DEPLOYING and record.coordinator == coordinator
    assert sum(p.count for p in record.portions) == 10
    assert {p.rack for p in record.portions} == {"compute-0", "compute-1"}
    assert all(p.count <= 4 for p in record.portions)  # 8 cpu / 2 per u1.large
    assert all(len({h.rack for h in p.holders[:2]}) == 2 for p in record.portions)
    assert {"handshake", "imageLookup"} <= set(record.timings)

    vms = await async_eventually(lambda: _all_written(mesh, "web", 10), timeout=20, what="10 VMs")
    by_node = {p.node: p.count for p in record.portions}
    assert {n: sum(vm["metadata"]["labels"]["rackmesh.io/node"] == n for vm in vms) for n in by_node} == by_node
    await async_eventually(lambda: _no_reservations(mesh), what="reservations dropped once the VMs exist")

    await mesh.peers.post(mesh.endpoint(coordinator), ORDERS, web, OrderAccepted)
    await async_eventually(lambda: asyncio.sleep(0, not mesh.agent(coordinator).coordinator.busy(web.request.uid)),
                           what="the repeated order run to its end")
    await async_eventually(lambda: _no_reservations(mesh), what="the repeated deployments finished")
    assert len(await vms_of(mesh, "web")) == 10


async def test_more_than_the_racks_hold_fails_and_releases_every_reservation(mesh):
    mesh = await mesh(topology())
    coordinator = leader_of(mesh, "compute-1")
    await mesh.peers.post(mesh.endpoint(coordinator), ORDERS, order("u-2", 17), OrderAccepted)
    record = await record_in(mesh, "u-2", Stage.FAILED, Stage.DEPLOYING)
    assert (record.stage, record.reason) == (Stage.FAILED, "InsufficientCapacity")
    assert "17 x u1.large requested" in record.message and "can host only 16" in record.message
    assert await vms_of(mesh, "req-u-2") == []
    await async_eventually(lambda: _no_reservations(mesh), what="every offer released")


async def test_orders_to_a_non_leader_or_malformed_are_refused(mesh):
    mesh = await mesh(topology())
    follower = next(name for name, agent in mesh.agents.items()
                    if Role.COMPUTE in agent.node.roles and not agent.leads(Role.COMPUTE))
    with pytest.raises(PeerError) as refused:
        await mesh.peers.post(mesh.endpoint(follower), ORDERS, order("u-3", 1), OrderAccepted)
    assert (refused.value.status, refused.value.reason) == (409, "NotLeader")
    with pytest.raises(PeerError) as malformed:
        await mesh.peers.post(mesh.endpoint(leader_of(mesh)), ORDERS, {"replicas": 1}, OrderAccepted)
    assert (malformed.value.status, malformed.value.reason) == (400, "BadMessage")
    assert "Order.request: required" in malformed.value.message


async def test_an_offer_holds_capacity_until_released_or_expired(mesh):
    mesh = await mesh(topology())
    node = mesh.endpoint("c-0-0")
    first = await mesh.peers.post(node, NODE_OFFERS, OfferAsk(order("u-4", 3), 30), NodeOffer)
    second = await mesh.peers.post(node, NODE_OFFERS, OfferAsk(order("u-5", 3), 0.5), NodeOffer)
    assert (first.count, second.count) == (3, 1)  # 4 fit; the first offer holds 3 of them
    await mesh.peers.post(node, NODE_RELEASES, RequestKey("u-4"))
    third = await mesh.peers.post(node, NODE_OFFERS, OfferAsk(order("u-6", 4), 30), NodeOffer)
    assert third.count == 3  # u-5 still holds one, for half a second

    async def u5_expired() -> bool:  # asking again replaces u-7's own offer, so this can be repeated
        return (await mesh.peers.post(node, NODE_OFFERS, OfferAsk(order("u-7", 4), 30), NodeOffer)).count == 1

    await async_eventually(u5_expired, what="u-5's reservation expired by itself")


async def _all_written(mesh, name: str, count: int) -> list[dict] | None:
    vms = await vms_of(mesh, name)
    return vms if len(vms) == count else None


async def _no_reservations(mesh) -> bool:
    return all(not agent.capacity.reservations.live() for agent in mesh.agents.values() if agent.capacity)
