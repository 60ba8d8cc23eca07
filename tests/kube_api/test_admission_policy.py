"""ValidatingAdmissionPolicies and their bindings on users' writes (with ``auth``), as kube-apiserver runs them.

Docs: https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/

Case matrix:
- rackmesh's policy: an agent (its ServiceAccount, token bound to its Node) may create and delete only
  VirtualMachines pinned to its own node (``request.userInfo.extra`` node name against ``object``, or
  ``oldObject`` on DELETE); other users are not matched (matchConditions); the denial's code, reason and
  message as the server words them.
- validationActions: Warn (a ``Warning`` header), Audit (recorded); binding matchResources narrowing
  (namespaceSelector); the default reason Invalid (422) and messageExpression; oldObject null on CREATE.
- failurePolicy: an expression error denies (Fail) or admits (Ignore).
- malformed policies and bindings are refused when written (422), defaults are stored.
"""

from __future__ import annotations

from typing import Any

from tests.kube_api.conftest import NODES, node
from tests.kube_api.test_authn import Session, bound_to
from tests.kube_api.test_authn import authed as authed  # the fixture
from tests.kube_api.test_rbac import agent_manifests

ADMISSION = "/apis/admissionregistration.k8s.io/v1"
POLICIES = f"{ADMISSION}/validatingadmissionpolicies"
BINDINGS = f"{ADMISSION}/validatingadmissionpolicybindings"
VMS = "/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachines"
AGENT = "system:serviceaccount:rackmesh-system:rackmesh-agent"

# The policy rackmesh deploys: an agent writes only the VMs of its own node.
AGENT_POLICY = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingAdmissionPolicy",
    "metadata": {"name": "rackmesh-agent-own-node"},
    "spec": {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": ["kubevirt.io"],
                    "apiVersions": ["*"],
                    "operations": ["CREATE", "DELETE"],
                    "resources": ["virtualmachines"],
                }
            ]
        },
        "matchConditions": [{"name": "is-agent", "expression": f"request.userInfo.username == '{AGENT}'"}],
        "variables": [
            {"name": "vm", "expression": "request.operation == 'DELETE' ? oldObject : object"},
            {
                "name": "node",
                "expression": "'authentication.kubernetes.io/node-name' in request.userInfo.extra ? "
                "request.userInfo.extra['authentication.kubernetes.io/node-name'][0] : ''",
            },
        ],
        "validations": [
            {
                "expression": "variables.node != '' && has(variables.vm.spec.template.spec.nodeSelector) && "
                "variables.vm.spec.template.spec.nodeSelector['kubernetes.io/hostname'] == variables.node",
                "messageExpression": "'the agent of node ' + variables.node + ' may only write its own VMs'",
                "reason": "Forbidden",
            }
        ],
    },
}


def policy_binding(name: str, policy: str, *actions: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": policy, "validationActions": list(actions or ["Deny"]), **spec},
    }


def policy(name: str, *validations: dict[str, Any], **spec: Any) -> dict[str, Any]:
    rule = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"]}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"matchConstraints": {"resourceRules": [rule]}, "validations": list(validations), **spec},
    }


def vm(name: str, on: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "runStrategy": "Always",
            "template": {"spec": {"nodeSelector": {"kubernetes.io/hostname": on}, "domain": {"devices": {}}}},
        },
    }


async def test_an_agent_writes_only_the_vms_of_its_node(authed: Session) -> None:
    for name in ("rackmesh-system", "victim"):
        await authed.admin.create("/api/v1/namespaces", {"metadata": {"name": name}})
    paths = {
        "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "ServiceAccount": "/api/v1/namespaces/rackmesh-system/serviceaccounts",
    }
    for doc in agent_manifests():
        await authed.admin.create(paths[doc["kind"]], doc)
    await authed.admin.create(POLICIES, AGENT_POLICY)
    await authed.admin.create(BINDINGS, policy_binding("rackmesh-agent-own-node", "rackmesh-agent-own-node"))
    n1 = await authed.admin.create(NODES, node("node-1"))
    agent = authed.as_token(await authed.token("rackmesh-system", "rackmesh-agent", boundObjectRef=bound_to(n1)))
    victims = VMS.format(ns="victim")

    assert (await agent.post(victims, vm("vm-1", on="node-1"))).status == 201
    refused = await agent.post(victims, vm("vm-2", on="node-2"))
    denial = (
        "ValidatingAdmissionPolicy 'rackmesh-agent-own-node' with binding 'rackmesh-agent-own-node' denied request: "
        "the agent of node node-1 may only write its own VMs"
    )
    assert refused.body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'virtualmachines.kubevirt.io "vm-2" is forbidden: {denial}',  # admission.NewForbidden
        "reason": "Forbidden",
        "code": 403,
        "details": {"name": "vm-2", "group": "kubevirt.io", "kind": "virtualmachines", "causes": [{"message": denial}]},
    }
    # The admin is not an agent: it writes anywhere; the agent may not delete another node's VM.
    assert (await authed.admin.post(victims, vm("vm-3", on="node-2"))).status == 201
    delete = await agent.delete(f"{victims}/vm-3")
    assert delete.status == 403 and "may only write its own VMs" in delete.body["message"]
    assert (await agent.delete(f"{victims}/vm-1")).status == 200
    # An agent token bound to no node is refused too (no node name in its extra).
    unbound = authed.as_token(await authed.token("rackmesh-system", "rackmesh-agent"))
    assert (await unbound.post(victims, vm("vm-4", on="node-1"))).status == 403


async def test_warn_audit_and_narrowed_bindings(authed: Session) -> None:
    await authed.admin.create("/api/v1/namespaces", {"metadata": {"name": "prod", "labels": {"env": "prod"}}})
    check = {"expression": "has(object.data) && 'owner' in object.data", "message": "configmaps need an owner"}
    await authed.admin.create(POLICIES, policy("owner", check))
    await authed.admin.create(BINDINGS, policy_binding("owner-warn", "owner", "Warn", "Audit"))
    narrowed = {"namespaceSelector": {"matchLabels": {"env": "prod"}}}
    await authed.admin.create(BINDINGS, policy_binding("owner-deny-prod", "owner", "Deny", matchResources=narrowed))
    warned = await authed.admin.post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}})
    assert warned.status == 201
    assert warned.headers["Warning"] == (
        "299 - \"Validation failed for ValidatingAdmissionPolicy 'owner' with binding 'owner-warn': "
        'configmaps need an owner"'
    )
    assert authed.api.emulator.api.policies is not None
    assert authed.api.emulator.api.policies.audit == [
        {
            "message": "configmaps need an owner",
            "policy": "owner",
            "binding": "owner-warn",
            "validationActions": ["Warn", "Audit"],
        }
    ]
    denied = await authed.admin.post("/api/v1/namespaces/prod/configmaps", {"metadata": {"name": "c"}})
    assert (denied.status, denied.body["reason"]) == (422, "Invalid")  # no reason given: Invalid
    assert denied.body["message"].endswith("with binding 'owner-deny-prod' denied request: configmaps need an owner")
    owned = {"metadata": {"name": "d"}, "data": {"owner": "me"}}
    assert (await authed.admin.post("/api/v1/namespaces/prod/configmaps", owned)).status == 201
    emptied = await authed.admin.patch("/api/v1/namespaces/prod/configmaps/d", {"data": {"owner": None}})
    assert emptied.status == 422  # UPDATE is matched too (a patch)


async def test_failure_policy_and_the_request_variables(authed: Session) -> None:
    broken = {"expression": "object.data.missing == 'x'"}
    await authed.admin.create(POLICIES, policy("broken", broken))
    await authed.admin.create(BINDINGS, policy_binding("broken", "broken"))
    reply = await authed.admin.post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}, "data": {}})
    assert reply.status == 422
    assert reply.body["message"].endswith(
        "denied request: expression 'object.data.missing == 'x'' resulted in error: no such key: missing"
    )
    lenient = policy("broken", broken, failurePolicy="Ignore")
    stored = (await authed.admin.get(f"{POLICIES}/broken")).body
    lenient["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
    assert (await authed.admin.put(f"{POLICIES}/broken", lenient)).status == 200
    assert (await authed.admin.post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}})).status == 201
    # request, oldObject on CREATE (null), the user.
    who = {
        "expression": "oldObject == null && request.operation == 'CREATE' && request.namespace == 'default' && "
        "request.kind.kind == 'ConfigMap' && request.resource.resource == 'configmaps' && "
        "request.userInfo.username == 'kubernetes-admin' && 'system:masters' in request.userInfo.groups",
        "messageExpression": "'refused ' + object.metadata.name",
    }
    await authed.admin.create(POLICIES, policy("who", who))
    await authed.admin.create(BINDINGS, policy_binding("who", "who"))
    assert (await authed.admin.post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "d"}})).status == 201
    update = await authed.admin.patch("/api/v1/namespaces/default/configmaps/d", {"data": {"a": "b"}})
    assert update.body["message"].endswith("denied request: refused d")  # the admin is subject to policies too


async def test_malformed_policies_and_bindings_are_refused(authed: Session) -> None:
    bad = await authed.admin.post(POLICIES, policy("bad", {"expression": "object.data ==", "reason": "Teapot"}))
    assert bad.status == 422
    assert bad.body["message"].startswith(
        'ValidatingAdmissionPolicy.admissionregistration.k8s.io "bad" is invalid: [spec.validations[0].expression: '
        'Invalid value: "object.data ==": compilation failed: ERROR: <input>:1:'
    )
    assert 'spec.validations[0].reason: Unsupported value: "Teapot"' in bad.body["message"]
    empty = await authed.admin.post(POLICIES, {"metadata": {"name": "empty"}, "spec": {}})
    assert empty.body["message"] == (
        'ValidatingAdmissionPolicy.admissionregistration.k8s.io "empty" is invalid: [spec.matchConstraints: Required '
        "value, spec.validations: Required value: validations or auditAnnotations must contain at least one item, "
        "spec.auditAnnotations: Required value: validations or auditAnnotations must contain at least one item]"
    )
    both = await authed.admin.post(BINDINGS, policy_binding("both", "p", "Deny", "Warn"))
    assert both.status == 422 and "must not contain both Deny and Warn" in both.body["message"]
    stored = await authed.admin.create(POLICIES, policy("ok", {"expression": "true"}))
    assert stored["spec"]["failurePolicy"] == "Fail"
    assert stored["spec"]["matchConstraints"]["matchPolicy"] == "Equivalent"
    assert stored["spec"]["matchConstraints"]["namespaceSelector"] == {}
