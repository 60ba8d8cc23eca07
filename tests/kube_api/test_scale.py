"""The scale subresource of custom resources (``subresources.scale``).

Docs: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#scale-subresource
Source followed: apiextensions-apiserver v0.32 pkg/registry/customresource/etcd.go (ScaleREST),
validator.go (ValidateScaleSpec/Status), pkg/apiserver/customresource_handler.go (routing, patch types).

Case matrix (the Widget CRD of conftest):
- GET: an autoscaling/v1 Scale (metadata name/namespace/uid/resourceVersion/creationTimestamp,
  spec.replicas, status.replicas 0 when unset, status.selector); as a Table: Desired, Available, Age.
- PATCH (merge, JSON patch) and PUT: only the spec replicas path changes; generation bumps; a watch
  sees MODIFIED; a stale resourceVersion is a 409; schema and CEL rules apply (422 naming the Widget).
- no spec replicas: GET is a 500, a patch that does not set them a 400.
- a custom resource without the subresource: 404 NotFound naming it; DELETE on /scale: 405.
- discovery lists ``widgets/scale`` as autoscaling/v1 Scale with get, patch, update.
"""

from __future__ import annotations

import pytest

from tests.kube_api.conftest import DRS, WIDGETS, Client, dr, widget, widget_crd
from tests.kube_api.test_watch import watch

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
JSON_PATCH = "application/json-patch+json"
TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}


@pytest.fixture
async def widgets(client: Client) -> Client:
    await client.create(CRDS, widget_crd())
    return client


async def test_get_scale(widgets: Client) -> None:
    created = await widgets.create(WIDGETS, widget(replicas=3))
    await widgets.patch(f"{WIDGETS}/w1/status", {"status": {"selector": "app=w1"}})
    reply = await widgets.get(f"{WIDGETS}/w1/scale")
    assert reply.status == 200
    md = created["metadata"]
    assert reply.body == {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": "w1",
            "namespace": "default",
            "uid": md["uid"],
            "resourceVersion": str(int(md["resourceVersion"]) + 1),
            "creationTimestamp": md["creationTimestamp"],
        },
        "spec": {"replicas": 3},
        "status": {"replicas": 0, "selector": "app=w1"},
    }
    table = (await widgets.get(f"{WIDGETS}/w1/scale", headers=TABLE)).body
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Desired", "Available", "Age"]
    assert table["rows"][0]["cells"][:3] == ["w1", 3, 0]


async def test_merge_patch_changes_the_spec_replicas_only(widgets: Client) -> None:
    created = await widgets.create(WIDGETS, widget(replicas=3))
    reply = await widgets.patch(f"{WIDGETS}/w1/scale", {"spec": {"replicas": 7}, "status": {"replicas": 9}})
    assert reply.status == 200
    assert (reply.body["spec"], reply.body["status"]) == ({"replicas": 7}, {"replicas": 0})
    [(kind, stored)] = await watch(widgets, WIDGETS, 1, {"resourceVersion": created["metadata"]["resourceVersion"]})
    assert kind == "MODIFIED"
    assert stored["spec"] == {"replicas": 7, "flavor": "small"}
    assert "status" not in stored
    assert stored["metadata"]["generation"] == 2
    assert reply.body["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


async def test_json_patch_and_put(widgets: Client) -> None:
    await widgets.create(WIDGETS, widget(replicas=3))
    patch = [{"op": "replace", "path": "/spec/replicas", "value": 4}]
    reply = await widgets.patch(f"{WIDGETS}/w1/scale", patch, content_type=JSON_PATCH)
    assert reply.body["spec"] == {"replicas": 4}
    scale = reply.body
    reply = await widgets.put(f"{WIDGETS}/w1/scale", {**scale, "spec": {"replicas": 5}})
    assert reply.body["spec"] == {"replicas": 5}
    assert (await widgets.get(f"{WIDGETS}/w1")).body["metadata"]["generation"] == 3
    stale = await widgets.put(f"{WIDGETS}/w1/scale", {**scale, "spec": {"replicas": 6}})
    assert stale.status == 409
    assert stale.body["reason"] == "Conflict"
    assert (await widgets.get(f"{WIDGETS}/w1")).body["spec"]["replicas"] == 5
    reply = await widgets.patch(
        f"{WIDGETS}/w1/scale", {"spec": {"replicas": 6}}, content_type="application/strategic-merge-patch+json"
    )
    assert reply.status == 415


async def test_the_object_is_validated(widgets: Client) -> None:
    await widgets.create(WIDGETS, widget(replicas=3, maxReplicas=5))
    reply = await widgets.patch(f"{WIDGETS}/w1/scale", {"spec": {"replicas": 0}})
    assert reply.status == 422
    assert reply.body["message"] == (
        'Widget.test.rackmesh.io "w1" is invalid: '
        "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"
    )
    reply = await widgets.patch(f"{WIDGETS}/w1/scale", {"spec": {"replicas": 6}})
    assert reply.body["message"] == (
        'Widget.test.rackmesh.io "w1" is invalid: spec.replicas: Invalid value: "object": 6 exceeds 5'
    )
    reply = await widgets.patch(f"{WIDGETS}/w1/scale", {"spec": {"replicas": -1}})
    assert [c["field"] for c in reply.body["details"]["causes"]] == ["spec.replicas", ".spec.replicas"]
    assert reply.body["details"]["causes"][1]["message"] == "Invalid value: -1: should be a non-negative integer"
    assert (await widgets.get(f"{WIDGETS}/w1")).body["spec"]["replicas"] == 3


async def test_unset_spec_replicas(widgets: Client) -> None:
    crd = widget_crd()
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["required"] = ["flavor"]
    assert (
        await widgets.put(f"{CRDS}/widgets.test.rackmesh.io", {**crd, "metadata": {"name": crd["metadata"]["name"]}})
    ).status == 200
    await widgets.create(WIDGETS, {**widget(), "spec": {"flavor": "small"}})
    reply = await widgets.get(f"{WIDGETS}/w1/scale")
    assert (reply.status, reply.body["reason"]) == (500, "InternalError")
    assert reply.body["message"] == 'Internal error occurred: the spec replicas field ".spec.replicas" does not exist'
    reply = await widgets.patch(f"{WIDGETS}/w1/scale", {"metadata": {"labels": {"a": "b"}}})
    assert (reply.status, reply.body["message"]) == (400, 'the spec replicas field ".spec.replicas" cannot be empty')
    reply = await widgets.patch(f"{WIDGETS}/w1/scale", {"spec": {"replicas": 2}})
    assert reply.body["spec"] == {"replicas": 2}


async def test_no_scale_subresource(client: Client) -> None:
    await client.create(DRS, dr())
    crd = (await client.get(f"{CRDS}/deploymentrequests.rackmesh.io")).body
    del crd["spec"]["versions"][0]["subresources"]["scale"]
    assert (await client.put(f"{CRDS}/deploymentrequests.rackmesh.io", crd)).status == 200
    reply = await client.get(f"{DRS}/lob123/scale")
    assert reply.status == 404
    assert reply.body["message"] == 'deploymentrequests.rackmesh.io "lob123" not found'
    assert (await client.patch(f"{DRS}/lob123/scale", {"spec": {"replicas": 2}})).status == 404


async def test_scale_verbs_and_discovery(widgets: Client) -> None:
    await widgets.create(WIDGETS, widget())
    assert (await widgets.delete(f"{WIDGETS}/w1/scale")).status == 405
    resources = (await widgets.get("/apis/test.rackmesh.io/v1")).body["resources"]
    assert {
        "name": "widgets/scale",
        "singularName": "",
        "namespaced": True,
        "group": "autoscaling",
        "version": "v1",
        "kind": "Scale",
        "verbs": ["get", "patch", "update"],
    } in resources
