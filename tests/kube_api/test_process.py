"""The process form and the kubeconfig helper.

Docs: https://kubernetes.io/docs/concepts/configuration/organize-cluster-access-kubeconfig/

Case matrix:
- ``python -m rackmesh_sandbox.kube_api --port 0 --crd ... --ready-file PATH`` writes ``{"url", "pid"}``
  once listening, serves the CRDs given, and exits 0 on SIGTERM and on SIGINT.
- ``write_kubeconfig`` writes a config whose current context points at the server (plain HTTP,
  token user, namespace); kopf logging in with it is covered by test_kopf.py.
"""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
import yaml

from rackmesh_sandbox.kube_api import write_kubeconfig
from tests.kube_api.conftest import DR_CRD
from tests.support.waiting import eventually


def start(ready: pathlib.Path) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "rackmesh_sandbox.kube_api",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--crd",
        str(DR_CRD),
        "--ready-file",
        str(ready),
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture
def process(tmp_path: pathlib.Path) -> Iterator[tuple[subprocess.Popen[bytes], pathlib.Path]]:
    ready = tmp_path / "state" / "api.json"
    proc = start(ready)
    try:
        yield proc, ready
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_until_signalled(
    process: tuple[subprocess.Popen[bytes], pathlib.Path], sig: signal.Signals
) -> None:
    proc, ready = process
    eventually(ready.exists, timeout=20, what="ready file written")
    info = json.loads(ready.read_text())
    assert info["pid"] == proc.pid
    assert info["url"].startswith("http://127.0.0.1:")
    with urllib.request.urlopen(info["url"] + "/apis/rackmesh.io/v1alpha1") as response:
        assert json.load(response)["resources"][0]["name"] == "deploymentrequests"
    proc.send_signal(sig)
    assert proc.wait(timeout=10) == 0
    assert not [p for p in ready.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_kubeconfig(tmp_path: pathlib.Path) -> None:
    path = write_kubeconfig(tmp_path / "dir" / "kubeconfig", "http://127.0.0.1:12345", namespace="team")
    config = yaml.safe_load(path.read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    assert cluster == {"server": "http://127.0.0.1:12345"}
    assert context["namespace"] == "team"
    assert user["token"]
