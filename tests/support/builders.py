"""Fluent builders that keep tests short (after Kueue's ``MakeWorkload(...).Queue(...).Obj()``)."""

import copy
from pathlib import Path
from typing import Any, Self

import yaml


class RequestBuilder:
    """``make_request("web").replicas(3).instancetype("u1.small").obj()``"""

    def __init__(self, name: str, namespace: str = "default") -> None:
        self._obj: dict[str, Any] = {
            "apiVersion": "rackmesh.io/v1alpha1", "kind": "DeploymentRequest",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "instancetype": "u1.small", "image": "lob123-rhel-6.0"},
        }

    def replicas(self, count: Any) -> Self:
        self._obj["spec"]["replicas"] = count
        return self

    def instancetype(self, name: str) -> Self:
        self._obj["spec"]["instancetype"] = name
        return self

    def image(self, name: str) -> Self:
        self._obj["spec"]["image"] = name
        return self

    def without(self, field: str) -> Self:
        self._obj["spec"].pop(field)
        return self

    # -- spec.template: ``make_request("web").pod_network().cloud_init("#cloud-config").ssh_key("key").obj()``

    def vm_labels(self, **labels: str) -> Self:
        self._template().setdefault("metadata", {}).setdefault("labels", {}).update(labels)
        return self

    def root_disk(self, size: str | None = None, storage_class: str | None = None) -> Self:
        disk = self._template().setdefault("rootDisk", {})
        disk.update({key: value for key, value in (("size", size), ("storageClassName", storage_class)) if value})
        return self

    def preference(self, name: str) -> Self:
        self._machine()["preference"] = {"kind": "VirtualMachineClusterPreference", "name": name}
        return self

    def pod_network(self, binding: str = "masquerade") -> Self:
        self._devices().setdefault("interfaces", []).append({"name": "default", binding: {}})
        self._instance().setdefault("networks", []).append({"name": "default", "pod": {}})
        return self

    def cloud_init(self, user_data: str | None = None, secret: str | None = None) -> Self:
        # KubeVirt names the user data's Secret ``secretRef`` (the network data's is networkDataSecretRef).
        source = {"userData": user_data} if secret is None else {"secretRef": {"name": secret}}
        return self.disk("cloudinit", {"cloudInitNoCloud": source})

    def ssh_key(self, secret: str, propagation: str = "noCloud") -> Self:
        self._instance().setdefault("accessCredentials", []).append({"sshPublicKey": {
            "source": {"secret": {"secretName": secret}}, "propagationMethod": {propagation: {}}}})
        return self

    def extra_disk(self, name: str, size: str) -> Self:
        self._machine().setdefault("dataVolumeTemplates", []).append({
            "metadata": {"name": name},
            "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": size}}}}})
        return self.disk(name, {"dataVolume": {"name": name}})

    def disk(self, name: str, volume: dict[str, Any]) -> Self:
        """A disk of the VM and its volume (``volume`` without its name)."""
        self._devices().setdefault("disks", []).append({"name": name, "disk": {"bus": "virtio"}})
        self._instance().setdefault("volumes", []).append({"name": name, **volume})
        return self

    def template_field(self, path: str, value: Any) -> Self:
        """Set ``spec.template.<path>`` (dotted) to anything, e.g. what the CRD must refuse."""
        *parents, leaf = path.split(".")
        node = self._template()
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
        return self

    def _template(self) -> dict[str, Any]:
        return self._obj["spec"].setdefault("template", {})

    def _machine(self) -> dict[str, Any]:
        return self._template().setdefault("spec", {})

    def _instance(self) -> dict[str, Any]:
        return self._machine().setdefault("template", {}).setdefault("spec", {})

    def _devices(self) -> dict[str, Any]:
        return self._instance().setdefault("domain", {}).setdefault("devices", {})

    def obj(self) -> dict[str, Any]:
        return copy.deepcopy(self._obj)

    def write(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump(self._obj))
        return path


class TopologyBuilder:
    """``make_topology().compute_racks(3, nodes=3).storage_racks(2, nodes=2).write(path)``"""

    def __init__(self) -> None:
        self._nodes: list[dict[str, Any]] = []

    def compute_racks(self, racks: int, nodes: int, cpu: int = 32, memory: str = "128Gi") -> Self:
        for rack in range(racks):
            for node in range(nodes):
                self._nodes.append({"name": f"c-{rack}-{node}", "rack": f"compute-{rack}", "roles": ["compute"],
                                    "cpu": cpu, "memory": memory})
        return self

    def storage_racks(self, racks: int, nodes: int, images: tuple[str, ...] = ("lob123-rhel-6.0",)) -> Self:
        for rack in range(racks):
            for node in range(nodes):
                self._nodes.append({"name": f"s-{rack}-{node}", "rack": f"storage-{rack}", "roles": ["storage"],
                                    "images": list(images)})
        return self

    def node(self, name: str, rack: str, roles: list[str], **fields: Any) -> Self:
        self._nodes.append({"name": name, "rack": rack, "roles": roles, **fields})
        return self

    def obj(self) -> dict[str, Any]:
        return {"nodes": copy.deepcopy(self._nodes)}

    def write(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump(self.obj()))
        return path


def make_request(name: str, namespace: str = "default") -> RequestBuilder:
    return RequestBuilder(name, namespace)


def make_topology() -> TopologyBuilder:
    return TopologyBuilder()
