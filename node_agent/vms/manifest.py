"""The KubeVirt VirtualMachine an agent writes for one VM of its portion (BRIEF §2: label, pinning, sizing, disk).

Pure functions: the same order, node, index and holders always give the same object, so a retried
write meets its own earlier copy (409 AlreadyExists) instead of creating a second VM.
"""

import copy
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


def virtual_machine(order: Order, node: str, index: int, holders: list[ImageHolder], disk_size: str,
                    template: dict[str, Any] | None = None) -> dict[str, Any]:
    """VM ``index`` of ``order``, pinned to ``node``, its root disk imported over HTTPS from a holder (CDI
    trusts the rackmesh CA from ``certConfigMap`` and authenticates with the namespace's ``secretRef``,
    ``rackmesh/image_access.py``); the copy's sha256 is in an annotation.

    ``template`` is the request's ``spec.template`` (the CRD has checked it): the user's metadata, networks,
    cloud-init, credentials, preference and extra disks. rackmesh's own parts are set over it: labels,
    pinning, instancetype, run strategy and the root disk (``disk_size`` unless ``rootDisk.size`` says).
    Each extra DataVolume is made per VM, ``<vm>-<name>``, and the volumes naming it follow.

    The annotation lists every holder's URL, primary first, so whoever repairs a failed import knows
    the other copies.
    """
    template = copy.deepcopy(template or {})
    request = order.request
    name = vm_name(request.name, index)
    sources = image_sources(holders, index)
    primary = holders[index % len(holders)]
    labels = {REQUEST_LABEL: request.name, NODE_LABEL: node}
    annotations = {IMAGE_SOURCES_ANNOTATION: json.dumps(sources)}
    if primary.sha256:
        annotations[IMAGE_SHA256_ANNOTATION] = primary.sha256
    machine = template.get("spec") or {}
    instance = machine.get("template") or {}
    instance_spec = instance.get("spec") or {}
    devices = instance_spec.setdefault("domain", {}).setdefault("devices", {})
    disk = data_volume_name(name)
    extras = machine.get("dataVolumeTemplates") or []
    per_vm = {extra["metadata"]["name"]: f"{name}-{extra['metadata']['name']}" for extra in extras}
    for volume in instance_spec.get("volumes") or []:
        if "dataVolume" in volume:
            volume["dataVolume"]["name"] = per_vm[volume["dataVolume"]["name"]]
    devices["disks"] = [{"name": ROOT_DISK, "disk": {"bus": "virtio"}}, *devices.get("disks", [])]
    instance_spec["volumes"] = [{"name": ROOT_DISK, "dataVolume": {"name": disk}}, *instance_spec.get("volumes", [])]
    instance_spec["nodeSelector"] = {HOSTNAME_LABEL: node}
    extra_disks = [{**extra, "metadata": {**extra["metadata"], "name": per_vm[extra["metadata"]["name"]]}}
                   for extra in extras]
    spec = {
        **machine,
        "runStrategy": "Always",
        # Sizing comes only from the instancetype: KubeVirt rejects cpu/memory in the template beside it.
        "instancetype": {"kind": INSTANCETYPE_KIND, "name": order.instancetype},
        "dataVolumeTemplates": [root_disk(disk, sources[0], template.get("rootDisk") or {}, disk_size, labels),
                                *extra_disks],
        "template": {
            "metadata": owned_metadata(instance.get("metadata"), labels),
            "spec": instance_spec,
        },
    }
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {
            "name": name,
            "namespace": request.namespace,
            **owned_metadata(template.get("metadata"), labels, annotations),
            "ownerReferences": [{
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": REQUEST_KIND,
                "name": request.name,
                "uid": request.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": spec,
    }


def owned_metadata(user: dict[str, Any] | None, labels: dict[str, str],
                   annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The user's labels and annotations with rackmesh's set over them (the CRD refuses rackmesh.io/ keys)."""
    user = user or {}
    result: dict[str, Any] = {"labels": {**(user.get("labels") or {}), **labels}}
    merged = {**(user.get("annotations") or {}), **(annotations or {})}
    if merged:
        result["annotations"] = merged
    return result


def root_disk(name: str, url: str, wanted: dict[str, Any], default_size: str,
              labels: dict[str, str]) -> dict[str, Any]:
    """The root disk's DataVolume template: imported from ``url``, sized and classed as the template asks.

    It carries the VM's ``labels``: KubeVirt copies a template's labels to the DataVolume it creates, so the
    node's agent watches its own node's root disks by ``rackmesh.io/node`` (``vms/disk_sources.py``) and the
    admission policy knows whose DataVolume an agent deletes."""
    storage: dict[str, Any] = {"resources": {"requests": {"storage": str(wanted.get("size") or default_size)}}}
    if wanted.get("storageClassName"):
        storage["storageClassName"] = wanted["storageClassName"]
    return {
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "source": {"http": {"url": url, "certConfigMap": CA_CONFIG_MAP, "secretRef": ACCESS_SECRET}},
            "storage": storage,
        },
    }
