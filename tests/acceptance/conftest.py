"""The acceptance scenarios' cluster: the sandbox by default, or a real cluster (kind) when
``RACKMESH_E2E_KUBECONFIG`` names one (``hack/kind-e2e.sh`` sets it).

The scenarios speak only kubectl, so they hold the sandbox and a real cluster to the same assertions.
A cluster must provide: compute nodes in two racks or more, with room for 8 VMs of the small instancetype
(the scenario that scales takes what there is, up to 60); the u1 instancetypes; the image
``lob123-rhel-6.0`` on two storage nodes or more in distinct racks; ``single-copy-image`` on exactly one
storage node; ``late-copy-image`` on one storage node and on the spare storage node; and two nodes without
rackmesh role labels, which the scenarios label to add them:
a spare compute node (``RACKMESH_E2E_SPARE_COMPUTE``, default ``c-spare``) with room for a VM of the large
instancetype, and a spare storage node (``RACKMESH_E2E_SPARE_STORAGE``, default ``s-spare``).

Every scenario's VMs stop at once (``terminationGracePeriodSeconds: 0`` through the request's template): a
VM without an operating system would otherwise take KubeVirt's default grace of 180 s to go.
"""

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rackmesh.labels import DEFAULT_RACK_LABEL, REQUEST_LABEL, Role
from rackmesh.pod_requests import is_terminal, pod_requests
from rackmesh.quantities import Resources
from rackmesh.virt_launcher import APP_LABEL, LAUNCHER
from rackmesh.vm_room import instancetype_size
from tests.support.builders import RequestBuilder, make_request, make_topology
from tests.support.sandbox import run, start
from tests.support.waiting import eventually

IMAGE = "lob123-rhel-6.0"
SINGLE_COPY_IMAGE = "single-copy-image"
LATE_COPY_IMAGE = "late-copy-image"  # one copy until the spare storage node joins
SPARE_COMPUTE = os.environ.get("RACKMESH_E2E_SPARE_COMPUTE", "c-spare")
SPARE_STORAGE = os.environ.get("RACKMESH_E2E_SPARE_STORAGE", "s-spare")
REQUEST_TIMEOUT = float(os.environ.get("RACKMESH_E2E_TIMEOUT", "60"))
# The sandbox recreates a deleted VM within 5 s; a real cluster may set more.
HEAL_TIMEOUT = float(os.environ.get("RACKMESH_E2E_HEAL_TIMEOUT", "5"))
# The scenarios' two sizes: one of which many VMs fit, and one that fills the nodes in few VMs. Each kind node
# reports the whole host's cpu and memory, so hack/kind-e2e.sh picks smaller ones than the sandbox's.
SMALL = os.environ.get("RACKMESH_E2E_SMALL_INSTANCETYPE", "u1.nano")
LARGE = os.environ.get("RACKMESH_E2E_LARGE_INSTANCETYPE", "u1.large")


def scenario_request(name: str) -> RequestBuilder:
    """A request of the small instancetype whose VMs stop at once."""
    return (make_request(name).instancetype(SMALL)
            .template_field("spec.template.spec.terminationGracePeriodSeconds", 0))


class Cluster:
    """kubectl against one cluster, with the few reads the scenarios share."""

    def __init__(self, kubeconfig: Path, namespace: str = "default") -> None:
        self.kubeconfig, self.namespace = kubeconfig, namespace

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> Any:
        return run(["kubectl", "--kubeconfig", str(self.kubeconfig), "-n", self.namespace, *args],
                   stdin=stdin, check=check)

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(obj))

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def vms(self, request: str) -> list[dict[str, Any]]:
        """The VMs labelled for the request (the request's own, and any written by hand with its label)."""
        return self.get("virtualmachines", "-l", f"{REQUEST_LABEL}={request}")["items"]

    def owned_vms(self, request: str) -> list[dict[str, Any]]:
        """The VMs the request controls (its ownerReference)."""
        return [vm for vm in self.vms(request)
                if any(ref.get("controller") and ref["name"] == request for ref in vm["metadata"].get(
                    "ownerReferences") or [])]

    def compute_nodes(self) -> dict[str, dict[str, Any]]:
        nodes = self.get("nodes", "-l", f"{Role.COMPUTE.node_label}=true")["items"]
        return {node["metadata"]["name"]: node for node in nodes}

    def rack_of(self, node: dict[str, Any]) -> str:
        return node["metadata"]["labels"].get(DEFAULT_RACK_LABEL, "default")

    def instancetype_size(self, name: str) -> Resources:
        """One VM of ``name`` as rackmesh counts it: its launcher pod's requests, a full core per vCPU."""
        return instancetype_size(self.get("virtualmachineclusterinstancetype", name))

    def capacity_for(self, instancetype: str) -> int:
        """How many VMs of ``instancetype`` the compute nodes fit: allocatable less the requests of the pods
        bound there (DaemonSets, system pods, launcher pods of VMs already there), as the agents count."""
        size, held = self.instancetype_size(instancetype), self.pod_requests_by_node()
        return sum((Resources.parse(node["status"]["allocatable"]["cpu"], node["status"]["allocatable"]["memory"])
                    - held.get(name, Resources())).fits_times(size) for name, node in self.compute_nodes().items())

    def launcher_pods(self, request: str) -> list[dict[str, Any]]:
        """The virt-launcher pods of the request's VMs (KubeVirt copies the VM template's labels onto them)."""
        return self.get("pods", "-l", f"{REQUEST_LABEL}={request},{APP_LABEL}={LAUNCHER}")["items"]

    def pod_requests_by_node(self) -> dict[str, Resources]:
        """Node -> the requests of the pods bound to it that are not done."""
        held: dict[str, Resources] = {}
        for pod in self.get("pods", "--all-namespaces")["items"]:
            node = pod["spec"].get("nodeName")
            if node and not is_terminal(pod):
                held[node] = held.get(node, Resources()) + pod_requests(pod)
        return held

    def converged(self, name: str, replicas: int) -> dict[str, Any]:
        """Wait until exactly ``replicas`` VMs exist, all ready, and the status says so for this spec."""
        def done() -> dict[str, Any] | None:
            request, vms = self.get("dr", name), self.owned_vms(name)
            status = request.get("status") or {}
            ready = {c["type"]: c["status"] for c in status.get("conditions") or []}.get("Ready")
            exact = (len(vms) == status.get("replicas") == status.get("readyReplicas") == replicas
                     and request["spec"]["replicas"] == replicas)
            observed = status.get("observedGeneration") == request["metadata"]["generation"]
            return request if exact and observed and status.get("phase") == "Ready" and ready == "True" else None

        return eventually(done, timeout=REQUEST_TIMEOUT, what=f"{name} converged to {replicas} ready VMs")

    def vm_nodes(self, name: str) -> dict[str, str]:
        """The request's VMs: name -> node it is pinned to."""
        return {vm["metadata"]["name"]: vm["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"]
                for vm in self.owned_vms(name)}

    def condition(self, request: dict[str, Any], type_: str) -> dict[str, Any]:
        return {c["type"]: c for c in request["status"]["conditions"]}[type_]

    def stalled(self, name: str, reason: str) -> dict[str, Any]:
        """``kubectl wait --for=condition=Stalled``, then the request, which must be stalled for ``reason``."""
        self.kubectl("wait", f"dr/{name}", "--for=condition=Stalled", f"--timeout={REQUEST_TIMEOUT:.0f}s")
        request = self.get("dr", name)
        assert self.condition(request, "Stalled")["reason"] == reason, request["status"]
        return request

    def set_node_ready(self, node: str, status: str) -> None:
        condition = {"type": "Ready", "status": status, "reason": "RackmeshE2E", "message": "set by the e2e test"}
        self.kubectl("patch", "node", node, "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": {"conditions": [condition]}}))

    def restore_node(self, saved: dict[str, Any]) -> None:
        """Create a deleted Node again as it was (as its kubelet would re-register it)."""
        meta = {key: saved["metadata"][key] for key in ("name", "labels", "annotations") if key in saved["metadata"]}
        self.kubectl("create", "-f", "-", stdin=json.dumps({**saved, "metadata": meta, "status": {}}))
        self.kubectl("patch", "node", meta["name"], "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": saved["status"]}))

    def wait_for_phase(self, name: str, *phases: str) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            request = self.get("dr", name)
            return request if (request.get("status") or {}).get("phase") in phases else None

        return eventually(reached, timeout=REQUEST_TIMEOUT, what=f"request {name} in phase {' or '.join(phases)}")

    def events(self, name: str) -> list[dict[str, Any]]:
        return self.get("events", "--field-selector", f"involvedObject.name={name}")["items"]

    def delete_request(self, name: str) -> None:
        """Delete the request and wait until it, its VMs and their launcher pods are gone (the next scenario
        counts the room they held)."""
        self.kubectl("delete", "dr", name, "--ignore-not-found", "--wait=false")
        eventually(lambda: not self.vms(name) and not self.get("pods", "-l", f"{REQUEST_LABEL}={name}")["items"]
                   and self.kubectl("get", "dr", name, check=False).returncode != 0,
                   timeout=REQUEST_TIMEOUT, what=f"request {name}, its VMs and their pods gone")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    external = os.environ.get("RACKMESH_E2E_KUBECONFIG")
    if external:
        yield Cluster(Path(external))
        return
    topology = (make_topology().compute_racks(2, nodes=2, cpu=32, memory="128Gi")
                .storage_racks(2, nodes=1, images=(IMAGE,))
                .node("s-lonely", "storage-0", ["storage"], images=[SINGLE_COPY_IMAGE, LATE_COPY_IMAGE])
                .node(SPARE_COMPUTE, "compute-1", [], cpu=32, memory="128Gi")
                .node(SPARE_STORAGE, "storage-1", [], cpu=8, memory="32Gi", images=[LATE_COPY_IMAGE]))
    sandbox = start(tmp_path_factory.mktemp("acceptance"), topology.obj())
    try:
        yield Cluster(sandbox.state_dir / "kubeconfig")
    finally:
        sandbox.rackmesh("sandbox", "down", "--state-dir", str(sandbox.state_dir))


@pytest.fixture
def request_name(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A request name of its own per test case (parameters included), so no case sees another's Events;
    the request is deleted afterwards."""
    digest = hashlib.blake2b(request.node.name.encode(), digest_size=3).hexdigest()
    name = f"{request.node.originalname.removeprefix('test_').replace('_', '-')[:30].strip('-')}-{digest}"
    yield name
    cluster.delete_request(name)
