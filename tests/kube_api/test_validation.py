"""Schema validation of custom resources over HTTP: 422 ``Invalid``, field validation, defaults, pruning.

Docs: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation
https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation
https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/

Case matrix:
- create/update/patch (after applying the patch) of an invalid object → 422, ``reason: Invalid``, a message
  naming ``Kind.group "name"``, one ``details.causes[]`` per field; nothing is stored.
- unknown fields: ``fieldValidation=Strict`` → 400 on create (strict decoding error), 422 on patch;
  ``Warn`` (the default) → dropped with a ``Warning`` header; ``Ignore`` → dropped silently.
- schema defaults are applied on create; undeclared fields are pruned.
- metadata rules apply to every kind (names, label values).
"""

from __future__ import annotations

from rackmesh_sandbox.kube_api import KubeApiServer
from tests.kube_api.conftest import DRS, NODES, Client, dr, node

BLOCKED = {
    "reason": "FieldValueInvalid",
    "field": "<nil>",
    "message": 'Invalid value: "null": some validation rules were not checked because the object was invalid; '
    "correct the existing errors to complete validation",
}


async def test_invalid_create_is_refused_with_causes(client: Client) -> None:
    body = dr(replicas=10001)
    del body["spec"]["image"]
    reply = await client.post(DRS, body)
    assert reply.status == 422
    assert reply.body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "code": 422,
        "reason": "Invalid",
        # A missing field keeps the CRD's CEL rules from running; the server says so (<nil> field).
        "message": 'DeploymentRequest.rackmesh.io "lob123" is invalid: ['
        "spec.replicas: Invalid value: 10001: spec.replicas in body should be less than or equal to 10000, "
        f"spec.image: Required value, <nil>: {BLOCKED['message']}]",
        "details": {
            "name": "lob123",
            "group": "rackmesh.io",
            "kind": "DeploymentRequest",
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "field": "spec.replicas",
                    "message": "Invalid value: 10001: spec.replicas in body should be less than or equal to 10000",
                },
                {"reason": "FieldValueRequired", "field": "spec.image", "message": "Required value"},
                BLOCKED,
            ],
        },
    }
    assert (await client.get(f"{DRS}/lob123")).status == 404


async def test_single_error_message_is_not_bracketed(client: Client) -> None:
    reply = await client.post(DRS, dr(replicas=10001))
    assert reply.body["message"] == (
        'DeploymentRequest.rackmesh.io "lob123" is invalid: spec.replicas: Invalid '
        "value: 10001: spec.replicas in body should be less than or equal to 10000"
    )


async def test_patch_is_validated_after_applying_it(client: Client) -> None:
    await client.create(DRS, dr())
    reply = await client.patch(f"{DRS}/lob123", {"spec": {"replicas": 10001}})
    assert reply.status == 422
    assert reply.body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.replicas",
            "message": "Invalid value: 10001: spec.replicas in body should be less than or equal to 10000",
        }
    ]
    reply = await client.patch(f"{DRS}/lob123", {"spec": {"image": None}})  # removing a required field
    assert reply.status == 422
    assert (await client.get(f"{DRS}/lob123")).body["spec"]["replicas"] == 3


async def test_invalid_status_is_refused_on_the_status_subresource(client: Client) -> None:
    await client.create(DRS, dr())
    reply = await client.patch(f"{DRS}/lob123/status", {"status": {"phase": "Sleeping"}})
    assert reply.status == 422
    assert reply.body["details"]["causes"][0]["message"] == (
        'Unsupported value: "Sleeping": supported values: '
        '"Pending", "Placing", "Deploying", "Ready", "Failed"'
    )


async def test_strict_unknown_field_on_create_is_a_bad_request(client: Client) -> None:
    reply = await client.post(DRS, dr(colour="blue"), params={"fieldValidation": "Strict"})
    assert reply.status == 400
    assert reply.body["reason"] == "BadRequest"
    assert reply.body["message"] == (
        'DeploymentRequest in version "v1alpha1" cannot be handled as a '
        'DeploymentRequest: strict decoding error: unknown field "spec.colour"'
    )


async def test_strict_unknown_field_on_patch_is_invalid(client: Client) -> None:
    await client.create(DRS, dr())
    reply = await client.patch(
        f"{DRS}/lob123", {"spec": {"colour": "blue"}}, params={"fieldValidation": "Strict"}
    )
    assert reply.status == 422
    cause = reply.body["details"]["causes"][0]
    assert cause["field"] == "patch"
    assert cause["message"].endswith('strict decoding error: unknown field "spec.colour"')


async def test_unknown_fields_warn_by_default_and_are_dropped(client: Client) -> None:
    reply = await client.post(DRS, dr(colour="blue"))
    assert reply.status == 201
    assert reply.headers["Warning"] == '299 - "unknown field \\"spec.colour\\""'
    assert "colour" not in reply.body["spec"]
    reply = await client.post(DRS, dr("other", colour="blue"), params={"fieldValidation": "Ignore"})
    assert reply.status == 201
    assert "Warning" not in reply.headers


async def test_defaults_are_applied_on_create(server: KubeApiServer, client: Client) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "size": {"type": "integer", "default": 3},
                                        "mode": {"type": "string"},
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    server.emulator.add_crd(crd)
    body = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"mode": "x"},
    }
    created = await client.create("/apis/example.com/v1/namespaces/default/widgets", body)
    assert created["spec"] == {"size": 3, "mode": "x"}


async def test_kind_is_required_for_custom_resources(client: Client) -> None:
    body = dr()
    del body["kind"]
    reply = await client.post(DRS, body)
    assert reply.status == 400
    assert reply.body["message"].startswith("Object 'Kind' is missing in '")


async def test_names_and_labels_are_validated_for_every_kind(client: Client) -> None:
    reply = await client.post(NODES, node("Not_A_Name"))
    assert reply.status == 422
    assert reply.body["details"]["causes"][0]["field"] == "metadata.name"
    reply = await client.post(
        DRS, {**dr(), "metadata": {"name": "x", "labels": {"rackmesh.io/request": "y" * 64}}}
    )
    assert reply.status == 422
    assert reply.body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "metadata.labels",
            "message": f'Invalid value: "{"y" * 64}": must be no more than 63 characters',
        }
    ]
    reply = await client.post(DRS, {**dr(), "metadata": {}})
    assert reply.body["details"]["causes"] == [
        {
            "reason": "FieldValueRequired",
            "field": "metadata.name",
            "message": "Required value: name or generateName is required",
        },
        BLOCKED,
    ]
