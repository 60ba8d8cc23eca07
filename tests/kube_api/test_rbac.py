"""RBAC authorization with the Roles, ClusterRoles and bindings stored in the API, and the access record.

Docs: https://kubernetes.io/docs/reference/access-authn-authz/rbac/

Case matrix:
- a Role bound in one namespace allows there and is forbidden elsewhere, with the server's message
  (namespaced, cluster scope, non-resource path; the reason naming a missing role).
- request attributes: ``watch=true`` needs ``watch``; ``fieldSelector=metadata.name=x`` lists are named
  (resourceNames); subresources (``x/status``, ``*/status``); Group and ServiceAccount subjects (a
  RoleBinding's ServiceAccount without namespace is in the binding's); ``*`` verbs, groups, resources.
- every authenticated user may use discovery and /version (the bootstrap bindings); others need rules.
- rackmesh's agent ClusterRole (manifests/base/agent/rbac.yaml) against what the agent asks for; the access
  record per user (in-process and at /debug/rackmesh/access, for system:masters only).
"""

from __future__ import annotations

from typing import Any

import yaml

from rackmesh_sandbox.kube_api.authn import API_AUDIENCE
from tests.kube_api.conftest import NODES, REPO, node
from tests.kube_api.test_authn import Session
from tests.kube_api.test_authn import authed as authed  # the fixture

RBAC = "/apis/rbac.authorization.k8s.io/v1"
VMS = "/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachines"


def agent_manifests() -> list[dict[str, Any]]:
    """rackmesh's agent RBAC and ServiceAccount, as deployed."""
    files = ("rbac.yaml", "serviceaccount.yaml")
    return [d for f in files for d in yaml.safe_load_all((REPO / "manifests/base/agent" / f).read_text()) if d]


def role(name: str, *rules: dict[str, Any], kind: str = "Role") -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "rules": list(rules),
    }


def binding(
    name: str, role_name: str, *subjects: dict[str, Any], kind: str = "RoleBinding", role_kind: str = "Role"
) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
        "subjects": list(subjects),
    }


def sa_subject(name: str, namespace: str | None = None) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, **({"namespace": namespace} if namespace else {})}


async def sa_token(authed: Session, namespace: str, name: str) -> str:
    await authed.service_account(namespace, name)
    return await authed.token(namespace, name)


async def test_role_in_one_namespace(authed: Session) -> None:
    token = await sa_token(authed, "team", "reader")
    await authed.admin.create(
        f"{RBAC}/namespaces/team/roles",
        role("read-cm", {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}),
    )
    await authed.admin.create(
        f"{RBAC}/namespaces/team/rolebindings", binding("reader", "read-cm", sa_subject("reader"))
    )
    user = authed.as_token(token)
    assert (await user.get("/api/v1/namespaces/team/configmaps")).status == 200
    elsewhere = await user.get("/api/v1/namespaces/default/configmaps")
    assert (elsewhere.status, elsewhere.body["reason"], elsewhere.body["message"]) == (
        403,
        "Forbidden",
        'configmaps is forbidden: User "system:serviceaccount:team:reader" cannot list resource "configmaps" in API '
        'group "" in the namespace "default"',
    )
    assert elsewhere.body["details"] == {"kind": "configmaps"}
    create = await user.post("/api/v1/namespaces/team/configmaps", {"metadata": {"name": "c"}})
    assert create.status == 403 and "cannot create resource" in create.body["message"]
    cluster = await user.get(NODES)
    assert cluster.body["message"] == (
        'nodes is forbidden: User "system:serviceaccount:team:reader" cannot list resource "nodes" in API group "" '
        "at the cluster scope"
    )
    named = await user.delete("/api/v1/namespaces/team/configmaps/c")
    assert named.body["message"].startswith('configmaps "c" is forbidden: User ')
    assert named.body["details"] == {"name": "c", "kind": "configmaps"}


async def test_verbs_names_subresources_and_wildcards(authed: Session) -> None:
    token = await sa_token(authed, "default", "watcher")
    await authed.admin.create(NODES, node("n1"))
    await authed.admin.create(NODES, node("n2"))
    rules = [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "watch"], "resourceNames": ["n1"]},
        {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["patch"]},
    ]
    await authed.admin.create(f"{RBAC}/clusterroles", role("nodes", *rules, kind="ClusterRole"))
    await authed.admin.create(
        f"{RBAC}/clusterrolebindings",
        binding("nodes", "nodes", sa_subject("watcher", "default"), kind="ClusterRoleBinding", role_kind="ClusterRole"),
    )
    user = authed.as_token(token)
    assert (await user.get(NODES)).status == 200
    assert (await user.get(f"{NODES}/n1")).status == 200
    assert (await user.get(f"{NODES}/n2")).status == 403
    watch_all = await user.get(NODES, params={"watch": "true", "timeoutSeconds": "1"})
    assert watch_all.status == 403 and "cannot watch resource" in watch_all.body["message"]
    watch_one = await user.get(NODES, params={"watch": "1", "fieldSelector": "metadata.name=n1", "timeoutSeconds": "1"})
    assert watch_one.status == 200  # named by its field selector: resourceNames apply
    status = await user.patch(f"{NODES}/n2/status", {"status": {"phase": "x"}})
    assert status.status == 200, status
    spec = await user.patch(f"{NODES}/n2", {"metadata": {"labels": {"a": "b"}}})
    assert spec.status == 403 and 'nodes "n2" is forbidden' in spec.body["message"]


async def test_group_subjects_discovery_and_paths(authed: Session) -> None:
    alice = authed.as_token("alice-token")  # groups: dev, system:authenticated
    for path in ("/api", "/apis", "/api/v1", "/apis/kubevirt.io/v1", "/version", "/healthz", "/openapi/v3"):
        assert (await alice.get(path)).status == 200, path
    metrics = await alice.get("/metrics")
    assert (metrics.status, metrics.body["message"]) == (403, 'forbidden: User "alice" cannot get path "/metrics"')
    await authed.admin.create(
        f"{RBAC}/clusterrolebindings",
        binding(
            "dev-view",
            "missing",
            {"kind": "Group", "name": "dev", "apiGroup": "rbac.authorization.k8s.io"},
            kind="ClusterRoleBinding",
            role_kind="ClusterRole",
        ),
    )
    refused = await alice.get(NODES)
    assert refused.body["message"].endswith(
        'at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io "missing" not found'
    )
    await authed.admin.create(
        f"{RBAC}/clusterroles",
        role(
            "missing",
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["*"]},
            {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
            kind="ClusterRole",
        ),
    )
    assert (await alice.get(NODES)).status == 200
    assert (await alice.get("/metrics")).status == 200


async def test_rackmesh_agent_role_and_access_record(authed: Session) -> None:
    docs = agent_manifests()
    await authed.admin.create("/api/v1/namespaces", {"metadata": {"name": "rackmesh-system"}})
    await authed.admin.create("/api/v1/namespaces", {"metadata": {"name": "victim"}})
    paths = {
        "ClusterRole": f"{RBAC}/clusterroles",
        "ClusterRoleBinding": f"{RBAC}/clusterrolebindings",
        "ServiceAccount": "/api/v1/namespaces/rackmesh-system/serviceaccounts",
    }
    for doc in docs:
        await authed.admin.create(paths[doc["kind"]], doc)
    stored = (await authed.admin.get(f"{RBAC}/clusterroles/rackmesh-agent")).body
    assert any(rule["apiGroups"] == ["kubevirt.io"] for rule in stored["rules"])  # stored as written
    agent = authed.as_token(await authed.token("rackmesh-system", "rackmesh-agent", audiences=[API_AUDIENCE]))
    vm = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "vm-1"},
        "spec": {"template": {"spec": {"domain": {"devices": {}}}}},
    }
    assert (await agent.post(VMS.format(ns="victim"), vm)).status == 201
    assert (await agent.get(VMS.format(ns="victim"))).status == 200
    assert (await agent.get(NODES)).status == 200
    update = await agent.put(f"{VMS.format(ns='victim')}/vm-1", vm)
    assert (update.status, update.body["message"]) == (
        403,
        'virtualmachines.kubevirt.io "vm-1" is forbidden: User "system:serviceaccount:rackmesh-system:rackmesh-agent" '
        'cannot update resource "virtualmachines" in API group "kubevirt.io" in the namespace "victim"',
    )
    used = authed.api.emulator.access.used("system:serviceaccount:rackmesh-system:rackmesh-agent")
    assert used == {
        ("create", "kubevirt.io", "virtualmachines"),
        ("list", "kubevirt.io", "virtualmachines"),
        ("list", "", "nodes"),
    }  # the refused update is not in it; discovery is not a resource
    served = await authed.admin.get("/debug/rackmesh/access")
    assert served.body["system:serviceaccount:rackmesh-system:rackmesh-agent"] == [
        ["create", "kubevirt.io", "virtualmachines"],
        ["list", "", "nodes"],
        ["list", "kubevirt.io", "virtualmachines"],
    ]
    # Only system:masters read it, even with a rule for every path.
    await authed.admin.create(
        f"{RBAC}/clusterroles", role("paths", {"nonResourceURLs": ["*"], "verbs": ["*"]}, kind="ClusterRole")
    )
    await authed.admin.create(
        f"{RBAC}/clusterrolebindings",
        binding(
            "paths",
            "paths",
            {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"},
            kind="ClusterRoleBinding",
            role_kind="ClusterRole",
        ),
    )
    assert (await authed.as_token("alice-token").get("/version")).status == 200
    assert (await authed.as_token("alice-token").get("/debug/rackmesh/access")).status == 403
