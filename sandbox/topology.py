"""The sandbox topology file: which nodes exist, in which rack, with which roles and resources."""

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from rackmesh.labels import DNS_LABEL, Role
from rackmesh.protocol import IMAGE_NAME
from rackmesh.quantities import parse_quantity

# A storage-only node's Node still needs an allocatable; it hosts no VMs, so a file may leave it out. A node
# that can host VMs (compute, or no role yet: it may be labelled compute) must state its own.
STORAGE_ONLY_CPU = "8"
STORAGE_ONLY_MEMORY = "32Gi"


class TopologyError(ValueError):
    """The topology file is not usable; the message says which entry and why."""


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    name: str
    rack: str
    roles: tuple[Role, ...]
    cpu: str
    memory: str
    images: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Topology:
    nodes: tuple[NodeSpec, ...]

    @classmethod
    def load(cls, path: Path) -> "Topology":
        try:
            document = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise TopologyError(f"{path}: {exc}") from exc
        return cls.parse(document, source=str(path))

    @classmethod
    def parse(cls, document: Any, source: str = "topology") -> "Topology":
        if not isinstance(document, dict) or not isinstance(document.get("nodes"), list) or not document["nodes"]:
            raise TopologyError(f"{source}: expected a mapping with a non-empty list 'nodes'")
        nodes = tuple(_node(entry, f"{source}: nodes[{index}]{_named(entry)}")
                      for index, entry in enumerate(document["nodes"]))
        names = [node.name for node in nodes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise TopologyError(f"{source}: duplicate node names {duplicates}")
        return cls(nodes)

    def racks(self, role: Role) -> dict[str, list[NodeSpec]]:
        racks: dict[str, list[NodeSpec]] = {}
        for node in self.nodes:
            if role in node.roles:
                racks.setdefault(node.rack, []).append(node)
        return racks


def _node(entry: Any, where: str) -> NodeSpec:
    if not isinstance(entry, dict):
        raise TopologyError(f"{where}: expected a mapping")
    unknown = set(entry) - {"name", "rack", "roles", "cpu", "memory", "images"}
    if unknown:
        raise TopologyError(f"{where}: unknown fields {sorted(unknown)}")
    name, rack = str(entry.get("name", "")), str(entry.get("rack", ""))
    for field, value in (("name", name), ("rack", rack)):
        if not DNS_LABEL.match(value):
            raise TopologyError(f"{where}: {field} {value!r} must be a DNS label (a-z, 0-9, '-')")
    # A node without roles is in the cluster but not in rackmesh until it is labelled with a role (as a
    # DaemonSet would then start its agent); its agent waits for that.
    roles = entry.get("roles")
    if not isinstance(roles, list) or not set(roles) <= {role.value for role in Role}:
        raise TopologyError(f"{where}: roles must be a subset of {[role.value for role in Role]}")
    missing = [field for field in ("cpu", "memory") if field not in entry]
    if missing and set(roles) != {Role.STORAGE.value}:
        raise TopologyError(f"{where}: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing; a "
                            f"compute node (or one without a role yet, which may be labelled compute) must state "
                            f"its cpu and memory, e.g. cpu: 32, memory: 128Gi")
    cpu, memory = str(entry.get("cpu", STORAGE_ONLY_CPU)), str(entry.get("memory", STORAGE_ONLY_MEMORY))
    for field, value in (("cpu", cpu), ("memory", memory)):
        try:
            if parse_quantity(value) <= 0:
                raise ValueError
        except ValueError:
            raise TopologyError(f"{where}: {field} {value!r} is not a positive quantity") from None
    images = entry.get("images", [])
    if not isinstance(images, list) or not all(isinstance(i, str) and IMAGE_NAME.match(i) for i in images):
        raise TopologyError(f"{where}: images must be a list of image names")
    if images and roles and Role.STORAGE.value not in roles:
        raise TopologyError(f"{where}: only storage nodes (or nodes without a role yet) hold images")
    return NodeSpec(name, rack, tuple(Role(role) for role in roles), cpu, memory, tuple(images))


def _named(entry: Any) -> str:
    """`` (c-a-1)`` when the entry has a name, so a message points at the node as well as its index."""
    return f" ({entry['name']})" if isinstance(entry, dict) and entry.get("name") else ""
