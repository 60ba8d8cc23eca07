"""Each agent's own metrics (its registry: many agents share this process), as a round moves them, and the log
lines of a request's steps.

Case matrix:
- a round placed by a coordinator: its handshake and image lookup are counted once each, on it alone; the
  VMs written add up to the request's replicas, each agent counting the VMs pinned to it, one write duration
  per VM; the calls are counted by route and status on both sides (commits and deployments, once per portion);
  once settled no agent holds room (count, VMs, cpu, memory all 0); one compute leader per rack; every
  ZooKeeper session connected
- room offered and not yet committed: one request held, its VMs and their cpu and memory; released: all 0
- a VM written again (it exists: 409 as this request's): a write timed, no VM counted as written
- answers no route takes (404) or that lack a certificate (401): counted under ``unmatched`` and the route
- an agent stopped: its session state turns lost
- every log line of the placement steps carries the request's uid and its namespace/name
"""

import logging

import aiohttp
import pytest

from rackmesh import request_record
from rackmesh.identity.names import Identity
from rackmesh.labels import Role
from rackmesh.protocol import NODE_OFFERS, NODE_RELEASES, ORDERS, NodeOffer, OfferAsk, RequestKey
from rackmesh.request_record import RequestRecord, Stage
from rackmesh_node_agent.agent import Agent
from rackmesh_node_agent.vms.writer import write_vms
from tests.agent.test_handshake import leader_of, settled_round, stored_order, topology, vms_of
from tests.support.agent_tls import Callers, agent_name
from tests.support.waiting import async_eventually

pytestmark = pytest.mark.zookeeper


def value(agent: Agent, name: str, **labels: str) -> float:
    return agent.metrics.registry.get_sample_value(name, labels) or 0.0


def held(agent: Agent) -> tuple[float, ...]:
    return tuple(value(agent, name) for name in ("rackmesh_reservations", "rackmesh_reserved_vms",
                                                 "rackmesh_reserved_cpu_cores", "rackmesh_reserved_memory_bytes"))


async def test_a_round_moves_each_agents_own_metrics(mesh, caplog):
    mesh = await mesh(topology())
    coordinator = leader_of(mesh)
    web = await stored_order(mesh, "web", 10)
    with caplog.at_level(logging.INFO, logger="rackmesh_node_agent"):
        record, _ = await settled_round(mesh, coordinator, web)
    agents = mesh.agents

    handshakes = {node: value(agent, "rackmesh_handshake_duration_seconds_count") for node, agent in agents.items()}
    lookups = {node: value(agent, "rackmesh_image_lookup_duration_seconds_count") for node, agent in agents.items()}
    assert handshakes == lookups == {node: float(node == coordinator) for node in agents}

    pinned = {portion.node: len(portion.indices) for portion in record.portions}
    assert sum(pinned.values()) == 10 == len(await vms_of(mesh, "web"))
    written = {node: value(agent, "rackmesh_vms_written_total") for node, agent in agents.items()}
    assert written == {node: float(pinned.get(node, 0)) for node in agents}
    assert {node: value(agent, "rackmesh_vm_write_duration_seconds_count") for node, agent in agents.items()} == written

    on_coordinator = agents[coordinator]
    for route in ("/v1/node/commits", "/v1/node/deployments"):
        assert value(on_coordinator, "rackmesh_peer_calls_total", route=route, code="200") == len(pinned)
        assert {node: value(agents[node], "rackmesh_peer_calls_served_total", route=route, code="200")
                for node in pinned} == dict.fromkeys(pinned, 1.0)
    assert value(on_coordinator, "rackmesh_peer_calls_served_total", route=ORDERS, code="202") == 1

    async def none_held() -> bool:
        return all(held(agent) == (0, 0, 0, 0) for agent in agents.values())

    await async_eventually(none_held, what="every agent's reservations back to zero")

    compute_racks = {agent.node.rack for agent in agents.values() if Role.COMPUTE in agent.node.roles}
    for rack in compute_racks:
        leaders = [node for node, agent in agents.items()
                   if value(agent, "rackmesh_rack_leader", role="compute", rack=rack) == 1]
        assert len(leaders) == 1, (rack, leaders)
    assert all(value(agent, "rackmesh_zookeeper_session_state", state="connected") == 1 and
               value(agent, "rackmesh_zookeeper_session_state", state="lost") == 0 for agent in agents.values())

    steps = [entry for entry in caplog.records if hasattr(entry, "step")]
    assert {entry.step for entry in steps} >= {3, 4, 5, 6, 7, 8, 9}
    assert {(entry.request, entry.deploymentRequest) for entry in steps} == {(web.request.uid, "default/web")}
    decided = next(entry for entry in steps if entry.getMessage() == "decided portions")
    assert (decided.request, decided.deploymentRequest) == (web.request.uid, "default/web")
    about_requests = [entry for entry in caplog.records if hasattr(entry, "request")]
    assert all(getattr(entry, "deploymentRequest", None) == "default/web" for entry in about_requests), \
        [entry.getMessage() for entry in about_requests if not hasattr(entry, "deploymentRequest")]


async def test_room_offered_is_held_in_the_gauges_until_released(mesh):
    mesh = await mesh(topology())
    node, wanted = "c-0-0", 3
    db = await stored_order(mesh, "db", wanted)
    # A record, so the agent's follow-up does not free the offer of a request that has none.
    await request_record.write(mesh.zk, mesh.layout, RequestRecord(db, node, Stage.PLACING), None)
    leader = await mesh.as_rack_leader_of(node)
    offered = await leader.post(mesh.peer(node), NODE_OFFERS, OfferAsk(db, wanted, 300), NodeOffer)
    assert offered.count == wanted
    agent = mesh.agent(node)
    room = agent.require_capacity().size_of(db.instancetype, db.request)
    assert room is not None and room.cpu_millis > 0 and room.memory_bytes > 0
    assert held(agent) == (1, wanted, wanted * room.cpu_millis / 1000, wanted * room.memory_bytes)
    assert all(held(other) == (0, 0, 0, 0) for name, other in mesh.agents.items() if name != node)

    await leader.post(mesh.peer(node), NODE_RELEASES, RequestKey(db.request.uid))
    assert held(agent) == (0, 0, 0, 0)


async def test_rewriting_an_existing_vm_is_timed_but_not_counted_as_written(mesh):
    mesh = await mesh(topology())
    coordinator = leader_of(mesh)
    db = await stored_order(mesh, "db", 2)
    record, _ = await settled_round(mesh, coordinator, db)
    portion = record.portions[0]
    agent = mesh.agent(portion.node)
    before = (value(agent, "rackmesh_vms_written_total"), value(agent, "rackmesh_vm_write_duration_seconds_count"))

    await write_vms(agent.kube, db, portion.node, portion.indices, portion.holders, "10Gi",
                    metrics=agent.metrics.vm_writes)
    after = (value(agent, "rackmesh_vms_written_total"), value(agent, "rackmesh_vm_write_duration_seconds_count"))
    assert after == (before[0], before[1] + len(portion.indices))


async def test_answers_no_route_took_or_without_a_certificate_are_counted(mesh):
    mesh = await mesh(topology())
    node = "c-0-0"
    callers = Callers(mesh.pki)
    calls = [(None, "POST", ORDERS, 401), (None, "GET", "/no/such/route", 401),
             (Identity.agent("c-0-1"), "GET", "/no/such/route", 404)]
    for identity, method, path, status in calls:
        async with aiohttp.ClientSession() as session, session.request(
                method, f"{mesh.endpoint(node)}{path}", ssl=callers.context(identity),
                server_hostname=agent_name(node)) as answer:
            assert answer.status == status
    agent = mesh.agent(node)
    assert value(agent, "rackmesh_peer_calls_served_total", route=ORDERS, code="401") == 1
    assert value(agent, "rackmesh_peer_calls_served_total", route="unmatched", code="401") == 1
    assert value(agent, "rackmesh_peer_calls_served_total", route="unmatched", code="404") == 1


async def test_a_stopped_agents_session_turns_lost(mesh):
    mesh = await mesh(topology())
    agent = mesh.agent("c-0-0")
    assert agent.metrics.zookeeper.state == "connected"
    await mesh.stop_agent("c-0-0")
    assert agent.metrics.zookeeper.state == "lost"
