"""The acceptance scenarios' cluster: the sandbox by default, or a real cluster (kind) when
``RACKMESH_E2E_KUBECONFIG`` names one (``hack/kind-e2e.sh`` sets it).

The scenarios speak only kubectl, so they hold the sandbox and a real cluster to the same assertions.
A cluster must provide: compute nodes in two racks or more, the u1 instancetypes, the image
``lob123-rhel-6.0`` on two storage nodes or more in distinct racks, and ``single-copy-image`` on
exactly one storage node.
"""

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rackmesh.labels import DEFAULT_RACK_LABEL, Role
from rackmesh.quantities import Resources
from tests.support.builders import make_topology
from tests.support.sandbox import run, start
from tests.support.waiting import eventually

IMAGE = "lob123-rhel-6.0"
SINGLE_COPY_IMAGE = "single-copy-image"
REQUEST_TIMEOUT = float(os.environ.get("RACKMESH_E2E_TIMEOUT", "60"))


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
        return self.get("virtualmachines", "-l", f"rackmesh.io/request={request}")["items"]

    def compute_nodes(self) -> dict[str, dict[str, Any]]:
        nodes = self.get("nodes", "-l", f"{Role.COMPUTE.node_label}=true")["items"]
        return {node["metadata"]["name"]: node for node in nodes}

    def rack_of(self, node: dict[str, Any]) -> str:
        return node["metadata"]["labels"].get(DEFAULT_RACK_LABEL, "default")

    def instancetype_size(self, name: str) -> Resources:
        spec = self.get("virtualmachineclusterinstancetype", name)["spec"]
        return Resources.parse(spec["cpu"]["guest"], spec["memory"]["guest"])

    def capacity_for(self, instancetype: str) -> int:
        """How many VMs of ``instancetype`` the compute nodes' allocatable fits, ignoring VMs already there."""
        size = self.instancetype_size(instancetype)
        return sum(Resources.parse(n["status"]["allocatable"]["cpu"], n["status"]["allocatable"]["memory"])
                   .fits_times(size) for n in self.compute_nodes().values())

    def wait_for_phase(self, name: str, *phases: str) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            request = self.get("dr", name)
            return request if (request.get("status") or {}).get("phase") in phases else None

        return eventually(reached, timeout=REQUEST_TIMEOUT, what=f"request {name} in phase {' or '.join(phases)}")

    def events(self, name: str) -> list[dict[str, Any]]:
        return self.get("events", "--field-selector", f"involvedObject.name={name}")["items"]

    def delete_request(self, name: str) -> None:
        self.kubectl("delete", "dr", name, "--ignore-not-found", "--wait=false")
        eventually(lambda: not self.vms(name) and
                   self.kubectl("get", "dr", name, check=False).returncode != 0,
                   timeout=REQUEST_TIMEOUT, what=f"request {name} and its VMs gone")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    external = os.environ.get("RACKMESH_E2E_KUBECONFIG")
    if external:
        yield Cluster(Path(external))
        return
    topology = (make_topology().compute_racks(2, nodes=2, cpu=8, memory="32Gi")
                .storage_racks(2, nodes=1, images=(IMAGE,))
                .node("s-lonely", "storage-0", ["storage"], images=[SINGLE_COPY_IMAGE]))
    sandbox = start(tmp_path_factory.mktemp("acceptance"), topology.obj())
    try:
        yield Cluster(sandbox.state_dir / "kubeconfig")
    finally:
        sandbox.rackmesh("sandbox", "down", "--state-dir", str(sandbox.state_dir))
