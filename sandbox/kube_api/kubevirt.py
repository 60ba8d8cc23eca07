"""CRD documents for KubeVirt and CDI, built from the vendored schemas in ``sandbox/schemas/kubevirt``.

The ``*.openapiv3.yaml`` files hold only the validation schema; names, scope, subresources and
printer columns below are those KubeVirt's virt-operator installs (pkg/virt-operator/resource/
generate/components/crds.go). The DataVolume file is already a full CRD.
"""

from __future__ import annotations

import copy
import functools
import pathlib
from typing import Any

import yaml

SCHEMAS_DIR = pathlib.Path(__file__).resolve().parent.parent / "schemas" / "kubevirt"

_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_READY = {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].status"}

# file, group, version, kind, plural, namespaced, short names, categories, status subresource, columns
_KINDS: list[tuple[str, str, str, str, str, bool, list[str], list[str], bool, list[dict[str, Any]]]] = [
    (
        "virtualmachine.openapiv3.yaml",
        "kubevirt.io",
        "v1",
        "VirtualMachine",
        "virtualmachines",
        True,
        ["vm", "vms"],
        ["all"],
        True,
        [
            _AGE,
            {
                "name": "Status",
                "type": "string",
                "jsonPath": ".status.printableStatus",
                "description": "Human Readable Status",
            },
            _READY,
        ],
    ),
    (
        "virtualmachineinstance.openapiv3.yaml",
        "kubevirt.io",
        "v1",
        "VirtualMachineInstance",
        "virtualmachineinstances",
        True,
        ["vmi", "vmis"],
        ["all"],
        False,
        [
            _AGE,
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "IP", "type": "string", "jsonPath": ".status.interfaces[0].ipAddress"},
            {"name": "NodeName", "type": "string", "jsonPath": ".status.nodeName"},
            _READY,
        ],
    ),
    (
        "virtualmachineclusterinstancetype.openapiv3.yaml",
        "instancetype.kubevirt.io",
        "v1beta1",
        "VirtualMachineClusterInstancetype",
        "virtualmachineclusterinstancetypes",
        False,
        ["vmclusterinstancetype", "vmclusterinstancetypes", "vmcf", "vmcfs"],
        [],
        False,
        [],
    ),
    (
        "virtualmachineclusterpreference.openapiv3.yaml",
        "instancetype.kubevirt.io",
        "v1beta1",
        "VirtualMachineClusterPreference",
        "virtualmachineclusterpreferences",
        False,
        ["vmclusterpref", "vmclusterprefs", "vmcp", "vmcps"],
        [],
        False,
        [],
    ),
]


def _load(name: str) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is 10x faster on these files
    with open(SCHEMAS_DIR / name, encoding="utf-8") as f:
        return yaml.load(f, Loader=loader)


@functools.cache
def _crds() -> tuple[dict[str, Any], ...]:
    crds = []
    for file, group, version, kind, plural, namespaced, short, categories, status, columns in _KINDS:
        crds.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.{group}"},
                "spec": {
                    "group": group,
                    "scope": "Namespaced" if namespaced else "Cluster",
                    "names": {
                        "kind": kind,
                        "listKind": f"{kind}List",
                        "plural": plural,
                        "singular": kind.lower(),
                        "shortNames": short,
                        "categories": categories,
                    },
                    "versions": [
                        {
                            "name": version,
                            "served": True,
                            "storage": True,
                            "schema": {"openAPIV3Schema": _load(file)["openAPIV3Schema"]},
                            "subresources": {"status": {}} if status else {},
                            "additionalPrinterColumns": columns,
                        }
                    ],
                },
            }
        )
    datavolume = _load("datavolume.crd.yaml")
    datavolume.pop("status", None)
    datavolume["metadata"].pop("creationTimestamp", None)
    crds.append(datavolume)
    return tuple(crds)


def kubevirt_crds() -> list[dict[str, Any]]:
    """Fresh copies of the KubeVirt/CDI CRDs (parsed once per process)."""
    return copy.deepcopy(list(_crds()))
