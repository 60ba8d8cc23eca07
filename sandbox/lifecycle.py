"""``rackmesh sandbox up`` and ``down``: a small real-looking cluster on loopback.

``up`` makes, in order: rackmesh's CA; ZooKeeper over mutual TLS; the Kubernetes API (kmock + our
fidelity layer) authenticating tokens and authorizing with the RBAC and admission policy of
``manifests/``; the cluster's initial objects and a ServiceAccount token per component (each agent's
bound to a Pod object on its node, as the DaemonSet's pod would be); the operator (and its signer); one
agent process per node (each on its own 127.x address), which gets its certificate from the signer; and
the KubeVirt simulation.
It returns once all are ready. Everything it starts is written to ``DIR/sandbox.json`` as it goes, so
``down`` (or a failed ``up``) stops exactly that.

Secrets stay in files of their own (0600) under ``DIR/identities/<component>/``, never in sandbox.json.
Every agent and the operator serve their metrics; ``DIR/identities/metrics/`` holds the scraper's certificate
that may read them, and sandbox.json where each one is (``metrics``).
"""

import asyncio
import dataclasses
import datetime
import json
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from rackmesh.config import Settings
from rackmesh.identity.authority import CA_CERT_FILE, CertificateAuthority
from rackmesh.identity.credentials import Credentials as TlsCredentials
from rackmesh.identity.files import write_private
from rackmesh.identity.names import Identity, Role
from rackmesh.kube_client import Credentials, KubeClient
from rackmesh.metrics import PATH as METRICS_PATH
from rackmesh.metrics import SCRAPER
from rackmesh_sandbox import processes
from rackmesh_sandbox.cluster_seed import agent_pod, apply_manifest_security, seed, service_account_token
from rackmesh_sandbox.images import write_images
from rackmesh_sandbox.kube_api import owner_references
from rackmesh_sandbox.kube_api.kubeconfig import write_kubeconfig
from rackmesh_sandbox.ports import free_port, port_free_on
from rackmesh_sandbox.processes import ProcessRecord
from rackmesh_sandbox.topology import Topology
from rackmesh_sandbox.zookeeper import ZooKeeperEnsemble, issue_server_tls, stop_from_state

CRD_DIR = Path(__file__).resolve().parents[1] / "crds"
STATE_FILE = "sandbox.json"
CA_DIR = "ca"  # the CA's key and certificate: the operator's (a Secret in a cluster)
TRUST_DIR = "trust"  # the CA's certificate alone: everyone else's (a ConfigMap in a cluster)
IDENTITIES_DIR = "identities"
SCRAPER_IDENTITY = "metrics"  # DIR/identities/metrics: the scraper's certificate (tls.crt, tls.key, ca.crt)
READY_TIMEOUT = 60.0
# Short sessions so a killed agent's entries vanish quickly, and short certificates so renewal happens
# while one watches; a real cluster keeps the defaults.
SANDBOX_SETTINGS = {"zk_session_timeout": 4.0, "operator_peering": "", "record_sweep_interval": 2.0,
                    "cert_lifetime": 600.0}
# The sandbox lives for hours at most; kubelet would rotate a real pod's token long before it expired.
TOKEN_SECONDS = 24 * 3600


OPERATOR_ACCOUNT = ("rackmesh-system", "rackmesh-operator")
AGENT_ACCOUNT = ("rackmesh-system", "rackmesh-agent")


class SandboxError(RuntimeError):
    pass


@dataclasses.dataclass
class SandboxState:
    state_dir: Path
    zookeeper: dict[str, Any] | None = None
    api_url: str = ""
    api_ca: str = ""  # the API's serving CA (PEM): it serves HTTPS
    processes: list[ProcessRecord] = dataclasses.field(default_factory=list)
    agents: dict[str, str] = dataclasses.field(default_factory=dict)  # node -> endpoint
    # process name (operator, agent-<node>) -> {"url": its /metrics, "serverName": the name its certificate has}
    metrics: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        """The administrator's (kubectl's): a system:masters token."""
        return self.state_dir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / TRUST_DIR / CA_CERT_FILE

    def identity_dir(self, component: str) -> Path:
        """Where ``component`` (``operator``, ``agent-<node>``) keeps its token, kubeconfig and certificate."""
        return self.state_dir / IDENTITIES_DIR / component

    @property
    def zk_hosts(self) -> str:
        return self.zookeeper["connect_string"] if self.zookeeper else ""

    def save(self) -> None:
        document = {"zookeeper": self.zookeeper, "api_url": self.api_url, "api_ca": self.api_ca, "agents": self.agents,
                    "metrics": self.metrics, "processes": [record.to_json() for record in self.processes]}
        temporary = self.state_dir / f".{STATE_FILE}.tmp"
        temporary.write_text(json.dumps(document, indent=2))
        temporary.replace(self.state_dir / STATE_FILE)

    @classmethod
    def load(cls, state_dir: Path) -> "SandboxState | None":
        path = state_dir / STATE_FILE
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls(state_dir, raw["zookeeper"], raw["api_url"], raw.get("api_ca", ""),
                   [ProcessRecord.from_json(record) for record in raw["processes"]], raw["agents"],
                   raw.get("metrics", {}))


def agent_address(index: int) -> str:
    """Each agent gets its own loopback address: 127.0.1.1, 127.0.1.2, ... (254 per /24). It plays its
    node's address (the Node's InternalIP), where a cluster's agent is published by a hostPort."""
    return f"127.0.{1 + index // 254}.{1 + index % 254}"


def pod_address(index: int) -> str:
    """The pod-network address of agent ``index``'s Pod object: 10.244.0.1, ... Nothing listens there."""
    return f"10.244.{index // 254}.{1 + index % 254}"


def up(topology_path: Path, state_dir: Path, progress: TextIO = sys.stderr, zookeeper_servers: int = 1) -> SandboxState:
    topology = Topology.load(topology_path)  # a bad file stops us before anything starts
    state_dir = state_dir.absolute()
    state_dir.mkdir(parents=True, exist_ok=True)
    previous = SandboxState.load(state_dir)
    if previous is not None and any(record.alive() for record in previous.processes):
        raise SandboxError(f"a sandbox is already running in {state_dir}; run `rackmesh sandbox down` first")
    state = SandboxState(state_dir)
    say = _reporter(progress)
    try:
        authority = _create_ca(state, say)
        _start_zookeeper(state, say, zookeeper_servers, authority)
        _start_api(state, say)
        addresses = [agent_address(index) for index in range(len(topology.nodes))]
        signer_port = free_port()
        agent_port = port_free_on(addresses)
        # The agents' metrics on their own addresses, the operator's on the signer's.
        metrics_port = port_free_on([*addresses, "127.0.0.1"], avoid={agent_port, signer_port})
        settings = Settings.from_env(zk_hosts=state.zk_hosts, agent_port=agent_port, metrics_port=metrics_port,
                                     ca_dir=str(state.ca_file.parent), signer_bind="127.0.0.1",
                                     signer_port=signer_port, signer_url=f"https://127.0.0.1:{signer_port}",
                                     **SANDBOX_SETTINGS)
        _issue_scraper(state, authority)
        asyncio.run(_seed(state, topology, settings, dict(zip((n.name for n in topology.nodes), addresses,
                                                             strict=True))))
        say(f"cluster seeded: {len(topology.nodes)} nodes, u1 instancetypes, the manifests' RBAC and admission "
            "policy, a ServiceAccount token per component")
        _start_operator(state, settings, say)
        _start_agents(state, topology, settings, say)
        _start_kubevirt_simulation(state, say)
    except BaseException:
        say("start-up failed; stopping what was started")
        _teardown(state)
        raise
    say(f"sandbox ready; kubeconfig: {state.kubeconfig}")
    return state


def down(state_dir: Path, progress: TextIO = sys.stderr) -> None:
    state = SandboxState.load(state_dir.absolute())
    if state is None:
        progress.write(f"no sandbox state in {state_dir}; nothing to stop\n")
        return
    _teardown(state)
    progress.write(f"sandbox in {state_dir} stopped\n")


def _teardown(state: SandboxState) -> None:
    # Operator and agents first, so nothing reacts to the API or ZooKeeper going away.
    processes.stop(list(reversed(state.processes)))
    if state.zookeeper is not None:
        stop_from_state(state.zookeeper)
    (state.state_dir / STATE_FILE).unlink(missing_ok=True)


def _reporter(progress: TextIO) -> Callable[[str], None]:
    started = time.monotonic()

    def say(message: str) -> None:
        progress.write(f"[{time.monotonic() - started:5.1f}s] {message}\n")
        progress.flush()

    return say


def _create_ca(state: SandboxState, say: Callable[[str], None]) -> CertificateAuthority:
    authority = CertificateAuthority.create()
    authority.save(state.state_dir / CA_DIR)
    state.ca_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(state.state_dir / CA_DIR / CA_CERT_FILE, state.ca_file)
    say(f"rackmesh CA created in {state.state_dir / CA_DIR}")
    return authority


def _issue_scraper(state: SandboxState, authority: CertificateAuthority) -> None:
    """The certificate that may read every component's metrics, as Prometheus would present it."""
    TlsCredentials.issued(authority, SCRAPER, state.identity_dir(SCRAPER_IDENTITY),
                          datetime.timedelta(seconds=TOKEN_SECONDS), [])


def _metrics_at(host: str, port: int, identity: Identity) -> dict[str, str]:
    return {"url": f"https://{host}:{port}{METRICS_PATH}", "serverName": identity.dns_name}


def _start_zookeeper(state: SandboxState, say: Callable[[str], None], servers: int,
                     authority: CertificateAuthority) -> None:
    directory = state.state_dir / "zookeeper"
    tls = issue_server_tls(authority, directory / "tls", lifetime=datetime.timedelta(days=30))
    ensemble = ZooKeeperEnsemble(directory, size=servers, detached=True, tls=tls)
    try:
        ensemble.start()
    finally:
        state.zookeeper = ensemble.state()
        state.save()
    say(f"zookeeper ready at {state.zk_hosts} ({servers} server{'s' * (servers > 1)}, mutual TLS, x509 ACLs)")


def _start_api(state: SandboxState, say: Callable[[str], None]) -> None:
    ready_file = state.state_dir / "kube-api.json"
    ready_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "rackmesh_sandbox.kube_api", "--host", "127.0.0.1", "--port", "0",
            "--ready-file", str(ready_file), "--auth", "--enable-admission-plugins", owner_references.NAME,
            "--service-account-key-file", str(state.identity_dir("kube-api") / "service-account.key")]
    for crd in sorted(CRD_DIR.glob("*.yaml")):
        argv += ["--crd", str(crd)]
    record = _spawn(state, "kube-api", argv, {})
    _wait_for(lambda: ready_file.exists(), f"the Kubernetes API (log: {record.log})", record)
    ready = json.loads(ready_file.read_text())
    state.api_url, state.api_ca = ready["url"], ready["ca"]
    write_kubeconfig(state.kubeconfig, state.api_url, ca_pem=state.api_ca)
    state.save()
    say(f"kubernetes API ready at {state.api_url} (tokens, RBAC, ValidatingAdmissionPolicies, "
        "OwnerReferencesPermissionEnforcement)")


async def _seed(state: SandboxState, topology: Topology, settings: Settings, addresses: dict[str, str]) -> None:
    """The cluster's objects, then a kubeconfig per component with its own ServiceAccount token: the
    operator's, and each agent's bound to its pod on its node (for the API, and for the signer: audience
    rackmesh)."""
    async with KubeClient(Credentials.from_kubeconfig(state.kubeconfig)) as kube:
        await seed(kube, topology, settings.rack_label, addresses)
        await apply_manifest_security(kube)
        operator = await service_account_token(kube, OPERATOR_ACCOUNT, TOKEN_SECONDS)
        _write_identity(state, "operator", operator)
        for index, node in enumerate(topology.nodes):
            pod = await agent_pod(kube, AGENT_ACCOUNT, node.name, addresses[node.name], pod_address(index))
            api_token = await service_account_token(kube, AGENT_ACCOUNT, TOKEN_SECONDS, pod=pod)
            signer_token = await service_account_token(kube, AGENT_ACCOUNT, TOKEN_SECONDS, pod=pod,
                                                       audience=settings.token_audience)
            directory = _write_identity(state, f"agent-{node.name}", api_token)
            write_private(directory / "token", signer_token.encode())


def _write_identity(state: SandboxState, component: str, token: str) -> Path:
    directory = state.identity_dir(component)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_kubeconfig(directory / "kubeconfig", state.api_url, token=token, ca_pem=state.api_ca)
    (directory / "kubeconfig").chmod(0o600)
    return directory


def _component_env(state: SandboxState, settings: Settings, component: str) -> dict[str, str]:
    directory = state.identity_dir(component)
    own = dataclasses.replace(settings, identity_dir=str(directory / "tls"), token_file=str(directory / "token"))
    return {**own.to_env(), "KUBECONFIG": str(directory / "kubeconfig")}


def _start_agents(state: SandboxState, topology: Topology, settings: Settings,
                  say: Callable[[str], None]) -> None:
    image_dirs = write_images(topology, state.state_dir / "images")
    records = []
    for index, node in enumerate(topology.nodes):
        address = agent_address(index)
        agent_settings = dataclasses.replace(settings, agent_bind=address, agent_advertise=address,
                                             image_dir=str(image_dirs[node.name]))
        env = _component_env(state, agent_settings, f"agent-{node.name}")
        records.append(_spawn(state, f"agent-{node.name}",
                              [sys.executable, "-m", "rackmesh", "agent", "--node-name", node.name], env))
        state.agents[node.name] = f"https://{address}:{settings.agent_port}"
        state.metrics[f"agent-{node.name}"] = _metrics_at(address, settings.metrics_port, Identity.agent(node.name))
    state.save()
    trust = ssl.create_default_context(cafile=state.ca_file)
    for record, (node, endpoint) in zip(records, state.agents.items(), strict=True):
        _wait_for(lambda endpoint=endpoint, node=node: _answers(f"{endpoint}/healthz", node, trust),
                  f"agent {node} (log: {record.log})", record)
    say(f"{len(records)} agents ready (each with its own certificate) and joined their racks")


def _start_kubevirt_simulation(state: SandboxState, say: Callable[[str], None]) -> None:
    """No KubeVirt runs here: a simulation marks VMs Running once their image URL answers (see its module)."""
    ready_file = state.state_dir / "kubevirt-simulation.json"
    ready_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "rackmesh_sandbox.kubevirt_simulation", "--kubeconfig", str(state.kubeconfig),
            "--ready-file", str(ready_file)]
    record = _spawn(state, "kubevirt-simulation", argv, {})
    _wait_for(ready_file.exists, f"the KubeVirt simulation (log: {record.log})", record)
    say("kubevirt simulation ready (simulated KubeVirt and CDI: a VM turns Running once its DataVolumes import)")


def _start_operator(state: SandboxState, settings: Settings, say: Callable[[str], None]) -> None:
    port = port_free_on(["127.0.0.1"], avoid={settings.signer_port, settings.metrics_port})
    liveness = f"http://127.0.0.1:{port}/healthz"
    operator = dataclasses.replace(settings, operator_liveness=liveness, ca_dir=str(state.state_dir / CA_DIR))
    record = _spawn(state, "operator", [sys.executable, "-m", "rackmesh", "operator"],
                    _component_env(state, operator, "operator"))
    _wait_for(lambda: _answers(liveness), f"the operator (log: {record.log})", record)
    state.metrics["operator"] = _metrics_at(settings.signer_bind, settings.metrics_port, Identity(Role.OPERATOR))
    state.save()
    say(f"operator ready (signer at {settings.signer_url})")


def _spawn(state: SandboxState, name: str, argv: list[str], env: dict[str, str]) -> ProcessRecord:
    record = processes.spawn(name, argv, env, state.state_dir / "logs")
    state.processes.append(record)
    state.save()
    return record


def restart(state_dir: Path, name: str, progress: TextIO = sys.stderr) -> ProcessRecord:
    """Start again a process of the sandbox that has died (a fault test killed it): same command, same
    environment, same log. Refuses one that is still running."""
    state = SandboxState.load(state_dir.absolute())
    if state is None:
        raise SandboxError(f"no sandbox state in {state_dir}")
    known = {record.name: index for index, record in enumerate(state.processes)}
    if name not in known:
        raise SandboxError(f"no process {name!r} in this sandbox; it has: {', '.join(sorted(known))}")
    old = state.processes[known[name]]
    if old.alive():
        raise SandboxError(f"{name} (pid {old.pid}) is still running")
    record = processes.spawn(name, old.argv, old.env, state.state_dir / "logs")
    state.processes[known[name]] = record
    state.save()
    progress.write(f"{name} restarted (pid {record.pid})\n")
    return record


def _wait_for(ready: Callable[[], bool], what: str, record: ProcessRecord) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready():
        if not record.alive():
            raise SandboxError(f"{what} exited during start-up")
        if time.monotonic() > deadline:
            raise SandboxError(f"{what} not ready after {READY_TIMEOUT:.0f}s")
        time.sleep(0.1)


def _answers(url: str, node: str | None = None, trust: ssl.SSLContext | None = None) -> bool:
    """200 from ``url`` (and, for an agent, from the agent of ``node``, not a stranger on that address)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0, context=trust) as response:
            return response.status == 200 and (node is None or json.load(response).get("node") == node)
    except (urllib.error.URLError, OSError, ValueError):
        return False
