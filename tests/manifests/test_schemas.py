"""Every shipped document is one a real API server would accept.

Case matrix:
  - each kustomization (the root one = the CRDs; each under manifests/) builds with the real kustomize;
  - each built-in kind in each build passes kubernetes-validate in strict mode (unknown fields fail)
    against Kubernetes KUBERNETES_VERSION;
  - each custom resource in each build, and each object in examples/*.yaml, passes its CRD's schema
    (rackmesh_sandbox's CrdSchema: the same validator the sandbox's API uses);
  - the Prometheus Operator's kinds (manifests/monitoring), whose CRDs are not here offline, are checked field
    by field against its API by tests/manifests/test_monitoring.py instead;
  - and the checks bite: a broken object fails each of them.
"""

import copy
import functools
from pathlib import Path

import kubernetes_validate
import pytest

from rackmesh_sandbox.kube_api.kubevirt import kubevirt_crds
from tests.manifests.support import (
    CRDS_BUILD,
    KUBERNETES_VERSION,
    PROMETHEUS_OPERATOR_GROUP,
    REPO,
    Doc,
    build,
    crd_for,
    doc_id,
    kustomizations,
    load_yaml_docs,
    try_build,
)

pytestmark = [
    pytest.mark.kubectl,
]

BUILDS = kustomizations()
BUILT_DOCS = [(directory, doc) for directory in BUILDS for doc in try_build(directory)]
EXAMPLE_DOCS = [
    (path, doc)
    for path in sorted((REPO / "examples").glob("*.yaml"))
    for doc in load_yaml_docs(path)
    # examples/ also holds sandbox topology files, which are not Kubernetes objects.
    if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc
]


def is_prometheus_operators(doc: Doc) -> bool:
    return doc["apiVersion"].startswith(PROMETHEUS_OPERATOR_GROUP + "/")


def is_custom(doc: Doc) -> bool:
    """Custom resources are those of a CRD we know; everything else must be a built-in kind."""
    return crd_for(known_crds(), doc["apiVersion"], doc["kind"]) is not None


@functools.cache
def known_crds() -> tuple[Doc, ...]:
    ours = tuple(doc for doc in try_build(CRDS_BUILD) if doc["kind"] == "CustomResourceDefinition")
    return (*ours, *kubevirt_crds())


def crd_errors(doc: Doc) -> list[str]:
    from rackmesh_sandbox.kube_api.schema import CrdSchema  # imported here: only these checks need it

    crd = crd_for(known_crds(), doc["apiVersion"], doc["kind"])
    assert crd is not None, f"no CRD known for {doc['apiVersion']} {doc['kind']}"
    return CrdSchema.from_crd(crd, version=doc["apiVersion"].rpartition("/")[2]).errors(doc)


def builtin_error(doc: Doc) -> str | None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return f"no Kubernetes {KUBERNETES_VERSION} schema for {doc['apiVersion']} {doc['kind']} (and no CRD)"
    except kubernetes_validate.ValidationError as exc:
        return str(exc).split("\n\n")[0] + f" (at {'/'.join(map(str, exc.path))})"
    return None


@pytest.mark.parametrize("directory", BUILDS)
def test_kustomization_builds(directory: str) -> None:
    docs = build(directory)
    assert docs, f"{directory} builds to nothing"
    ids = [doc_id(doc) for doc in docs]
    assert len(ids) == len(set(ids)), f"{directory} has duplicate objects"


def test_the_workload_builds_are_shipped() -> None:
    assert {".", "manifests/default", "manifests/overlays/kind"} <= set(BUILDS)


@pytest.mark.parametrize(
    ("directory", "doc"),
    [pytest.param(d, doc, id=f"{d}:{doc_id(doc)}") for d, doc in BUILT_DOCS
     if not is_custom(doc) and not is_prometheus_operators(doc)],
)
def test_builtin_kind_is_valid(directory: str, doc: Doc) -> None:
    assert builtin_error(doc) is None, builtin_error(doc)


@pytest.mark.parametrize(
    ("directory", "doc"),
    [pytest.param(d, doc, id=f"{d}:{doc_id(doc)}") for d, doc in BUILT_DOCS if is_custom(doc)],
)
def test_custom_resource_matches_its_crd(directory: str, doc: Doc) -> None:
    assert crd_errors(doc) == []


@pytest.mark.parametrize(
    ("path", "doc"),
    [pytest.param(p, doc, id=f"{p.name}:{doc_id(doc)}") for p, doc in EXAMPLE_DOCS],
)
def test_example_is_valid(path: Path, doc: Doc) -> None:
    if is_custom(doc):
        assert crd_errors(doc) == []
    else:
        assert builtin_error(doc) is None, builtin_error(doc)


def test_the_seed_example_is_checked() -> None:
    assert any(doc["kind"] == "DeploymentRequest" for _, doc in EXAMPLE_DOCS)


# --- the checks bite ----------------------------------------------------------------------------------


def test_a_broken_request_fails_its_crd() -> None:
    request = copy.deepcopy(next(doc for _, doc in EXAMPLE_DOCS if doc["kind"] == "DeploymentRequest"))
    request["spec"]["replicas"] = 0
    del request["spec"]["image"]
    assert len(crd_errors(request)) >= 2


def test_an_unknown_field_fails_strict_validation() -> None:
    deployment = copy.deepcopy(next(doc for _, doc in BUILT_DOCS if doc["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    assert builtin_error(deployment) is not None


def test_an_unknown_kind_fails() -> None:
    assert builtin_error({"apiVersion": "example.com/v1", "kind": "Nothing", "metadata": {"name": "x"}})
