"""Who this agent is: its Node's name, rack, roles and allocatable resources."""

import dataclasses
import logging
from typing import Any

from rackmesh.kube_client import NODES, KubeClient
from rackmesh.labels import Role, roles_of
from rackmesh.quantities import Resources

DEFAULT_RACK = "default"

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class NodeIdentity:
    name: str
    rack: str
    roles: list[Role]
    allocatable: Resources

    @classmethod
    def from_node(cls, node: dict[str, Any], rack_label: str) -> "NodeIdentity":
        labels: dict[str, str] = node["metadata"].get("labels") or {}
        name = node["metadata"]["name"]
        rack = labels.get(rack_label)
        if not rack:
            logger.warning("node has no rack label; it joins the default rack",
                           extra={"node": name, "rack_label": rack_label, "rack": DEFAULT_RACK})
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        return cls(name=name, rack=rack or DEFAULT_RACK, roles=roles_of(labels),
                   allocatable=Resources.parse(allocatable.get("cpu", 0), allocatable.get("memory", 0)))


async def read_identity(kube: KubeClient, node_name: str, rack_label: str) -> NodeIdentity:
    return NodeIdentity.from_node(await kube.get(NODES, node_name), rack_label)
