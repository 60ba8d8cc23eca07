"""Fixtures: an in-process API server per test, and a small JSON client for it."""

from __future__ import annotations

import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from rackmesh_sandbox.kube_api import KubeApiServer

REPO = pathlib.Path(__file__).resolve().parents[2]
DR_CRD = REPO / "crds" / "deploymentrequest.yaml"
DRS = "/apis/rackmesh.io/v1alpha1/namespaces/default/deploymentrequests"
NODES = "/api/v1/nodes"
MERGE = "application/merge-patch+json"


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
