"""What users and the other components rely on in the built manifests, beyond schema validity.

Case matrix (each workload check runs on every install build: manifests/default and the kind overlay):
  - CRDs: the DeploymentRequest CRD in the build is the one in crds/, unchanged, and has no copy;
  - operator: 1 replica, Recreate, kopf peering object and RBAC for it, liveness probe on kopf's endpoint;
  - agent: NODE_NAME from spec.nodeName, pod IP advertised, p2p port 8470 with HTTPS /healthz probes, the
    signer's URL, affinity = compute OR storage nodes (evaluated on label sets and on kind-config's nodes);
    (identity, CA, tokens, admission policy and NetworkPolicies: test_security.py)
  - every container: requests and limits, a probe (init containers excepted), no privilege escalation;
  - RBAC: exactly the grants the code's calls need (each component's verbs per resource), no wildcard;
  - ZooKeeper: 3 servers, their names in ZOO_SERVERS and in RACKMESH_ZK_HOSTS agree, readiness on srvr's Mode (leader
    or follower), PDB;
  - wiring: Services and selectors match their pods, ConfigMaps and ServiceAccounts referenced exist;
  - kind overlay: locally loaded images (tag dev, IfNotPresent).
"""

import dataclasses
import json
import re
from typing import Any

import pytest
import yaml

from tests.manifests.support import (
    CRD_SOURCE,
    CRDS_BUILD,
    NAMESPACE,
    REPO,
    WORKLOAD_BUILDS,
    Doc,
    allowed,
    build,
    container,
    containers,
    crd_for,
    doc_id,
    env,
    find,
    grants,
    label_selector_matches,
    node_affinity_matches,
    pod_spec,
    service_account_rules,
    try_build,
    workloads,
)

pytestmark = [
    pytest.mark.kubectl,
]

COMPUTE = "rackmesh.io/role-compute"
STORAGE = "rackmesh.io/role-storage"
RACK = "topology.rackmesh.io/rack"
AGENT_SA, OPERATOR_SA = "rackmesh-agent", "rackmesh-operator"
# Made by hack/install.sh, never committed: the CA (operator only) and ZooKeeper's key and certificate.
INSTALL_SECRETS = {"rackmesh-ca", "rackmesh-zookeeper-tls"}
INSTALL_CONFIGMAPS = {"rackmesh-ca"}

builds = pytest.mark.parametrize("directory", WORKLOAD_BUILDS)


def operator(directory: str) -> Doc:
    return find(build(directory), "Deployment", "rackmesh-operator")


def agent(directory: str) -> Doc:
    return find(build(directory), "DaemonSet", "rackmesh-agent")


def all_containers() -> list[Any]:
    return [
        pytest.param(workload, c, id=f"{d}:{doc_id(workload)}:{c['name']}")
        for d in WORKLOAD_BUILDS
        for workload in workloads(try_build(d))
        for c in containers(workload)
    ]


def all_workloads() -> list[Any]:
    return [pytest.param(w, id=f"{d}:{doc_id(w)}") for d in WORKLOAD_BUILDS for w in workloads(try_build(d))]


# --- CRDs -----------------------------------------------------------------------------------------------


def test_the_crd_in_the_build_is_the_one_in_crds() -> None:
    source = yaml.safe_load(CRD_SOURCE.read_text())
    built = find(build(CRDS_BUILD), "CustomResourceDefinition", source["metadata"]["name"])
    # kustomize re-serializes YAML (comments, key order, flow style): compare the canonical bytes.
    assert json.dumps(built, sort_keys=True) == json.dumps(source, sort_keys=True)


def test_the_crd_has_no_copy() -> None:
    name = yaml.safe_load(CRD_SOURCE.read_text())["metadata"]["name"]
    copies = [
        path.relative_to(REPO)
        for path in (REPO / "manifests").rglob("*.yaml")
        if f"name: {name}" in path.read_text()
    ]
    assert copies == []


@builds
def test_workload_builds_hold_no_crd(directory: str) -> None:
    """CRDs are step 1 (the root kustomization); a workload build re-applying them would race it."""
    assert [doc_id(d) for d in build(directory) if d["kind"] == "CustomResourceDefinition"] == []


def test_the_crds_build_holds_every_crd_the_operator_needs() -> None:
    names = {
        doc["metadata"]["name"] for doc in build(CRDS_BUILD) if doc["kind"] == "CustomResourceDefinition"
    }
    assert names == {
        "deploymentrequests.rackmesh.io",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }


# --- operator ---------------------------------------------------------------------------------------------


@builds
def test_operator_runs_one_replica_recreated(directory: str) -> None:
    deployment = operator(directory)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


@builds
def test_operator_peering_object_matches_its_settings(directory: str) -> None:
    docs = build(directory)
    main = container(operator(directory), "operator")
    peering = env(main, "RACKMESH_OPERATOR_PEERING")["value"]
    assert find(docs, "ClusterKopfPeering", peering)
    assert allowed(docs, OPERATOR_SA, "kopf.dev", "clusterkopfpeerings", "patch", peering)
    assert allowed(docs, OPERATOR_SA, "kopf.dev", "clusterkopfpeerings", "watch")


@builds
def test_operator_liveness_probe_hits_kopfs_endpoint(directory: str) -> None:
    main = container(operator(directory), "operator")
    url = env(main, "RACKMESH_OPERATOR_LIVENESS")["value"]
    match = re.fullmatch(r"http://0\.0\.0\.0:(\d+)(/\S*)", url)
    assert match, url
    port = next(p for p in main["ports"] if p["name"] == main["livenessProbe"]["httpGet"]["port"])
    assert (port["containerPort"], main["livenessProbe"]["httpGet"]["path"]) == (int(match[1]), match[2])
    assert main["args"] == ["operator"]


@builds
def test_operator_gets_zookeeper_and_serves_the_signer(directory: str) -> None:
    from rackmesh.config import Settings

    docs = build(directory)
    main = container(operator(directory), "operator")
    settings = Settings.from_env(configured_env(docs, main))
    assert "RACKMESH_ZK_HOSTS" in configured_env(docs, main)
    assert (settings.signer_bind, settings.signer_port) == ("0.0.0.0", 8471)
    assert {"name": "signer", "containerPort": 8471, "protocol": "TCP"} in main["ports"]


# --- agent ------------------------------------------------------------------------------------------------


@builds
def test_every_rackmesh_variable_is_a_setting(directory: str) -> None:
    """A misspelt RACKMESH_* variable would be ignored silently by rackmesh.config.Settings.from_env."""
    from rackmesh.config import ENV_PREFIX, Settings

    known = {ENV_PREFIX + field.name.upper() for field in dataclasses.fields(Settings)}
    docs = build(directory)
    for workload in (operator(directory), agent(directory)):
        for c in containers(workload, init=False):
            names = set(configured_env(docs, c)) | {var["name"] for var in c.get("env", [])}
            assert {name for name in names if name.startswith(ENV_PREFIX)} - known == set(), c["name"]


@builds
def test_agent_knows_its_node_from_the_downward_api(directory: str) -> None:
    main = container(agent(directory), "agent")
    assert env(main, "NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert main["args"] == ["agent", "--node-name", "$(NODE_NAME)"]


@builds
def test_agent_advertises_its_nodes_address_published_by_a_host_port(directory: str) -> None:
    """The address in image URLs and records must outlive the pod: the node's (status.hostIP), which a hostPort
    on the p2p port serves; the pod keeps its own network namespace, and its metrics stay on the pod network."""
    daemonset = agent(directory)
    main = container(daemonset, "agent")
    assert pod_spec(daemonset).get("hostNetwork", False) is False
    assert env(main, "RACKMESH_AGENT_ADVERTISE")["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert env(main, "RACKMESH_AGENT_BIND")["value"] == "0.0.0.0"
    assert {"name": "p2p", "containerPort": 8470, "hostPort": 8470, "protocol": "TCP"} in main["ports"]
    published = [port["name"] for c in containers(daemonset) for port in c.get("ports", []) if "hostPort" in port]
    assert published == ["p2p"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert main[probe]["httpGet"] == {"path": "/healthz", "port": "p2p", "scheme": "HTTPS"}, probe


@builds
def test_agent_gets_zookeeper_and_the_signer(directory: str) -> None:
    from rackmesh.config import Settings

    docs = build(directory)
    main = container(agent(directory), "agent")
    assert "RACKMESH_ZK_HOSTS" in configured_env(docs, main)
    signer = Settings.from_env(configured_env(docs, main)).signer_url
    # https://<Service>.<namespace>.svc:<port>: a Service in the build that routes the port to the operator.
    match = re.fullmatch(r"https://([a-z0-9-]+)\.([a-z0-9-]+)\.svc:(\d+)", signer)
    assert match, signer
    service = find(docs, "Service", match[1])
    assert service["metadata"]["namespace"] == match[2]
    port = next(p for p in service["spec"]["ports"] if p["port"] == int(match[3]))
    assert label_selector_matches({"matchLabels": service["spec"]["selector"]},
                                  operator(directory)["spec"]["template"]["metadata"]["labels"])
    served = container(operator(directory), "operator")["ports"]
    assert {"name": port["targetPort"], "containerPort": int(match[3]), "protocol": "TCP"} in served


@builds
@pytest.mark.parametrize(
    ("labels", "selected"),
    [
        ({COMPUTE: "true"}, True),
        ({STORAGE: "true"}, True),
        ({COMPUTE: "true", STORAGE: "true"}, True),
        ({COMPUTE: "false", STORAGE: "false"}, False),
        ({}, False),
        ({"node-role.kubernetes.io/control-plane": ""}, False),
    ],
    ids=["compute", "storage", "both", "false-labels", "unlabelled", "control-plane"],
)
def test_agent_runs_on_compute_or_storage_nodes(
    directory: str, labels: dict[str, str], selected: bool
) -> None:
    assert node_affinity_matches(pod_spec(agent(directory))["affinity"], labels) is selected


@builds
def test_agent_mounts_the_image_store(directory: str) -> None:
    daemonset = agent(directory)
    volumes = {v["name"]: v for v in pod_spec(daemonset)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(daemonset, "agent")["volumeMounts"]}
    store = volumes[mounts["/var/lib/rackmesh/images"]]
    assert store["hostPath"] == {"path": "/var/lib/rackmesh/images", "type": "DirectoryOrCreate"}


# --- every container --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("workload", "container_doc"), all_containers())
def test_container_has_requests_and_limits(workload: Doc, container_doc: Doc) -> None:
    resources = container_doc.get("resources", {})
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{bound} of {container_doc['name']}"


def long_running_containers() -> list[Any]:
    """Init containers run to completion, and Kubernetes forbids probes on them."""
    return [param for param in all_containers()
            if param.values[1] not in pod_spec(param.values[0]).get("initContainers", [])]


@pytest.mark.parametrize(("workload", "container_doc"), long_running_containers())
def test_container_has_a_probe(workload: Doc, container_doc: Doc) -> None:
    assert {"livenessProbe", "readinessProbe"} & set(container_doc)


@pytest.mark.parametrize(("workload", "container_doc"), all_containers())
def test_container_cannot_escalate(workload: Doc, container_doc: Doc) -> None:
    security = container_doc.get("securityContext", {})
    assert security.get("allowPrivilegeEscalation") is False
    assert security.get("capabilities", {}).get("drop") == ["ALL"]
    assert not security.get("privileged", False)


@pytest.mark.parametrize("workload", all_workloads())
def test_pods_run_as_non_root(workload: Doc) -> None:
    security = pod_spec(workload)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] > 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    main_containers = containers(workload, init=False)
    assert all(c.get("securityContext", {}).get("runAsUser", 1) != 0 for c in main_containers)


@builds
def test_rackmesh_containers_have_read_only_root_filesystems(directory: str) -> None:
    for workload in (operator(directory), agent(directory)):
        for c in containers(workload):
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, f"{doc_id(workload)} {c['name']}"


# --- RBAC -------------------------------------------------------------------------------------------------

# Exactly what the code calls (see the comments in manifests/base/*/rbac.yaml for the code path behind each):
# (group, resource, resourceName or None) -> verbs.
AGENT_GRANTS = {
    ("", "nodes", None): {"list", "watch"},
    ("kubevirt.io", "virtualmachines", None): {"get", "list", "watch", "create", "delete", "patch"},
    ("instancetype.kubevirt.io", "virtualmachineclusterinstancetypes", None): {"list", "watch"},
    ("rackmesh.io", "deploymentrequests", None): {"list", "watch"},
    ("cdi.kubevirt.io", "datavolumes", None): {"list", "watch", "delete"},
    ("", "pods", None): {"list", "watch"},  # the capacity cache: the requests of the pods bound to the node
    # not called: OwnerReferencesPermissionEnforcement asks it of every VM's blockOwnerDeletion reference
    ("rackmesh.io", "deploymentrequests/finalizers", None): {"update"},
}
OPERATOR_GRANTS = {
    ("rackmesh.io", "deploymentrequests", None): {"list", "watch", "patch"},
    ("rackmesh.io", "deploymentrequests/status", None): {"patch"},
    ("kubevirt.io", "virtualmachines", None): {"get", "list", "watch", "delete"},
    ("instancetype.kubevirt.io", "virtualmachineclusterinstancetypes", None): {"list", "watch"},
    ("", "nodes", None): {"list", "watch"},
    ("authentication.k8s.io", "tokenreviews", None): {"create"},
    ("", "pods", None): {"get"},  # in rackmesh-system only (a Role): the signer reads agent pods' IPs
    ("", "configmaps", None): {"create", "patch"},  # the CA and credential CDI's importers need
    ("", "secrets", None): {"create", "patch"},
    ("", "events", None): {"create"},
    ("kopf.dev", "clusterkopfpeerings", None): {"list", "watch"},
    ("kopf.dev", "clusterkopfpeerings", "rackmesh"): {"patch"},
    ("apiextensions.k8s.io", "customresourcedefinitions", None): {"list", "watch"},
}
NOBODY_GETS = [
    ("", "secrets", "get"),
    ("", "secrets", "list"),
    ("", "pods", "create"),
    ("", "nodes", "patch"),
    ("rbac.authorization.k8s.io", "clusterroles", "bind"),
    ("", "serviceaccounts", "impersonate"),
]


@builds
@pytest.mark.parametrize(("service_account", "expected"), [(AGENT_SA, AGENT_GRANTS), (OPERATOR_SA, OPERATOR_GRANTS)],
                         ids=[AGENT_SA, OPERATOR_SA])
def test_rbac_grants_exactly_what_the_code_calls(
    directory: str, service_account: str, expected: dict[tuple[str, str, str | None], set[str]]
) -> None:
    assert grants(build(directory), service_account) == expected


@builds
@pytest.mark.parametrize("service_account", [AGENT_SA, OPERATOR_SA])
def test_rbac_is_least_privilege(directory: str, service_account: str) -> None:
    docs = build(directory)
    rules = [
        rule for role in service_account_rules(docs, service_account, NAMESPACE) for rule in role["rules"]
    ]
    assert rules, f"{service_account} is bound to nothing"
    assert not any(
        "*" in rule.get(field, []) for rule in rules for field in ("apiGroups", "resources", "verbs")
    )
    for grant in NOBODY_GETS:
        assert not allowed(docs, service_account, *grant), grant


@builds
def test_only_agents_create_vms_and_only_the_operator_writes_requests(directory: str) -> None:
    docs = build(directory)
    assert not allowed(docs, OPERATOR_SA, "kubevirt.io", "virtualmachines", "create")
    assert not allowed(docs, AGENT_SA, "rackmesh.io", "deploymentrequests", "update")
    assert not allowed(docs, AGENT_SA, "rackmesh.io", "deploymentrequests/status", "patch")


# --- ZooKeeper --------------------------------------------------------------------------------------------


@builds
def test_zookeeper_ensemble_names_agree_everywhere(directory: str) -> None:
    docs = build(directory)
    statefulset = find(docs, "StatefulSet", "zookeeper")
    headless = find(docs, "Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    replicas = statefulset["spec"]["replicas"]
    assert replicas == 3
    hosts = [f"zookeeper-{i}.{headless['metadata']['name']}.{NAMESPACE}.svc" for i in range(replicas)]

    servers = env(container(statefulset, "zookeeper"), "ZOO_SERVERS")["value"].split()
    # No ";<client port>" on the server lines: clients get the TLS port only (test_zookeeper_tls.py).
    assert servers == [f"server.{i + 1}={host}:2888:3888" for i, host in enumerate(hosts)]
    main = container(agent(directory), "agent")
    assert configured_env(docs, main)["RACKMESH_ZK_HOSTS"].split(",") == [f"{host}:2181" for host in hosts]


@builds
def test_zookeeper_runs_the_official_image_ready_when_it_leads_or_follows(directory: str) -> None:
    statefulset = find(build(directory), "StatefulSet", "zookeeper")
    main = container(statefulset, "zookeeper")
    assert main["image"] == "zookeeper:3.8"
    readiness = " ".join(main["readinessProbe"]["exec"]["command"])
    assert "/commands/srvr" in readiness and '"server_state" : "(leader|follower)"' in readiness
    assert {"ruok", "srvr"} <= set(env(main, "ZOO_4LW_COMMANDS_WHITELIST")["value"].split(","))
    # ZOO_MY_ID = ordinal + 1, from the pod's hostname (zookeeper-N).
    assert "ZOO_MY_ID=$(( ${HOSTNAME##*-} + 1 ))" in " ".join(main["args"])
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] in {
        m["name"] for m in main["volumeMounts"] if m["mountPath"] == "/data"
    }


@builds
def test_zookeeper_budget_keeps_a_quorum(directory: str) -> None:
    docs = build(directory)
    budget = find(docs, "PodDisruptionBudget", "zookeeper")
    statefulset = find(docs, "StatefulSet", "zookeeper")
    assert budget["spec"]["maxUnavailable"] == 1
    assert label_selector_matches(
        budget["spec"]["selector"], statefulset["spec"]["template"]["metadata"]["labels"]
    )


# --- wiring -----------------------------------------------------------------------------------------------


def configured_env(docs: tuple[Doc, ...], container_doc: Doc) -> dict[str, str]:
    """The container's plain env values plus those of the ConfigMaps it loads (which must exist)."""
    values: dict[str, str] = {}
    for source in container_doc.get("envFrom", []):
        values.update(find(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    values.update({var["name"]: var["value"] for var in container_doc.get("env", []) if "value" in var})
    return values


CLUSTER_SCOPED_BUILTINS = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
}


def cluster_scoped(doc: Doc) -> bool:
    if doc["kind"] in CLUSTER_SCOPED_BUILTINS:
        return True
    crd = crd_for(tuple(build(CRDS_BUILD)), doc["apiVersion"], doc["kind"])
    return crd is not None and crd["spec"]["scope"] == "Cluster"


@builds
def test_namespaced_objects_are_in_rackmesh_system_and_cluster_ones_in_none(directory: str) -> None:
    """A namespace on a cluster-scoped object is a mistake kustomize makes for kinds it does not know."""
    docs = build(directory)
    find(docs, "Namespace", NAMESPACE)
    for doc in docs:
        expected = None if cluster_scoped(doc) else NAMESPACE
        assert doc["metadata"].get("namespace") == expected, doc_id(doc)


@builds
def test_references_resolve(directory: str) -> None:
    docs = build(directory)
    for workload in workloads(docs):
        spec = pod_spec(workload)
        if "serviceAccountName" in spec:
            find(docs, "ServiceAccount", spec["serviceAccountName"])
        for c in containers(workload):
            configured_env(docs, c)
            for var in c.get("env", []):
                ref = var.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert (
                        ref["configMapKeyRef"]["key"]
                        in find(docs, "ConfigMap", ref["configMapKeyRef"]["name"])["data"]
                    )
                # Every Secret is made by hack/install.sh (never committed); none reaches the environment.
                assert "secretKeyRef" not in ref, (doc_id(workload), var["name"])
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in INSTALL_SECRETS, (doc_id(workload), volume["name"])
            if "configMap" in volume:
                name = volume["configMap"]["name"]
                assert name in INSTALL_CONFIGMAPS or find(docs, "ConfigMap", name), (doc_id(workload), name)
    for binding in (d for d in docs if d["kind"] == "ClusterRoleBinding"):
        find(docs, "ClusterRole", binding["roleRef"]["name"])
        for subject in binding["subjects"]:
            assert subject["namespace"] == NAMESPACE
            find(docs, "ServiceAccount", subject["name"])


@pytest.mark.parametrize("workload", all_workloads())
def test_workload_selector_matches_its_pods(workload: Doc) -> None:
    assert label_selector_matches(
        workload["spec"]["selector"], workload["spec"]["template"]["metadata"]["labels"]
    )


@builds
def test_services_select_pods_that_serve_their_ports(directory: str) -> None:
    docs = build(directory)
    for service in (d for d in docs if d["kind"] == "Service"):
        backends = [
            w
            for w in workloads(docs)
            if label_selector_matches(
                {"matchLabels": service["spec"]["selector"]}, w["spec"]["template"]["metadata"]["labels"]
            )
        ]
        assert backends, f"{doc_id(service)} selects no pods"
        port_names = {p.get("name") for w in backends for c in containers(w) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{doc_id(service)} port {port['name']}"


# --- the kind overlay -------------------------------------------------------------------------------------


def test_kind_overlay_uses_locally_loaded_images() -> None:
    docs = build("manifests/overlays/kind")
    rackmesh = [c for w in workloads(docs) for c in containers(w) if c["image"].startswith("rackmesh-")]
    assert len(rackmesh) == 3  # operator, agent and the agent's init container
    for c in rackmesh:
        assert c["image"] in {"rackmesh-operator:dev", "rackmesh-agent:dev"}, c["image"]
        assert c["imagePullPolicy"] == "IfNotPresent"
