"""Well-known label keys and values, fixed by the product's contract (BRIEF §2)."""

import re
from enum import StrEnum

GROUP = "rackmesh.io"
VERSION = "v1alpha1"
REQUEST_KIND = "DeploymentRequest"
REQUEST_PLURAL = "deploymentrequests"

REQUEST_LABEL = "rackmesh.io/request"
NODE_LABEL = "rackmesh.io/node"
HOSTNAME_LABEL = "kubernetes.io/hostname"
DEFAULT_RACK_LABEL = "topology.rackmesh.io/rack"
DEFAULT_RACK = "default"  # the rack of a node without the rack label

# Kubernetes name rules that rackmesh's own names must meet.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_LABEL_VALUE = 63


class Role(StrEnum):
    COMPUTE = "compute"
    STORAGE = "storage"

    @property
    def node_label(self) -> str:
        return f"rackmesh.io/role-{self.value}"


def roles_of(node_labels: dict[str, str]) -> list[Role]:
    """The rackmesh roles a Node carries, in a stable order."""
    return [role for role in Role if node_labels.get(role.node_label) == "true"]
