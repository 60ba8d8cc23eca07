"""The sandbox as a cluster: Nodes through kubectl, racks and leaders in ZooKeeper, agents' views, failover.

Topology: 3 compute racks x 3 nodes, 2 storage racks x 2 nodes.
"""

import json
import os
import signal
import urllib.error
import urllib.request

import pytest

from rackmesh_sandbox.lifecycle import SANDBOX_SETTINGS
from tests.support.waiting import eventually

COMPUTE_RACKS = {f"compute-{r}": [f"c-{r}-{n}" for n in range(3)] for r in range(3)}
STORAGE_RACKS = {f"storage-{r}": [f"s-{r}-{n}" for n in range(2)] for r in range(2)}


def leaders(status, role):
    return {entry["rack"]: entry["leader"] for entry in status if entry["role"] == role}


def members(status, role):
    return {entry["rack"]: entry["members"] for entry in status if entry["role"] == role}


def test_kubectl_lists_the_nodes_with_role_and_rack_labels(sandbox):
    nodes = json.loads(sandbox.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    labels = {node["metadata"]["name"]: node["metadata"]["labels"] for node in nodes}
    assert set(labels) == {n for rack in [*COMPUTE_RACKS.values(), *STORAGE_RACKS.values()] for n in rack}
    assert labels["c-1-2"]["rackmesh.io/role-compute"] == "true"
    assert labels["c-1-2"]["topology.rackmesh.io/rack"] == "compute-1"
    assert labels["s-0-1"]["rackmesh.io/role-storage"] == "true"

    shown = sandbox.kubectl("get", "nodes", "--show-labels").stdout
    assert "c-2-0" in shown
    assert "topology.rackmesh.io/rack=compute-2" in shown


def test_status_shows_one_leader_per_rack_and_every_member(sandbox):
    status = eventually(lambda: (s := sandbox.status()) and all(e["leader"] for e in s) and len(s) == 5 and s)
    assert members(status, "compute") == COMPUTE_RACKS
    assert members(status, "storage") == STORAGE_RACKS
    for role, racks in (("compute", COMPUTE_RACKS), ("storage", STORAGE_RACKS)):
        for rack, leader in leaders(status, role).items():
            assert leader in racks[rack]

    table = sandbox.rackmesh("status", "--state-dir", str(sandbox.state_dir)).stdout
    racks = [line.split()[1] for line in table.splitlines() if line.startswith("RACK ")]
    assert racks == sorted([*COMPUTE_RACKS, *STORAGE_RACKS])


def test_agent_reports_its_view_to_authenticated_peers_only(sandbox):
    view = sandbox.view("c-0-0")
    assert view["node"] == "c-0-0"
    assert view["rack"] == "compute-0"
    assert [role["role"] for role in view["roles"]] == ["compute"]
    assert view["free"] == {"cpuMillis": 32000, "memoryBytes": 128 * 2**30}
    assert view["endpoint"] == sandbox.state.agents["c-0-0"]

    with pytest.raises(urllib.error.HTTPError) as refused:
        sandbox.view("c-0-0", identity=None)  # TLS, but no client certificate
    assert refused.value.code == 401
    assert json.load(refused.value)["reason"] == "Unauthenticated"


def test_killing_a_leader_elects_another_member_within_the_session_timeout(sandbox):
    status = eventually(lambda: (s := sandbox.status()) and all(e["leader"] for e in s) and s)
    rack = "compute-1"
    old_leader = leaders(status, "compute")[rack]
    process = next(p for p in sandbox.state.processes if p.name == f"agent-{old_leader}")

    os.kill(process.pid, signal.SIGKILL)
    deadline = SANDBOX_SETTINGS["zk_session_timeout"] + 2.0

    def new_leader_elected():
        current = sandbox.status()
        leader = leaders(current, "compute").get(rack)
        return leader not in (None, old_leader) and old_leader not in members(current, "compute")[rack] and current

    after = eventually(new_leader_elected, timeout=deadline, what=f"a new leader of {rack}")
    assert leaders(after, "compute")[rack] in COMPUTE_RACKS[rack]
    assert members(after, "compute")[rack] == [n for n in COMPUTE_RACKS[rack] if n != old_leader]
    view = sandbox.view(leaders(after, "compute")[rack])
    assert [role["leader"] for role in view["roles"]] == [True]

    sandbox.restart(f"agent-{old_leader}")  # the session's other tests expect every agent
    eventually(lambda: old_leader in members(sandbox.status(), "compute")[rack], what=f"{old_leader} back")
