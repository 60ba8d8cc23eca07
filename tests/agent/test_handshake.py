"""The capacity handshake between real agents (real HTTP, real ZooKeeper), without the operator.

Case matrix:
- an order to a compute leader: offers from every node, portions spread over racks, recorded in
  ZooKeeper, VMs written by the agents that committed, the round Settled, reservations gone afterwards
- the same order again (a retried hand-off): no new round, no second copy of any VM
- a bigger order (scale out): only the missing VMs placed, where the request has fewest
- a smaller order (scale in): the surplus deleted by its agents, by the documented rule, room freed
- lost VMs (with the record's version as basis): re-placed under their names; a stale basis is ignored
- more than the racks can hold: Waiting / InsufficientCapacity in the record, nothing written, every
  reservation released; the same order again is a new round
- an order to an agent that does not lead: 409 NotLeader; a malformed order: 400 BadMessage naming the field
- an offer holds capacity for the next offer until released, and expires by itself
"""

import asyncio
import dataclasses

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
from rackmesh.request_record import RequestRecord, Stage
from rackmesh_node_agent.placement import spread
from tests.support.builders import make_request, make_topology
from tests.support.waiting import async_eventually

pytestmark = pytest.mark.zookeeper


def topology():
    # 36Gi holds 4 u1.large as their launcher pods request them (8Gi, KubeVirt's 276Mi and the console log's
    # 35M each), so a node's cpu is what binds: 8 cores, 2 per u1.large, 4 VMs.
    return make_topology().compute_racks(2, nodes=2, cpu=8, memory="36Gi").storage_racks(2, nodes=1)


def order(uid: str, replicas: int, instancetype: str = "u1.large") -> Order:
    return Order(RequestRef(uid, "default", f"req-{uid}"), replicas, instancetype, "lob123-rhel-6.0")


async def stored_order(mesh, name: str, replicas: int) -> Order:
    """An order for a DeploymentRequest that exists (the VMs' owner: without it, GC removes them)."""
    created = await mesh.kube.create(DEPLOYMENT_REQUESTS, make_request(name).replicas(replicas)
                                     .instancetype("u1.large").obj(), "default")
    return Order(RequestRef(created["metadata"]["uid"], "default", name), replicas, "u1.large", "lob123-rhel-6.0",
                 generation=1)


async def rescaled(mesh, placed: Order, replicas: int) -> Order:
    """``placed``'s request scaled to ``replicas`` in the API (agents write VMs only for the request as it
    is), and the order for its new generation."""
    patched = await mesh.kube.patch(DEPLOYMENT_REQUESTS, placed.request.name, {"spec": {"replicas": replicas}},
                                    placed.request.namespace)
    return dataclasses.replace(placed, replicas=replicas, generation=patched["metadata"]["generation"])


async def settled_round(mesh, coordinator: str, order: Order, *stages: Stage):
    """Hand ``order`` and wait for the round it starts to end (Settled or Waiting) with that order."""
    await mesh.peers.post(mesh.peer(coordinator), ORDERS, order, OrderAccepted)

    async def ended():
        found = await request_record.read(mesh.zk, mesh.layout, order.request.uid)
        done = found and found[0].stage in (stages or (Stage.SETTLED, Stage.WAITING)) and found[0].order == order
        return found if done and not mesh.agent(coordinator).coordinator.busy(order.request.uid) else None

    return await async_eventually(ended, timeout=20, what=f"a round of {order.request.name} ended")


def per_node(vms: list[dict]) -> dict[str, list[int]]:
    nodes: dict[str, list[int]] = {}
    for vm in vms:
        nodes.setdefault(vm["metadata"]["labels"]["rackmesh.io/node"], []).append(int(vm["metadata"]["name"][-4:]))
    return {node: sorted(indices) for node, indices in nodes.items()}


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
    accepted = await mesh.peers.post(mesh.peer(coordinator), ORDERS, web, OrderAccepted)
    assert accepted == OrderAccepted(coordinator=coordinator)

    record, version = await settled_round(mesh, coordinator, web)
    assert record.stage == Stage.SETTLED and record.coordinator == coordinator and record.placing == []
    assert sorted(record.indices()) == list(range(10))
    assert {p.rack for p in record.portions} == {"compute-0", "compute-1"}
    assert all(len(p.indices) <= 4 for p in record.portions)  # 8 cpu / 2 per u1.large
    assert all(len({h.rack for h in p.holders[:2]}) == 2 for p in record.portions)
    assert {"handshake", "imageLookup"} <= set(record.timings)

    vms = await vms_of(mesh, "web")  # the round settles once the agents confirm their VMs exist
    assert per_node(vms) == {p.node: p.indices for p in record.portions}
    await async_eventually(lambda: _no_reservations(mesh), what="reservations dropped once the VMs exist")

    again, version_again = await settled_round(mesh, coordinator, web)
    assert (again, version_again) == (record, version)  # nothing to do: no new round
    assert len(await vms_of(mesh, "web")) == 10


async def test_scale_out_places_only_the_missing_vms_and_scale_in_removes_by_the_rule(mesh):
    mesh = await mesh(topology())
    coordinator = leader_of(mesh)
    db = await stored_order(mesh, "db", 3)
    await settled_round(mesh, coordinator, db)
    before = per_node(await vms_of(mesh, "db"))

    bigger, _ = await settled_round(mesh, coordinator, await rescaled(mesh, db, 8))
    after = per_node(await vms_of(mesh, "db"))
    assert all(set(indices) <= set(after[node]) for node, indices in before.items())  # nothing moved
    assert sorted(i for indices in after.values() for i in indices) == list(range(8))
    assert sorted(map(len, after.values())) == [2, 2, 2, 2]  # where the request had fewest: even
    assert {p.node: p.indices for p in bigger.portions} == after

    smaller, _ = await settled_round(mesh, coordinator, await rescaled(mesh, db, 5))
    expected = spread.without(bigger.portions, {i for v in spread.surplus(bigger.portions, 3).values() for i in v})
    assert {p.node: p.indices for p in smaller.portions} == {p.node: p.indices for p in expected}
    assert per_node(await vms_of(mesh, "db")) == {p.node: p.indices for p in expected}
    rack_counts = sorted(sum(len(p.indices) for p in expected if p.rack == rack) for rack in ("compute-0", "compute-1"))
    assert rack_counts == [2, 3]


async def test_lost_vms_come_back_under_their_names_unless_the_basis_is_stale(mesh):
    mesh = await mesh(topology())
    coordinator = leader_of(mesh)
    app = await stored_order(mesh, "app", 4)
    _, version = await settled_round(mesh, coordinator, app)
    await mesh.kube.delete(VIRTUAL_MACHINES, "app-0002", "default")

    await mesh.peers.post(mesh.peer(coordinator), ORDERS, dataclasses.replace(app, lost=[2], basis=version - 1))
    await async_eventually(lambda: asyncio.sleep(0, not mesh.agent(coordinator).coordinator.busy(app.request.uid)),
                           what="the stale order taken")
    _, unchanged = await request_record.read(mesh.zk, mesh.layout, app.request.uid)
    assert unchanged == version and len(await vms_of(mesh, "app")) == 3  # a stale observation does nothing
    healed, _ = await settled_round(mesh, coordinator, dataclasses.replace(app, lost=[2], basis=version))
    assert sorted(healed.indices()) == [0, 1, 2, 3]
    assert sorted(vm["metadata"]["name"] for vm in await vms_of(mesh, "app")) == [f"app-000{i}" for i in range(4)]


async def test_more_than_the_racks_hold_waits_and_releases_every_reservation(mesh):
    mesh = await mesh(topology())
    coordinator = leader_of(mesh, "compute-1")
    big = order("u-2", 17)
    record, _ = await settled_round(mesh, coordinator, big)
    assert (record.stage, record.reason, record.waits) == (Stage.WAITING, "InsufficientCapacity", 1)
    assert "17 x u1.large requested" in record.message and "can host only 16" in record.message
    assert await vms_of(mesh, "req-u-2") == []
    await async_eventually(lambda: _no_reservations(mesh), what="every offer released")
    retried, _ = await settled_round(mesh, coordinator, big)
    assert (retried.stage, retried.waits) == (Stage.WAITING, 2)  # the same order again is a new round


async def test_orders_to_a_non_leader_or_malformed_are_refused(mesh):
    mesh = await mesh(topology())
    follower = next(name for name, agent in mesh.agents.items()
                    if Role.COMPUTE in agent.node.roles and not agent.leads(Role.COMPUTE))
    with pytest.raises(PeerError) as refused:
        await mesh.peers.post(mesh.peer(follower), ORDERS, order("u-3", 1), OrderAccepted)
    assert (refused.value.status, refused.value.reason) == (409, "NotLeader")
    with pytest.raises(PeerError) as malformed:
        await mesh.peers.post(mesh.peer(leader_of(mesh)), ORDERS, {"replicas": 1}, OrderAccepted)
    assert (malformed.value.status, malformed.value.reason) == (400, "BadMessage")
    assert "Order.request: required" in malformed.value.message


async def test_an_offer_holds_capacity_until_released_or_expired(mesh):
    mesh = await mesh(topology())
    node, leader = mesh.peer("c-0-0"), await mesh.as_rack_leader_of("c-0-0")
    for uid in ("u-4", "u-5", "u-6", "u-7"):  # an agent holds room only for requests that have a record
        await request_record.write(mesh.zk, mesh.layout, RequestRecord(order(uid, 4), "c-0-0", Stage.PLACING), None)
    first = await leader.post(node, NODE_OFFERS, OfferAsk(order("u-4", 3), 3, 30), NodeOffer)
    second = await leader.post(node, NODE_OFFERS, OfferAsk(order("u-5", 3), 3, 0.5), NodeOffer)
    assert (first.count, second.count) == (3, 1)  # 4 fit; the first offer holds 3 of them
    await leader.post(node, NODE_RELEASES, RequestKey("u-4"))
    third = await leader.post(node, NODE_OFFERS, OfferAsk(order("u-6", 4), 4, 30), NodeOffer)
    assert third.count == 3  # u-5 still holds one, for half a second

    async def u5_expired() -> bool:  # asking again replaces u-7's own offer, so this can be repeated
        return (await leader.post(node, NODE_OFFERS, OfferAsk(order("u-7", 4), 4, 30), NodeOffer)).count == 1

    await async_eventually(u5_expired, what="u-5's reservation expired by itself")


async def _all_written(mesh, name: str, count: int) -> list[dict] | None:
    vms = await vms_of(mesh, name)
    return vms if len(vms) == count else None


async def _no_reservations(mesh) -> bool:
    return all(not agent.capacity.reservations.live() for agent in mesh.agents.values() if agent.capacity)
