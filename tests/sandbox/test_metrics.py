"""The sandbox's metrics, scraped as Prometheus would (HTTPS, the scraper's certificate that `sandbox up` leaves in
the state dir, each server's certificate checked), while a request waits and then is placed.

Case matrix:
- every agent and the operator serve /metrics where sandbox.json says; every ZooKeeper session is connected; per
  rack and role exactly one agent reports that it leads
- a request too big to fit: the operator's requests by phase count it Pending (they equal the API's phases);
  scaled to fit, it goes Ready and the gauge follows; meanwhile each agent's VMs written rise by the VMs placed
  on it (and so, across agents, by the replicas), one write timed per VM; the coordinator's handshake and image
  lookup histograms count; peer calls are counted by route and code on the operator (orders, 202) and on the
  coordinator (orders served, commits made); afterwards no agent holds room
- without a client certificate: 401; with the operator's or an agent's: 403
"""

import json
from collections import Counter

from rackmesh.identity.names import Identity, Role
from rackmesh.protocol import NODE_COMMITS, ORDERS
from rackmesh_operator.status import Phase
from tests.support.builders import make_request
from tests.support.sandbox import Sandbox, Scrape
from tests.support.waiting import eventually

TOO_MANY = 10_000
REPLICAS = 6


def scrape_all(sandbox: Sandbox) -> dict[str, Scrape]:
    return {component: sandbox.scrape(component) for component in sandbox.state.metrics}


def phases_in_api(sandbox: Sandbox) -> dict[str, float]:
    items = json.loads(sandbox.kubectl("get", "dr", "-A", "-o", "json").stdout)["items"]
    counts = Counter((item.get("status") or {}).get("phase") or str(Phase.PENDING) for item in items)
    return {str(phase): float(counts[str(phase)]) for phase in Phase}


def phases_in_metrics(sandbox: Sandbox) -> dict[str, float]:
    scrape = sandbox.scrape("operator")
    return {str(phase): scrape.value("rackmesh_deployment_requests", phase=str(phase)) for phase in Phase}


def phases_agree(sandbox: Sandbox) -> dict[str, float] | None:
    found = phases_in_metrics(sandbox)
    return found if found == phases_in_api(sandbox) else None


def request_status(sandbox: Sandbox, name: str) -> dict:
    return json.loads(sandbox.kubectl("get", "dr", name, "-o", "json").stdout).get("status") or {}


def stalled_reason(status: dict) -> str | None:
    stalled = next((c for c in status.get("conditions", []) if c["type"] == "Stalled"), {})
    return stalled.get("reason") if stalled.get("status") == "True" else None


def delta(after: dict[str, Scrape], before: dict[str, Scrape], component: str, name: str, **labels: str) -> float:
    return after[component].value(name, **labels) - before[component].value(name, **labels)


def test_the_metrics_follow_a_request_from_waiting_to_ready(sandbox, tmp_path):
    agents = [component for component in sandbox.state.metrics if component.startswith("agent-")]
    assert len(agents) == len(sandbox.state.agents) and "operator" in sandbox.state.metrics
    before = scrape_all(sandbox)
    assert all(scrape.value("rackmesh_zookeeper_session_state", state="connected") == 1 for scrape in before.values())

    manifest = make_request("metered").replicas(TOO_MANY).instancetype("u1.small").write(tmp_path / "metered.yaml")
    sandbox.kubectl("apply", "-f", str(manifest))
    eventually(lambda: stalled_reason(request_status(sandbox, "metered")) == "InsufficientCapacity", timeout=60,
               what="the request waiting for room")
    waiting = eventually(lambda: phases_agree(sandbox), timeout=30, what="the phases counted as the API has them")
    assert waiting[str(Phase.PENDING)] >= 1

    sandbox.kubectl("scale", "dr/metered", f"--replicas={REPLICAS}")
    status = eventually(lambda: (found := request_status(sandbox, "metered")).get("phase") == "Ready" and found,
                        timeout=90, what="the scaled request Ready")
    ready = eventually(lambda: phases_agree(sandbox), timeout=30, what="the phases counted as the API has them")
    assert ready[str(Phase.READY)] == waiting[str(Phase.READY)] + 1
    assert ready[str(Phase.PENDING)] == waiting[str(Phase.PENDING)] - 1

    after = scrape_all(sandbox)
    placed = {f"agent-{row['node']}": row["count"] for row in status["placements"]}
    assert sum(placed.values()) == REPLICAS
    written = {agent: delta(after, before, agent, "rackmesh_vms_written_total") for agent in agents}
    assert written == {agent: float(placed.get(agent, 0)) for agent in agents}
    assert {agent: delta(after, before, agent, "rackmesh_vm_write_duration_seconds_count") for agent in agents} == \
        written

    coordinator = f"agent-{status['coordinator']}"
    assert delta(after, before, coordinator, "rackmesh_handshake_duration_seconds_count") >= 1
    assert delta(after, before, coordinator, "rackmesh_image_lookup_duration_seconds_count") >= 1
    assert delta(after, before, "operator", "rackmesh_peer_calls_total", route=ORDERS, code="202") >= 2
    assert delta(after, before, coordinator, "rackmesh_peer_calls_served_total", route=ORDERS, code="202") >= 1
    assert delta(after, before, coordinator, "rackmesh_peer_calls_total", route=NODE_COMMITS, code="200") >= \
        len(placed)

    def nothing_held() -> bool:
        return all(sandbox.scrape(agent).value(name) == 0 for agent in agents for name in (
            "rackmesh_reservations", "rackmesh_reserved_vms", "rackmesh_reserved_cpu_cores",
            "rackmesh_reserved_memory_bytes"))

    eventually(nothing_held, timeout=60, what="no room held by any agent")
    sandbox.kubectl("delete", "dr", "metered")


def test_one_agent_reports_leading_each_rack_and_role(sandbox):
    def one_leader_each() -> dict[tuple[tuple[str, str], ...], float] | None:
        leading: Counter[tuple[tuple[str, str], ...]] = Counter()
        for component in sandbox.state.metrics:
            for labels, value in sandbox.scrape(component).labelled("rackmesh_rack_leader").items():
                leading[labels] += value
        return leading if leading and all(count == 1 for count in leading.values()) else None

    leading = eventually(one_leader_each, timeout=30, what="one leader per rack and role")
    racks = {(dict(labels)["role"], dict(labels)["rack"]) for labels in leading}
    assert racks == {("compute", f"compute-{rack}") for rack in range(3)} | {
        ("storage", f"storage-{rack}") for rack in range(2)}


def test_only_the_scrapers_certificate_reads_metrics(sandbox):
    agent = next(component for component in sandbox.state.metrics if component.startswith("agent-"))
    status, body = sandbox.get_metrics(agent, identity=None)
    assert (status, json.loads(body)["reason"]) == (401, "Unauthenticated")
    for component, caller in ((agent, Identity(Role.OPERATOR)), ("operator", Identity.agent(agent[len("agent-"):]))):
        status, body = sandbox.get_metrics(component, identity=caller)
        assert (status, json.loads(body)["reason"]) == (403, "Forbidden"), component
