"""Metadata the server sets, and the errors of names and versions.

Docs: https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/object-meta/
https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions
https://kubernetes.io/docs/reference/using-api/api-concepts/#generated-values (generateName)
https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/

Case matrix:
- create: uid (uuid4), resourceVersion (string of an int, cluster-wide, increasing with every write),
  generation 1 (custom resources), creationTimestamp (RFC 3339, ``Z``); client values of these are replaced.
- generation: +1 on spec changes, unchanged on metadata-only and status changes.
- generateName: prefix + 5 characters.
- a write changing nothing is a no-op: same resourceVersion, no event.
- 409 AlreadyExists, 404 NotFound (bodies), 409 Conflict on a stale resourceVersion (PUT and PATCH).
- namespaced objects need an existing namespace; lists carry ``<Kind>List``, apiVersion and resourceVersion.
"""

from __future__ import annotations

import re
import uuid

from tests.kube_api.conftest import DRS, NODES, Client, dr, node


async def test_create_sets_system_fields(client: Client) -> None:
    body = dr()
    body["metadata"].update({"uid": "mine", "generation": 7, "creationTimestamp": "2000-01-01T00:00:00Z"})
    created = await client.create(DRS, body)
    md = created["metadata"]
    assert uuid.UUID(md["uid"]).version == 4
    assert md["generation"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", md["creationTimestamp"])
    assert md["creationTimestamp"] != "2000-01-01T00:00:00Z"
    assert md["resourceVersion"].isdigit()


async def test_create_with_a_resource_version_is_refused(client: Client) -> None:
    body = dr()
    body["metadata"]["resourceVersion"] = "5"
    reply = await client.post(DRS, body)
    assert reply.status == 500
    assert "resourceVersion should not be set on objects to be created" in reply.body["message"]


async def test_resource_version_increases_across_kinds(client: Client) -> None:
    versions = [
        (await client.create(DRS, dr("a")))["metadata"]["resourceVersion"],
        (await client.create(NODES, node("n1")))["metadata"]["resourceVersion"],
        (await client.patch(f"{DRS}/a", {"metadata": {"labels": {"x": "y"}}})).body["metadata"][
            "resourceVersion"
        ],
    ]
    assert [int(v) for v in versions] == sorted(int(v) for v in versions)
    assert len(set(versions)) == 3
    listed = await client.get(DRS)
    assert int(listed.body["metadata"]["resourceVersion"]) >= int(versions[-1])


async def test_generation_counts_spec_changes_only(client: Client) -> None:
    await client.create(DRS, dr())
    label = await client.patch(f"{DRS}/lob123", {"metadata": {"labels": {"a": "b"}}})
    assert label.body["metadata"]["generation"] == 1
    status = await client.patch(f"{DRS}/lob123/status", {"status": {"phase": "Pending"}})
    assert status.body["metadata"]["generation"] == 1
    spec = await client.patch(f"{DRS}/lob123", {"spec": {"replicas": 4}})
    assert spec.body["metadata"]["generation"] == 2
    forged = await client.patch(f"{DRS}/lob123", {"metadata": {"generation": 99, "uid": "x"}})
    assert forged.body["metadata"]["generation"] == 2
    assert forged.body["metadata"]["uid"] == spec.body["metadata"]["uid"]


async def test_noop_update_keeps_the_resource_version(client: Client) -> None:
    created = await client.create(DRS, dr())
    same = await client.patch(f"{DRS}/lob123", {"spec": {"replicas": 3}})
    assert same.body["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_generate_name(client: Client) -> None:
    body = dr()
    body["metadata"] = {"generateName": "lob123-"}
    created = await client.create(DRS, body)
    assert re.fullmatch(r"lob123-[a-z0-9]{5}", created["metadata"]["name"])
    assert (await client.get(f"{DRS}/{created['metadata']['name']}")).status == 200


async def test_already_exists(client: Client) -> None:
    await client.create(DRS, dr())
    reply = await client.post(DRS, dr())
    assert reply.status == 409
    assert reply.body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "code": 409,
        "reason": "AlreadyExists",
        "message": 'deploymentrequests.rackmesh.io "lob123" already exists',
        "details": {"name": "lob123", "group": "rackmesh.io", "kind": "deploymentrequests"},
    }


async def test_not_found(client: Client) -> None:
    reply = await client.get(f"{DRS}/nope")
    assert reply.status == 404
    assert reply.body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "code": 404,
        "reason": "NotFound",
        "message": 'deploymentrequests.rackmesh.io "nope" not found',
        "details": {"name": "nope", "group": "rackmesh.io", "kind": "deploymentrequests"},
    }
    reply = await client.get(f"{NODES}/nope")
    assert reply.body["message"] == 'nodes "nope" not found'
    assert (await client.patch(f"{DRS}/nope", {"spec": {}})).status == 404
    assert (await client.delete(f"{DRS}/nope")).status == 404


async def test_stale_resource_version_conflicts(client: Client) -> None:
    created = await client.create(DRS, dr())
    await client.patch(f"{DRS}/lob123", {"spec": {"replicas": 4}})
    stale = {**created, "spec": {**created["spec"], "replicas": 5}}
    reply = await client.put(f"{DRS}/lob123", stale)
    assert reply.status == 409
    assert reply.body["reason"] == "Conflict"
    assert reply.body["message"] == (
        'Operation cannot be fulfilled on deploymentrequests.rackmesh.io "lob123": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    patch = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"replicas": 6}}
    assert (await client.patch(f"{DRS}/lob123", patch)).status == 409
    current = (await client.get(f"{DRS}/lob123")).body
    assert current["spec"]["replicas"] == 4
    fresh = {**current, "spec": {**current["spec"], "replicas": 7}}
    assert (await client.put(f"{DRS}/lob123", fresh)).status == 200


async def test_namespace_must_exist(client: Client) -> None:
    reply = await client.post(
        "/apis/rackmesh.io/v1alpha1/namespaces/nowhere/deploymentrequests",
        {**dr(), "metadata": {"name": "x"}},
    )
    assert reply.status == 404
    assert reply.body["message"] == 'namespaces "nowhere" not found'
    reply = await client.post(DRS, {**dr(), "metadata": {"name": "x", "namespace": "other"}})
    assert reply.status == 400


async def test_list_kind_and_version(client: Client) -> None:
    await client.create(DRS, dr("b"))
    await client.create(DRS, dr("a"))
    listed = (await client.get(DRS)).body
    assert listed["kind"] == "DeploymentRequestList"
    assert listed["apiVersion"] == "rackmesh.io/v1alpha1"
    assert listed["metadata"]["resourceVersion"].isdigit()
    assert [item["metadata"]["name"] for item in listed["items"]] == ["a", "b"]
    everywhere = (await client.get("/apis/rackmesh.io/v1alpha1/deploymentrequests")).body
    assert len(everywhere["items"]) == 2
    assert (await client.get(NODES)).body["kind"] == "NodeList"
