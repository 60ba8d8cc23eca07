"""The KubeVirt VirtualMachine an agent writes for one VM of its portion (BRIEF §2: label, pinning, sizing, disk).

Pure functions: the same order, node, index and holders always give the same object, so a retried
write meets its own earlier copy (409 AlreadyExists) instead of creating a second VM.
"""

import json
from typing import Any

from rackmesh.image_access import ACCESS_SECRET, CA_CONFIG_MAP
from rackmesh.labels import GROUP, HOSTNAME_LABEL, NODE_LABEL, REQUEST_KIND, REQUEST_LABEL, VERSION
from rackmesh.protocol import ImageHolder, Order
from rackmesh.vm_fields import IMAGE_SHA256_ANNOTATION
from rackmesh.vm_names import vm_name

IMAGE_SOURCES_ANNOTATION = "rackmesh.io/image-sources"
ROOT_DISK = "rootdisk"
INSTANCETYPE_KIND = "VirtualMachineClusterInstancetype"

def data_volume_name(vm: str) -> str:
    return f"{vm}-{ROOT_DISK}"


def image_sources(holders: list[ImageHolder], index: int) -> list[str]:
    """The holders' URLs for VM ``index``, its primary first: the primary goes round robin
    (``holders[index % len(holders)]``), so a portion's imports spread over all copies."""
    if not holders:
        raise ValueError("a VM needs at least one image holder")
    first = index % len(holders)
    return [holder.url for holder in holders[first:] + holders[:first]]


def virtual_machine(order: Order, node: str, index: int, holders: list[ImageHolder],
                    disk_size: str) -> dict[str, Any]:
    """VM ``index`` of ``order``, pinned to ``node``, its root disk imported over HTTPS from a holder (CDI
    trusts the rackmesh CA from ``certConfigMap`` and authenticates with the namespace's ``secretRef``,
    ``rackmesh/image_access.py``); the copy's sha256 is in an annotation.

    The annotation lists every holder's URL, primary first, so whoever repairs a failed import knows
    the other copies.
    """
    request = order.request
    name = vm_name(request.name, index)
    sources = image_sources(holders, index)
    annotations = {IMAGE_SOURCES_ANNOTATION: json.dumps(sources)}
    primary = holders[index % len(holders)]
    if primary.sha256:
        annotations[IMAGE_SHA256_ANNOTATION] = primary.sha256
    labels = {REQUEST_LABEL: request.name, NODE_LABEL: node}
    disk = data_volume_name(name)
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {
            "name": name,
            "namespace": request.namespace,
            "labels": dict(labels),
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": REQUEST_KIND,
                "name": request.name,
                "uid": request.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "runStrategy": "Always",
            # Sizing comes only from the instancetype: KubeVirt rejects cpu/memory in the template beside it.
            "instancetype": {"kind": INSTANCETYPE_KIND, "name": order.instancetype},
            "dataVolumeTemplates": [{
                "metadata": {"name": disk},
                "spec": {
                    "source": {"http": {"url": sources[0], "certConfigMap": CA_CONFIG_MAP,
                                        "secretRef": ACCESS_SECRET}},
                    "storage": {"resources": {"requests": {"storage": disk_size}}},
                },
            }],
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "nodeSelector": {HOSTNAME_LABEL: node},
                    "domain": {"devices": {"disks": [{"name": ROOT_DISK, "disk": {"bus": "virtio"}}]}},
                    "volumes": [{"name": ROOT_DISK, "dataVolume": {"name": disk}}],
                },
            },
        },
    }
