"""The objects a fresh sandbox cluster starts with: its Nodes, KubeVirt's u1 instancetypes, the manifests'
identities, RBAC and admission policy, and ServiceAccount tokens for the components."""

import datetime
import platform
import subprocess
import uuid
from pathlib import Path
from typing import Any

import yaml

from rackmesh.kube_client import CLUSTER_INSTANCETYPES, NODES, PODS, KubeApiError, KubeClient, ResourceRef
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


def node_status(node: NodeSpec, address: str | None = None) -> dict[str, Any]:
    """As a kubelet reports it, with every field the API's clients require of a NodeStatus (the official Python
    client refuses a Node whose ``nodeInfo`` lacks one); ``address`` is the node's InternalIP (where its agent
    listens). The ids are derived from the node's name, so a node keeps them across sandbox restarts."""
    resources = {"cpu": node.cpu, "memory": node.memory, "pods": "110"}
    addresses = [{"type": "InternalIP", "address": address}] if address else []
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [
        {"type": type_, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now,
         "lastTransitionTime": now}
        for type_, status, reason, message in (
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status (rackmesh sandbox node)"),
        )
    ]
    machine = uuid.uuid5(uuid.NAMESPACE_DNS, f"{node.name}.nodes.rackmesh.sandbox")
    return {"status": {
        "capacity": resources, "allocatable": resources,
        "addresses": [*addresses, {"type": "Hostname", "address": node.name}],
        "conditions": conditions,
        "nodeInfo": {
            "machineID": machine.hex, "systemUUID": str(machine),
            "bootID": str(uuid.uuid5(machine, "boot")),
            "kernelVersion": platform.release(), "osImage": "rackmesh sandbox",
            "containerRuntimeVersion": "rackmesh-sandbox://0.1.0",  # nothing runs containers: agents are processes
            "kubeletVersion": "v1.32.0-rackmesh-sandbox",
            "kubeProxyVersion": "",  # deprecated (KEP-4004: kubelets are to leave it empty)
            "operatingSystem": "linux", "architecture": "amd64",
        },
    }}


def instancetype_object(name: str, cpus: int, memory: str) -> dict[str, Any]:
    return {
        "apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachineClusterInstancetype",
        "metadata": {"name": name, "labels": {"instancetype.kubevirt.io/class": "general.purpose"}},
        "spec": {"cpu": {"guest": cpus}, "memory": {"guest": memory}},
    }


async def _create(kube: KubeClient, resource: ResourceRef, body: dict[str, Any], namespace: str | None = None) -> None:
    try:
        await kube.create(resource, body, namespace)
    except KubeApiError as exc:
        if exc.status != 409:
            raise


async def seed(kube: KubeClient, topology: Topology, rack_label: str, addresses: dict[str, str] | None = None) -> None:
    """Create the default namespace, one Node per topology node (status written as a kubelet would, with
    the InternalIP of ``addresses``), and the u1 instancetypes. Idempotent."""
    await _create(kube, NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    for node in topology.nodes:
        await _create(kube, NODES, node_object(node, rack_label))
        await kube.patch(NODES, node.name, node_status(node, (addresses or {}).get(node.name)), subresource="status")
    for name, (cpus, memory) in U1_INSTANCETYPES.items():
        await _create(kube, CLUSTER_INSTANCETYPES, instancetype_object(name, cpus, memory))


MANIFESTS = Path(__file__).resolve().parents[1] / "manifests" / "default"
SERVICE_ACCOUNTS = ResourceRef("", "v1", "serviceaccounts")
# What of the manifests decides who may do what, by kind: the sandbox applies exactly these.
SECURITY_KINDS: dict[str, ResourceRef] = {
    "Namespace": NAMESPACES,
    "ServiceAccount": SERVICE_ACCOUNTS,
    "ClusterRole": ResourceRef("rbac.authorization.k8s.io", "v1", "clusterroles", namespaced=False),
    "ClusterRoleBinding": ResourceRef("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False),
    "Role": ResourceRef("rbac.authorization.k8s.io", "v1", "roles"),
    "RoleBinding": ResourceRef("rbac.authorization.k8s.io", "v1", "rolebindings"),
    "ValidatingAdmissionPolicy": ResourceRef("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies",
                                             namespaced=False),
    "ValidatingAdmissionPolicyBinding": ResourceRef("admissionregistration.k8s.io", "v1",
                                                    "validatingadmissionpolicybindings", namespaced=False),
}


def manifest_security() -> list[dict[str, Any]]:
    """The identities, RBAC and admission policies of ``manifests/default``, rendered by kubectl's kustomize."""
    rendered = subprocess.run(["kubectl", "kustomize", str(MANIFESTS)], capture_output=True, text=True,
                              check=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc and doc.get("kind") in SECURITY_KINDS]


async def apply_manifest_security(kube: KubeClient) -> None:
    """Create them as an install would (idempotent): the sandbox then authorizes with the shipped RBAC."""
    for doc in manifest_security():
        await _create(kube, SECURITY_KINDS[doc["kind"]], doc, doc["metadata"].get("namespace"))


async def agent_pod(kube: KubeClient, account: tuple[str, str], node: str, host_ip: str,
                    pod_ip: str) -> dict[str, Any]:
    """The Pod object the DaemonSet would have made for ``node``'s agent (nothing runs it: the agent is a
    process of the sandbox), so that its tokens are bound to a pod on that node, as a cluster's are: the
    token names the node, and outlives the Node object's deletion as a pod does until it is collected.

    ``host_ip`` is the node's address, where the agent listens (its hostPort); ``pod_ip`` one of the pod
    network, where nothing listens: the agent must advertise, and be certified for, the node's."""
    namespace, service_account = account
    name = f"rackmesh-agent-{node}"
    await _create(kube, PODS, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "rackmesh-agent"}},
        "spec": {"nodeName": node, "serviceAccountName": service_account,
                 "containers": [{"name": "agent", "image": "rackmesh-agent:0.1.0"}]}}, namespace)
    status = {"phase": "Running", "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "podIP": pod_ip,
              "podIPs": [{"ip": pod_ip}]}
    return await kube.patch(PODS, name, {"status": status}, namespace, subresource="status")


async def service_account_token(kube: KubeClient, account: tuple[str, str], seconds: int,
                                pod: dict[str, Any] | None = None, audience: str | None = None) -> str:
    """A TokenRequest's token for ``account`` (namespace, name): bound to ``pod`` (the object; and so to its node) when
    given, as a projected token is; for ``audience`` when given, else the API's."""
    spec: dict[str, Any] = {"expirationSeconds": seconds}
    if audience:
        spec["audiences"] = [audience]
    namespace, name = account
    if pod:
        spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod["metadata"]["name"],
                                  "uid": pod["metadata"]["uid"]}
    answer = await kube.create_subresource(SERVICE_ACCOUNTS, name, "token", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}, namespace)
    return str(answer["status"]["token"])
