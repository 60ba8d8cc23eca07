"""Server-side apply and managedFields through the API: raw HTTP, the real kubectl, the official Python client.

Each outcome is kube-apiserver's, as https://kubernetes.io/docs/reference/using-api/server-side-apply/ describes
it (quoted where it decides the case) and as its field manager (k8s.io/apimachinery util/managedfields) words it.

Case matrix:
- HTTP: an apply creates (201) with one ``Apply`` entry in the real shape; an unchanged re-apply keeps the
  resourceVersion; YAML bodies; refusals: no fieldManager (422, PatchOptions), ``force`` on a merge patch (422),
  another kind (400), managedFields in the body (400), an undeclared field (400), a body that is not YAML (400);
  omitting a field removes it unless another manager owns it; two managers share a value; a different value is a
  409 naming the manager and field, with causes; ``force=true`` takes the field over; non-apply writes record
  ``Update`` entries (fieldManager, else the User-Agent's program; ``subresource`` for status and scale) that
  conflict as appliers do; status conditions (a list-map) merge by type across managers; a Deployment's
  containers merge by name; dry run stores nothing; the schema and CEL rules refuse an apply as any write;
  RBAC: an apply that creates needs ``create`` too; ValidatingAdmissionPolicies see an apply that creates as
  CREATE and one that merges as UPDATE; managedFields reset by ``[{}]``; at most 10 Update entries; a JSON patch
  writing into one object's managedFields changes no other object's (their equal tries are shared in memory).
- kubectl: ``apply --server-side`` creates, re-applies unchanged, shows ``--show-managed-fields``; ``scale`` then a
  different replicas fails with kubectl's conflict text, ``--force-conflicts`` takes over; a client-side apply's
  fields conflict for another manager (``kubectl-client-side-apply``); the CRD and the install's kustomization
  (after kopf's peering CRDs) apply server-side; ``--dry-run=server``.
- the official client: apply through ``patch_namespaced_config_map`` with the apply content type, managedFields
  read as typed ``V1ManagedFieldsEntry``; a conflict is ApiException 409; ``force=True``.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from kubernetes import client

from tests.kube_api.conftest import DR_CRD, DRS, REPO, Client, Cluster, dr
from tests.kube_api.test_admission_policy import BINDINGS, POLICIES, policy, policy_binding
from tests.kube_api.test_authn import Session
from tests.kube_api.test_authn import authed as authed  # the fixture
from tests.kube_api.test_official_client import api as api  # the fixtures: a threaded API, its client
from tests.kube_api.test_official_client import api_client as api_client
from tests.kube_api.test_official_client import namespace as namespace
from tests.kube_api.test_official_client import status_of
from tests.kube_api.test_rbac import RBAC, binding, role, sa_subject, sa_token

APPLY = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
V = "rackmesh.io/v1alpha1"


async def apply(
    c: Client, path: str, body: Any, manager: str | None = "ci", subresource: str = "", **params: str
) -> Any:
    query = {**({"fieldManager": manager} if manager else {}), **params}
    return await c.patch(f"{path}/{subresource}" if subresource else path, body, content_type=APPLY, params=query)


def entries(obj: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """managedFields by (manager, operation, subresource), the identity of an entry for one apiVersion."""
    found = {(e["manager"], e["operation"], e.get("subresource", "")): e for e in obj["metadata"]["managedFields"]}
    assert len(found) == len(obj["metadata"]["managedFields"]), "one entry per manager"
    return found


def request_config(name: str = "lob123", **spec: Any) -> dict[str, Any]:
    """An apply configuration of a DeploymentRequest: only the fields this manager has an opinion on (an empty
    ``spec: {}`` would be one: an applied empty map is owned)."""
    config: dict[str, Any] = {"apiVersion": V, "kind": "DeploymentRequest", "metadata": {"name": name}}
    return {**config, "spec": spec} if spec else config


def full(replicas: int = 3) -> dict[str, Any]:
    return request_config(replicas=replicas, instancetype="u1.large", image="lob123-rhel-6.0")


# -- HTTP ------------------------------------------------------------------------------------------


async def test_apply_creates_then_changes_nothing(client: Client) -> None:
    """"A fully specified intent either creates a new object ... or is combined ... with the existing object"; an
    apply that changes nothing is not persisted (no new resourceVersion)."""
    created = await apply(client, f"{DRS}/lob123", full(), manager="ci")
    assert created.status == 201, created
    (entry,) = created.body["metadata"]["managedFields"]
    assert entry == {
        "manager": "ci",
        "operation": "Apply",
        "apiVersion": V,
        "time": entry["time"],
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:image": {}, "f:instancetype": {}, "f:replicas": {}}},
    }
    again = await apply(client, f"{DRS}/lob123", full(), manager="ci")
    assert again.status == 200
    assert again.body["metadata"]["resourceVersion"] == created.body["metadata"]["resourceVersion"]
    assert again.body["metadata"]["generation"] == 1


async def test_yaml_bodies(client: Client) -> None:
    body = textwrap.dedent(
        """\
        apiVersion: rackmesh.io/v1alpha1
        kind: DeploymentRequest
        metadata: {name: from-yaml, labels: {team: blue}}
        spec: {replicas: 2, instancetype: u1.large, image: lob123-rhel-6.0}
        """
    )
    async with client.session.patch(
        f"{client.url}{DRS}/from-yaml", data=body, params={"fieldManager": "ci"}, headers={"Content-Type": APPLY}
    ) as reply:
        assert reply.status == 201, await reply.text()
        assert (await reply.json())["metadata"]["labels"] == {"team": "blue"}
    async with client.session.patch(
        f"{client.url}{DRS}/from-yaml", data="spec: [", params={"fieldManager": "ci"}, headers={"Content-Type": APPLY}
    ) as reply:
        assert reply.status == 400
        assert (await reply.json())["message"].startswith("error decoding YAML: ")


@pytest.mark.parametrize(
    ("body", "params", "code", "message"),
    [
        (
            full(),
            {},
            422,
            'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
        ),
        (
            {**full(), "kind": "Other"},
            {"fieldManager": "ci"},
            400,
            "invalid object type: rackmesh.io/v1alpha1, Kind=Other",
        ),
        (
            {**full(), "metadata": {"name": "lob123", "managedFields": []}},
            {"fieldManager": "ci"},
            400,
            "metadata.managedFields must be nil",
        ),
        (
            request_config(replicas=1, color="red"),
            {"fieldManager": "ci"},
            400,
            "failed to create typed patch object (default/lob123; rackmesh.io/v1alpha1, Kind=DeploymentRequest): "
            ".spec.color: field not declared in schema",
        ),
        (full(), {"fieldManager": "x" * 129}, 422, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Too long: '
         "may not be more than 128 bytes"),
    ],
)
async def test_refused_applies(client: Client, body: Any, params: dict[str, str], code: int, message: str) -> None:
    """The server's own answers (ValidatePatchOptions, the version check, structuredMerge's)."""
    reply = await client.patch(f"{DRS}/lob123", body, content_type=APPLY, params=params)
    assert (reply.status, reply.body["message"]) == (code, message)
    assert (await client.get(f"{DRS}/lob123")).status == 404


async def test_force_is_for_applies_only(client: Client) -> None:
    await client.create(DRS, dr())
    reply = await client.patch(f"{DRS}/lob123", {"spec": {"replicas": 4}}, params={"force": "true"})
    assert (reply.status, reply.body["message"]) == (
        422,
        'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch',
    )


async def test_omitting_a_field_removes_it_unless_another_manager_owns_it(client: Client) -> None:
    """"If you remove a field from a manifest and apply that manifest, Server-Side Apply checks if there are any
    other field managers that also own the field. If the field is not owned by any other field managers, it is
    ... deleted from the live object"."""
    labelled = full()
    labelled["metadata"]["labels"] = {"team": "blue", "tier": "gold"}
    await apply(client, f"{DRS}/lob123", labelled, manager="ci")
    tier = {**request_config(), "metadata": {"name": "lob123", "labels": {"tier": "gold"}}}
    await apply(client, f"{DRS}/lob123", tier, manager="billing")
    applied = await apply(client, f"{DRS}/lob123", full(), manager="ci")
    assert applied.body["metadata"]["labels"] == {"tier": "gold"}  # team went; tier is billing's too
    again = await apply(client, f"{DRS}/lob123", request_config(), manager="billing")
    assert "labels" not in again.body["metadata"]
    assert set(entries(again.body)) == {("ci", "Apply", "")}  # billing owns nothing now


async def test_shared_values_conflicts_and_force(client: Client) -> None:
    """"If two or more appliers set a field to the same value, they share ownership of that field"; a different
    value "owned by another manager will result in a conflict"; forced, "the ownership will be transferred"."""
    await apply(client, f"{DRS}/lob123", full(3), manager="ci")
    shared = await apply(client, f"{DRS}/lob123", request_config(replicas=3), manager="autoscaler")
    assert shared.status == 200
    assert entries(shared.body)[("autoscaler", "Apply", "")]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    refused = await apply(client, f"{DRS}/lob123", request_config(replicas=5), manager="autoscaler")
    assert refused.status == 409
    assert refused.body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Apply failed with 1 conflict: conflict with "ci": .spec.replicas',
        "reason": "Conflict",
        "details": {"causes": [{"reason": "FieldManagerConflict", "message": 'conflict with "ci"',
                                "field": ".spec.replicas"}]},
        "code": 409,
    }
    forced = await apply(client, f"{DRS}/lob123", request_config(replicas=5), manager="autoscaler", force="true")
    assert forced.body["spec"]["replicas"] == 5
    owners = entries(forced.body)
    assert owners[("ci", "Apply", "")]["fieldsV1"] == {"f:spec": {"f:image": {}, "f:instancetype": {}}}
    again = await apply(client, f"{DRS}/lob123", full(3), manager="ci")
    assert again.status == 409
    assert again.body["message"] == 'Apply failed with 1 conflict: conflict with "autoscaler": .spec.replicas'


async def test_updates_are_managers_too(client: Client) -> None:
    """"the last actor to make an assertion about the value of a field will be recorded as the current field
    manager ... by changing it with a POST (create), PUT (update), or non-apply PATCH (patch)"; the manager of a
    write without ``fieldManager`` is its User-Agent's program."""
    created = await client.create(DRS, dr(replicas=3), params={"fieldManager": "kubectl-create"})
    assert entries(created)[("kubectl-create", "Update", "")]["fieldsV1"]["f:spec"] == {
        ".": {}, "f:image": {}, "f:instancetype": {}, "f:replicas": {},
    }
    patched = await client.patch(f"{DRS}/lob123", {"spec": {"replicas": 4}}, headers={"User-Agent": "kopf/1.45.2"})
    assert entries(patched.body)[("kopf", "Update", "")]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    status = await client.patch(f"{DRS}/lob123/status", {"status": {"phase": "Pending"}},
                                headers={"User-Agent": "kopf/1.45.2"})
    assert entries(status.body)[("kopf", "Update", "status")]["fieldsV1"] == {"f:status": {".": {}, "f:phase": {}}}
    scaled = await client.patch(f"{DRS}/lob123/scale", {"spec": {"replicas": 6}}, params={"fieldManager": "hpa"})
    assert scaled.status == 200
    obj = (await client.get(f"{DRS}/lob123")).body
    assert entries(obj)[("hpa", "Update", "scale")]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert ("kopf", "Update", "") not in entries(obj)  # the scale took its only field
    refused = await apply(client, f"{DRS}/lob123", request_config(replicas=2), manager="ci")
    assert refused.body["message"] == (
        'Apply failed with 1 conflict: conflict with "hpa" with subresource "scale" using rackmesh.io/v1alpha1: '
        ".spec.replicas"
    )


async def test_status_conditions_merge_by_type(client: Client) -> None:
    """``status.conditions`` is ``x-kubernetes-list-type: map`` keyed by ``type``: each manager keeps its own items.
    Applies through /status own status only; a main-resource apply does not own status (its reset fields)."""
    await apply(client, f"{DRS}/lob123", full(), manager="ci")

    def conditions(*items: tuple[str, str]) -> dict[str, Any]:
        listed = [{"type": t, "status": s, "reason": "R", "message": "m", "lastTransitionTime": "2024-01-01T00:00:00Z"}
                  for t, s in items]
        return {"apiVersion": V, "kind": "DeploymentRequest", "metadata": {"name": "lob123"},
                "status": {"conditions": listed}}

    await apply(client, f"{DRS}/lob123", conditions(("Ready", "False")), manager="operator", subresource="status")
    both = await apply(client, f"{DRS}/lob123", conditions(("Stalled", "True")), manager="health",
                       subresource="status")
    assert [c["type"] for c in both.body["status"]["conditions"]] == ["Ready", "Stalled"]
    assert entries(both.body)[("health", "Apply", "status")]["fieldsV1"]["f:status"]["f:conditions"] == {
        'k:{"type":"Stalled"}': {".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:reason": {}, "f:status": {},
                                 "f:type": {}}
    }
    moved = await apply(client, f"{DRS}/lob123", conditions(("Ready", "True")), manager="operator",
                        subresource="status")
    assert [(c["type"], c["status"]) for c in moved.body["status"]["conditions"]] == [("Ready", "True"),
                                                                                       ("Stalled", "True")]
    conflict = await apply(client, f"{DRS}/lob123", conditions(("Ready", "False")), manager="health",
                           subresource="status")
    assert conflict.status == 409
    assert conflict.body["message"].startswith(
        'Apply failed with 1 conflict: conflict with "operator" with subresource "status": '
        '.status.conditions[type="Ready"].status'
    )
    main = await apply(client, f"{DRS}/lob123", {**full(), "status": {"phase": "Ready"}}, manager="ci")
    assert "phase" not in main.body["status"]
    assert "f:status" not in entries(main.body)[("ci", "Apply", "")]["fieldsV1"]


def deployment(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": containers}}, **spec},
    }


async def test_deployment_containers_merge_by_name(client: Client) -> None:
    """Built-in lists merge by their merge key (containers by ``name``), as their OpenAPI's patch merge keys say."""
    base = deployment([{"name": "nginx", "image": "nginx:1"}], replicas=2, selector={"matchLabels": {"app": "web"}})
    assert (await apply(client, f"{DEPLOYMENTS}/web", base, manager="team")).status == 201
    sidecar = await apply(client, f"{DEPLOYMENTS}/web", deployment([{"name": "proxy", "image": "envoy:1"}]),
                          manager="mesh")
    assert [c["name"] for c in sidecar.body["spec"]["template"]["spec"]["containers"]] == ["nginx", "proxy"]
    bumped = await apply(client, f"{DEPLOYMENTS}/web", {**base, "spec": {**base["spec"], "template": {
        "spec": {"containers": [{"name": "nginx", "image": "nginx:2"}]}}}}, manager="team")
    assert [(c["name"], c["image"]) for c in bumped.body["spec"]["template"]["spec"]["containers"]] == [
        ("nginx", "nginx:2"), ("proxy", "envoy:1")
    ]
    refused = await apply(client, f"{DEPLOYMENTS}/web", deployment([{"name": "nginx", "image": "nginx:3"}]),
                          manager="mesh")
    assert refused.body["message"] == (
        'Apply failed with 1 conflict: conflict with "team": .spec.template.spec.containers[name="nginx"].image'
    )


async def test_dry_run_and_admission(client: Client) -> None:
    """Applies go through the write path of any other write: dry run, schema validation, CEL rules."""
    dry = await apply(client, f"{DRS}/lob123", full(), manager="ci", dryRun="All")
    assert dry.status == 201 and dry.body["metadata"]["managedFields"][0]["manager"] == "ci"
    assert (await client.get(f"{DRS}/lob123")).status == 404
    too_many = await apply(client, f"{DRS}/lob123", full(replicas=10001), manager="ci")
    assert (too_many.status, too_many.body["reason"]) == (422, "Invalid")
    assert "spec.replicas: Invalid value: 10001: spec.replicas in body should be less than or equal to 10000" in (
        too_many.body["message"]
    )
    await apply(client, f"{DRS}/lob123", full(), manager="ci")
    immutable = await apply(client, f"{DRS}/lob123", {**full(), "spec": {**full()["spec"], "image": "other"}},
                            manager="ci")
    assert immutable.status == 422
    assert "spec.image: Invalid value: \"string\": image is immutable" in immutable.body["message"]


async def test_an_apply_that_creates_needs_create(authed: Session) -> None:
    """The patch handler authorizes ``create`` too when an apply would create the object (withAuthorization)."""
    token = await sa_token(authed, "team", "editor")
    await authed.admin.create(f"{RBAC}/namespaces/team/roles", role(
        "patch-cm", {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"]}))
    await authed.admin.create(f"{RBAC}/namespaces/team/rolebindings",
                              binding("editor", "patch-cm", sa_subject("editor")))
    user = authed.as_token(token)
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}}
    refused = await apply(user, "/api/v1/namespaces/team/configmaps/cfg", config)
    assert (refused.status, refused.body["message"]) == (
        403,
        'configmaps "cfg" is forbidden: User "system:serviceaccount:team:editor" cannot create resource "configmaps" '
        'in API group "" in the namespace "team"',
    )
    await authed.admin.create("/api/v1/namespaces/team/configmaps", {"metadata": {"name": "cfg"}})
    applied = await apply(user, "/api/v1/namespaces/team/configmaps/cfg", config)
    assert (applied.status, applied.body["data"]) == (200, {"a": "1"})


async def test_admission_policies_see_applies_as_creates_and_updates(authed: Session) -> None:
    rule = {"expression": "!has(object.data) || !('forbidden' in object.data)",
            "messageExpression": "request.operation + ' with a forbidden key'"}
    await authed.admin.create(POLICIES, policy("no-forbidden", rule))
    await authed.admin.create(BINDINGS, policy_binding("no-forbidden", "no-forbidden"))
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"forbidden": "1"}}
    created = await apply(authed.admin, f"{CONFIGMAPS}/cfg", config)
    assert (created.status, created.body["message"]) == (
        422,
        "configmaps \"cfg\" is forbidden: ValidatingAdmissionPolicy 'no-forbidden' with binding 'no-forbidden' "
        "denied request: CREATE with a forbidden key",
    )
    assert (await apply(authed.admin, f"{CONFIGMAPS}/cfg", {**config, "data": {"a": "1"}})).status == 201
    updated = await apply(authed.admin, f"{CONFIGMAPS}/cfg", config)
    assert updated.body["message"].endswith("denied request: UPDATE with a forbidden key")


async def test_managed_fields_reset_and_bounded(client: Client) -> None:
    """"overwriting the managedFields field with an empty entry" strips them; Update entries are capped at 10, the
    oldest merged into ``ancient-changes`` (DefaultMaxUpdateManagers)."""
    await client.create(DRS, dr(), params={"fieldManager": "creator"})
    for i in range(12):
        await client.patch(f"{DRS}/lob123", {"metadata": {"labels": {f"l{i}": "x"}}}, params={"fieldManager": f"m{i}"})
    for _ in range(3):  # the same manager again: still one entry
        await client.patch(f"{DRS}/lob123", {"metadata": {"labels": {"l11": "y"}}}, params={"fieldManager": "m11"})
    listed = (await client.get(f"{DRS}/lob123")).body["metadata"]["managedFields"]
    assert [e["operation"] for e in listed] == ["Update"] * 10
    assert "ancient-changes" in {e["manager"] for e in listed} and "m11" in {e["manager"] for e in listed}
    reset = await client.patch(f"{DRS}/lob123", {"metadata": {"managedFields": [{}]}})
    assert "managedFields" not in reset.body["metadata"]
    first = await apply(client, f"{DRS}/lob123", request_config(replicas=3), manager="ci")
    assert set(entries(first.body)) == {("before-first-apply", "Update", ""), ("ci", "Apply", "")}


async def test_a_json_patch_into_managed_fields_changes_no_other_object(client: Client) -> None:
    """Objects written by the same manager own the same fields; one object's patched entry is its own."""
    for name in ("patched", "bystander"):
        await client.create(DRS, dr(name), params={"fieldManager": "creator"})
    before = entries((await client.get(f"{DRS}/bystander")).body)[("creator", "Update", "")]["fieldsV1"]
    patched = await client.patch(f"{DRS}/patched", [
        {"op": "add", "path": "/metadata/managedFields/0/fieldsV1/f:spec/f:image", "value": {"f:x": {}}},
        {"op": "replace", "path": "/spec/replicas", "value": 4},
    ], content_type=JSON_PATCH, params={"fieldManager": "creator"})
    assert patched.status == 200, patched
    assert entries(patched.body)[("creator", "Update", "")]["fieldsV1"]["f:spec"]["f:image"] == {"f:x": {}}
    refused = await client.patch(f"{DRS}/bystander", [
        {"op": "add", "path": "/metadata/managedFields/0/fieldsV1/f:spec/f:image", "value": {"f:y": {}}},
        {"op": "test", "path": "/spec/replicas", "value": 99},
    ], content_type=JSON_PATCH)
    assert refused.status == 422, refused
    assert entries((await client.get(f"{DRS}/bystander")).body)[("creator", "Update", "")]["fieldsV1"] == before
    assert before["f:spec"]["f:image"] == {}


# -- kubectl ---------------------------------------------------------------------------------------


def dr_manifest(cluster: Cluster, name: str, replicas: int) -> str:
    return cluster.manifest(
        f"{name}-{replicas}.yaml",
        f"""\
        apiVersion: rackmesh.io/v1alpha1
        kind: DeploymentRequest
        metadata: {{name: {name}, namespace: default}}
        spec: {{replicas: {replicas}, instancetype: u1.large, image: lob123-rhel-6.0}}
        """,
    )


@pytest.mark.kubectl
def test_kubectl_apply_server_side(cluster: Cluster) -> None:
    path = dr_manifest(cluster, "ssa", 3)
    assert cluster.kubectl("apply", "--server-side", "-f", path).stdout == (
        "deploymentrequest.rackmesh.io/ssa serverside-applied\n"
    )
    before = json.loads(cluster.kubectl("get", "dr", "ssa", "-o", "json").stdout)
    cluster.kubectl("apply", "--server-side", "-f", path)
    after = json.loads(cluster.kubectl("get", "dr", "ssa", "-o", "json", "--show-managed-fields").stdout)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert "managedFields" not in before["metadata"]  # kubectl hides them unless asked
    shown = cluster.kubectl("get", "dr", "ssa", "-o", "yaml", "--show-managed-fields").stdout
    assert "manager: kubectl\n    operation: Apply\n" in shown and "f:replicas: {}" in shown
    dry = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", dr_manifest(cluster, "ssa", 9))
    assert dry.stdout == "deploymentrequest.rackmesh.io/ssa serverside-applied (server dry run)\n"
    assert cluster.kubectl("get", "dr", "ssa", "-o", "jsonpath={.spec.replicas}").stdout == "3"


@pytest.mark.kubectl
def test_kubectl_scale_then_apply_conflicts(cluster: Cluster) -> None:
    """"kubectl scale" makes ``kubectl`` (the User-Agent's program) the replicas' Update manager through /scale."""
    cluster.kubectl("apply", "--server-side", "-f", dr_manifest(cluster, "scaled", 3))
    cluster.kubectl("scale", "dr", "scaled", "--replicas=5")
    refused = cluster.kubectl("apply", "--server-side", "-f", dr_manifest(cluster, "scaled", 7), check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        'error: Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using '
        "rackmesh.io/v1alpha1: .spec.replicas\nPlease review the fields above--they currently have other managers."
    )
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", dr_manifest(cluster, "scaled", 7))
    obj = json.loads(cluster.kubectl("get", "dr", "scaled", "-o", "json", "--show-managed-fields").stdout)
    assert obj["spec"]["replicas"] == 7
    assert [(e["manager"], e["operation"]) for e in obj["metadata"]["managedFields"]] == [("kubectl", "Apply")]


@pytest.mark.kubectl
def test_kubectl_client_side_apply_fields_conflict_for_others(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", dr_manifest(cluster, "csa", 3))
    refused = cluster.kubectl(
        "apply", "--server-side", "--field-manager=flux", "-f", dr_manifest(cluster, "csa", 4), check=False
    )
    assert refused.stderr.startswith(
        'error: Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using rackmesh.io/v1alpha1: '
        ".spec.replicas\n"
    )
    # kubectl's own server-side apply takes over what its client-side apply applied (no conflict).
    cluster.kubectl("apply", "--server-side", "-f", dr_manifest(cluster, "csa", 4))
    assert cluster.kubectl("get", "dr", "csa", "-o", "jsonpath={.spec.replicas}").stdout == "4"


@pytest.mark.kubectl
def test_kubectl_applies_the_install_server_side(cluster: Cluster) -> None:
    """What Flux and Argo CD (with ServerSideApply=true) do with the repository's manifests."""
    cluster.kubectl("apply", "--server-side", "-f", str(DR_CRD), "-f", str(REPO / "manifests/crds/kopf-peering.yaml"))
    applied = cluster.kubectl("apply", "--server-side", "-k", str(REPO / "manifests/default")).stdout.splitlines()
    assert applied and all(line.endswith(" serverside-applied") for line in applied)
    again = cluster.kubectl("apply", "--server-side", "-k", str(REPO / "manifests/default")).stdout.splitlines()
    assert again == applied


# -- the official Python client --------------------------------------------------------------------


def test_official_client_applies(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}}
    created = core.patch_namespaced_config_map("cfg", namespace, config, field_manager="script",
                                               _content_type=APPLY)
    (entry,) = created.metadata.managed_fields
    assert isinstance(entry, client.V1ManagedFieldsEntry)
    assert (entry.manager, entry.operation, entry.fields_type, entry.fields_v1) == (
        "script", "Apply", "FieldsV1", {"f:data": {"f:a": {}}}
    )
    with pytest.raises(client.ApiException) as refused:
        core.patch_namespaced_config_map("cfg", namespace, {**config, "data": {"a": "2"}}, field_manager="other",
                                         _content_type=APPLY)
    assert refused.value.status == 409
    assert status_of(refused.value)["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "script"', "field": ".data.a"}
    ]
    forced = core.patch_namespaced_config_map("cfg", namespace, {**config, "data": {"a": "2"}},
                                              field_manager="other", force=True, _content_type=APPLY)
    assert forced.data == {"a": "2"}
    assert [e.manager for e in forced.metadata.managed_fields] == ["other"]

