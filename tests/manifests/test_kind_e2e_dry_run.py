"""``hack/kind-e2e.sh --dry-run``: the commands the kind run would make, checked against the tree offline.

Case matrix:
  - the dry run needs no Docker, kind or cluster, and prints one "+ " line per command;
  - the images it builds are the images it loads into kind, and those are what the kind overlay deploys;
  - every local file it uses exists (kind config, Dockerfiles, the overlay install.sh applies);
  - it installs this tree's test extras before running the scenarios, with the real-cluster timeouts;
  - every setting the acceptance scenarios read from the environment is documented in the script.
"""

import os
import re
import shlex
import subprocess

import pytest

from tests.manifests.support import REPO, build, pod_spec

SCRIPT = REPO / "hack" / "kind-e2e.sh"
OVERLAY = "manifests/overlays/kind"


def dry_run(**env: str) -> list[list[str]]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("RACKMESH_E2E", "KIND_"))}
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=60,
                          env={**clean, "PATH": "/usr/bin:/bin", **env}, check=False)
    assert done.returncode == 0, done.stderr
    return [shlex.split(line[2:]) for line in done.stdout.splitlines() if line.startswith("+ ")]


@pytest.fixture(scope="module")
def commands() -> list[list[str]]:
    return dry_run()


def with_program(commands: list[list[str]], *prefix: str) -> list[list[str]]:
    return [argv for argv in commands if argv[:len(prefix)] == list(prefix)]


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_dry_run_prints_the_whole_run_without_docker_or_kind(commands: list[list[str]]) -> None:
    programs = [argv[0] for argv in commands]
    for program in ("kind", "kubectl", "docker", str(REPO / "hack" / "install.sh")):
        assert program in programs


@pytest.mark.kubectl
def test_the_images_built_are_loaded_and_are_what_the_overlay_deploys(commands: list[list[str]]) -> None:
    built = {option(argv, "-t") for argv in with_program(commands, "docker", "build")}
    [load] = with_program(commands, "kind", "load", "docker-image")
    loaded = set(load[load.index("--name") + 2:])
    deployed = {container["image"] for doc in build(OVERLAY) if doc["kind"] in ("Deployment", "DaemonSet")
                for container in pod_spec(doc)["containers"] if container["image"].startswith("rackmesh-")}
    assert built == loaded == deployed, (built, loaded, deployed)


def test_every_local_file_it_uses_exists(commands: list[list[str]]) -> None:
    used = [option(argv, "--config") for argv in with_program(commands, "kind", "create", "cluster")]
    used += [option(argv, "-f") for argv in with_program(commands, "docker", "build")]
    used += [argv[-1] for argv in with_program(commands, "docker", "build")]
    files = [option(argv, "-f") for argv in with_program(commands, "kubectl", "apply")]
    used += [path for path in files if path != "-" and not re.match(r"https://", path)]
    [install] = with_program(commands, str(REPO / "hack" / "install.sh"))
    used += [str(REPO / install[1])]
    assert used and all(os.path.exists(path) for path in used), [p for p in used if not os.path.exists(p)]
    remote = [path for path in files if path.startswith("https://")]
    assert remote and all(re.match(r"https://github\.com/kubevirt/[-a-z]+/releases/download/v[0-9.]+/", url)
                          for url in remote), remote


def test_it_installs_the_test_extras_then_runs_the_scenarios_with_real_cluster_timeouts(
        commands: list[list[str]]) -> None:
    [install] = [argv for argv in commands if argv[1:4] == ["-m", "pip", "install"]]
    assert install[-1] == f"{REPO}[test]"
    [scenarios] = [argv for argv in commands if argv[1:3] == ["-m", "pytest"]]
    assert commands.index(install) < commands.index(scenarios)
    assert "tests/acceptance" in scenarios and "--timeout=3600" in scenarios
    assert "--timeout=7200" in dry_run(RACKMESH_E2E_TEST_TIMEOUT="7200")[commands.index(scenarios)]


def test_every_setting_the_scenarios_read_is_documented_in_the_script() -> None:
    conftest = (REPO / "tests" / "acceptance" / "conftest.py").read_text()
    settings = set(re.findall(r'os\.environ\.get\("(RACKMESH_E2E_[A-Z_]+)"', conftest))
    help_text = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30,
                               check=True).stdout
    assert settings and {setting for setting in settings if setting not in help_text} == set()
