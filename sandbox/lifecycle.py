"""``rackmesh sandbox up`` and ``down``: a small real-looking cluster on loopback.

``up`` starts, in order: ZooKeeper, the Kubernetes API (kmock + our fidelity layer), the
cluster's initial objects, one agent process per node (each on its own 127.x address), and
the operator; it returns once all are ready. Everything it starts is written to
``DIR/sandbox.json`` as it goes, so ``down`` (or a failed ``up``) stops exactly that.
"""

import asyncio
import dataclasses
import json
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from rackmesh.config import ENV_PREFIX, Settings
from rackmesh.kube_client import Credentials, KubeClient
from rackmesh_sandbox import processes
from rackmesh_sandbox.cluster_seed import seed
from rackmesh_sandbox.images import write_images
from rackmesh_sandbox.kube_api.kubeconfig import write_kubeconfig
from rackmesh_sandbox.ports import free_port, port_free_on
from rackmesh_sandbox.processes import ProcessRecord
from rackmesh_sandbox.topology import Topology
from rackmesh_sandbox.zookeeper import ZooKeeperEnsemble, stop_from_state

CRD_DIR = Path(__file__).resolve().parents[1] / "crds"
STATE_FILE = "sandbox.json"
TOKEN_FILE = "agent-token"
TOKEN_VARIABLE = ENV_PREFIX + "AGENT_TOKEN"
READY_TIMEOUT = 60.0
# Short sessions so a killed agent's entries vanish quickly; a real cluster keeps the default.
SANDBOX_SETTINGS = {"zk_session_timeout": 4.0, "operator_peering": "", "record_sweep_interval": 2.0}


class SandboxError(RuntimeError):
    pass


@dataclasses.dataclass
class SandboxState:
    state_dir: Path
    zookeeper: dict[str, Any] | None = None
    api_url: str = ""
    processes: list[ProcessRecord] = dataclasses.field(default_factory=list)
    agents: dict[str, str] = dataclasses.field(default_factory=dict)  # node -> endpoint

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def zk_hosts(self) -> str:
        return self.zookeeper["connect_string"] if self.zookeeper else ""

    def save(self) -> None:
        document = {"zookeeper": self.zookeeper, "api_url": self.api_url, "agents": self.agents,
                    "processes": [record.to_json() for record in self.processes]}
        temporary = self.state_dir / f".{STATE_FILE}.tmp"
        temporary.write_text(json.dumps(document, indent=2))
        temporary.replace(self.state_dir / STATE_FILE)

    @classmethod
    def load(cls, state_dir: Path) -> "SandboxState | None":
        path = state_dir / STATE_FILE
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls(state_dir, raw["zookeeper"], raw["api_url"],
                   [ProcessRecord.from_json(record) for record in raw["processes"]], raw["agents"])


def agent_address(index: int) -> str:
    """Each agent gets its own loopback address: 127.0.1.1, 127.0.1.2, ... (254 per /24)."""
    return f"127.0.{1 + index // 254}.{1 + index % 254}"


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
        _start_zookeeper(state, say, zookeeper_servers)
        _start_api(state, say)
        addresses = [agent_address(index) for index in range(len(topology.nodes))]
        settings = Settings.from_env(zk_hosts=state.zk_hosts, agent_token=secrets.token_urlsafe(24),
                                     agent_port=port_free_on(addresses), **SANDBOX_SETTINGS)
        asyncio.run(_seed(state, topology, settings))
        say(f"cluster seeded: {len(topology.nodes)} nodes, u1 instancetypes")
        _start_agents(state, topology, settings, say)
        _start_kubevirt_simulation(state, say)
        _start_operator(state, settings, say)
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


def _start_zookeeper(state: SandboxState, say: Callable[[str], None], servers: int) -> None:
    ensemble = ZooKeeperEnsemble(state.state_dir / "zookeeper", size=servers, detached=True)
    try:
        ensemble.start()
    finally:
        state.zookeeper = ensemble.state()
        state.save()
    say(f"zookeeper ready at {state.zk_hosts} ({servers} server{'s' * (servers > 1)})")


def _start_api(state: SandboxState, say: Callable[[str], None]) -> None:
    ready_file = state.state_dir / "kube-api.json"
    ready_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "rackmesh_sandbox.kube_api", "--host", "127.0.0.1", "--port", "0",
            "--ready-file", str(ready_file)]
    for crd in sorted(CRD_DIR.glob("*.yaml")):
        argv += ["--crd", str(crd)]
    record = _spawn(state, "kube-api", argv, {})
    _wait_for(lambda: ready_file.exists(), f"the Kubernetes API (log: {record.log})", record)
    state.api_url = json.loads(ready_file.read_text())["url"]
    write_kubeconfig(state.kubeconfig, state.api_url)
    state.save()
    say(f"kubernetes API ready at {state.api_url}")


async def _seed(state: SandboxState, topology: Topology, settings: Settings) -> None:
    async with KubeClient(Credentials.from_kubeconfig(state.kubeconfig)) as kube:
        await seed(kube, topology, settings.rack_label)


def _start_agents(state: SandboxState, topology: Topology, settings: Settings,
                  say: Callable[[str], None]) -> None:
    token_file = state.state_dir / TOKEN_FILE
    token_file.write_text(settings.agent_token)
    token_file.chmod(0o600)
    env = {**settings.to_env(), "KUBECONFIG": str(state.kubeconfig)}
    image_dirs = write_images(topology, state.state_dir / "images")
    records = []
    for index, node in enumerate(topology.nodes):
        address = agent_address(index)
        agent_settings = dataclasses.replace(settings, agent_bind=address, agent_advertise=address,
                                             image_dir=str(image_dirs[node.name]))
        agent_env = {**env, **agent_settings.to_env()}
        records.append(_spawn(state, f"agent-{node.name}",
                              [sys.executable, "-m", "rackmesh", "agent", "--node-name", node.name], agent_env))
        state.agents[node.name] = f"http://{address}:{settings.agent_port}"
    state.save()
    for record, (node, endpoint) in zip(records, state.agents.items(), strict=True):
        _wait_for(lambda endpoint=endpoint, node=node: _answers(f"{endpoint}/healthz", node),
                  f"agent {node} (log: {record.log})", record)
    say(f"{len(records)} agents ready and joined their racks")


def _start_kubevirt_simulation(state: SandboxState, say: Callable[[str], None]) -> None:
    """No KubeVirt runs here: a simulation marks VMs Running once their image URL answers (see its module)."""
    ready_file = state.state_dir / "kubevirt-simulation.json"
    ready_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "rackmesh_sandbox.kubevirt_simulation", "--kubeconfig", str(state.kubeconfig),
            "--ready-file", str(ready_file)]
    record = _spawn(state, "kubevirt-simulation", argv, {})
    _wait_for(ready_file.exists, f"the KubeVirt simulation (log: {record.log})", record)
    say("kubevirt simulation ready (simulated: a VM turns Running once its image URL answers)")


def _start_operator(state: SandboxState, settings: Settings, say: Callable[[str], None]) -> None:
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    env = {**dataclasses.replace(settings, operator_liveness=liveness).to_env(),
           "KUBECONFIG": str(state.kubeconfig)}
    record = _spawn(state, "operator", [sys.executable, "-m", "rackmesh", "operator"], env)
    _wait_for(lambda: _answers(liveness), f"the operator (log: {record.log})", record)
    say("operator ready")


def _spawn(state: SandboxState, name: str, argv: list[str], env: dict[str, str]) -> ProcessRecord:
    record = processes.spawn(name, argv, _public(env), state.state_dir / "logs", _secrets(state, env))
    state.processes.append(record)
    state.save()
    return record


def _public(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the token's value left out (its name stays: it says the process needs it)."""
    return {key: "" if key == TOKEN_VARIABLE else value for key, value in env.items()}


def _secrets(state: SandboxState, env: dict[str, str]) -> dict[str, str]:
    """The agent token, from its own file (0600), for the processes that use it; never in sandbox.json."""
    token_file = state.state_dir / TOKEN_FILE
    return {TOKEN_VARIABLE: token_file.read_text()} if TOKEN_VARIABLE in env and token_file.exists() else {}


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
    record = processes.spawn(name, old.argv, old.env, state.state_dir / "logs", _secrets(state, old.env))
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


def _answers(url: str, node: str | None = None) -> bool:
    """200 from ``url`` (and, for an agent, from the agent of ``node``, not a stranger on that address)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return response.status == 200 and (node is None or json.load(response).get("node") == node)
    except (urllib.error.URLError, OSError, ValueError):
        return False
