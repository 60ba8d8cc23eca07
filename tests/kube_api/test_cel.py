"""CEL validation rules (``x-kubernetes-validations``) of custom resources, as kube-apiserver runs them.

Docs: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules
Source followed: apiextensions-apiserver v0.32 pkg/apiserver/schema/cel/validation.go (refusal texts:
``<path>: Invalid value: "<schema type>": <message>``; ``<nil>`` for the root), compilation.go,
pkg/registry/customresource/strategy.go (rules run after the schema checks, unless those found
blocking errors), pkg/apis/apiextensions/validation/validation.go (CRDs whose rules do not compile).

Case matrix (the Widget CRD of conftest, POSTed to the API, unless noted):
- values: integers, strings, lists, maps, time formats; unset fields (has(), "no such key"); names
  escaped for CEL.
- transition rule (flavor immutable): create unaffected; update refused with the message (422,
  causes); update that leaves it unchanged accepted; status writes do not trip it.
- root rule on metadata.name; messageExpression; reason Forbidden with fieldPath; rules on items of
  a map list (oldSelf correlated by key), on additionalProperties values.
- blocking schema errors: rules do not run, one ``<nil>`` error says so; non-blocking ones: both.
- ratcheting: a rule the stored object already broke is a warning while that part is unchanged.
- CRD creation: rules that do not parse, undeclared names/fields, functions of the Kubernetes CEL
  libraries (not provided), oldSelf on list items, unknown reasons and fieldPaths that name no field
  are refused with 422.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rackmesh_sandbox.kube_api import cel
from tests.kube_api.conftest import WIDGETS, Client, widget, widget_crd

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


@pytest.fixture
async def widgets(client: Client) -> Client:
    await client.create(CRDS, widget_crd())
    return client


def invalid_body(name: str, *causes: dict[str, str]) -> dict[str, Any]:
    messages = [f"{c['field']}: {c['message']}" for c in causes]
    listed = messages[0] if len(messages) == 1 else f"[{', '.join(messages)}]"
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'Widget.test.rackmesh.io "{name}" is invalid: {listed}',
        "reason": "Invalid",
        "details": {"name": name, "group": "test.rackmesh.io", "kind": "Widget", "causes": list(causes)},
        "code": 422,
    }


# -- values as rules see them -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "value", "rule"),
    [
        ({"type": "integer"}, 3, "self == 3 && self / 2 == 1"),  # ints stay ints
        ({"type": "number"}, 3, "self == 3.0"),  # numbers are doubles
        ({"type": "string"}, "u1.large", "self.startsWith('u1') && size(self) == 8"),
        ({"type": "array", "items": {"type": "integer"}}, [1, 2], "self.exists(x, x == 2) && self[0] == 1"),
        ({"type": "object", "additionalProperties": {"type": "string"}}, {"k": "v"}, "'k' in self && self.k == 'v'"),
        ({"type": "string", "format": "date-time"}, "2024-01-01T10:00:00Z", "self < timestamp('2030-01-01T00:00:00Z')"),
        ({"type": "string", "format": "duration"}, "5m", "self > duration('1m')"),
        ({"x-kubernetes-int-or-string": True}, "50%", "self == '50%'"),
        (
            {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}},
            {"a": "x"},
            "has(self.a) && !has(self.b)",
        ),
        (
            {"type": "object", "properties": {"max-surge": {"type": "integer"}, "namespace": {"type": "string"}}},
            {"max-surge": 1, "namespace": "n"},
            "self.max__dash__surge == 1 && self.__namespace__ == 'n'",
        ),
    ],
)
def test_values_are_typed_by_their_schema(schema: dict[str, Any], value: Any, rule: str) -> None:
    root = {"type": "object", "properties": {"v": {**schema, "x-kubernetes-validations": [{"rule": rule}]}}}
    assert cel.rule_errors(root, "openAPIV3Schema") == []
    assert cel.RuleValidator(root).validate({"v": value}) == ([], [])


def test_selecting_an_unset_field_is_an_evaluation_error() -> None:
    schema = {
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"zone": {"type": "string"}}}},
        "x-kubernetes-validations": [{"rule": "self.spec.zone == 'a'"}],
    }
    [error], _ = cel.RuleValidator(schema).validate({"spec": {}})
    assert str(error) == "<nil>: Invalid value: \"object\": no such key: zone evaluating rule: self.spec.zone == 'a'"


# -- refusals through the API -------------------------------------------------------------------


async def test_create_is_not_subject_to_transition_rules(widgets: Client) -> None:
    created = await widgets.create(WIDGETS, widget())
    assert created["spec"]["flavor"] == "small"


async def test_changing_an_immutable_field_is_refused(widgets: Client) -> None:
    await widgets.create(WIDGETS, widget())
    reply = await widgets.patch(f"{WIDGETS}/w1", {"spec": {"flavor": "large"}})
    assert reply.status == 422
    cause = {
        "reason": "FieldValueInvalid",
        "field": "spec.flavor",
        "message": 'Invalid value: "string": flavor is immutable',
    }
    assert reply.body == invalid_body("w1", cause)
    assert (await widgets.get(f"{WIDGETS}/w1")).body["spec"]["flavor"] == "small"
    current = (await widgets.get(f"{WIDGETS}/w1")).body
    reply = await widgets.put(f"{WIDGETS}/w1", {**current, "spec": {**current["spec"], "flavor": "large"}})
    assert reply.status == 422


async def test_other_changes_pass_the_transition_rule(widgets: Client) -> None:
    await widgets.create(WIDGETS, widget())
    reply = await widgets.patch(f"{WIDGETS}/w1", {"spec": {"replicas": 5, "flavor": "small"}})
    assert reply.status == 200
    assert reply.body["metadata"]["generation"] == 2


async def test_status_writes_do_not_trip_spec_rules(widgets: Client) -> None:
    await widgets.create(WIDGETS, widget())
    reply = await widgets.patch(f"{WIDGETS}/w1/status", {"spec": {"flavor": "large"}, "status": {"phase": "Up"}})
    assert reply.status == 200
    assert reply.body["spec"]["flavor"] == "small"
    assert reply.body["status"] == {"phase": "Up"}


async def test_root_rule_on_the_name(widgets: Client) -> None:
    reply = await widgets.post(WIDGETS, widget("a-widget-name-too-long"))
    assert reply.status == 422
    cause = {"reason": "FieldValueInvalid", "field": "<nil>", "message": 'Invalid value: "object": name too long'}
    assert reply.body == invalid_body("a-widget-name-too-long", cause)


async def test_message_expression_reason_and_field_path(widgets: Client) -> None:
    reply = await widgets.post(WIDGETS, widget(replicas=9, maxReplicas=4, legacy="yes"))
    assert reply.status == 422
    assert reply.body["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "field": "spec.replicas", "message": 'Invalid value: "object": 9 exceeds 4'},
        {
            "reason": "FieldValueForbidden",
            "field": "spec.legacy",
            "message": "Forbidden: legacy is no longer supported",
        },
    ]


async def test_rules_on_items_of_a_map_list(widgets: Client) -> None:
    ports = [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]
    reply = await widgets.post(WIDGETS, widget(ports=ports))
    assert reply.body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.ports[1]",
            "message": 'Invalid value: "object": ports must be unprivileged',
        }
    ]
    await widgets.create(WIDGETS, widget(ports=ports[:1]))
    # Items are matched with their old selves by key, wherever they are in the list.
    moved = [{"name": "dns", "port": 5353, "protocol": "UDP"}, {"name": "http", "port": 8080, "protocol": "UDP"}]
    reply = await widgets.patch(f"{WIDGETS}/w1", {"spec": {"ports": moved}})
    assert reply.body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.ports[1]",
            "message": 'Invalid value: "object": a port\'s protocol is immutable',
        }
    ]
    reply = await widgets.patch(f"{WIDGETS}/w1", {"spec": {"ports": [moved[0], ports[0]]}})
    assert reply.status == 200


async def test_rules_on_map_values(widgets: Client) -> None:
    reply = await widgets.post(WIDGETS, widget(tags={"team": "infra", "cost-centre": "a much too long value"}))
    assert reply.body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.tags[cost-centre]",
            "message": 'Invalid value: "string": tags are short',
        }
    ]


async def test_blocking_schema_errors_keep_rules_from_running(widgets: Client) -> None:
    body = widget("a-widget-name-too-long")
    del body["spec"]["flavor"]
    reply = await widgets.post(WIDGETS, body)
    assert [c["field"] for c in reply.body["details"]["causes"]] == ["spec.flavor", "<nil>"]
    assert reply.body["details"]["causes"][1] == {
        "reason": "FieldValueInvalid",
        "field": "<nil>",
        "message": 'Invalid value: "null": some validation rules were not checked because the object was invalid; '
        "correct the existing errors to complete validation",
    }
    # A bound (FieldValueInvalid) does not block: both errors are reported.
    reply = await widgets.post(WIDGETS, widget("a-widget-name-too-long", replicas=0))
    assert [c["field"] for c in reply.body["details"]["causes"]] == ["spec.replicas", "<nil>"]
    assert reply.body["details"]["causes"][1]["message"] == 'Invalid value: "object": name too long'


async def test_ratcheting_keeps_old_violations_as_warnings(widgets: Client) -> None:
    await widgets.create(WIDGETS, widget(replicas=9, maxReplicas=10))
    crd = (await widgets.get(f"{CRDS}/widgets.test.rackmesh.io")).body
    rules = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    rules["maxReplicas"]["x-kubernetes-validations"] = [{"rule": "self <= 5", "message": "at most 5"}]
    assert (await widgets.put(f"{CRDS}/widgets.test.rackmesh.io", crd)).status == 200
    reply = await widgets.patch(f"{WIDGETS}/w1", {"spec": {"replicas": 8}})
    assert reply.status == 200
    assert reply.headers["Warning"] == '299 - "spec.maxReplicas: Invalid value: \\"integer\\": at most 5"'
    reply = await widgets.patch(f"{WIDGETS}/w1", {"spec": {"maxReplicas": 9}})
    assert reply.status == 422


# -- CRDs whose rules the server refuses ---------------------------------------------------------


def crd_with_rule(rule: dict[str, Any], where: str = "spec") -> dict[str, Any]:
    crd = widget_crd()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    node = schema if where == "root" else schema["properties"]["spec"]
    if where == "items":
        node["properties"]["sizes"] = {"type": "array", "items": {"type": "integer"}}
        node = node["properties"]["sizes"]["items"]
    node["x-kubernetes-validations"] = [rule]
    return crd


RULE_PATH = "spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0]"


@pytest.mark.parametrize(
    ("rule", "where", "message"),
    [
        (
            {"rule": "self.replicas =="},
            "spec",
            f'{RULE_PATH}.rule: Invalid value: apiextensions.ValidationRule{{Rule:"self.replicas ==", Message:"", '
            'MessageExpression:"", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:"", '
            "OptionalOldSelf:(*bool)(nil)}: compilation failed: ERROR: <input>:1:17: Syntax error: mismatched input "
            "'<EOF>'\n | self.replicas ==\n | ................^",
        ),
        (
            {"rule": "self.replica > 0", "message": "m"},
            "spec",
            f'{RULE_PATH}.rule: Invalid value: apiextensions.ValidationRule{{Rule:"self.replica > 0", Message:"m", '
            'MessageExpression:"", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:"", '
            "OptionalOldSelf:(*bool)(nil)}: compilation failed: ERROR: <input>:1:5: undefined field 'replica'\n"
            " | self.replica > 0\n | ....^",
        ),
        (
            {"rule": "size(self.metadata.labels) < 3"},
            "root",
            "spec.validation.openAPIV3Schema.x-kubernetes-validations[0].rule: Invalid value: "
            'apiextensions.ValidationRule{Rule:"size(self.metadata.labels) < 3", Message:"", MessageExpression:"", '
            'Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:"", OptionalOldSelf:(*bool)(nil)}: '
            "compilation failed: ERROR: <input>:1:19: undefined field 'labels'\n"
            " | size(self.metadata.labels) < 3\n | ..................^",
        ),
        (
            {"rule": "self > oldSelf"},
            "items",
            "spec.validation.openAPIV3Schema.properties[spec].properties[sizes].items."
            'x-kubernetes-validations[0].rule: Invalid value: "self > oldSelf": oldSelf cannot be used on the '
            "uncorrelatable portion of the schema within spec.validation.openAPIV3Schema.properties[spec]."
            "properties[sizes]",
        ),
        (
            {"rule": "self.flavor.lowerAscii() == self.flavor", "message": "lower case"},
            "spec",
            f'{RULE_PATH}.rule: Invalid value: apiextensions.ValidationRule{{Rule:"self.flavor.lowerAscii() == '
            'self.flavor", Message:"lower case", MessageExpression:"", Reason:(*apiextensions.FieldValueErrorReason)'
            '(nil), FieldPath:"", OptionalOldSelf:(*bool)(nil)}: compilation failed: ERROR: <input>:1:13: undeclared '
            "reference to 'lowerAscii' (in container ''): a function of the Kubernetes CEL libraries, which the "
            "rackmesh sandbox API does not provide\n | self.flavor.lowerAscii() == self.flavor\n | ............^",
        ),
        (
            {"rule": "self.replicas > 0", "reason": "FieldValueTooBig"},
            "spec",
            f'{RULE_PATH}.reason: Unsupported value: "FieldValueTooBig": supported values: "FieldValueDuplicate", '
            '"FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"',
        ),
        (
            # Root metadata has no declared fields in a CRD schema, so no fieldPath can name them.
            {"rule": "size(self.metadata.name) < 9", "fieldPath": ".metadata.name"},
            "root",
            "spec.validation.openAPIV3Schema.x-kubernetes-validations[0].fieldPath: Invalid value: "
            '".metadata.name": fieldPath must be a valid path',
        ),
    ],
)
async def test_crds_with_broken_rules_are_refused(
    client: Client, rule: dict[str, Any], where: str, message: str
) -> None:
    reply = await client.post(CRDS, crd_with_rule(rule, where))
    assert reply.status == 422
    assert reply.body["message"] == (
        f'CustomResourceDefinition.apiextensions.k8s.io "widgets.test.rackmesh.io" is invalid: {message}'
    )
    assert (await client.get(f"{CRDS}/widgets.test.rackmesh.io")).status == 404


async def test_rules_are_checked_per_version_when_versions_differ(client: Client) -> None:
    crd = crd_with_rule({"rule": "self.nope"})
    v2 = copy.deepcopy(crd["spec"]["versions"][0])
    crd["spec"]["versions"][0]["schema"] = widget_crd()["spec"]["versions"][0]["schema"]
    crd["spec"]["versions"].append({**v2, "name": "v2", "storage": False})
    reply = await client.post(CRDS, crd)
    assert [c["field"] for c in reply.body["details"]["causes"]] == [
        "spec.versions[1].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"
    ]
