"""What the manifest tests share: the real `kubectl kustomize` builds, lookups into them, and small
evaluators of Kubernetes semantics (RBAC rules, node selector terms, label selectors).

Everything here is offline: kustomize is kubectl's built-in one, the schemas are bundled with
kubernetes-validate and vendored under sandbox/schemas/kubevirt.
"""

import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
# The Kubernetes version the manifests are validated against (kubectl here is v1.32 too).
KUBERNETES_VERSION = "1.32"
NAMESPACE = "rackmesh-system"
KUBECTL = shutil.which("kubectl")

CRD_SOURCE = REPO / "crds" / "deploymentrequest.yaml"
# Step 1 of an install (the CRDs) is the repository-root kustomization; step 2 is one of these.
CRDS_BUILD = "."
WORKLOAD_BUILDS = ("manifests/default", "manifests/overlays/kind")
# Applied after a workload build where the Prometheus Operator runs: the ServiceMonitors.
MONITORING_BUILD = "manifests/monitoring"
PROMETHEUS_OPERATOR_GROUP = "monitoring.coreos.com"

Doc = dict[str, Any]


def kustomizations() -> list[str]:
    """Every kustomization shipped: the root one and each under manifests/, as repo-relative dirs."""
    dirs = [CRDS_BUILD] if (REPO / "kustomization.yaml").exists() else []
    dirs += sorted(
        str(path.parent.relative_to(REPO)) for path in (REPO / "manifests").rglob("kustomization.yaml")
    )
    return dirs


@functools.cache
def build(directory: str) -> tuple[Doc, ...]:
    """The documents of `kubectl kustomize DIR` (the real kustomize, default load restrictions)."""
    if KUBECTL is None:
        raise RuntimeError("kubectl is not on PATH")
    result = subprocess.run(
        [KUBECTL, "kustomize", str(REPO / directory)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"`kubectl kustomize {directory}` failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def try_build(directory: str) -> tuple[Doc, ...]:
    """For collection time: a build that fails yields nothing here and fails its own test instead."""
    try:
        return build(directory)
    except (AssertionError, RuntimeError):
        return ()


def doc_id(doc: Doc) -> str:
    meta = doc.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{doc.get('kind')}/{where}{meta.get('name')}"


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def find(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    matches = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r}, found {len(matches)}"
    return matches[0]


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Doc, *, init: bool = True) -> list[Doc]:
    spec = pod_spec(workload)
    found: list[Doc] = list(spec.get("containers", []))
    if init:
        found += spec.get("initContainers", [])
    return found


def container(workload: Doc, name: str) -> Doc:
    matches = [c for c in containers(workload) if c["name"] == name]
    assert len(matches) == 1, f"{doc_id(workload)} has no single container {name!r}"
    return matches[0]


def env(container_doc: Doc, name: str) -> Doc:
    matches = [var for var in container_doc.get("env", []) if var["name"] == name]
    assert len(matches) == 1, f"container {container_doc['name']!r} sets {name} {len(matches)} times"
    return matches[0]


WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})


def workloads(docs: tuple[Doc, ...]) -> Iterator[Doc]:
    return (doc for doc in docs if doc["kind"] in WORKLOAD_KINDS)


# --- RBAC ---------------------------------------------------------------------------------------------


def rule_allows(rule: Doc, group: str, resource: str, verb: str, name: str | None = None) -> bool:
    """Whether one PolicyRule allows VERB on GROUP RESOURCE (a "res/sub" resource for a subresource)."""
    names = rule.get("resourceNames") or []
    return (
        (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", []))
        and (resource in rule.get("resources", []) or "*" in rule.get("resources", []))
        and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", []))
        and (not names or (name is not None and name in names))
    )


def role_allows(role: Doc, group: str, resource: str, verb: str, name: str | None = None) -> bool:
    return any(rule_allows(rule, group, resource, verb, name) for rule in role.get("rules", []))


def service_account_rules(docs: tuple[Doc, ...], service_account: str, namespace: str) -> list[Doc]:
    """Every role bound to the ServiceAccount: ClusterRoles by ClusterRoleBindings, and the Roles of
    RoleBindings (which grant in their own namespace only)."""
    roles = []
    for binding in docs:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        subjects = binding.get("subjects", [])
        if any(
            s["kind"] == "ServiceAccount" and s["name"] == service_account and s.get("namespace") == namespace
            for s in subjects
        ):
            roles.append(find(docs, binding["roleRef"]["kind"], binding["roleRef"]["name"]))
    return roles


def allowed(
    docs: tuple[Doc, ...], service_account: str, group: str, resource: str, verb: str, name: str | None = None
) -> bool:
    return any(
        role_allows(role, group, resource, verb, name)
        for role in service_account_rules(docs, service_account, NAMESPACE)
    )


# --- selectors ----------------------------------------------------------------------------------------


def requirement_matches(requirement: Doc, labels: dict[str, str]) -> bool:
    key, operator, values = requirement["key"], requirement["operator"], requirement.get("values", [])
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    raise AssertionError(f"operator {operator!r} is not evaluated by these tests")


def node_affinity_matches(affinity: Doc, labels: dict[str, str]) -> bool:
    """Required node affinity: the terms are ORed, the expressions of one term ANDed."""
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return any(
        all(requirement_matches(req, labels) for req in term.get("matchExpressions", [])) for term in terms
    )


def label_selector_matches(selector: Doc, labels: dict[str, str]) -> bool:
    match_labels = selector.get("matchLabels", {})
    return all(labels.get(k) == v for k, v in match_labels.items()) and all(
        requirement_matches(req, labels) for req in selector.get("matchExpressions", [])
    )


# --- custom resource schemas --------------------------------------------------------------------------


def load_yaml_docs(path: Path) -> list[Doc]:
    loader = getattr(
        yaml, "CSafeLoader", yaml.SafeLoader
    )  # libyaml when present: the KubeVirt schemas are big
    with path.open() as stream:
        return [doc for doc in yaml.load_all(stream, Loader=loader) if doc]


def crd_for(crds: tuple[Doc, ...], api_version: str, kind: str) -> Doc | None:
    group, _, version = api_version.rpartition("/")
    for crd in crds:
        spec = crd["spec"]
        if (
            spec["group"] == group
            and spec["names"]["kind"] == kind
            and any(v["name"] == version for v in spec["versions"])
        ):
            return crd
    return None


def grants(docs: tuple[Doc, ...], service_account: str) -> dict[tuple[str, str, str | None], set[str]]:
    """What the ServiceAccount's ClusterRoles allow, spelt out: (group, resource, resourceName or None for
    every name) -> verbs. Wildcards stay as they are written ("*"), so a test comparing with a table of
    exact grants fails on them."""
    found: dict[tuple[str, str, str | None], set[str]] = {}
    for role in service_account_rules(docs, service_account, NAMESPACE):
        for rule in role.get("rules", []):
            assert not rule.get("nonResourceURLs"), f"{role['metadata']['name']} grants non-resource URLs"
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for name in rule.get("resourceNames") or [None]:
                        found.setdefault((group, resource, name), set()).update(rule.get("verbs", []))
    return found


# --- NetworkPolicy ------------------------------------------------------------------------------------


Pod = tuple[str, dict[str, str]]  # (namespace, labels)


def namespace_labels(namespace: str) -> dict[str, str]:
    """A namespace's labels as the API server sets them (kubernetes.io/metadata.name, since 1.21)."""
    return {"kubernetes.io/metadata.name": namespace}


def _peer_matches(peer: Doc, policy_namespace: str, source: Pod) -> bool:
    assert "ipBlock" not in peer, "ipBlock peers are not evaluated by these tests"
    namespace, labels = source
    if "namespaceSelector" in peer:
        if not label_selector_matches(peer["namespaceSelector"], namespace_labels(namespace)):
            return False
    elif namespace != policy_namespace:  # a podSelector alone means the policy's namespace
        return False
    return "podSelector" not in peer or label_selector_matches(peer["podSelector"], labels)


def _port_matches(rule_port: Doc, port: int, protocol: str) -> bool:
    assert isinstance(rule_port.get("port", 0), int), "named ports are not evaluated by these tests"
    if rule_port.get("protocol", "TCP") != protocol:
        return False
    if "port" not in rule_port:
        return True
    return bool(rule_port["port"] <= port <= rule_port.get("endPort", rule_port["port"]))


def policy_types(policy: Doc) -> list[str]:
    """spec.policyTypes, defaulted as the API server does: Ingress, plus Egress when egress rules exist."""
    spec = policy["spec"]
    return list(spec.get("policyTypes") or (["Ingress"] + (["Egress"] if spec.get("egress") else [])))


def ingress_allowed(docs: tuple[Doc, ...], source: Pod, target: Pod, port: int, protocol: str = "TCP") -> bool:
    """Whether NetworkPolicy lets ``source`` open ``port`` on ``target`` (pods as namespace and labels).

    A pod no Ingress policy selects accepts everything; one that some select accepts what any rule of any
    of them allows (they add up). Traffic from the target's own node (kubelet) is always allowed and is
    not what this answers.
    """
    namespace, labels = target
    selecting = [
        p for p in docs
        if p["kind"] == "NetworkPolicy" and p["metadata"].get("namespace") == namespace
        and "Ingress" in policy_types(p) and label_selector_matches(p["spec"]["podSelector"], labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            ports = rule.get("ports") or []
            peers = rule.get("from") or []
            if (not ports or any(_port_matches(p, port, protocol) for p in ports)) and (
                not peers or any(_peer_matches(peer, namespace, source) for peer in peers)
            ):
                return True
    return False
