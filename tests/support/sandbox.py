"""A sandbox started and stopped through the real CLI, as a user would (shared by test tiers)."""

import contextlib
import datetime
import functools
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient
from prometheus_client.parser import text_string_to_metric_families

from rackmesh.identity.authority import CertificateAuthority
from rackmesh.identity.credentials import Credentials, files_in
from rackmesh.identity.names import Identity, Role
from rackmesh.metrics import SCRAPER
from rackmesh.zk_acl import rackmesh_acl
from rackmesh_sandbox.lifecycle import CA_DIR, SCRAPER_IDENTITY, SandboxState

OPERATOR = Identity(Role.OPERATOR)


class Sandbox:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @property
    def state(self) -> SandboxState:
        state = SandboxState.load(self.state_dir)
        assert state is not None, f"no sandbox state in {self.state_dir}"
        return state

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["kubectl", "--kubeconfig", str(self.state_dir / "kubeconfig"), *args], stdin=stdin, check=check)

    def rackmesh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([sys.executable, "-m", "rackmesh", *args], check=check)

    def mesh_status(self) -> dict[str, Any]:
        """``rackmesh status -o json``: racks (leaders, members with their capacity) and requests."""
        return json.loads(self.rackmesh("status", "--state-dir", str(self.state_dir), "-o", "json").stdout)

    def status(self) -> list[dict[str, Any]]:
        """Per role and rack with members: its leader and its members' names (from ``mesh_status``)."""
        racks = self.mesh_status()["racks"]
        return [{"role": role, "rack": rack["rack"], "leader": rack["leaders"][role],
                 "members": [member["node"] for member in rack["members"] if role in member["roles"]]}
                for role in ("compute", "storage") for rack in racks if role in rack["leaders"]]

    def pid(self, name: str) -> int:
        """The pid of the sandbox's process ``name`` (agent-<node>, operator, kube-api, ...)."""
        return next(record.pid for record in self.state.processes if record.name == name)

    def kill(self, name: str) -> int:
        """kill -9 the sandbox's process ``name``; returns its pid."""
        pid = self.pid(name)
        os.kill(pid, signal.SIGKILL)
        return pid

    def restart(self, name: str) -> None:
        """Start a killed process again, as `rackmesh sandbox restart` does (waits until it is gone first)."""
        record = next(record for record in self.state.processes if record.name == name)
        deadline = time.monotonic() + 10
        while record.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.rackmesh("sandbox", "restart", "--state-dir", str(self.state_dir), name)

    def kubectl_as(self, component: str, *args: str, stdin: str | None = None,
                   check: bool = True) -> subprocess.CompletedProcess[str]:
        """kubectl with ``component``'s own ServiceAccount token (``operator``, ``agent-<node>``)."""
        kubeconfig = self.state.identity_dir(component) / "kubeconfig"
        return run(["kubectl", "--kubeconfig", str(kubeconfig), *args], stdin=stdin, check=check)

    @functools.cache  # noqa: B019 (a Sandbox lives for the session)
    def credentials(self, identity: Identity) -> Credentials:
        """A certificate for ``identity`` from the sandbox's CA (as a test, we hold the CA)."""
        authority = CertificateAuthority.load(self.state_dir / CA_DIR)
        return Credentials.issued(authority, identity, Path(tempfile.mkdtemp(prefix="identity-")),
                                  datetime.timedelta(hours=1), [])

    def tls(self, identity: Identity | None = OPERATOR) -> ssl.SSLContext:
        """A client context trusting the sandbox's CA, presenting ``identity``'s certificate (None: none)."""
        if identity is None:
            return ssl.create_default_context(cafile=self.state.ca_file)
        return self.credentials(identity).client_context()

    def zookeeper_client(self, identity: Identity = OPERATOR) -> KazooClient:
        """A ZooKeeper client (not started) presenting ``identity``'s certificate (the only way in)."""
        files = self.credentials(identity).files
        return KazooClient(hosts=self.state.zk_hosts, use_ssl=True, ca=str(files.ca_file),
                           certfile=str(files.cert_file), keyfile=str(files.key_file), check_hostname=True,
                           default_acl=rackmesh_acl())

    @contextlib.contextmanager
    def zookeeper(self, identity: Identity = OPERATOR) -> Iterator[KazooClient]:
        """A started ``zookeeper_client``, stopped on leaving."""
        client = self.zookeeper_client(identity)
        client.start(timeout=10)
        try:
            yield client
        finally:
            client.stop()
            client.close()

    def scraper_tls(self) -> ssl.SSLContext:
        """What a user (or Prometheus) scrapes with: the scraper's certificate ``up`` left in the state dir."""
        files = files_in(self.state.identity_dir(SCRAPER_IDENTITY))
        context = ssl.create_default_context(cafile=files.ca_file)
        context.load_cert_chain(files.cert_file, files.key_file)
        return context

    def get_metrics(self, component: str, identity: Identity | None = SCRAPER,
                    timeout: float = 5.0) -> tuple[int, str]:
        """``GET /metrics`` of ``component`` (``operator``, ``agent-<node>``) as ``identity`` (the scraper: with the
        state dir's certificate; None: no certificate), checking the server's certificate names it."""
        target = self.state.metrics[component]
        context = self.scraper_tls() if identity == SCRAPER else self.tls(identity)
        return https_get(target["url"], context, target["serverName"], timeout)

    def scrape(self, component: str) -> "Scrape":
        status, text = self.get_metrics(component)
        assert status == 200, f"{component}: {status} {text}"
        return Scrape(text)

    def view(self, node: str, identity: Identity | None = OPERATOR, timeout: float = 5.0) -> dict[str, Any]:
        """``GET /v1/view`` of ``node``'s agent, over TLS as ``identity`` (the agent's cert names its IP)."""
        with urllib.request.urlopen(f"{self.state.agents[node]}/v1/view", timeout=timeout,
                                    context=self.tls(identity)) as response:
            return json.load(response)


class Scrape:
    """One scrape's samples, in Prometheus' text format."""

    def __init__(self, text: str) -> None:
        self.samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples that have ``labels`` (0 when none has)."""
        return sum(sample.value for sample in self.samples if sample.name == name
                   and all(sample.labels.get(key) == value for key, value in labels.items()))

    def labelled(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """``name``'s samples by their labels."""
        return {tuple(sorted(sample.labels.items())): sample.value for sample in self.samples if sample.name == name}


def https_get(url: str, context: ssl.SSLContext, server_name: str, timeout: float) -> tuple[int, str]:
    """GET ``url`` checking that the server's certificate names ``server_name`` (the operator's names no address)."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        tls.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(tls)
        response.begin()
        return response.status, response.read().decode()


def run(argv: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120, env=os.environ)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def start(tmp_path: Path, topology: dict[str, Any], zookeeper_servers: int = 1) -> Sandbox:
    topology_file = tmp_path / "topology.yaml"
    topology_file.write_text(json.dumps(topology))
    sandbox = Sandbox(tmp_path / "state")
    sandbox.rackmesh("sandbox", "up", "--topology", str(topology_file), "--state-dir", str(sandbox.state_dir),
                     "--zookeeper-servers", str(zookeeper_servers))
    return sandbox
