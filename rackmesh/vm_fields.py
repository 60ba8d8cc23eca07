"""What rackmesh reads back from a KubeVirt VirtualMachine (the operator, and the sandbox's simulated
controller): the one place that knows where these fields live."""

from typing import Any

from rackmesh.labels import HOSTNAME_LABEL, REQUEST_KIND

# The primary copy's sha256, for the importer to check. CDI's DataVolume has a `source.http.checksum` for it,
# but the VirtualMachine schema's dataVolumeTemplates (KubeVirt's, sandbox/schemas/kubevirt) do not know it yet.
IMAGE_SHA256_ANNOTATION = "rackmesh.io/image-sha256"


def disk_source_url(vm: dict[str, Any]) -> str:
    """The HTTP source of the VM's first DataVolume template (CDI's import source); "" if it has none."""
    templates = (vm.get("spec") or {}).get("dataVolumeTemplates") or [{}]
    return str((((templates[0].get("spec") or {}).get("source") or {}).get("http") or {}).get("url") or "")


def pinned_node(vm: dict[str, Any]) -> str:
    """The node the VM is pinned to by its hostname nodeSelector; "" if it is not pinned that way."""
    template = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
    return str((template.get("nodeSelector") or {}).get(HOSTNAME_LABEL, ""))


def is_ready(vm: dict[str, Any]) -> bool:
    return (vm.get("status") or {}).get("ready") is True


def controller_uid(vm: dict[str, Any]) -> str | None:
    """The uid of the DeploymentRequest that controls ``vm`` (its controller ownerReference), if any."""
    for ref in vm["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == REQUEST_KIND and ref.get("controller"):
            return str(ref.get("uid", ""))
    return None
