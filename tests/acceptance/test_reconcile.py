"""A DeploymentRequest stays true to its spec whatever happens, as a user sees it through kubectl.

Case matrix:
- scale 50 -> 60 -> 40 -> 0 -> 5 (apply and patch; a smaller cluster scales to its room, up to 60, and to 5/6
  and 2/3 of it): exactly that many VMs each time, the racks kept even, VMs that stay keep their names and
  nodes; `kubectl scale` through the scale subresource
- instancetype and image are immutable, a name too long for a label is refused: at `kubectl apply`
- a deleted VM comes back under its name (within 5 s on the sandbox); a VM written by hand with the
  request's label but no ownerReference is left alone and not counted
- a node deleted, or tainted out-of-service: its VMs come back elsewhere under the same names
- a node NotReady: its VMs stay where they are, the status says why (Argo CD: Progressing)
- waiting requests are placed once the world changes: a node is added (labelled compute), another request
  is scaled in, an image copy appears (a storage node holding it joins), the instancetype is created
"""

import json
from collections import Counter

from rackmesh.labels import Role
from rackmesh.protocol import ImageHolder, Order, RequestRef
from rackmesh_node_agent.vms.manifest import virtual_machine
from tests.acceptance.conftest import (
    HEAL_TIMEOUT,
    LARGE,
    LATE_COPY_IMAGE,
    REQUEST_TIMEOUT,
    SMALL,
    SPARE_COMPUTE,
    SPARE_STORAGE,
    Cluster,
    scenario_request,
)
from tests.support.argocd import argocd_health
from tests.support.waiting import eventually


def rack_spread(cluster: Cluster, name: str) -> Counter[str]:
    nodes = cluster.compute_nodes()
    return Counter(cluster.rack_of(nodes[node]) for node in cluster.vm_nodes(name).values())


def test_replicas_converge_exactly_through_apply_patch_and_scale(cluster: Cluster, request_name: str):
    most = min(60, cluster.capacity_for(SMALL))  # 60 on the sandbox; what a kind cluster has room for
    first, fewer = most * 5 // 6, most * 2 // 3
    build = scenario_request(request_name)
    cluster.apply(build.replicas(first).obj())
    cluster.converged(request_name, first)
    before = cluster.vm_nodes(request_name)

    cluster.apply(build.replicas(most).obj())
    cluster.converged(request_name, most)
    grown = cluster.vm_nodes(request_name)
    assert {name: grown[name] for name in before} == before, "scaling out moved VMs"
    assert sorted(grown) == [f"{request_name}-{i:04d}" for i in range(most)]
    spread = rack_spread(cluster, request_name)
    assert max(spread.values()) - min(spread.values()) <= 1, spread

    cluster.kubectl("patch", "dr", request_name, "--type=merge", "-p", json.dumps({"spec": {"replicas": fewer}}))
    request = cluster.converged(request_name, fewer)
    shrunk = cluster.vm_nodes(request_name)
    assert set(shrunk) < set(grown) and all(grown[name] == node for name, node in shrunk.items())
    spread = rack_spread(cluster, request_name)
    assert max(spread.values()) - min(spread.values()) <= 1, spread
    assert argocd_health(request) == ("Healthy", f"{fewer}/{fewer} VMs ready")

    cluster.kubectl("scale", f"dr/{request_name}", "--replicas=0")
    cluster.converged(request_name, 0)
    assert cluster.vms(request_name) == []
    cluster.kubectl("scale", f"dr/{request_name}", "--replicas=5")
    request = cluster.converged(request_name, 5)
    scale = json.loads(cluster.kubectl("get", "dr", request_name, "--subresource=scale", "-o", "json").stdout)
    assert (scale["kind"], scale["spec"]["replicas"], scale["status"]["replicas"]) == ("Scale", 5, 5)
    assert scale["status"]["selector"] == f"rackmesh.io/request={request_name}"
    assert request["metadata"]["generation"] == request["status"]["observedGeneration"] == 5
    reasons = [event["reason"] for event in cluster.events(request_name)]
    assert reasons.count("Scaling") >= 4


def test_instancetype_and_image_are_immutable_and_names_must_fit_a_label(cluster: Cluster, request_name: str):
    build = scenario_request(request_name).replicas(1)
    cluster.apply(build.obj())
    for field, value in (("instancetype", "u1.large"), ("image", "another-image")):
        refused = cluster.kubectl("apply", "-f", "-", stdin=json.dumps(
            {**build.obj(), "spec": {**build.obj()["spec"], field: value}}), check=False)
        assert refused.returncode != 0
        assert f"spec.{field}: Invalid value" in refused.stderr and f"{field} is immutable" in refused.stderr
    assert cluster.get("dr", request_name)["spec"] == build.obj()["spec"]
    long_name = "a" * 64
    refused = cluster.kubectl("apply", "-f", "-", stdin=json.dumps(scenario_request(long_name).obj()), check=False)
    assert refused.returncode != 0 and "the name must be at most 63 characters" in refused.stderr
    assert cluster.kubectl("get", "dr", long_name, check=False).returncode != 0


def test_a_deleted_vm_comes_back_under_its_name_and_hand_written_vms_are_left_alone(
        cluster: Cluster, request_name: str):
    cluster.apply(scenario_request(request_name).replicas(4).obj())
    request = cluster.converged(request_name, 4)
    victim = f"{request_name}-0002"
    old = cluster.get("vm", victim)
    cluster.kubectl("delete", "vm", victim, "--wait=false")

    def back() -> bool:
        vm = cluster.get("vm", victim)
        return vm["metadata"]["uid"] != old["metadata"]["uid"]

    eventually(back, timeout=HEAL_TIMEOUT, what=f"{victim} recreated",
               retry_on=(AssertionError, OSError, LookupError))
    cluster.converged(request_name, 4)
    assert any(event["reason"] == "Healing" and victim in event["message"] for event in cluster.events(request_name))

    node = next(iter(cluster.compute_nodes()))
    order = Order(RequestRef(request["metadata"]["uid"], cluster.namespace, request_name), 10, SMALL,
                  "lob123-rhel-6.0")
    by_hand = virtual_machine(order, node, 9, [ImageHolder("s", "r", "http://127.0.0.1:1/x.img")], "1Gi")
    del by_hand["metadata"]["ownerReferences"]
    cluster.apply(by_hand)
    try:
        request = cluster.converged(request_name, 4)
        assert request["status"]["replicas"] == 4 and len(cluster.vms(request_name)) == 5
        assert "ownerReferences" not in cluster.get("vm", by_hand["metadata"]["name"])["metadata"]
    finally:
        cluster.kubectl("delete", "vm", by_hand["metadata"]["name"], "--ignore-not-found")


def _node_with_vms(cluster: Cluster, name: str) -> str:
    return Counter(cluster.vm_nodes(name).values()).most_common(1)[0][0]


def _moved_off(cluster: Cluster, name: str, node: str, before: dict[str, str]) -> dict[str, str]:
    def moved() -> dict[str, str] | None:
        now = cluster.vm_nodes(name)
        return now if sorted(now) == sorted(before) and node not in now.values() else None

    return eventually(moved, timeout=REQUEST_TIMEOUT, what=f"{name}'s VMs re-placed off {node}")


def test_vms_of_a_deleted_node_come_back_elsewhere_under_their_names(cluster: Cluster, request_name: str):
    cluster.apply(scenario_request(request_name).replicas(8).obj())
    cluster.converged(request_name, 8)
    before = cluster.vm_nodes(request_name)
    node = _node_with_vms(cluster, request_name)
    saved = cluster.get("node", node)
    cluster.kubectl("delete", "node", node)
    try:
        after = _moved_off(cluster, request_name, node, before)
        assert {vm: n for vm, n in after.items() if before[vm] != node} == {
            vm: n for vm, n in before.items() if n != node}, "VMs of other nodes moved"
        cluster.converged(request_name, 8)
        assert any(e["reason"] == "NodeGone" and node in e["message"] for e in cluster.events(request_name))
    finally:
        cluster.restore_node(saved)


def test_vms_of_an_out_of_service_node_come_back_elsewhere(cluster: Cluster, request_name: str):
    cluster.apply(scenario_request(request_name).replicas(8).obj())
    cluster.converged(request_name, 8)
    before = cluster.vm_nodes(request_name)
    node = _node_with_vms(cluster, request_name)
    taint = "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute"
    cluster.kubectl("taint", "node", node, taint)
    try:
        _moved_off(cluster, request_name, node, before)
        cluster.converged(request_name, 8)
    finally:
        cluster.kubectl("taint", "node", node, f"{taint}-")


def test_vms_of_a_not_ready_node_stay_and_the_status_says_why(cluster: Cluster, request_name: str):
    cluster.apply(scenario_request(request_name).replicas(8).obj())
    cluster.converged(request_name, 8)
    before = {vm["metadata"]["name"]: vm["metadata"]["uid"] for vm in cluster.vms(request_name)}
    node = _node_with_vms(cluster, request_name)
    cluster.set_node_ready(node, "Unknown")
    try:
        def told() -> dict | None:
            request = cluster.get("dr", request_name)
            ready = cluster.condition(request, "Ready")
            said = ready["status"] == "False" and f"on {node}" in ready["message"]
            said = said and "left in place" in ready["message"]
            warned = any(e["reason"] == "NodeNotReady" for e in cluster.events(request_name))
            return request if said and warned else None

        request = eventually(told, timeout=REQUEST_TIMEOUT, what="the status says the NotReady node's VMs stay")
        assert {vm["metadata"]["name"]: vm["metadata"]["uid"] for vm in cluster.vms(request_name)} == before
        assert cluster.condition(request, "Stalled")["status"] == "False"
        health, _ = argocd_health(request)
        assert health == "Progressing"
    finally:
        cluster.set_node_ready(node, "True")
    cluster.converged(request_name, 8)
    assert {vm["metadata"]["name"]: vm["metadata"]["uid"] for vm in cluster.vms(request_name)} == before


def test_a_waiting_request_is_placed_once_a_node_is_added(cluster: Cluster, request_name: str):
    wanted = cluster.capacity_for(LARGE) + 1
    cluster.apply(scenario_request(request_name).replicas(wanted).instancetype(LARGE).obj())
    cluster.stalled(request_name, "InsufficientCapacity")
    rack = cluster.rack_of(next(iter(cluster.compute_nodes().values())))
    cluster.kubectl("label", "node", SPARE_COMPUTE, f"{Role.COMPUTE.node_label}=true",
                    f"topology.rackmesh.io/rack={rack}", "--overwrite")
    request = cluster.converged(request_name, wanted)
    assert cluster.condition(request, "Stalled")["status"] == "False"
    assert SPARE_COMPUTE in cluster.vm_nodes(request_name).values()


def test_a_waiting_request_is_placed_once_an_image_copy_appears(cluster: Cluster, request_name: str):
    cluster.apply(scenario_request(request_name).replicas(2).image(LATE_COPY_IMAGE).obj())
    cluster.stalled(request_name, "InsufficientImageReplicas")
    cluster.kubectl("label", "node", SPARE_STORAGE, f"{Role.STORAGE.node_label}=true", "--overwrite")
    request = cluster.converged(request_name, 2)
    assert SPARE_STORAGE in {copy["node"] for copy in request["status"]["imageCopies"]}


def test_a_waiting_request_is_placed_once_its_instancetype_is_created(cluster: Cluster, request_name: str):
    instancetype = f"{request_name}-type"
    cluster.apply(scenario_request(request_name).replicas(2).instancetype(instancetype).obj())
    cluster.stalled(request_name, "UnknownInstancetype")
    cluster.apply({"apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachineClusterInstancetype",
                   "metadata": {"name": instancetype}, "spec": {"cpu": {"guest": 1}, "memory": {"guest": "1Gi"}}})
    try:
        cluster.converged(request_name, 2)
    finally:
        cluster.delete_request(request_name)
        cluster.kubectl("delete", "virtualmachineclusterinstancetype", instancetype, "--ignore-not-found")


def test_a_waiting_request_is_placed_once_another_request_is_scaled_in(cluster: Cluster, request_name: str):
    hog = f"{request_name}-hog"
    room = cluster.capacity_for(LARGE)
    cluster.apply(scenario_request(hog).replicas(room).instancetype(LARGE).obj())
    try:
        cluster.converged(hog, room)
        cluster.apply(scenario_request(request_name).replicas(2).instancetype(LARGE).obj())
        cluster.stalled(request_name, "InsufficientCapacity")
        cluster.kubectl("scale", f"dr/{hog}", f"--replicas={room - 2}")
        cluster.converged(request_name, 2)
        cluster.converged(hog, room - 2)
    finally:
        cluster.delete_request(hog)
