"""The objects a fresh sandbox cluster starts with: its Nodes and KubeVirt's u1 instancetypes."""

from typing import Any

from rackmesh.kube_client import CLUSTER_INSTANCETYPES, NODES, KubeApiError, KubeClient, ResourceRef
from rackmesh.labels import HOSTNAME_LABEL
from rackmesh_sandbox.topology import NodeSpec, Topology

NAMESPACES = ResourceRef("", "v1", "namespaces", namespaced=False)

# kubevirt/common-instancetypes, the "u" series: (vCPUs, memory).
U1_INSTANCETYPES: dict[str, tuple[int, str]] = {
    "u1.nano": (1, "512Mi"), "u1.micro": (1, "1Gi"), "u1.small": (1, "2Gi"), "u1.medium": (1, "4Gi"),
    "u1.2xmedium": (2, "4Gi"), "u1.large": (2, "8Gi"), "u1.xlarge": (4, "16Gi"), "u1.2xlarge": (8, "32Gi"),
    "u1.4xlarge": (16, "64Gi"), "u1.8xlarge": (32, "128Gi"),
}


def node_object(node: NodeSpec, rack_label: str) -> dict[str, Any]:
    labels = {HOSTNAME_LABEL: node.name, rack_label: node.rack, "kubernetes.io/os": "linux"}
    labels.update({role.node_label: "true" for role in node.roles})
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name, "labels": labels}}


def node_status(node: NodeSpec) -> dict[str, Any]:
    resources = {"cpu": node.cpu, "memory": node.memory, "pods": "110"}
    return {"status": {
        "capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "rackmesh sandbox node"}],
        "nodeInfo": {"kubeletVersion": "v1.32.0-rackmesh-sandbox", "architecture": "amd64",
                     "operatingSystem": "linux"},
    }}


def instancetype_object(name: str, cpus: int, memory: str) -> dict[str, Any]:
    return {
        "apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachineClusterInstancetype",
        "metadata": {"name": name, "labels": {"instancetype.kubevirt.io/class": "general.purpose"}},
        "spec": {"cpu": {"guest": cpus}, "memory": {"guest": memory}},
    }


async def _create(kube: KubeClient, resource: ResourceRef, body: dict[str, Any]) -> None:
    try:
        await kube.create(resource, body)
    except KubeApiError as exc:
        if exc.status != 409:
            raise


async def seed(kube: KubeClient, topology: Topology, rack_label: str) -> None:
    """Create the default namespace, one Node per topology node (status written as a kubelet would),
    and the u1 instancetypes. Idempotent."""
    await _create(kube, NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    for node in topology.nodes:
        await _create(kube, NODES, node_object(node, rack_label))
        await kube.patch(NODES, node.name, node_status(node), subresource="status")
    for name, (cpus, memory) in U1_INSTANCETYPES.items():
        await _create(kube, CLUSTER_INSTANCETYPES, instancetype_object(name, cpus, memory))
