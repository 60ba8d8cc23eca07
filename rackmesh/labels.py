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

# The Kubernetes API's name rules (k8s.io/apimachinery/pkg/util/validation), checked before a name goes into a
# URL path, a ZooKeeper path or a file name. The patterns end in \Z, not $: Python's $ also matches before a
# trailing newline, the API's (Go RE2) does not.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")  # non-empty; the API also allows ""
MAX_LABEL_VALUE = 63
MAX_SUBDOMAIN = 253
# Object uids are UUIDs on a real API server; rackmesh takes any short label-value-like string (tests use
# readable ones), which is enough to keep "/", "." and ".." out of the ZooKeeper path requests/<uid>.
MAX_UID = 128


def is_dns_label(value: str) -> bool:
    """A DNS-1123 label (namespaces, VM names): at most 63 of ``a-z0-9-``, alphanumeric at both ends."""
    return len(value) <= MAX_LABEL_VALUE and DNS_LABEL.match(value) is not None


def is_dns_subdomain(value: str) -> bool:
    """A DNS-1123 subdomain (names of Nodes, instancetypes, custom resources): labels joined by dots, at most 253."""
    return len(value) <= MAX_SUBDOMAIN and DNS_SUBDOMAIN.match(value) is not None


def is_label_value(value: str) -> bool:
    """A non-empty label value (a rack): at most 63 of ``A-Za-z0-9-_.``, alphanumeric at both ends."""
    return len(value) <= MAX_LABEL_VALUE and LABEL_VALUE.match(value) is not None


def is_uid(value: str) -> bool:
    return len(value) <= MAX_UID and LABEL_VALUE.match(value) is not None


class Role(StrEnum):
    COMPUTE = "compute"
    STORAGE = "storage"

    @property
    def node_label(self) -> str:
        return f"rackmesh.io/role-{self.value}"


def roles_of(node_labels: dict[str, str]) -> list[Role]:
    """The rackmesh roles a Node carries, in a stable order."""
    return [role for role in Role if node_labels.get(role.node_label) == "true"]
