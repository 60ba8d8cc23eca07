"""A request sized to exactly the room the scheduler will find ends with every launcher pod scheduled, and one
VM more waits instead of leaving a pod Pending (the session's sandbox: real operator, agents, ZooKeeper, the
simulated KubeVirt and kube-scheduler).

Case matrix, on 9 compute nodes of 32 cpu and 128Gi, one of them holding a foreign pod of 2 cpu and 80Gi:
- the room, worked out from the cluster's objects (allocatable minus every bound pod's requests, a VM counted
  as ``rackmesh/vm_room.py`` says): 3 u1.2xlarge per node (4 by their guest alone), 1 beside the pod (an even
  spread would put 2 or 3 there); a request for exactly that many is Ready with each node full, each VM's one
  launcher pod Running on the VM's node, no node's pods requesting more than it has
- scaled to one more, the request waits (Stalled, InsufficientCapacity) with the VMs it had, and no launcher
  pod is left Pending
"""

import json
from collections import Counter
from typing import Any

from rackmesh.pod_requests import is_terminal, pod_requests
from rackmesh.quantities import Resources
from rackmesh.virt_launcher import Guest
from rackmesh.vm_room import vm_room
from tests.support.builders import make_request
from tests.support.waiting import eventually

INSTANCETYPE, GUEST = "u1.2xlarge", Guest(8, 32 * 2**30)
FOREIGN_NODE = "c-1-1"
FOREIGN = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hog", "namespace": "default"},
           "spec": {"nodeName": FOREIGN_NODE, "containers": [
               {"name": "hog", "image": "busybox", "resources": {"requests": {"cpu": "2", "memory": "80Gi"}}}]}}


def listed(sandbox, *args: str) -> list[dict[str, Any]]:
    return json.loads(sandbox.kubectl("get", *args, "-o", "json").stdout)["items"]


def free_per_node(sandbox) -> dict[str, Resources]:
    """Each compute node's allocatable minus what the live pods bound to it request."""
    pods = [pod for pod in listed(sandbox, "pods", "--all-namespaces") if not is_terminal(pod)]
    found = {}
    for node in listed(sandbox, "nodes", "-l", "rackmesh.io/role-compute=true"):
        allocatable = node["status"]["allocatable"]
        held = sum((pod_requests(pod) for pod in pods if pod["spec"].get("nodeName") == node["metadata"]["name"]),
                   Resources())
        found[node["metadata"]["name"]] = Resources.parse(allocatable["cpu"], allocatable["memory"]) - held
    return found


def request(sandbox, name: str) -> dict[str, Any]:
    return json.loads(sandbox.kubectl("get", "dr", name, "-o", "json").stdout)


def condition(found: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (found.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def launchers(sandbox) -> list[dict[str, Any]]:
    return listed(sandbox, "pods", "-n", "default", "-l", "kubevirt.io=virt-launcher")


def test_a_request_for_exactly_the_room_schedules_every_launcher_pod(sandbox, tmp_path):
    sandbox.kubectl("apply", "-f", "-", stdin=json.dumps(FOREIGN))
    name = "exact"
    try:
        room = {node: free.fits_times(vm_room(GUEST)) for node, free in free_per_node(sandbox).items()}
        assert room[FOREIGN_NODE] == 1 and set(room.values()) == {1, 3}
        assert Resources.parse(32, "128Gi").fits_times(Resources.parse(8, "32Gi")) == 4  # by the guest alone
        total = sum(room.values())
        sandbox.kubectl("apply", "-f", str(make_request(name).replicas(total).instancetype(INSTANCETYPE)
                                          .write(tmp_path / "exact.yaml")))
        eventually(lambda: request(sandbox, name).get("status", {}).get("phase") == "Ready", timeout=120,
                   what=f"{total} x {INSTANCETYPE} Ready")

        vms = listed(sandbox, "vm", "-l", f"rackmesh.io/request={name}")
        pinned = {vm["metadata"]["name"]: vm["metadata"]["labels"]["rackmesh.io/node"] for vm in vms}
        assert Counter(pinned.values()) == Counter(room)
        pods = launchers(sandbox)
        assert sorted(pod["metadata"]["ownerReferences"][0]["name"] for pod in pods) == sorted(pinned)
        assert all(pod["spec"]["nodeName"] == pinned[pod["metadata"]["ownerReferences"][0]["name"]]
                   and pod["status"]["phase"] == "Running" for pod in pods)
        assert all(free.cpu_millis >= 0 and free.memory_bytes >= 0 for free in free_per_node(sandbox).values())

        sandbox.kubectl("patch", "dr", name, "--type=merge", "-p", json.dumps({"spec": {"replicas": total + 1}}))

        def waiting() -> bool:
            stalled = condition(request(sandbox, name), "Stalled")
            return stalled.get("status") == "True" and stalled.get("reason") == "InsufficientCapacity"

        eventually(waiting, timeout=60, what="one VM more waiting for room")
        assert len(listed(sandbox, "vm", "-l", f"rackmesh.io/request={name}")) == total
        assert [pod["metadata"]["name"] for pod in launchers(sandbox) if pod["status"]["phase"] != "Running"] == []
    finally:
        sandbox.kubectl("delete", "dr", name, "--ignore-not-found", "--wait=false")
        sandbox.kubectl("delete", "pod", "hog", "-n", "default", "--ignore-not-found")
        eventually(lambda: not launchers(sandbox), timeout=60, what="the VMs and their launcher pods gone")
