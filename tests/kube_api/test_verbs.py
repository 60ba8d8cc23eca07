"""Verbs: PUT, the three PATCH types, DELETE with finalizers, dry-run, deletecollection.

Docs: https://kubernetes.io/docs/reference/using-api/api-concepts/#api-verbs
https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/
(RFC 7386 merge patch, RFC 6902 JSON patch, strategic merge patch — not for custom resources)
https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/
https://kubernetes.io/docs/reference/using-api/api-concepts/#dry-run

Case matrix:
- PUT replaces the whole object (fields left out disappear); name mismatch → 400.
- merge patch: objects merge, null deletes, lists replace.
- JSON patch: add/replace/remove/test; a failing test → 422 and nothing changes.
- strategic merge patch: 415 for custom resources; for Nodes lists merge by key (conditions by type).
- unknown patch type → 415.
- DELETE: gone at once → ``Status`` Success; with finalizers → the object with deletionTimestamp, gone
  once the last finalizer is removed; no new finalizers while deleting; preconditions → 409.
- dryRun=All: validated, answered, not stored.
- deletecollection with a label selector; a JSON body labelled protobuf → 400.
"""

from __future__ import annotations

from tests.kube_api.conftest import DRS, NODES, Client, dr, node

JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


async def test_put_replaces(client: Client) -> None:
    created = await client.create(DRS, {**dr(), "metadata": {"name": "lob123", "labels": {"a": "1"}}})
    body = {**created, "metadata": {**created["metadata"], "labels": {"b": "2"}}}
    replaced = await client.put(f"{DRS}/lob123", body)
    assert replaced.body["metadata"]["labels"] == {"b": "2"}
    reply = await client.put(f"{DRS}/other", body)
    assert reply.status == 404
    body["metadata"]["name"] = "renamed"
    reply = await client.put(f"{DRS}/lob123", body)
    assert reply.status == 400
    assert (
        reply.body["message"]
        == "the name of the object (renamed) does not match the name on the URL (lob123)"
    )


async def test_merge_patch(client: Client) -> None:
    await client.create(
        DRS,
        {
            **dr(),
            "metadata": {"name": "lob123", "labels": {"a": "1", "b": "2"}, "finalizers": ["x/y", "x/z"]},
        },
    )
    patched = await client.patch(
        f"{DRS}/lob123", {"metadata": {"labels": {"a": None, "c": "3"}, "finalizers": ["x/z"]}}
    )
    assert patched.body["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert patched.body["metadata"]["finalizers"] == ["x/z"]


async def test_json_patch(client: Client) -> None:
    await client.create(DRS, dr())
    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "replace", "path": "/spec/replicas", "value": 4},
        {"op": "add", "path": "/metadata/labels", "value": {"a~b/c": "x"}},
        {"op": "remove", "path": "/metadata/labels/a~0b~1c"},
    ]
    patched = await client.patch(f"{DRS}/lob123", ops, content_type=JSON_PATCH)
    assert patched.status == 200
    assert patched.body["spec"]["replicas"] == 4
    assert patched.body["metadata"]["labels"] == {}
    failing = [
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "replace", "path": "/spec/image", "value": "other"},
    ]
    reply = await client.patch(f"{DRS}/lob123", failing, content_type=JSON_PATCH)
    assert reply.status == 422
    assert (await client.get(f"{DRS}/lob123")).body["spec"]["image"] == "lob123-rhel-6.0"


async def test_strategic_merge_patch(client: Client) -> None:
    await client.create(DRS, dr())
    reply = await client.patch(f"{DRS}/lob123", {"spec": {"replicas": 4}}, content_type=STRATEGIC)
    assert reply.status == 415
    assert reply.body["reason"] == "UnsupportedMediaType"
    await client.create(NODES, node("n1"))
    conditions = {"status": {"conditions": [{"type": "MemoryPressure", "status": "False"}]}}
    patched = await client.patch(f"{NODES}/n1/status", conditions, content_type=STRATEGIC)
    assert patched.body["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "MemoryPressure", "status": "False"},
    ]
    delete = {"status": {"conditions": [{"type": "Ready", "$patch": "delete"}]}}
    patched = await client.patch(f"{NODES}/n1/status", delete, content_type=STRATEGIC)
    assert patched.body["status"]["conditions"] == [{"type": "MemoryPressure", "status": "False"}]
    reply = await client.patch(f"{NODES}/n1", {}, content_type="application/xml")
    assert reply.status == 415


async def test_delete_without_finalizers_answers_a_status(client: Client) -> None:
    created = await client.create(DRS, dr())
    reply = await client.delete(f"{DRS}/lob123")
    assert reply.status == 200
    assert reply.body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": "lob123",
            "group": "rackmesh.io",
            "kind": "deploymentrequests",
            "uid": created["metadata"]["uid"],
        },
    }
    assert (await client.get(f"{DRS}/lob123")).status == 404


async def test_finalizers_hold_deletion(client: Client) -> None:
    await client.create(DRS, {**dr(), "metadata": {"name": "lob123", "finalizers": ["rackmesh.io/cleanup"]}})
    reply = await client.delete(f"{DRS}/lob123")
    assert reply.status == 200
    assert reply.body["metadata"]["deletionTimestamp"]
    assert (await client.get(f"{DRS}/lob123")).status == 200
    reply = await client.patch(
        f"{DRS}/lob123", {"metadata": {"finalizers": ["rackmesh.io/cleanup", "new/one"]}}
    )
    assert reply.status == 422
    assert reply.body["details"]["causes"][0]["field"] == "metadata.finalizers"
    reply = await client.patch(f"{DRS}/lob123", {"metadata": {"finalizers": None}})
    assert reply.status == 200
    assert (await client.get(f"{DRS}/lob123")).status == 404


async def test_delete_preconditions(client: Client) -> None:
    await client.create(DRS, dr())
    reply = await client.delete(f"{DRS}/lob123", {"preconditions": {"uid": "not-it"}})
    assert reply.status == 409
    assert "Precondition failed: UID in precondition: not-it" in reply.body["message"]


async def test_dry_run(client: Client) -> None:
    reply = await client.post(DRS, dr(), params={"dryRun": "All"})
    assert reply.status == 201
    assert (await client.get(f"{DRS}/lob123")).status == 404
    reply = await client.post(DRS, dr(replicas=10001), params={"dryRun": "All"})
    assert reply.status == 422
    await client.create(DRS, dr())
    await client.patch(f"{DRS}/lob123", {"spec": {"replicas": 9}}, params={"dryRun": "All"})
    await client.delete(f"{DRS}/lob123", params={"dryRun": "All"})
    assert (await client.get(f"{DRS}/lob123")).body["spec"]["replicas"] == 3


async def test_delete_collection(client: Client) -> None:
    for name, team in [("a", "x"), ("b", "x"), ("c", "y")]:
        await client.create(DRS, {**dr(), "metadata": {"name": name, "labels": {"team": team}}})
    reply = await client.delete(DRS, params={"labelSelector": "team=x"})
    assert reply.status == 200
    remaining = (await client.get(DRS)).body["items"]
    assert [item["metadata"]["name"] for item in remaining] == ["c"]


async def test_unsupported_verbs_and_paths(client: Client) -> None:
    assert (await client.post("/apis/authorization.k8s.io/v1/selfsubjectreviews", {})).status == 404
    assert (await client.get("/apis/nothing.example.com/v1/things")).status == 404
    assert (await client.put(DRS, {})).status == 405
    assert (await client.get(f"{DRS}/lob123/scale")).status == 404
    reply = await client.post("/api/v1/namespaces", {}, content_type="application/vnd.kubernetes.protobuf")
    assert reply.status == 400  # JSON sent as protobuf: not the protobuf envelope (test_protobuf_bodies.py)
    reply = await client.get("/nonsense")
    assert reply.status == 404
    assert reply.body == "404 page not found\n"
