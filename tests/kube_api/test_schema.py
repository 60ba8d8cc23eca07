"""Offline validation of custom resources (``CrdSchema``), as the API server validates them.

Docs: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
("Validation", "Defaulting", "Defaulting and Nullable", "Field pruning", "IntOrString",
"RawExtension"/preserve-unknown-fields); message texts from kube-openapi's validation errors as
apiextensions-apiserver reports them (``<field>: <Type>: <value>: <detail>``).

Case matrix (one row per keyword, valid and invalid where it matters):
type (incl. int-or-string, integral floats, null and nullable) · required · enum · minimum/maximum
(inclusive, exclusive) · minLength/maxLength · pattern · format (date-time, uuid) · minItems/maxItems
· list-type set/map duplicates · additionalProperties schemas · anyOf/oneOf/allOf/not · defaults
(incl. nested and in list items) · pruning (unknown fields, preserve-unknown-fields, ObjectMeta) ·
the vendored KubeVirt/CDI schemas and our DeploymentRequest CRD.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from rackmesh_sandbox.kube_api.cel import BLOCKED
from rackmesh_sandbox.kube_api.schema import CrdSchema, load_kubevirt_schemas
from tests.kube_api.conftest import DR_CRD, dr

SPEC: dict[str, Any] = {
    "type": "object",
    "properties": {
        "count": {"type": "integer", "minimum": 1, "maximum": 10},
        "ratio": {
            "type": "number",
            "exclusiveMinimum": True,
            "minimum": 0,
            "exclusiveMaximum": True,
            "maximum": 1,
        },
        "name": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
        "mode": {"type": "string", "enum": ["A", "B"]},
        "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "when": {"type": "string", "format": "date-time"},
        "id": {"type": "string", "format": "uuid"},
        "note": {"type": "string", "nullable": True},
        "tags": {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "maxItems": 2,
            "x-kubernetes-list-type": "set",
        },
        "items": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["key"],
            "items": {
                "type": "object",
                "required": ["key"],
                "properties": {"key": {"type": "string"}, "weight": {"type": "integer", "default": 1}},
            },
        },
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "free": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"known": {"type": "integer"}},
        },
        "either": {"oneOf": [{"type": "string", "maxLength": 1}, {"type": "string", "minLength": 3}]},
        "both": {"type": "string", "allOf": [{"minLength": 2}, {"pattern": "^x"}]},
        "never": {"type": "string", "not": {"enum": ["bad"]}},
        "nested": {
            "type": "object",
            "default": {},
            "properties": {"level": {"type": "string", "default": "info"}},
        },
    },
}
SCHEMA = CrdSchema.from_openapi(
    {
        "openAPIV3Schema": {
            "type": "object",
            "required": ["spec"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": SPEC,
            },
        }
    },
    kind="Thing",
    group="example.com",
)


def thing(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec}


CASES = [
    ({"count": 5}, []),
    ({"count": 0}, ["spec.count: Invalid value: 0: spec.count in body should be greater than or equal to 1"]),
    ({"count": 11}, ["spec.count: Invalid value: 11: spec.count in body should be less than or equal to 10"]),
    ({"count": 2.0}, []),  # an integral float is an integer
    (
        {"count": 2.5},
        ['spec.count: Invalid value: "number": spec.count in body must be of type integer: "number"'],
    ),
    (
        {"count": "3"},
        ['spec.count: Invalid value: "string": spec.count in body must be of type integer: "string"'],
    ),
    (
        {"count": True},
        ['spec.count: Invalid value: "boolean": spec.count in body must be of type integer: "boolean"'],
    ),
    ({"ratio": 0}, ["spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0"]),
    ({"ratio": 1}, ["spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1"]),
    ({"ratio": 0.5}, []),
    ({"name": "a"}, ['spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long']),
    ({"name": "abcdef"}, ["spec.name: Too long: may not be more than 5 bytes"]),
    ({"name": "AB"}, ["spec.name: Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'"]),
    ({"mode": "C"}, ['spec.mode: Unsupported value: "C": supported values: "A", "B"']),
    ({"port": 80}, []),
    ({"port": "http"}, []),
    (
        {"port": 1.5},
        ['spec.port: Invalid value: "number": spec.port in body must be of type integer,string: "number"'],
    ),
    ({"when": "2024-01-02T03:04:05Z"}, []),
    (
        {"when": "yesterday"},
        ['spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday"'],
    ),
    (
        {"id": "not-a-uuid"},
        ['spec.id: Invalid value: "not-a-uuid": spec.id in body must be of type uuid: "not-a-uuid"'],
    ),
    ({"note": None}, []),  # nullable keeps null
    ({"tags": []}, ["spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items"]),
    ({"tags": ["a", "b", "c"]}, ["spec.tags: Too many: 3: must have at most 2 items"]),
    ({"tags": ["a", "a"]}, ['spec.tags[1]: Duplicate value: "a"']),
    ({"items": [{"key": "x"}, {"key": "x", "weight": 2}]}, ['spec.items[1]: Duplicate value: {"key":"x"}']),
    ({"items": [{"weight": 2}]}, ["spec.items[0].key: Required value"]),
    (
        {"env": {"A": "1", "B": 2}},
        ['spec.env.B: Invalid value: "integer": spec.env.B in body must be of type string: "integer"'],
    ),
    (
        {"free": {"known": "x", "other": 1}},
        [
            'spec.free.known: Invalid value: "string": spec.free.known in body must be of type integer: '
            '"string"'
        ],
    ),
    ({"either": "x"}, []),
    (
        {"either": "xy"},
        [
            'spec.either: Invalid value: "xy": spec.either in body must validate one and only one schema '
            "(oneOf)"
        ],
    ),
    ({"both": "xy"}, []),
    (
        {"both": "y"},
        [
            'spec.both: Invalid value: "y": spec.both in body should be at least 2 chars long',
            "spec.both: Invalid value: \"y\": spec.both in body should match '^x'",
        ],
    ),
    (
        {"never": "bad"},
        ['spec.never: Invalid value: "bad": spec.never in body must not validate the schema (not)'],
    ),
]


@pytest.mark.parametrize(("spec", "expected"), CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_keyword(spec: dict[str, Any], expected: list[str]) -> None:
    assert SCHEMA.errors(thing(**spec)) == expected


def test_required_and_unknown_fields() -> None:
    obj = thing(count=1, typo=1)
    del obj["spec"]
    obj["extra"] = True
    obj["metadata"]["bogus"] = 1
    assert SCHEMA.errors(obj) == [
        'metadata.bogus: unknown field "metadata.bogus"',
        'extra: unknown field "extra"',
        "spec: Required value",
    ]


def test_unknown_fields_are_pruned_silently_unless_strict() -> None:
    assert SCHEMA.errors(thing(typo=1), strict=False) == []
    assert SCHEMA.errors(thing(typo=1)) == ['spec.typo: unknown field "spec.typo"']


def test_pruning_and_defaults_in_place() -> None:
    obj = thing(count=None, typo=1, free={"known": 1, "kept": {"deep": True}}, items=[{"key": "a"}])
    unknown = SCHEMA.prune(obj)
    SCHEMA.apply_defaults(obj)
    assert unknown == ["spec.typo"]
    assert obj["spec"] == {  # non-nullable null dropped; preserved subtree kept; defaults filled, also nested
        "free": {"known": 1, "kept": {"deep": True}},
        "items": [{"key": "a", "weight": 1}],
        "nested": {"level": "info"},
    }


def test_errors_do_not_mutate_the_input() -> None:
    obj = thing(typo=1)
    SCHEMA.errors(obj)
    assert obj == thing(typo=1)


def test_metadata_and_kind_are_checked() -> None:
    obj = thing()
    obj["kind"] = "Other"
    obj["metadata"] = {"name": "Bad_Name", "labels": {"ok": "x" * 64}}
    errors = SCHEMA.errors(obj)
    assert errors[0] == "kind: Invalid value: 'Other': must be Thing"
    assert errors[1].startswith('metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain')
    assert errors[2].startswith('metadata.labels: Invalid value: "xxxx')
    assert errors[2].endswith(": must be no more than 63 characters")


def test_deploymentrequest_crd() -> None:
    schema = CrdSchema.from_crd(yaml.safe_load(DR_CRD.read_text()))
    assert (schema.kind, schema.group, schema.version) == ("DeploymentRequest", "rackmesh.io", "v1alpha1")
    assert schema.errors(dr()) == []
    bad = dr(replicas=10001)
    del bad["spec"]["image"]
    assert schema.errors(bad) == [
        "spec.replicas: Invalid value: 10001: spec.replicas in body should be less than or equal to 10000",
        "spec.image: Required value",
        str(BLOCKED),  # the CRD's CEL rules do not run while a required field is missing
    ]
    with pytest.raises(ValueError, match="no version 'v9'"):
        CrdSchema.from_crd(yaml.safe_load(DR_CRD.read_text()), version="v9")


def virtual_machine() -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "lob123-0", "namespace": "default", "labels": {"rackmesh.io/request": "lob123"}},
        "spec": {
            "runStrategy": "Always",
            "instancetype": {"kind": "VirtualMachineClusterInstancetype", "name": "u1.large"},
            "template": {
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": "c-a-1"},
                    "domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]}},
                    "volumes": [{"name": "root", "dataVolume": {"name": "lob123-0-root"}}],
                }
            },
            "dataVolumeTemplates": [
                {
                    "metadata": {"name": "lob123-0-root"},
                    "spec": {
                        "source": {"http": {"url": "http://s-a-1:8080/images/lob123-rhel-6.0"}},
                        "storage": {"resources": {"requests": {"storage": "10Gi"}}},
                    },
                }
            ],
        },
    }


def test_kubevirt_schemas() -> None:
    schemas = load_kubevirt_schemas()
    assert set(schemas) == {
        "VirtualMachine",
        "VirtualMachineInstance",
        "VirtualMachineClusterInstancetype",
        "VirtualMachineClusterPreference",
        "DataVolume",
    }
    assert schemas["VirtualMachine"].errors(virtual_machine()) == []
    vm = virtual_machine()
    vm["spec"]["template"]["spec"]["domain"]["cpu"] = {"cores": "two"}
    vm["spec"]["runStrategy"] = 1
    assert schemas["VirtualMachine"].errors(vm) == [
        'spec.runStrategy: Invalid value: "integer": spec.runStrategy in body must be of type string: '
        '"integer"',
        'spec.template.spec.domain.cpu.cores: Invalid value: "string": spec.template.spec.domain.cpu.cores '
        'in body must be of type integer: "string"',
        str(BLOCKED),
    ]
    instancetype = {
        "apiVersion": "instancetype.kubevirt.io/v1beta1",
        "kind": "VirtualMachineClusterInstancetype",
        "metadata": {"name": "u1.large"},
        "spec": {"cpu": {"guest": 2}, "memory": {"guest": "8Gi"}},
    }
    assert schemas["VirtualMachineClusterInstancetype"].errors(instancetype) == []
    del instancetype["spec"]["cpu"]
    assert schemas["VirtualMachineClusterInstancetype"].errors(instancetype) == ["spec.cpu: Required value"]
