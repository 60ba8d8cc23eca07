"""``rackmesh status --state-dir`` on the session's sandbox, around a request an operator would look into.

- the mesh: every rack of the topology, each with the leader ZooKeeper elected (which its agent confirms) and
  every member, each compute member answering with its allocatable;
- a request larger than the cluster: listed as Waiting (the DeploymentRequest Pending), with 0 VMs placed, the
  reason InsufficientCapacity and the coordinator's message, holding no room anywhere;
- the same request scaled to fit: Settled, coordinated by a compute leader, all its VMs placed, and each
  compute node's free capacity down by the same per-VM room for each of its VMs (nothing else changes).
"""

import json
from collections import Counter
from typing import Any

import yaml

from tests.support.builders import make_request
from tests.support.sandbox import Sandbox
from tests.support.waiting import eventually

COMPUTE_RACKS = {f"compute-{r}": [f"c-{r}-{n}" for n in range(3)] for r in range(3)}
STORAGE_RACKS = {f"storage-{r}": [f"s-{r}-{n}" for n in range(2)] for r in range(2)}
NAME = "status-probe"
TOO_MANY = 1000  # 9 nodes of 32 CPUs hold 144 x u1.large
FITTING = 12
REQUEST_TIMEOUT = 90.0


def compute_free(status: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {member["node"]: (member["free"]["cpuMillis"], member["free"]["memoryBytes"])
            for rack in status["racks"] for member in rack["members"] if "compute" in member["roles"]}


def held(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry for rack in status["racks"] for member in rack["members"] for entry in member.get("reservations", [])]


def our_request(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((request for request in status["requests"] if request["request"] == f"default/{NAME}"), None)


def quiet(sandbox: Sandbox) -> dict[str, Any]:
    """A status with every agent answering and nothing held, the same twice in a row (no request moving)."""
    def settled() -> dict[str, Any] | None:
        first, second = sandbox.mesh_status(), sandbox.mesh_status()
        answered = all(m["answered"] for status in (first, second) for r in status["racks"] for m in r["members"])
        same = compute_free(first) == compute_free(second)
        return second if answered and same and not held(first) and not held(second) else None

    return eventually(settled, timeout=REQUEST_TIMEOUT, what="a quiet mesh")


def apply(sandbox: Sandbox, replicas: int) -> None:
    manifest = make_request(NAME).replicas(replicas).instancetype("u1.large").obj()
    sandbox.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))


def test_status_shows_the_mesh_and_follows_a_request_from_waiting_to_settled(sandbox: Sandbox):
    before = quiet(sandbox)
    racks = {rack["rack"]: rack for rack in before["racks"]}
    assert set(racks) == {*COMPUTE_RACKS, *STORAGE_RACKS}
    for role, topology in (("compute", COMPUTE_RACKS), ("storage", STORAGE_RACKS)):
        for rack, nodes in topology.items():
            assert [member["node"] for member in racks[rack]["members"]] == nodes
            assert all(member["roles"] == [role] for member in racks[rack]["members"])
            leader = racks[rack]["leaders"][role]
            assert leader in nodes
            assert [m["leads"] for m in racks[rack]["members"] if m["node"] == leader] == [[role]]
            assert {r["role"]: r["leader"] for r in sandbox.view(leader)["roles"]} == {role: True}
    for rack in COMPUTE_RACKS:
        for member in racks[rack]["members"]:
            assert member["allocatable"] == {"cpuMillis": 32_000, "memoryBytes": 128 * 2**30}

    apply(sandbox, TOO_MANY)
    try:
        waiting = eventually(lambda: (s := sandbox.mesh_status()) and (r := our_request(s)) and r["stage"] == "Waiting"
                             and (s, r), timeout=REQUEST_TIMEOUT, what=f"{NAME} Waiting in rackmesh status")[1]
        assert (waiting["replicas"], waiting["placed"], waiting["reason"]) == (TOO_MANY, 0, "InsufficientCapacity")
        assert waiting["message"]
        phase = json.loads(sandbox.kubectl("get", "dr", NAME, "-o", "json").stdout)["status"]["phase"]
        assert phase == "Pending"
        table = sandbox.rackmesh("status", "--state-dir", str(sandbox.state_dir)).stdout
        row = next(line for line in table.splitlines() if line.strip().startswith(f"default/{NAME} "))
        assert row.split()[1] == "Waiting"
        assert f"0/{TOO_MANY}" in row.split()
        assert "InsufficientCapacity: " in row

        apply(sandbox, FITTING)
        settled = eventually(lambda: (s := sandbox.mesh_status()) and (r := our_request(s)) and r["stage"] == "Settled"
                             and r["replicas"] == FITTING and not held(s) and s,
                             timeout=REQUEST_TIMEOUT, what=f"{NAME} Settled with nothing held")
        request = our_request(settled)
        assert request["placed"] == FITTING
        compute_leaders = {rack["leaders"]["compute"] for rack in settled["racks"] if "compute" in rack["leaders"]}
        assert request["coordinator"] in compute_leaders

        vms = json.loads(sandbox.kubectl("get", "vm", "-n", "default", "-l", f"rackmesh.io/request={NAME}", "-o",
                                         "json").stdout)["items"]
        ours = Counter(vm["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"] for vm in vms)
        assert sum(ours.values()) == FITTING
        was, now = compute_free(before), compute_free(settled)
        drop = {node: (was[node][0] - now[node][0], was[node][1] - now[node][1]) for node in was}
        host = next(iter(ours))
        per_vm = (drop[host][0] // ours[host], drop[host][1] // ours[host])
        assert per_vm[0] >= 2_000 and per_vm[1] >= 8 * 2**30  # at least u1.large's guest: 2 vCPU, 8Gi
        assert drop == {node: (per_vm[0] * ours[node], per_vm[1] * ours[node]) for node in was}
    finally:
        sandbox.kubectl("delete", "dr", NAME, "--wait=false")
