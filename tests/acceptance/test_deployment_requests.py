"""A DeploymentRequest end to end, as a user sees it through kubectl (sandbox and kind alike).

Case matrix:
- N VMs requested: exactly N VirtualMachines, named from the request, each pinned to one compute node
  with room for it, valid against KubeVirt's schema, spread over racks, disks from located copies;
  the request reaches Ready with a status that says where they went; an Event per phase
- more than the compute nodes can hold, an image with one holder, an instancetype that does not
  exist: no VM at all; Pending, Stalled with the reason (`kubectl wait --for=condition=Stalled`), one
  Warning Event, and Argo CD's health check says Degraded
- the usable example (pod network, masquerade, cloud-init, an SSH key): its VMs carry the template and
  stay valid against KubeVirt's schema
- deleting a request removes its VMs
"""

from collections import Counter
from pathlib import Path

import pytest
import yaml

from rackmesh.quantities import Resources
from rackmesh_sandbox.kube_api.schema import load_kubevirt_schemas
from tests.acceptance.conftest import LARGE, REQUEST_TIMEOUT, SINGLE_COPY_IMAGE, Cluster, scenario_request
from tests.support.argocd import argocd_health
from tests.support.waiting import eventually

VM_SCHEMA = load_kubevirt_schemas()["VirtualMachine"]
USABLE_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lob123-ssh.yaml"


def conditions_of(request: dict) -> dict[str, dict]:
    return {c["type"]: c for c in request["status"]["conditions"]}


def test_n_vms_are_pinned_to_nodes_with_room_spread_valid_and_ready(cluster: Cluster, request_name: str):
    replicas = min(10, cluster.capacity_for(LARGE))
    cluster.apply(scenario_request(request_name).replicas(replicas).instancetype(LARGE).obj())
    request = cluster.wait_for_phase(request_name, "Ready", "Failed")
    assert request["status"]["phase"] == "Ready", conditions_of(request)

    vms = cluster.vms(request_name)
    assert sorted(vm["metadata"]["name"] for vm in vms) == [f"{request_name}-{i:04d}" for i in range(replicas)]
    nodes = cluster.compute_nodes()
    pinned: dict[str, int] = Counter()
    for vm in vms:
        assert VM_SCHEMA.errors(vm) == [], vm["metadata"]["name"]
        assert vm["metadata"]["ownerReferences"][0]["uid"] == request["metadata"]["uid"]
        assert vm["spec"]["instancetype"]["name"] == LARGE
        assert "resources" not in vm["spec"]["template"]["spec"]["domain"]
        assert vm["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 0  # the template's
        node = vm["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"]
        assert node in nodes and vm["metadata"]["labels"]["rackmesh.io/node"] == node
        pinned[node] += 1
    launchers = Counter(pod["spec"].get("nodeName") for pod in cluster.launcher_pods(request_name))
    assert launchers == pinned, "a launcher pod is not scheduled on its VM's node"
    for node, held in cluster.pod_requests_by_node().items():
        if node in nodes:
            left = Resources.parse(**{k: nodes[node]["status"]["allocatable"][k] for k in ("cpu", "memory")}) - held
            assert left.cpu_millis >= 0 and left.memory_bytes >= 0, f"{node} was given more than it has"
    racks = {cluster.rack_of(nodes[node]) for node in pinned}
    assert racks == {cluster.rack_of(node) for node in nodes.values()}, "VMs are not spread over every rack"

    status = request["status"]
    assert (status["replicas"], status["readyReplicas"]) == (replicas, replicas)
    assert {p["node"]: p["count"] for p in status["placements"]} == dict(pinned)
    assert all(p["rack"] == cluster.rack_of(nodes[p["node"]]) for p in status["placements"])
    copies = {c["url"]: c for c in status["imageCopies"]}
    assert len(copies) >= 2 and len({c["rack"] for c in copies.values()}) >= 2
    sources = Counter(vm["spec"]["dataVolumeTemplates"][0]["spec"]["source"]["http"]["url"] for vm in vms)
    assert set(sources) <= set(copies) and all(copies[url]["vms"] == n for url, n in sources.items())
    assert conditions_of(request)["Ready"]["status"] == "True"
    assert conditions_of(request)["Reconciling"]["status"] == conditions_of(request)["Stalled"]["status"] == "False"
    assert status["observedGeneration"] == request["metadata"]["generation"]
    cluster.kubectl("wait", f"dr/{request_name}", "--for=condition=Ready", "--timeout=5s")
    assert argocd_health(request) == ("Healthy", f"{replicas}/{replicas} VMs ready")
    assert status["coordinator"] in nodes
    reasons = {event["reason"] for event in cluster.events(request_name)}
    assert {"Pending", "Placing", "Deploying", "Ready"} <= reasons


def test_vms_carry_the_template_of_the_usable_example(cluster: Cluster, request_name: str):
    """examples/lob123-ssh.yaml: a pod network with masquerade, cloud-init and an SSH key from a Secret."""
    secret, request = yaml.safe_load_all(USABLE_EXAMPLE.read_text())
    request["metadata"]["name"] = request_name
    spec = request["spec"]
    spec["replicas"] = min(spec["replicas"], cluster.capacity_for(spec["instancetype"]))
    spec["template"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 0  # no OS to shut down
    cluster.apply(secret)
    cluster.apply(request)
    done = cluster.wait_for_phase(request_name, "Ready", "Failed")
    assert done["status"]["phase"] == "Ready", conditions_of(done)

    template = request["spec"]["template"]
    wanted = template["spec"]["template"]["spec"]
    vms = cluster.vms(request_name)
    assert len(vms) == request["spec"]["replicas"]
    for vm in vms:
        assert VM_SCHEMA.errors(vm) == [], vm["metadata"]["name"]
        assert vm["metadata"]["labels"]["app"] == "lob123-ssh"
        instance = vm["spec"]["template"]
        assert instance["metadata"]["labels"]["app"] == "lob123-ssh"
        spec = instance["spec"]
        assert spec["networks"] == wanted["networks"] == [{"name": "default", "pod": {}}]
        assert spec["domain"]["devices"]["interfaces"] == wanted["domain"]["devices"]["interfaces"]
        assert spec["domain"]["devices"]["interfaces"][0]["masquerade"] == {}
        assert spec["accessCredentials"] == wanted["accessCredentials"]
        assert spec["volumes"][1:] == wanted["volumes"]
        assert spec["volumes"][1]["cloudInitNoCloud"]["userData"].startswith("#cloud-config")
        assert [disk["name"] for disk in spec["domain"]["devices"]["disks"]] == ["rootdisk", "cloudinit"]
        root = vm["spec"]["dataVolumeTemplates"][0]["spec"]
        assert root["storage"]["resources"]["requests"]["storage"] == template["rootDisk"]["size"]
        assert "http" in root["source"]
    cluster.kubectl("delete", "secret", secret["metadata"]["name"], "--ignore-not-found")


@pytest.mark.parametrize(("reason", "build", "message"), [
    ("InsufficientCapacity", lambda c, r: scenario_request(r).replicas(c.capacity_for(LARGE) + 1)
     .instancetype(LARGE), "can host only"),
    ("InsufficientImageReplicas", lambda c, r: scenario_request(r).replicas(2).image(SINGLE_COPY_IMAGE),
     f"image {SINGLE_COPY_IMAGE}"),
    ("UnknownInstancetype", lambda c, r: scenario_request(r).replicas(2).instancetype("u9.imaginary"),
     "'u9.imaginary' does not exist"),
])
def test_a_request_that_cannot_be_met_now_waits_with_a_reason_and_creates_nothing(
        cluster: Cluster, request_name: str, reason, build, message):
    cluster.apply(build(cluster, request_name).obj())
    request = cluster.stalled(request_name, reason)
    ready, stalled = conditions_of(request)["Ready"], conditions_of(request)["Stalled"]
    assert (request["status"]["phase"], ready["status"], ready["reason"]) == ("Pending", "False", reason)
    assert message in stalled["message"]
    assert conditions_of(request)["Reconciling"]["status"] == "False"
    assert request["status"]["observedGeneration"] == request["metadata"]["generation"]
    assert cluster.vms(request_name) == []
    assert request["status"]["replicas"] == 0
    warnings = [e for e in cluster.events(request_name) if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == [reason]
    assert argocd_health(request) == ("Degraded", f"{reason}: {stalled['message']}")


def test_deleting_a_request_removes_its_vms(cluster: Cluster, request_name: str):
    cluster.apply(scenario_request(request_name).replicas(3).obj())
    cluster.wait_for_phase(request_name, "Ready")
    assert len(cluster.vms(request_name)) == 3
    cluster.kubectl("delete", "dr", request_name)
    eventually(lambda: cluster.vms(request_name) == [], timeout=REQUEST_TIMEOUT,
               what="the request's VMs garbage-collected")
