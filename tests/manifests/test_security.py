"""Identity, admission and network isolation in the built manifests (manifests/default and the kind overlay).

Case matrix (each check on every install build):
  - no shared token: neither the old token's variable nor its Secret in any build, manifest, hack script
    or test here, and no Secret reaches any container's environment;
  - the CA: its key (Secret rackmesh-ca) is mounted in the operator only, at RACKMESH_CA_DIR, read-only,
    group-readable by the operator alone; agents mount the ConfigMap rackmesh-ca (ca.crt, no key) there;
  - identity: RACKMESH_IDENTITY_DIR lies in a writable memory-backed emptyDir in both;
  - the agents' projected ServiceAccount token: audience = the operator's TokenReview audience (rackmesh),
    expirationSeconds in 600..3600, mounted where RACKMESH_TOKEN_FILE points; HTTPS probes;
  - the signer's Service: routes RACKMESH_SIGNER_URL's port to the operator's signer port;
  - RBAC: no VM update, DataVolume writes but delete, or Events for agents; no DeploymentRequest
    create/update/delete for the operator; no VirtualMachineInstances;
  - the ValidatingAdmissionPolicy rackmesh-agent-own-node and its binding: valid (Kubernetes 1.32 schema,
    and the sandbox's validation, which compiles the CEL), Deny, and evaluated on admission requests by
    the sandbox's admission plugin with VMs written by node_agent/vms/manifest.py and their root disks as
    KubeVirt makes them: the agent of node A creating / deleting / updating A's VM, deleting A's VM's
    DataVolume -> allowed; B's VM, a VM labelled for B, a VM without the nodeSelector, an update moving A's VM
    to B or taking B's to A, B's DataVolume, a token with no node -> denied (403 Forbidden, saying why); the
    operator -> not matched;
  - NetworkPolicies: every pod in rackmesh-system is selected; ingress only; for every source (agent,
    operator, ZooKeeper, CDI importers here and elsewhere, CDI's upload server, Prometheus, strangers) and every
    port of every rackmesh pod, exactly the listed connections are allowed (an evaluator of NetworkPolicy);
  - hack/install.sh also makes the metrics scraper's Secret: a certificate from the CA naming the scraper
    (metrics.rackmesh), and applies manifests/monitoring after the workloads when ServiceMonitors exist.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

import pytest

from rackmesh.config import Settings
from tests.manifests.support import (
    REPO,
    WORKLOAD_BUILDS,
    Doc,
    build,
    container,
    containers,
    doc_id,
    find,
    ingress_allowed,
    label_selector_matches,
    pod_spec,
    policy_types,
    workloads,
)
from tests.manifests.test_properties import configured_env

pytestmark = [pytest.mark.kubectl]
builds = pytest.mark.parametrize("directory", WORKLOAD_BUILDS)

AGENT_SA, OPERATOR_SA = "rackmesh-agent", "rackmesh-operator"
AGENT_USER = "system:serviceaccount:rackmesh-system:rackmesh-agent"
OPERATOR_USER = "system:serviceaccount:rackmesh-system:rackmesh-operator"
NODE_NAME = "authentication.kubernetes.io/node-name"
CA = "rackmesh-ca"
POLICY = "rackmesh-agent-own-node"
SCRAPER_SECRET = "rackmesh-metrics-scraper"


def operator(directory: str) -> Doc:
    return find(build(directory), "Deployment", "rackmesh-operator")


def agent(directory: str) -> Doc:
    return find(build(directory), "DaemonSet", "rackmesh-agent")


def settings(directory: str, workload: Doc, name: str) -> Settings:
    """The Settings the container's process reads (its ConfigMaps and env over the defaults)."""
    return Settings.from_env(configured_env(build(directory), container(workload, name)))


def volume_at(workload: Doc, container_doc: Doc, path: str) -> tuple[Doc, Doc]:
    """(mount, volume) of the one mount holding ``path`` (a file or directory)."""
    mounts = [m for m in container_doc.get("volumeMounts", [])
              if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(mounts) == 1, f"{path} is in {len(mounts)} mounts of {container_doc['name']}"
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    return mounts[0], volumes[mounts[0]["name"]]


def secret_names(volume: Doc) -> set[str]:
    found = {volume["secret"]["secretName"]} if "secret" in volume else set()
    for source in (volume.get("projected") or {}).get("sources", []):
        if "secret" in source:
            found.add(source["secret"]["name"])
    return found


# --- no shared token --------------------------------------------------------------------------------------

OLD_TOKEN = ("RACKMESH_AGENT" + "_TOKEN", "rackmesh-agent" + "-token")  # spelt so this file holds neither


@builds
def test_no_shared_token_in_the_build(directory: str) -> None:
    import json

    text = json.dumps(build(directory))
    assert [word for word in OLD_TOKEN if word in text] == []
    for workload in workloads(build(directory)):
        for c in containers(workload):
            assert not any("secretRef" in source for source in c.get("envFrom", [])), doc_id(workload)
            assert not any("secretKeyRef" in (var.get("valueFrom") or {}) for var in c.get("env", [])), c["name"]


def test_no_shared_token_in_the_sources() -> None:
    paths = [*(REPO / "manifests").rglob("*"), *(REPO / "hack").glob("*"), *(REPO / "tests/manifests").glob("*.py")]
    found = [str(p.relative_to(REPO)) for p in paths
             if p.is_file() and any(word in p.read_text(errors="replace") for word in OLD_TOKEN)]
    assert found == []


# --- the CA and each component's identity -----------------------------------------------------------------


@builds
def test_the_ca_key_is_mounted_in_the_operator_only(directory: str) -> None:
    docs = build(directory)
    holders = [doc_id(w) for w in workloads(docs)
               for v in pod_spec(w).get("volumes", []) if CA in secret_names(v)]
    assert holders == [doc_id(operator(directory))]
    deployment = operator(directory)
    ca_dir = settings(directory, deployment, "operator").ca_dir
    mount, volume = volume_at(deployment, container(deployment, "operator"), f"{ca_dir}/ca.key")
    assert mount["mountPath"] == ca_dir and mount.get("readOnly") is True
    assert {item["key"] for item in volume["secret"]["items"]} == {"ca.crt", "ca.key"}
    # 0440 and the operator's group (fsGroup): kubelet's files are root's, the operator runs as 10001.
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod_spec(deployment)["securityContext"]["fsGroup"] == pod_spec(deployment)["securityContext"]["runAsUser"]
    # Only the operator's main container sees it.
    assert [c["name"] for c in containers(deployment)
            if any(m["name"] == volume["name"] for m in c.get("volumeMounts", []))] == ["operator"]


@builds
def test_agents_trust_the_ca_from_its_configmap_without_the_key(directory: str) -> None:
    daemonset = agent(directory)
    main = container(daemonset, "agent")
    ca_dir = settings(directory, daemonset, "agent").ca_dir
    mount, volume = volume_at(daemonset, main, f"{ca_dir}/ca.crt")
    assert mount["mountPath"] == ca_dir and mount.get("readOnly") is True
    assert volume["configMap"]["name"] == CA
    assert [item["key"] for item in volume["configMap"]["items"]] == ["ca.crt"]
    assert all(not secret_names(v) for v in pod_spec(daemonset).get("volumes", []))


@builds
@pytest.mark.parametrize(("kind", "name", "main"), [("Deployment", "rackmesh-operator", "operator"),
                                                     ("DaemonSet", "rackmesh-agent", "agent")])
def test_identity_dir_is_writable_memory(directory: str, kind: str, name: str, main: str) -> None:
    workload = find(build(directory), kind, name)
    identity = settings(directory, workload, main).identity_dir
    mount, volume = volume_at(workload, container(workload, main), identity)
    assert volume["emptyDir"]["medium"] == "Memory"
    assert not mount.get("readOnly", False)
    # The process creates the directory itself (mode 0700, its own); kubelet's emptyDir root is 0777.
    assert mount["mountPath"] == posixpath.dirname(identity)
    assert container(workload, main)["securityContext"]["readOnlyRootFilesystem"] is True


@builds
def test_agents_get_a_short_lived_projected_token_for_the_signer(directory: str) -> None:
    daemonset = agent(directory)
    ours = settings(directory, daemonset, "agent")
    theirs = settings(directory, operator(directory), "operator")
    mount, volume = volume_at(daemonset, container(daemonset, "agent"), ours.token_file)
    assert mount["mountPath"] == posixpath.dirname(ours.token_file) and mount.get("readOnly") is True
    [source] = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["path"] == posixpath.basename(ours.token_file)
    assert token["audience"] == ours.token_audience == theirs.token_audience == "rackmesh"
    assert 600 <= token["expirationSeconds"] <= 3600  # the API's minimum, and short-lived
    # The identity the operator's TokenReview expects is this pod's ServiceAccount.
    assert theirs.agent_service_account == f"system:serviceaccount:{daemonset['metadata']['namespace']}:" \
                                           f"{pod_spec(daemonset)['serviceAccountName']}"
    # kubelet cannot give the file to one user (the init container runs as root): fsGroup makes it 0640.
    assert pod_spec(daemonset)["securityContext"]["fsGroup"] == pod_spec(daemonset)["securityContext"]["runAsUser"]


@builds
def test_agent_probes_speak_https(directory: str) -> None:
    main = container(agent(directory), "agent")
    for probe in ("livenessProbe", "readinessProbe"):
        assert main[probe]["httpGet"]["scheme"] == "HTTPS", probe


@builds
def test_the_signer_service_reaches_the_operator(directory: str) -> None:
    docs = build(directory)
    url = settings(directory, agent(directory), "agent").signer_url
    service = find(docs, "Service", "rackmesh-operator")
    assert url == f"https://rackmesh-operator.{service['metadata']['namespace']}.svc:8471"
    assert service["spec"]["ports"] == [{"name": "signer", "port": 8471, "targetPort": "signer", "protocol": "TCP"}]
    deployment = operator(directory)
    assert label_selector_matches({"matchLabels": service["spec"]["selector"]},
                                  deployment["spec"]["template"]["metadata"]["labels"])
    assert settings(directory, deployment, "operator").signer_port == 8471


# --- the admission policy ---------------------------------------------------------------------------------


@builds
def test_the_policy_and_its_binding_are_valid_and_deny(directory: str) -> None:
    from rackmesh_sandbox.kube_api.admission_policy import binding_errors, policy_errors
    from tests.manifests.test_schemas import builtin_error

    docs = build(directory)
    policy = find(docs, "ValidatingAdmissionPolicy", POLICY)
    binding = find(docs, "ValidatingAdmissionPolicyBinding", POLICY)
    assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    for doc in (policy, binding):
        assert builtin_error(doc) is None, builtin_error(doc)
    assert policy_errors(dict(policy)) == [] and binding_errors(dict(binding)) == []
    assert binding["spec"] == {"policyName": POLICY, "validationActions": ["Deny"]}
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert [c["expression"] for c in policy["spec"]["matchConditions"]] == [
        f'request.userInfo.username == "{AGENT_USER}"']
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert [(rule["apiGroups"], rule["resources"], sorted(rule["operations"])) for rule in rules] == [
        (["kubevirt.io"], ["virtualmachines"], ["CREATE", "DELETE", "UPDATE"]),
        (["cdi.kubevirt.io"], ["datavolumes"], ["DELETE"])]


def _vm(node: str, *, label: str | None = None, pinned: bool = True) -> dict[str, Any]:
    """A VM exactly as an agent writes it (node_agent/vms/manifest.py), pinned to ``node``."""
    from rackmesh.protocol import ImageHolder, Order, RequestRef
    from rackmesh_node_agent.vms.manifest import virtual_machine

    order = Order(RequestRef("0d1f3c2a-uid", "team", "lob123"), replicas=3, instancetype="u1.large",
                  image="lob123-rhel-6.0")
    holder = ImageHolder("s-a-1", "rack-a", "https://10.0.0.9:8470/images/lob123-rhel-6.0.img")
    vm = virtual_machine(order, node, 0, [holder], "10Gi")
    if label is not None:
        vm["metadata"]["labels"]["rackmesh.io/node"] = label
    if not pinned:
        del vm["spec"]["template"]["spec"]["nodeSelector"]
        term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}
        required = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        vm["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": required}
    return vm


def _root_disk(vm: dict[str, Any]) -> dict[str, Any]:
    """The DataVolume KubeVirt makes of the VM's root-disk template (as the sandbox simulates it)."""
    from rackmesh_sandbox.cdi_simulation import data_volume_object

    return data_volume_object({**vm, "metadata": {**vm["metadata"], "uid": "vm-uid"}},
                              vm["spec"]["dataVolumeTemplates"][0])


def _admit(operation: str, obj: dict[str, Any], user: str, node: str | None,
           old: dict[str, Any] | None = None) -> str | None:
    """None when admitted, else the denial as "code reason: message". ``old`` is an UPDATE's object before
    (``obj`` itself when not given); a DataVolume's request is about datavolumes."""
    from rackmesh_sandbox.kube_api.admission_policy import AdmissionRequest, ValidatingPolicies
    from rackmesh_sandbox.kube_api.authn import UserInfo
    from rackmesh_sandbox.kube_api.errors import ApiError
    from rackmesh_sandbox.kube_api.registry import ResourceDef

    docs = build("manifests/default")
    stored = {"validatingadmissionpolicies": [find(docs, "ValidatingAdmissionPolicy", POLICY)],
              "validatingadmissionpolicybindings": [find(docs, "ValidatingAdmissionPolicyBinding", POLICY)]}

    def list_objects(group: str, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        return stored.get(plural, [])

    def get_object(group: str, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        if plural == "namespaces":
            return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}}
        return None

    extra = {NODE_NAME: [node], "authentication.kubernetes.io/pod-name": ["rackmesh-agent-x1"]} if node else {}
    rd = (ResourceDef("cdi.kubevirt.io", "v1beta1", "datavolumes", "DataVolume", namespaced=True, custom=True)
          if obj["kind"] == "DataVolume" else
          ResourceDef("kubevirt.io", "v1", "virtualmachines", "VirtualMachine", namespaced=True, custom=True))
    request = AdmissionRequest(
        rd=rd, operation=operation, namespace=obj["metadata"]["namespace"], name=obj["metadata"]["name"],
        obj=None if operation == "DELETE" else obj, old=(old or obj) if operation != "CREATE" else None,
        user=UserInfo(user, groups=("system:serviceaccounts", "system:authenticated"), extra=extra))
    try:
        ValidatingPolicies(list_objects, get_object).admit(request)
    except ApiError as error:
        return f"{error.code} {error.reason}: {error.message}"
    return None


@pytest.mark.parametrize(
    ("operation", "vm_node", "caller_node", "user", "denied_with"),
    [
        ("CREATE", "c-a-1", "c-a-1", AGENT_USER, None),
        ("DELETE", "c-a-1", "c-a-1", AGENT_USER, None),
        ("CREATE", "c-b-1", "c-a-1", AGENT_USER, 'node c-a-1 may create only VirtualMachines pinned to its own node, '
                                                 'but this one has nodeSelector kubernetes.io/hostname="c-b-1" and '
                                                 'label rackmesh.io/node="c-b-1"'),
        ("DELETE", "c-b-1", "c-a-1", AGENT_USER, "node c-a-1 may delete only"),
        ("CREATE", "c-a-1", None, AGENT_USER, "token is not bound to a node"),
        ("DELETE", "c-a-1", None, AGENT_USER, "token is not bound to a node"),
        # An update (the root disk's source moved to another holder) of its own node's VM only.
        ("UPDATE", "c-a-1", "c-a-1", AGENT_USER, None),
        ("UPDATE", "c-b-1", "c-a-1", AGENT_USER, "node c-a-1 may update only VirtualMachines pinned to its own node"),
        ("UPDATE", "c-a-1", None, AGENT_USER, "token is not bound to a node"),
        # The operator may delete VMs of a node whose agent is gone: the policy does not look at it.
        ("DELETE", "c-b-1", None, OPERATOR_USER, None),
        ("DELETE", "c-b-1", "c-a-1", OPERATOR_USER, None),
    ],
    ids=["own-create", "own-delete", "other-create", "other-delete", "no-node-create", "no-node-delete",
         "own-update", "other-update", "no-node-update", "operator-delete", "operator-with-node-delete"],
)
def test_the_policy_lets_an_agent_write_only_its_own_nodes_vms(
    operation: str, vm_node: str, caller_node: str | None, user: str, denied_with: str | None
) -> None:
    vm = _vm(vm_node)
    denial = _admit(operation, vm, user, caller_node)
    if denied_with is None:
        assert denial is None
    else:
        assert denial is not None and denial.startswith(
            f"403 Forbidden: virtualmachines.kubevirt.io \"{vm['metadata']['name']}\" is forbidden: "
            "ValidatingAdmissionPolicy "
            f"'{POLICY}' with binding '{POLICY}' denied request: "), denial
        assert denied_with in denial


def test_an_update_neither_moves_an_agents_vm_away_nor_takes_another_nodes() -> None:
    moved_away = _admit("UPDATE", _vm("c-b-1"), AGENT_USER, "c-a-1", old=_vm("c-a-1"))
    assert 'may update only VirtualMachines pinned to its own node, but this one has nodeSelector ' \
           'kubernetes.io/hostname="c-b-1"' in (moved_away or "")
    taken = _admit("UPDATE", _vm("c-a-1"), AGENT_USER, "c-a-1", old=_vm("c-b-1"))
    assert 'may update only VirtualMachines of its own node, but this one had nodeSelector ' \
           'kubernetes.io/hostname="c-b-1" and label rackmesh.io/node="c-b-1"' in (taken or "")
    relabelled = _admit("UPDATE", _vm("c-a-1"), AGENT_USER, "c-a-1", old=_vm("c-a-1", label="c-b-1"))
    assert 'label rackmesh.io/node="c-b-1"' in (relabelled or "")


@pytest.mark.parametrize(
    ("disk_node", "caller_node", "user", "denied_with"),
    [
        ("c-a-1", "c-a-1", AGENT_USER, None),
        ("c-b-1", "c-a-1", AGENT_USER, 'node c-a-1 may delete only DataVolumes of its own node\'s VirtualMachines, '
                                       'but this one has label rackmesh.io/node="c-b-1"'),
        ("c-a-1", None, AGENT_USER, "token is not bound to a node"),
        ("c-b-1", None, OPERATOR_USER, None),
    ],
    ids=["own", "other", "no-node", "operator"],
)
def test_the_policy_lets_an_agent_delete_only_its_own_nodes_root_disks(
    disk_node: str, caller_node: str | None, user: str, denied_with: str | None
) -> None:
    disk = _root_disk(_vm(disk_node))
    denial = _admit("DELETE", disk, user, caller_node)
    if denied_with is None:
        assert denial is None
    else:
        assert denial is not None and denial.startswith(
            f"403 Forbidden: datavolumes.cdi.kubevirt.io \"{disk['metadata']['name']}\" is forbidden: "), denial
        assert denied_with in denial


def test_a_data_volume_without_the_node_label_is_not_an_agents_to_delete() -> None:
    disk = _root_disk(_vm("c-a-1"))
    del disk["metadata"]["labels"]["rackmesh.io/node"]
    assert 'this one has label rackmesh.io/node=""' in (_admit("DELETE", disk, AGENT_USER, "c-a-1") or "")


@pytest.mark.parametrize("operation", ["CREATE", "DELETE", "UPDATE"])
def test_the_policy_wants_both_the_pin_and_the_label(operation: str) -> None:
    mislabelled = _admit(operation, _vm("c-a-1", label="c-b-1"), AGENT_USER, "c-a-1")
    assert 'label rackmesh.io/node="c-b-1"' in (mislabelled or "")
    assert _admit(operation, _vm("c-b-1", label="c-a-1"), AGENT_USER, "c-a-1") is not None
    # A VM pinned by node affinity instead of the nodeSelector is not one the agents write: denied.
    assert 'nodeSelector kubernetes.io/hostname=""' in (
        _admit(operation, _vm("c-a-1", pinned=False), AGENT_USER, "c-a-1") or "")


# --- NetworkPolicies --------------------------------------------------------------------------------------

IMPORTER = {"app": "containerized-data-importer", "cdi.kubevirt.io": "importer", "prometheus.cdi.kubevirt.io": ""}
UPLOAD_SERVER = {"app": "containerized-data-importer", "cdi.kubevirt.io": "cdi-upload-server"}
# As the Prometheus Operator labels a Prometheus' pods.
PROMETHEUS = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/managed-by": "prometheus-operator",
              "prometheus": "k8s"}


def pods(directory: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Every pod that could connect, by role: rackmesh's own (labels from their templates) and others."""
    docs = build(directory)
    ours = {
        "agent": find(docs, "DaemonSet", "rackmesh-agent"),
        "operator": find(docs, "Deployment", "rackmesh-operator"),
        "zookeeper": find(docs, "StatefulSet", "zookeeper"),
    }
    found = {role: (w["metadata"]["namespace"], dict(w["spec"]["template"]["metadata"]["labels"]))
             for role, w in ours.items()}
    found |= {
        "importer-in-team": ("team", IMPORTER),
        "importer-in-rackmesh-system": ("rackmesh-system", IMPORTER),
        "upload-server": ("team", UPLOAD_SERVER),
        "prometheus": ("monitoring", PROMETHEUS),
        "stranger-in-rackmesh-system": ("rackmesh-system", {"app": "debug"}),
        "stranger": ("default", {"app.kubernetes.io/name": "rackmesh-agent"}),  # our labels, another namespace
    }
    return found


# The agents' port is reached at the node's address (a hostPort), where most CNIs deliver a caller on another
# node masqueraded as that node: no selector can name it, so every source may open 8470 (network-policies.yaml).
AGENT_PORT_SOURCES = ("agent", "operator", "zookeeper", "importer-in-team", "importer-in-rackmesh-system",
                      "upload-server", "prometheus", "stranger-in-rackmesh-system", "stranger")
ALLOWED = {
    *((source, "agent", 8470) for source in AGENT_PORT_SOURCES),
    ("agent", "operator", 8471),
    ("prometheus", "agent", 8472), ("prometheus", "operator", 8472),
    ("agent", "zookeeper", 2181), ("operator", "zookeeper", 2181),
    ("zookeeper", "zookeeper", 2888), ("zookeeper", "zookeeper", 3888),
}


@builds
def test_network_policies_allow_exactly_the_listed_connections(directory: str) -> None:
    docs = build(directory)
    everyone = pods(directory)
    targets = {"agent": "rackmesh-agent", "operator": "rackmesh-operator", "zookeeper": "zookeeper"}
    found = set()
    for target, name in targets.items():
        workload = next(w for w in workloads(docs) if w["metadata"]["name"] == name)
        ports = {p["containerPort"] for c in containers(workload) for p in c.get("ports", [])} | {8080, 9090}
        for source, pod in everyone.items():
            for port in ports:
                if ingress_allowed(docs, pod, everyone[target], port):
                    found.add((source, target, port))
    assert found == ALLOWED


@builds
def test_network_policies_isolate_every_pod_for_ingress_only(directory: str) -> None:
    docs = build(directory)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert policies and all(d["metadata"]["namespace"] == "rackmesh-system" for d in policies)
    assert all(policy_types(p) == ["Ingress"] and not p["spec"].get("egress") for p in policies)
    for workload in workloads(docs):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        named = [p["metadata"]["name"] for p in policies if p["spec"]["podSelector"]
                 and label_selector_matches(p["spec"]["podSelector"], labels)]
        assert len(named) == 1, (doc_id(workload), named)  # its own policy, besides the default deny


@builds
def test_the_zookeeper_policy_follows_the_statefulset(directory: str) -> None:
    """The ports the policy opens are the servers' own (client, quorum, election), by number."""
    docs = build(directory)
    main = container(find(docs, "StatefulSet", "zookeeper"), "zookeeper")
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    opened = {p["port"] for rule in find(docs, "NetworkPolicy", "rackmesh-zookeeper")["spec"]["ingress"]
              for p in rule["ports"]}
    assert opened == set(ports.values())


def test_the_policies_say_why_and_what_they_cannot_see() -> None:
    text = Path(REPO / "manifests/base/network-policies.yaml").read_text()
    assert "Ingress only" in text and "kube-apiserver" in text
    assert "cannot tell the image" in text and "Mutual TLS guards the peer routes" in text
    assert "hostPort 8470" in text and "masquerade" in text and "open to every source" in text


# --- hack/install.sh, with a kubectl that records ---------------------------------------------------------

FAKE_KUBECTL = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
case "$*" in
  *" get secret "*) [[ -n ${FAKE_EXISTING:-} ]] || exit 1
    [[ "$*" == *ca.key* ]] && printf 'a2V5' || printf 'Y2VydA==' ;;
  *"--dry-run=client -o yaml"*) exec "$REAL_KUBECTL" "$@" ;;
  "apply --server-side"*) { echo ---; cat; } >> "$FAKE_LOG.applied" ;;
esac
"""


def _install(tmp_path: Path, *, existing: bool) -> tuple[str, list[str], list[Doc]]:
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    fake = tmp_path / "kubectl"
    fake.write_text(FAKE_KUBECTL)
    fake.chmod(0o755)
    log = tmp_path / "log"
    env = {**os.environ, "KUBECTL": str(fake), "FAKE_LOG": str(log), "REAL_KUBECTL": shutil.which("kubectl") or "",
           "FAKE_EXISTING": "1" if existing else "",
           # The script's own fallback (this tree's CLI), not an installed `rackmesh`.
           "PATH": f"{tmp_path}:/usr/bin:/bin"}
    (tmp_path / "python3").symlink_to(sys.executable)
    done = subprocess.run(["bash", str(REPO / "hack/install.sh"), "--no-wait"], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    applied = tmp_path / "log.applied"
    docs = [d for d in yaml.safe_load_all(applied.read_text()) if d] if applied.exists() else []
    return done.stdout + done.stderr, log.read_text().splitlines(), docs


def test_install_makes_the_ca_and_zookeepers_certificate_in_order_without_showing_keys(tmp_path: Path) -> None:
    import base64

    from cryptography import x509

    output, calls, applied = _install(tmp_path, existing=False)
    assert "PRIVATE KEY" not in output
    made = {(d["kind"], d["metadata"]["name"]): d for d in applied}
    assert set(made) == {("Secret", CA), ("ConfigMap", CA), ("Secret", "rackmesh-zookeeper-tls"),
                         ("Secret", SCRAPER_SECRET)}
    assert set(made["Secret", CA]["data"]) == {"ca.crt", "ca.key"}
    assert set(made["ConfigMap", CA]["data"]) == {"ca.crt"}
    assert made["ConfigMap", CA]["data"]["ca.crt"] == base64.b64decode(made["Secret", CA]["data"]["ca.crt"]).decode()
    assert set(made["Secret", "rackmesh-zookeeper-tls"]["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert all(d["metadata"]["namespace"] == "rackmesh-system" for d in applied)
    # Every server name clients use (RACKMESH_ZK_HOSTS) is in ZooKeeper's certificate.
    cert = x509.load_pem_x509_certificate(base64.b64decode(made["Secret", "rackmesh-zookeeper-tls"]["data"]["tls.crt"]))
    names = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName))
    hosts = configured_env(build("manifests/default"), container(agent("manifests/default"), "agent"))
    assert {host.rsplit(":", 1)[0] for host in hosts["RACKMESH_ZK_HOSTS"].split(",")} <= names
    # The scraper's certificate names the scraper alone, and comes from the same CA.
    scraper = {key: base64.b64decode(value) for key, value in made["Secret", SCRAPER_SECRET]["data"].items()}
    assert set(scraper) == {"tls.crt", "tls.key", "ca.crt"}
    assert scraper["ca.crt"] == base64.b64decode(made["Secret", CA]["data"]["ca.crt"])
    scraper_cert = x509.load_pem_x509_certificate(scraper["tls.crt"])
    assert scraper_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["metrics.rackmesh"]
    assert scraper_cert.issuer == x509.load_pem_x509_certificate(scraper["ca.crt"]).subject
    # CRDs, then the namespace, then the CA, then the workloads.
    order = [next(i for i, call in enumerate(calls) if call.startswith(prefix)) for prefix in (
        "apply -k ", "apply -f ", "-n rackmesh-system create secret generic rackmesh-ca",
        "-n rackmesh-system create secret generic rackmesh-zookeeper-tls")]
    assert order == sorted(order) and calls[-3:] == [
        f"apply -k {REPO}/manifests/default", "get crd servicemonitors.monitoring.coreos.com",
        f"apply -k {REPO}/manifests/monitoring"]


def test_install_keeps_an_existing_ca(tmp_path: Path) -> None:
    _, calls, applied = _install(tmp_path, existing=True)
    assert not any("create secret" in call for call in calls)
    assert [(d["kind"], d["metadata"]["name"]) for d in applied] == [("ConfigMap", CA)]
    assert applied[0]["data"] == {"ca.crt": "cert"}
