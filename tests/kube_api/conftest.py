"""Fixtures: an in-process API server per test and a small JSON client for it; the server as a
process per test module, driven by the real kubectl."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from rackmesh_sandbox.kube_api import KubeApiServer, write_kubeconfig
from tests.support.waiting import eventually

REPO = pathlib.Path(__file__).resolve().parents[2]
DR_CRD = REPO / "crds" / "deploymentrequest.yaml"
DRS = "/apis/rackmesh.io/v1alpha1/namespaces/default/deploymentrequests"
NODES = "/api/v1/nodes"
MERGE = "application/merge-patch+json"
KUBECTL = "/usr/bin/kubectl"


class Reply:
    """An HTTP answer: status, parsed JSON body (or text), headers."""

    def __init__(self, status: int, body: Any, headers: Any) -> None:
        self.status, self.body, self.headers = status, body, headers

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body!r})"


class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        data = None if body is None else json.dumps(body)
        async with self.session.request(
            method,
            self.url + path,
            data=data,
            params=params,
            headers={"Content-Type": content_type, **(headers or {})},
        ) as response:
            text = await response.text()
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            return Reply(response.status, parsed, response.headers)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any, **kwargs: Any) -> Reply:
        return await self.request("POST", path, body, **kwargs)

    async def put(self, path: str, body: Any, **kwargs: Any) -> Reply:
        return await self.request("PUT", path, body, **kwargs)

    async def patch(self, path: str, body: Any, content_type: str = MERGE, **kwargs: Any) -> Reply:
        return await self.request("PATCH", path, body, content_type=content_type, **kwargs)

    async def delete(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return await self.request("DELETE", path, body, **kwargs)

    async def create(self, path: str, body: Any, **kwargs: Any) -> dict[str, Any]:
        """POST that must succeed; returns the created object."""
        reply = await self.post(path, body, **kwargs)
        assert reply.status == 201, reply
        return reply.body


def dr(name: str = "lob123", replicas: int = 3, **spec: Any) -> dict[str, Any]:
    """A valid DeploymentRequest."""
    return {
        "apiVersion": "rackmesh.io/v1alpha1",
        "kind": "DeploymentRequest",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "instancetype": "u1.large", "image": "lob123-rhel-6.0", **spec},
    }


WIDGETS = "/apis/test.rackmesh.io/v1/namespaces/default/widgets"


def widget_crd() -> dict[str, Any]:
    """A CRD for rule and scale tests: CEL rules at several levels, status and scale subresources."""

    def rule(text: str, message: str, **more: str) -> dict[str, str]:
        return {"rule": text, "message": message, **more}

    spec = {
        "type": "object",
        "required": ["replicas", "flavor"],
        "x-kubernetes-validations": [
            {
                "rule": "!has(self.maxReplicas) || self.replicas <= self.maxReplicas",
                "messageExpression": "string(self.replicas) + ' exceeds ' + string(self.maxReplicas)",
                "fieldPath": ".replicas",
            },
            rule(
                "!has(self.legacy)", "legacy is no longer supported", reason="FieldValueForbidden", fieldPath=".legacy"
            ),
        ],
        "properties": {
            "replicas": {"type": "integer", "minimum": 1, "maximum": 100},
            "maxReplicas": {"type": "integer"},
            "flavor": {"type": "string", "x-kubernetes-validations": [rule("self == oldSelf", "flavor is immutable")]},
            "legacy": {"type": "string"},
            "ports": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {
                    "type": "object",
                    "required": ["name", "port", "protocol"],
                    "properties": {
                        "name": {"type": "string"},
                        "port": {"type": "integer"},
                        "protocol": {"type": "string"},
                    },
                    "x-kubernetes-validations": [
                        rule("self.port > 1024", "ports must be unprivileged"),
                        rule("self.protocol == oldSelf.protocol", "a port's protocol is immutable"),
                    ],
                },
            },
            "tags": {
                "type": "object",
                "additionalProperties": {
                    "type": "string",
                    "x-kubernetes-validations": [rule("size(self) <= 10", "tags are short")],
                },
            },
        },
    }
    status = {
        "type": "object",
        "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"}, "phase": {"type": "string"}},
    }
    schema = {
        "type": "object",
        "x-kubernetes-validations": [rule("size(self.metadata.name) <= 12", "name too long")],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    scale = {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.rackmesh.io"},
        "spec": {
            "group": "test.rackmesh.io",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}, "scale": scale},
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def widget(name: str = "w1", replicas: int = 2, **spec: Any) -> dict[str, Any]:
    """A valid Widget."""
    return {
        "apiVersion": "test.rackmesh.io/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "flavor": "small", **spec},
    }


def node(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}},
        "status": {
            "allocatable": {"cpu": "32", "memory": "128Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


@pytest.fixture
async def server() -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(crd_paths=[DR_CRD]) as api:
        yield api


@pytest.fixture
async def client(server: KubeApiServer) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, server.url)


class Cluster:
    """The API server as a process (``python -m rackmesh_sandbox.kube_api``) and kubectl pointed at it."""

    def __init__(self, url: str, kubeconfig: pathlib.Path, cache: pathlib.Path, workdir: pathlib.Path) -> None:
        self.url, self.kubeconfig, self.cache, self.workdir = url, kubeconfig, cache, workdir

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache), *args]
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30, check=False)
        if check:
            assert done.returncode == 0, f"{argv} failed: {done.stderr}"
        return done

    def manifest(self, name: str, text: str) -> str:
        path = self.workdir / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/merge-patch+json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("kubectl")
    ready = workdir / "api.json"
    argv = [
        sys.executable,
        "-m",
        "rackmesh_sandbox.kube_api",
        "--port",
        "0",
        "--crd",
        str(DR_CRD),
        "--ready-file",
        str(ready),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        eventually(ready.exists, timeout=20, what="the API is ready")
        url = json.loads(ready.read_text())["url"]
        yield Cluster(url, write_kubeconfig(workdir / "kubeconfig", url), workdir / "cache", workdir)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
