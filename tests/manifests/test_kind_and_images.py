"""The kind cluster config, the image Dockerfiles and the hack/ scripts (none of which can run here: they
need Docker), checked for what can be checked offline.

Case matrix:
  - kind-config.yaml: a kind v1alpha4 Cluster, one control plane, >= 6 workers, every worker a rackmesh
    node with a rack, >= 2 racks of each role, and the agent DaemonSet lands on every one of them;
  - each image (images/<name>/Dockerfile): python:3.11-slim, a numeric non-root USER, `pip install
    --no-cache-dir .`, `rackmesh` entrypoint running its command, COPY sources that exist;
  - each hack/*.sh: executable and valid bash.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.manifests.support import (
    REPO,
    WORKLOAD_BUILDS,
    Doc,
    build,
    find,
    node_affinity_matches,
    pod_spec,
)

COMPUTE = "rackmesh.io/role-compute"
STORAGE = "rackmesh.io/role-storage"
RACK = "topology.rackmesh.io/rack"
KIND_CONFIG = REPO / "kind-config.yaml"
IMAGES = {"operator": "operator", "agent": "agent"}  # image dir -> `rackmesh` command it runs
SCRIPTS = sorted((REPO / "hack").glob("*.sh"))


def kind_nodes() -> list[Doc]:
    config = yaml.safe_load(KIND_CONFIG.read_text())
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    nodes: list[Doc] = config["nodes"]
    return nodes


def worker_labels() -> list[dict[str, str]]:
    return [dict(node.get("labels") or {}) for node in kind_nodes() if node["role"] == "worker"]


def test_kind_cluster_shape() -> None:
    roles = [node["role"] for node in kind_nodes()]
    assert roles.count("control-plane") == 1
    assert roles.count("worker") >= 6
    assert set(roles) == {"control-plane", "worker"}


@pytest.mark.parametrize("role", [COMPUTE, STORAGE])
def test_kind_has_two_racks_of_each_role(role: str) -> None:
    racks = {labels[RACK] for labels in worker_labels() if labels.get(role) == "true"}
    assert len(racks) >= 2, racks


SPARE = "rackmesh.io/e2e-spare"


def test_every_kind_worker_is_a_rackmesh_node_in_a_rack_but_the_two_spares() -> None:
    spares = [labels for labels in worker_labels() if SPARE in labels]
    assert sorted(labels[SPARE] for labels in spares) == ["compute", "storage"]
    assert all(COMPUTE not in labels and STORAGE not in labels for labels in spares)
    for labels in worker_labels():
        if SPARE not in labels:
            assert labels.get(COMPUTE) == "true" or labels.get(STORAGE) == "true", labels
            assert re.fullmatch(r"rack-[a-z0-9-]+", labels.get(RACK, "")), labels
        # kind applies these with kubectl-label semantics: every value must be a string.
        assert all(isinstance(value, str) for value in labels.values()), labels


@pytest.mark.kubectl
@pytest.mark.parametrize("directory", WORKLOAD_BUILDS)
def test_the_agent_lands_on_every_kind_worker_with_a_role(directory: str) -> None:
    affinity = pod_spec(find(build(directory), "DaemonSet", "rackmesh-agent"))["affinity"]
    assert all(node_affinity_matches(affinity, labels) for labels in worker_labels() if SPARE not in labels)
    spares = [labels for labels in worker_labels() if SPARE in labels]
    assert not any(node_affinity_matches(affinity, labels) for labels in spares)
    assert all(node_affinity_matches(affinity, {**labels, COMPUTE: "true"}) for labels in spares)
    assert not node_affinity_matches(affinity, {"node-role.kubernetes.io/control-plane": ""})


# --- images -----------------------------------------------------------------------------------------------


def dockerfile(image: str) -> str:
    return (REPO / "images" / image / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = [
        line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")
    ]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


@pytest.mark.parametrize("image", IMAGES)
def test_image_builds_from_python_slim_as_non_root(image: str) -> None:
    steps = instructions(dockerfile(image))
    froms = [args for op, args in steps if op == "FROM"]
    assert froms
    assert all(args.split()[0] == "python:3.11-slim" for args in froms)
    users = [args for op, args in steps if op == "USER"]
    assert users
    assert re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), users
    assert any(op == "RUN" and re.search(r"pip install --no-cache-dir \.$", args) for op, args in steps)


@pytest.mark.parametrize("image", IMAGES)
def test_image_runs_its_rackmesh_command(image: str) -> None:
    steps = dict(instructions(dockerfile(image)))
    assert steps["ENTRYPOINT"] == '["rackmesh"]'
    assert steps["CMD"].startswith(f'["{IMAGES[image]}"')


@pytest.mark.parametrize("image", IMAGES)
def test_image_copies_only_what_exists(image: str) -> None:
    sources = [
        source
        for op, args in instructions(dockerfile(image))
        if op == "COPY" and "--from=" not in args
        for source in args.split()[:-1]
    ]
    assert "pyproject.toml" in sources
    missing = [source for source in sources if not (REPO / source).exists()]
    assert missing == [], f"the image build would fail: {missing} not in the repository"


@pytest.mark.parametrize("image", IMAGES)
def test_manifests_use_the_images_built_here(image: str) -> None:
    text = "\n".join(path.read_text() for path in (REPO / "manifests").rglob("*.yaml"))
    assert f"image: rackmesh-{image}:" in text


# --- hack scripts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_script_is_executable_bash(script: Path) -> None:
    assert script.stat().st_mode & 0o111, f"{script.name} is not executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_scripts_exist() -> None:
    assert {"install.sh", "kind-e2e.sh"} <= {script.name for script in SCRIPTS}
