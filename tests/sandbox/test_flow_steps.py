"""The seed's nine steps, each asserted by its observable effect, on the session's sandbox
(3 compute racks x 3 nodes, 2 storage racks x 2 nodes, every storage node holding the image).

The effects are read where a user would look: the processes' structured logs (every flow step is
logged with the request's uid and its step number), ZooKeeper (leaders, the request record), and
the Kubernetes API (the request's status, the VMs).
"""

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from rackmesh import request_record
from rackmesh.request_record import RequestRecord, Stage
from rackmesh.zk_layout import ZkLayout
from tests.support.builders import make_request
from tests.support.waiting import eventually

REPLICAS = 6  # fewer than the 9 compute nodes: some offers must be released, not committed


def flow_log(logs: Path, uid: str) -> dict[int, list[dict[str, Any]]]:
    """Every step entry about ``uid`` from every process's log, by step number, each with its process."""
    steps: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for log in sorted(logs.glob("*.log")):
        for line in log.read_text().splitlines():
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            if entry.get("request") == uid:
                entry["process"] = log.stem
                steps[entry.get("step", 0)].append(entry)
    return steps


def messages_of(entries: list[dict[str, Any]], message: str) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry["message"] == message]


def test_the_nine_steps_of_the_seed(sandbox, tmp_path):
    sandbox.kubectl("apply", "-f", str(make_request("ninesteps").replicas(REPLICAS).instancetype("u1.large")
                                       .write(tmp_path / "dr.yaml")))

    def ready() -> dict[str, Any] | None:
        request = json.loads(sandbox.kubectl("get", "dr", "ninesteps", "-o", "json").stdout)
        return request if request.get("status", {}).get("phase") in ("Ready", "Failed") else None

    request = eventually(ready, timeout=60, what="the request Ready or Failed")
    assert request["status"]["phase"] == "Ready", request["status"]
    uid = request["metadata"]["uid"]
    status_by_role = {(rack["role"], rack["rack"]): rack for rack in sandbox.status()}
    compute_leaders = {rack: view["leader"] for (role, rack), view in status_by_role.items() if role == "compute"}
    storage_leaders = {rack: view["leader"] for (role, rack), view in status_by_role.items() if role == "storage"}
    members = {rack: view["members"] for (role, rack), view in status_by_role.items() if role == "compute"}
    steps = eventually(lambda: (s := flow_log(sandbox.state_dir / "logs", uid)) and
                       messages_of(s[9], "wrote VirtualMachines") and
                       sum(e["count"] for e in messages_of(s[9], "wrote VirtualMachines")) == REPLICAS and s,
                       what="every agent with a portion logged its VMs")

    # 1. The operator sees the request.
    [seen] = steps[1]
    assert seen["process"] == "operator" and seen["replicas"] == REPLICAS

    # 2. It asks ZooKeeper for the compute leaders and ranks them.
    [lookup] = steps[2]
    assert lookup["process"] == "operator" and sorted(lookup["leaders"]) == sorted(compute_leaders.values())

    # 3. It hands the request to the first-ranked leader, which accepts it as coordinator.
    handed = [e for e in steps[3] if e["process"] == "operator"]
    accepted = [e for e in steps[3] if e["process"] != "operator"]
    coordinator = handed[-1]["coordinator"]
    assert coordinator == lookup["ranking"][0] == request["status"]["coordinator"]
    assert [e["process"] for e in accepted] == [f"agent-{coordinator}"]

    # 4. The coordinator asks every compute rack leader for offers.
    [asked] = steps[4]
    assert asked["process"] == f"agent-{coordinator}" and asked["rackLeaders"] == compute_leaders

    # 5. Each rack leader asks every agent of its rack; each agent offers and holds; the coordinator
    #    decides, commits the portions and releases the rest.
    fan_outs = messages_of(steps[5], "asking rack agents for offers")
    assert {e["process"]: sorted(e["agents"]) for e in fan_outs} == \
        {f"agent-{leader}": sorted(members[rack]) for rack, leader in compute_leaders.items()}
    offers = {e["process"].removeprefix("agent-"): e["count"] for e in messages_of(steps[5], "offered capacity")}
    assert sorted(offers) == sorted(node for nodes in members.values() for node in nodes)
    [decision] = messages_of(steps[5], "decided portions")
    portions = decision["portions"]
    assert sum(portions.values()) == REPLICAS and all(portions[n] <= offers[n] for n in portions)
    committed = {e["process"].removeprefix("agent-"): e["count"] for e in messages_of(steps[5], "committed portion")}
    assert committed == portions
    record = read_record(sandbox, uid)
    assert record.stage == Stage.SETTLED and record.coordinator == coordinator
    assert {p.node: len(p.indices) for p in record.portions} == portions
    assert {p.rack for p in record.portions} == set(compute_leaders), "portions not spread over every rack"

    # 6. The image is looked up once for every portion of the round: the coordinator reads the storage
    # leaders from ZooKeeper ...
    looked_up = messages_of(steps[6], "storage leaders from ZooKeeper")
    assert [e["process"].removeprefix("agent-") for e in looked_up] == [coordinator]
    assert all(sorted(e["leaders"]) == sorted(storage_leaders.values()) for e in looked_up)

    # 7. ... and asks one storage leader where the image is.
    located = messages_of(steps[7], "image located")
    assert [e["process"].removeprefix("agent-") for e in located] == [coordinator]
    assert {e["leader"] for e in located} <= set(storage_leaders.values())

    # 8. The storage leaders asked ask the other storage rack leaders, each of which asks its agents.
    across = messages_of(steps[8], "asking storage rack leaders for the image")
    assert {e["process"].removeprefix("agent-") for e in across} == {e["leader"] for e in located}
    assert all(sorted(e["racks"]) == sorted(storage_leaders) for e in across)
    within = messages_of(steps[8], "asking rack storage agents for the image")
    assert {e["process"].removeprefix("agent-") for e in within} == set(storage_leaders.values())

    # 9. The storage leader picks two holders or more in distinct racks; the agents write their VMs.
    chosen = messages_of(steps[9], "chose image holders")
    assert chosen and all(len(e["holders"]) >= 2 for e in chosen)
    for portion in record.portions:
        assert len({holder.rack for holder in portion.holders[:2]}) == 2
    written = {e["process"].removeprefix("agent-"): e["count"] for e in messages_of(steps[9], "wrote VirtualMachines")}
    assert written == portions
    vms = json.loads(sandbox.kubectl("get", "vm", "-l", "rackmesh.io/request=ninesteps", "-o", "json").stdout)
    by_node: dict[str, int] = defaultdict(int)
    for vm in vms["items"]:
        by_node[vm["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"]] += 1
    assert by_node == portions

    sandbox.kubectl("delete", "dr", "ninesteps")
    eventually(lambda: not json.loads(sandbox.kubectl("get", "vm", "-l", "rackmesh.io/request=ninesteps",
                                                      "-o", "json").stdout)["items"], what="VMs removed")
    eventually(lambda: read_record(sandbox, uid, missing_ok=True) is None,
               what="the request record removed from ZooKeeper")


def read_record(sandbox, uid: str, missing_ok: bool = False) -> RequestRecord | None:
    with sandbox.zookeeper() as client:
        path = ZkLayout().request(uid)
        if missing_ok and not client.exists(path):
            return None
        data, _ = client.get(path)
        return request_record.decode(data)
