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
