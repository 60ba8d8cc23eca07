"""The names of a request's VirtualMachines: ``<request>-<index>``, so a retried or resumed step meets its
own earlier VM (409) instead of creating a second one, and a lost VM comes back under its own name."""

import hashlib
import re

from rackmesh.labels import DNS_LABEL, MAX_LABEL_VALUE
from rackmesh.protocol import MAX_REPLICAS

# KubeVirt copies VM names into label values (vm.kubevirt.io/name), so a name must be a DNS-1123 label.
MAX_NAME = MAX_LABEL_VALUE
INDEX_DIGITS = len(str(MAX_REPLICAS - 1))  # 4: names sort in index order under `kubectl get vm`
HASH_CHARS = 8


def vm_name(request_name: str, index: int) -> str:
    """``<request>-<index, 4 digits>``; a request name that would not fit a DNS label is shortened
    (invalid characters become ``-``) and gets a hash of the full name, so names stay unique."""
    if not 0 <= index < MAX_REPLICAS:
        raise ValueError(f"VM index {index} is outside 0..{MAX_REPLICAS - 1}")
    suffix = f"-{index:0{INDEX_DIGITS}d}"
    room = MAX_NAME - len(suffix)
    if len(request_name) <= room and DNS_LABEL.match(request_name):
        return request_name + suffix
    digest = hashlib.sha256(request_name.encode()).hexdigest()[:HASH_CHARS]
    readable = re.sub(r"[^a-z0-9-]", "-", request_name.lower())[: room - HASH_CHARS - 1].strip("-")
    return f"{readable}-{digest}{suffix}" if readable else f"{digest}{suffix}"


def vm_index(request_name: str, name: str) -> int | None:
    """The index of VM ``name`` of the request, or None when ``name`` is not one of its VM names."""
    _, _, suffix = name.rpartition("-")
    if len(suffix) != INDEX_DIGITS or not suffix.isdigit():
        return None
    index = int(suffix)
    return index if vm_name(request_name, index) == name else None
