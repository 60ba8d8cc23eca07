"""Many requests at once through one `kubectl apply`, against the session sandbox (compute nodes with room
for 16 x u1.large each; the room is counted over the compute agents alive, as another test kills one).

Case matrix:
- 20 requests asking together for 90% of the room: all Ready; no node oversubscribed; no VM twice
- 20 requests asking for 130%: those that fit are Ready, the others wait (Stalled, InsufficientCapacity),
  and the room left idle is less than the smallest waiting request
"""

import json
from collections import Counter

import yaml

from rackmesh.quantities import Resources
from rackmesh.virt_launcher import Guest
from rackmesh.vm_room import vm_room
from tests.support.builders import make_request
from tests.support.waiting import eventually

U1_LARGE = vm_room(Guest(2, 8 * 2**30))  # as the agents count one, overhead included


def room(sandbox) -> int:
    """u1.large that fit on the compute nodes whose agents are members (nothing else runs there)."""
    alive = {node for entry in sandbox.status() if entry["role"] == "compute" for node in entry["members"]}
    nodes = json.loads(sandbox.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return sum(Resources.parse(node["status"]["allocatable"]["cpu"], node["status"]["allocatable"]["memory"])
               .fits_times(U1_LARGE) for node in nodes if node["metadata"]["name"] in alive)


def sizes_for(total: int, count: int = 20) -> list[int]:
    """``count`` request sizes, as even as can be, adding up to ``total``."""
    return [total // count + (1 if index < total % count else 0) for index in range(count)]


def apply_all(sandbox, sizes: list[int], prefix: str) -> list[str]:
    names = [f"{prefix}-{i:02d}" for i in range(len(sizes))]
    documents = [make_request(name).replicas(size).instancetype("u1.large").obj()
                 for name, size in zip(names, sizes, strict=True)]
    sandbox.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    return names


def requests(sandbox, names: list[str]) -> dict[str, dict]:
    items = json.loads(sandbox.kubectl("get", "dr", "-o", "json").stdout)["items"]
    return {item["metadata"]["name"]: item for item in items if item["metadata"]["name"] in names}


def stalled_reason(request: dict) -> str | None:
    for condition in (request.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Stalled" and condition["status"] == "True":
            return condition["reason"]
    return None


def check_no_oversubscription_nor_duplicates(sandbox) -> Counter[str]:
    vms = json.loads(sandbox.kubectl("get", "vm", "-o", "json").stdout)["items"]
    names = [vm["metadata"]["name"] for vm in vms]
    assert len(names) == len(set(names))
    listed = json.loads(sandbox.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    nodes = {node["metadata"]["name"]: node for node in listed}
    per_node = Counter(vm["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"] for vm in vms)
    for node, count in per_node.items():
        allocatable = nodes[node]["status"]["allocatable"]
        fits = Resources.parse(allocatable["cpu"], allocatable["memory"]).fits_times(U1_LARGE)
        assert count <= fits, f"{node} holds {count} u1.large, room for {fits}"
    return per_node


def delete_all(sandbox, names: list[str]) -> None:
    sandbox.kubectl("delete", "dr", *names, "--wait=false")
    eventually(lambda: not json.loads(sandbox.kubectl("get", "vm", "-o", "json").stdout)["items"], timeout=60,
               what="every VM gone")


def test_twenty_requests_for_90_percent_of_the_room_are_all_ready(sandbox):
    sizes = sizes_for(room(sandbox) * 90 // 100)
    names = apply_all(sandbox, sizes, "ninety")
    try:
        def all_ready() -> bool:
            found = requests(sandbox, names)
            return len(found) == 20 and all(r.get("status", {}).get("phase") == "Ready" for r in found.values())

        eventually(all_ready, timeout=90, what="all 20 requests Ready")
        assert sum(check_no_oversubscription_nor_duplicates(sandbox).values()) == sum(sizes)
    finally:
        delete_all(sandbox, names)


def test_twenty_requests_for_130_percent_place_what_fits_and_the_rest_wait(sandbox):
    total = room(sandbox)
    sizes = sizes_for(total * 130 // 100)
    names = apply_all(sandbox, sizes, "overbooked")
    try:
        def settled() -> dict[str, dict] | None:
            found = requests(sandbox, names)
            ready = [r for r in found.values() if r.get("status", {}).get("phase") == "Ready"]
            waiting = [r for r in found.values() if stalled_reason(r) == "InsufficientCapacity"]
            idle = total - sum(r["spec"]["replicas"] for r in ready)
            smallest = min((r["spec"]["replicas"] for r in waiting), default=0)
            return found if len(ready) + len(waiting) == 20 and waiting and idle < smallest else None

        found = eventually(settled, timeout=120, what="what fits Ready, the rest waiting, idle < smallest waiting")
        placed = sum(r["spec"]["replicas"] for r in found.values() if r["status"]["phase"] == "Ready")
        assert sum(check_no_oversubscription_nor_duplicates(sandbox).values()) == placed
    finally:
        delete_all(sandbox, names)
