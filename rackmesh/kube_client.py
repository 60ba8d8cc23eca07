"""A small asyncio client for the Kubernetes API, used by the agents and the CLI.

It speaks plain REST (JSON, merge patches) so it works the same on a real cluster and in the
sandbox. Credentials come from ``KUBECONFIG``/``~/.kube/config`` or the in-cluster service account.
"""

import base64
import dataclasses
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from rackmesh.http_session import SessionClient
from rackmesh.labels import is_dns_label, is_dns_subdomain

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeApiError(Exception):
    """A non-2xx answer, with the API's own ``reason`` and ``message``."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class InvalidName(ValueError):
    """A namespace, name or subresource that the API's name rules refuse: it is not sent, as it could
    otherwise address another path of the API (``..``, ``/``) or add query parameters (``?``)."""


def _segment(kind: str, value: str, valid: Callable[[str], bool]) -> str:
    if not valid(value):
        raise InvalidName(f"refusing to send {kind} {value!r} as a path segment: not a valid {kind}")
    return value


@dataclasses.dataclass(frozen=True)
class ResourceRef:
    """Where a resource lives in the REST API."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str = "") -> str:
        """The REST path; ``None`` leaves a part out (all namespaces, the collection), anything else must be a
        valid name (``InvalidName``: an empty name would turn a GET of one object into a list)."""
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace is not None:
            base += "/namespaces/" + _segment("namespace", namespace, is_dns_label)
        base += f"/{self.plural}"
        if name is not None:
            base += "/" + _segment("name", name, is_dns_subdomain)
        if subresource:
            base += "/" + _segment("subresource", subresource, is_dns_label)
        return base


NODES = ResourceRef("", "v1", "nodes", namespaced=False)
PODS = ResourceRef("", "v1", "pods")
SECRETS = ResourceRef("", "v1", "secrets")
CONFIG_MAPS = ResourceRef("", "v1", "configmaps")
EVENTS = ResourceRef("", "v1", "events")
VIRTUAL_MACHINES = ResourceRef("kubevirt.io", "v1", "virtualmachines")
DATA_VOLUMES = ResourceRef("cdi.kubevirt.io", "v1beta1", "datavolumes")
CLUSTER_INSTANCETYPES = ResourceRef("instancetype.kubevirt.io", "v1beta1", "virtualmachineclusterinstancetypes",
                                    namespaced=False)
DEPLOYMENT_REQUESTS = ResourceRef("rackmesh.io", "v1alpha1", "deploymentrequests")
TOKEN_REVIEWS = ResourceRef("authentication.k8s.io", "v1", "tokenreviews", namespaced=False)


@dataclasses.dataclass(frozen=True)
class Credentials:
    server: str
    token: str | None = None
    ssl_context: ssl.SSLContext | bool = True

    @classmethod
    def discover(cls, kubeconfig: str | None = None) -> "Credentials":
        path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        if Path(path).exists():
            return cls.from_kubeconfig(Path(path))
        if (SERVICE_ACCOUNT / "token").exists():
            return cls.in_cluster()
        raise RuntimeError(f"no Kubernetes credentials: {path} does not exist and this is not a pod")

    @classmethod
    def in_cluster(cls) -> "Credentials":
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
        return cls(f"https://{host}:{port}", (SERVICE_ACCOUNT / "token").read_text().strip(), context)

    @classmethod
    def from_kubeconfig(cls, path: Path) -> "Credentials":
        config = yaml.safe_load(path.read_text())
        context_name = config.get("current-context")
        context = _named(config.get("contexts", []), context_name)["context"]
        cluster = _named(config.get("clusters", []), context["cluster"])["cluster"]
        user = _named(config.get("users", []), context.get("user"))["user"] if context.get("user") else {}
        server: str = cluster["server"]
        if not server.startswith("https://"):
            return cls(server, user.get("token"), ssl_context=False)
        tls = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        elif "certificate-authority-data" in cluster:
            tls.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        elif "certificate-authority" in cluster:
            tls.load_verify_locations(cafile=cluster["certificate-authority"])
        if "client-certificate-data" in user:
            _load_client_cert(tls, user["client-certificate-data"], user["client-key-data"])
        elif "client-certificate" in user:
            tls.load_cert_chain(user["client-certificate"], user["client-key"])
        return cls(server, user.get("token"), tls)


def _named(items: list[dict[str, Any]], name: str | None) -> dict[str, Any]:
    for item in items:
        if item.get("name") == name:
            return item
    raise RuntimeError(f"kubeconfig has no entry named {name!r}")


def _load_client_cert(tls: ssl.SSLContext, cert_b64: str, key_b64: str) -> None:
    # ssl only loads certificates from files; the files live just long enough to be read.
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert.write_bytes(base64.b64decode(cert_b64))
        key.write_bytes(base64.b64decode(key_b64))
        tls.load_cert_chain(str(cert), str(key))


Objects = list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Selector:
    """Which objects a list or watch picks: ``?labelSelector=`` and ``?fieldSelector=`` (empty: all)."""

    labels: str = ""
    fields: str = ""

    def params(self) -> dict[str, str]:
        chosen = {"labelSelector": self.labels, "fieldSelector": self.fields}
        return {key: value for key, value in chosen.items() if value}


class KubeClient(SessionClient):
    """One persistent HTTP session to the API server."""

    def __init__(self, credentials: Credentials, timeout: float = 30.0) -> None:
        self.credentials = credentials
        headers = {"Accept": "application/json", "User-Agent": "rackmesh"}
        if credentials.token:
            headers["Authorization"] = f"Bearer {credentials.token}"
        super().__init__(aiohttp.ClientSession(
            base_url=credentials.server, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout),
            connector=aiohttp.TCPConnector(ssl=credentials.ssl_context),
        ))

    async def _call(self, method: str, path: str, *, params: dict[str, str] | None = None,
                    body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
        headers = {"Content-Type": content_type} if body is not None else {}
        async with self._session.request(method, path, params=params, json=body, headers=headers) as response:
            payload = await response.json(content_type=None) if response.content_length != 0 else {}
            if response.status >= 400:
                payload = payload if isinstance(payload, dict) else {}
                raise KubeApiError(response.status, payload.get("reason", response.reason or ""),
                                   payload.get("message", ""))
            return payload

    async def get(self, resource: ResourceRef, name: str, namespace: str | None = None) -> dict[str, Any]:
        return await self._call("GET", resource.path(namespace, name))

    async def list(self, resource: ResourceRef, namespace: str | None = None,
                   label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        return (await self._call("GET", resource.path(namespace), params=params)).get("items", [])

    async def list_for_watch(self, resource: ResourceRef, selector: Selector) -> tuple[Objects, str]:
        """The objects ``selector`` picks (in every namespace), and the list's resourceVersion to watch from."""
        listed = await self._call("GET", resource.path(), params=selector.params())
        return listed.get("items", []), str(listed.get("metadata", {}).get("resourceVersion", ""))

    async def watch(self, resource: ResourceRef, selector: Selector, resource_version: str,
                    timeout_seconds: int = 300) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) events after ``resource_version`` until the server ends the watch.

        A 410 Gone (the version is too old) raises ``KubeApiError``: list again, then watch from there.
        """
        params = {**selector.params(), "watch": "true", "resourceVersion": resource_version,
                  "timeoutSeconds": str(timeout_seconds)}
        limit = aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30)
        async with self._session.get(resource.path(), params=params, timeout=limit) as response:
            if response.status >= 400:
                payload = await response.json(content_type=None)
                raise KubeApiError(response.status, payload.get("reason", ""), payload.get("message", ""))
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise KubeApiError(int(status.get("code", 500)), status.get("reason", ""),
                                       status.get("message", ""))
                yield event["type"], event["object"]

    async def create(self, resource: ResourceRef, body: dict[str, Any],
                     namespace: str | None = None) -> dict[str, Any]:
        return await self._call("POST", resource.path(namespace), body=body)

    async def create_subresource(self, resource: ResourceRef, name: str, subresource: str, body: dict[str, Any],
                                 namespace: str | None = None) -> dict[str, Any]:
        """POST to an object's subresource (a ServiceAccount's ``token``: a TokenRequest)."""
        return await self._call("POST", resource.path(namespace, name, subresource), body=body)

    async def patch(self, resource: ResourceRef, name: str, patch: dict[str, Any],
                    namespace: str | None = None, subresource: str = "") -> dict[str, Any]:
        return await self._call("PATCH", resource.path(namespace, name, subresource), body=patch,
                                content_type="application/merge-patch+json")

    async def delete(self, resource: ResourceRef, name: str, namespace: str | None = None,
                     uid: str | None = None, resource_version: str | None = None,
                     propagation: str | None = None) -> dict[str, Any]:
        """Delete ``name``; with ``uid``, only that object, with ``resource_version`` only as it was then (409
        Conflict otherwise); ``propagation`` is the propagationPolicy (``Foreground``: the object stays, being
        deleted, until its dependents are gone)."""
        preconditions = {key: value for key, value in (("uid", uid), ("resourceVersion", resource_version)) if value}
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if preconditions:
            options["preconditions"] = preconditions
        if propagation:
            options["propagationPolicy"] = propagation
        body = options if len(options) > 2 else None
        return await self._call("DELETE", resource.path(namespace, name), body=body)
