"""Serving the emulator over HTTP, in-process (``async with KubeApiServer(...)``) or as a process.

The HTTP server is aiohttp's low-level server around the kmock handler. kmock's own ``Server`` is
not used: it also patches aiohttp's DNS resolution process-wide (and must be exited in LIFO order),
which a product running in the same process as the API must not be exposed to.

Run kopf in its own thread or process rather than in the server's event loop: on exit, kopf waits
for and then cancels every task of the loop it runs in, the server's connection handlers included.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

import aiohttp.web
import yaml

from rackmesh_sandbox.kube_api.authn import ADMIN_TOKEN, AuthConfig
from rackmesh_sandbox.kube_api.emulator import KubeApiEmulator
from rackmesh_sandbox.kube_api.kubeconfig import write_kubeconfig
from rackmesh_sandbox.kube_api.kubevirt import kubevirt_crds
from rackmesh_sandbox.kube_api.metrics import ApiMetrics
from rackmesh_sandbox.kube_api.tls import ServingCertificate

PathLike = str | os.PathLike[str]


def load_yaml_documents(path: PathLike) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


class KubeApiServer:
    """A local Kubernetes API on ``host:port`` (port 0: any free one); see ``url`` once entered."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        crd_paths: Iterable[PathLike] = (),
        kubevirt: bool = True,
        request_log_limit: int | None = None,
        auth: AuthConfig | None = None,
    ) -> None:
        """``auth``: authenticate requests, authorize them with RBAC and run ValidatingAdmissionPolicies, over
        HTTPS (kubectl sends tokens over TLS only; ``tls`` has the CA); None: plain HTTP, every request served."""
        self.host = host
        self.port = port
        self.crd_paths = [pathlib.Path(p) for p in crd_paths]
        self.kubevirt = kubevirt
        self.emulator = KubeApiEmulator(request_log_limit=request_log_limit, auth=auth)
        self._runner: aiohttp.web.ServerRunner | None = None
        self.tls = ServingCertificate(host) if auth is not None else None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def metrics(self) -> ApiMetrics:
        """The request counts ``GET /metrics`` serves, for in-process assertions (``metrics.requests(...)``)."""
        return self.emulator.metrics

    async def __aenter__(self) -> Self:
        if self.kubevirt:
            for crd in kubevirt_crds():
                self.emulator.add_crd(crd)
        for path in self.crd_paths:
            for doc in load_yaml_documents(path):
                if doc.get("kind") == "CustomResourceDefinition":
                    self.emulator.add_crd(doc)
        await self.emulator.__aenter__()
        # Watches are closed by the emulator on exit, so shutdown never waits on open streams long.
        server = aiohttp.web.Server(self.emulator)
        self._runner = aiohttp.web.ServerRunner(server, shutdown_timeout=2.0)
        await self._runner.setup()
        ssl_context = self.tls.context() if self.tls is not None else None
        site = aiohttp.web.TCPSite(self._runner, self.host, self.port, reuse_address=True, ssl_context=ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the port actually bound (port 0 picks a free one)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is None:
            return  # already stopped (exiting twice is harmless)
        self.emulator.store.changes.close()
        runner, self._runner = self._runner, None
        await runner.cleanup()
        await self.emulator.__aexit__(exc_type, exc, tb)

    def write_kubeconfig(self, path: PathLike, namespace: str = "default", token: str = ADMIN_TOKEN) -> pathlib.Path:
        """A kubeconfig for this server (see :func:`.kubeconfig.write_kubeconfig`); the admin's token by default."""
        return write_kubeconfig(path, self.url, namespace, token, self.tls.ca_pem if self.tls else None)
