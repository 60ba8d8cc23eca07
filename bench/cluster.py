"""One simulated cluster for the bench: a real ZooKeeper, the sandbox API in its own process, the Nodes,
and the product's agents spread over worker processes (``worker.py``), one per core.

Counters are read from where they are kept: API calls from the API server's ``/metrics``
(``apiserver_request_total``), ZooKeeper reads and updates from the server's ``mntr``, messages and new
connections from each agent's peer client, CPU seconds from ``/proc`` per process.
"""

import asyncio
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from rackmesh import registry, zk_async
from rackmesh.config import Settings
from rackmesh.identity.authority import CertificateAuthority
from rackmesh.identity.credentials import Credentials as TlsCredentials
from rackmesh.identity.credentials import TlsFiles
from rackmesh.identity.names import Identity
from rackmesh.identity.names import Role as IdentityRole
from rackmesh.kube_client import NODES, Credentials, KubeClient
from rackmesh.labels import Role
from rackmesh.nodes import NodeState, node_state
from rackmesh.peer_client import PeerClient
from rackmesh.protocol import IMAGE_FILES, ImageHolder, image_file_name
from rackmesh.zk_layout import ZkLayout
from rackmesh_operator.services import Services
from rackmesh_sandbox.cluster_seed import seed
from rackmesh_sandbox.images import write_images
from rackmesh_sandbox.lifecycle import CRD_DIR, agent_address
from rackmesh_sandbox.ports import free_port, port_free_on
from rackmesh_sandbox.topology import Topology
from rackmesh_sandbox.zookeeper import ZooKeeperEnsemble, four_letter_word, issue_server_tls

RACK_SIZE = 25
IMAGE = "lob123-rhel-6.0"
# Big nodes, so that 10,000 VMs fit beside the measured requests even at 100 nodes (123 x u1.large each, their
# launcher pods' overhead counted).
NODE_CPU, NODE_MEMORY = "256", "1024Gi"
STORAGE_RACKS, STORAGE_PER_RACK = 2, 2
# What the simulation changes, and why (bench/README.md): 1,000 agents share 2 cores, so a session's pings
# can wait behind other agents' work; a longer session timeout keeps them alive. Logging at WARNING keeps
# 1,000 agents' per-step INFO lines, which separate machines would each write, off the shared cores.
# Each agent's metrics on a port the kernel picks (nobody scrapes the bench; two benches must not collide).
BENCH_SETTINGS: dict[str, Any] = {"zk_session_timeout": 30.0, "log_level": "WARNING", "metrics_port": 0}
CLK_TCK = os.sysconf("SC_CLK_TCK")

Say = Callable[[str], None]


def topology(compute_nodes: int) -> Topology:
    racks = (compute_nodes + RACK_SIZE - 1) // RACK_SIZE
    nodes = [{"name": f"c-{index // RACK_SIZE:03d}-{index % RACK_SIZE:02d}", "rack": f"rack-{index // RACK_SIZE:03d}",
              "roles": ["compute"], "cpu": NODE_CPU, "memory": NODE_MEMORY} for index in range(compute_nodes)]
    nodes += [{"name": f"s-{rack}-{index}", "rack": f"rack-{rack % racks:03d}", "roles": ["storage"],
               "images": [IMAGE]} for rack in range(STORAGE_RACKS) for index in range(STORAGE_PER_RACK)]
    return Topology.parse({"nodes": nodes})


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def zookeeper_operations(address: str, tls: TlsFiles | None) -> Counter[str]:
    """The server's count of read and update requests (pings and session traffic not included)."""
    host, port = address.rsplit(":", 1)
    raw = four_letter_word(host, int(port), "mntr", timeout=5, tls=tls)
    values = dict(line.split("\t", 1) for line in raw.splitlines() if "\t" in line)
    return Counter({"read": int(values["zk_cnt_readlatency"]), "update": int(values["zk_cnt_updatelatency"])})


@dataclasses.dataclass
class Snapshot:
    """Counters at one moment; subtract two to get what happened between them."""

    api: Counter[str]
    zookeeper: Counter[str]
    sent: Counter[str]
    connections: int
    sessions_lost: int
    cpu: dict[str, float]

    def since(self, before: "Snapshot") -> dict[str, Any]:
        return {"api": dict(self.api - before.api), "zookeeper": dict(self.zookeeper - before.zookeeper),
                "messages": dict(self.sent - before.sent), "newConnections": self.connections - before.connections,
                "sessionsLost": self.sessions_lost - before.sessions_lost,
                "cpuSeconds": {part: round(self.cpu[part] - before.cpu[part], 3) for part in self.cpu}}


class Cluster:
    def __init__(self, compute_nodes: int, workdir: Path, say: Say, workers: int = os.cpu_count() or 1) -> None:
        self.topology = topology(compute_nodes)
        self.workdir = workdir
        self.say = say
        self.workers = workers
        # The agents get their certificates from this CA directly (no operator runs: the driver hands orders).
        self.authority = CertificateAuthority.create()
        self.zookeeper = ZooKeeperEnsemble(workdir / "zookeeper", size=1, heap_mb=512,
                                           tls=issue_server_tls(self.authority, workdir / "zookeeper-tls"))
        addresses = [agent_address(index) for index in range(len(self.topology.nodes))]
        self.endpoints = {node.name: address for node, address in zip(self.topology.nodes, addresses, strict=True)}
        self.settings = Settings.from_env({}, agent_port=port_free_on(addresses), ca_dir=str(workdir / "ca"),
                                          **BENCH_SETTINGS)
        self._api: subprocess.Popen[bytes] | None = None
        self._workers: list[tuple[subprocess.Popen[bytes], int]] = []
        self.api_url = ""
        self.kube: KubeClient | None = None
        self.services: Services | None = None
        self.nodes: dict[str, NodeState] = {}
        self._http: aiohttp.ClientSession | None = None

    @property
    def compute(self) -> list[str]:
        return [node.name for node in self.topology.nodes if Role.COMPUTE in node.roles]

    def rack_of(self, node: str) -> str:
        return next(spec.rack for spec in self.topology.nodes if spec.name == node)

    def holders(self) -> list[ImageHolder]:
        """The storage nodes' copies of the image (what the central baseline is given)."""
        return [ImageHolder(node.name, node.rack, f"https://{self.endpoints[node.name]}:{self.settings.agent_port}"
                                                  f"{IMAGE_FILES}/{image_file_name(IMAGE)}")
                for node in self.topology.nodes if IMAGE in node.images]

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.authority.save(Path(self.settings.ca_dir))
        await asyncio.to_thread(self.zookeeper.start)
        self.settings = dataclasses.replace(self.settings, zk_hosts=self.zookeeper.connect_string)
        self._start_api()
        self.kube = KubeClient(Credentials(self.api_url, ssl_context=False), timeout=120)
        await seed(self.kube, self.topology, self.settings.rack_label)
        # What the operator's Node index would hold (the handoff checks leader entries against it).
        self.nodes = {node["metadata"]["name"]: node_state(node, self.settings.rack_label)
                      for node in await self.kube.list(NODES)}
        self.say(f"cluster seeded: {len(self.compute)} compute nodes in {len(self.compute) // RACK_SIZE or 1} racks, "
                 f"{len(self.topology.nodes) - len(self.compute)} storage nodes")
        self._start_workers()
        operator = TlsCredentials.issued(self.authority, Identity(IdentityRole.OPERATOR), self.workdir / "operator",
                                         datetime.timedelta(days=1), [])
        zk = await zk_async.start_client(self.settings.zk_hosts, self.settings.zk_session_timeout, tls=operator.files)
        layout = ZkLayout(self.settings.zk_root)
        self.services = Services(self.settings, zk, self.kube, PeerClient(operator, self.settings.call_timeout),
                                 layout, registry.Directory(zk, layout))
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        await self._wait_joined()

    async def stop(self) -> None:
        for process, _ in self._workers:
            process.terminate()
        for process, _ in self._workers:
            await asyncio.to_thread(_wait_or_kill, process)
        if self.services is not None:
            await self.services.peers.close()
            self.services.directory.close()
            await zk_async.stop_client(self.services.zk)
        if self._http is not None:
            await self._http.close()
        if self.kube is not None:
            await self.kube.close()
        if self._api is not None:
            self._api.terminate()
            await asyncio.to_thread(_wait_or_kill, self._api)
        await asyncio.to_thread(self.zookeeper.stop)

    def _start_api(self) -> None:
        ready = self.workdir / "kube-api.json"
        argv = [sys.executable, "-m", "rackmesh_sandbox.kube_api", "--port", "0", "--ready-file", str(ready)]
        for crd in sorted(CRD_DIR.glob("*.yaml")):
            argv += ["--crd", str(crd)]
        self._api = _spawn(argv, self.workdir / "kube-api.log")
        _wait_until(ready.exists, 60, "the sandbox API", self._api)
        self.api_url = json.loads(ready.read_text())["url"]

    def _start_workers(self) -> None:
        images = write_images(self.topology, self.workdir / "images")
        entries = [{"node": node.name, "address": self.endpoints[node.name], "imageDir": str(images[node.name]),
                    "identityDir": str(self.workdir / "identities" / node.name)} for node in self.topology.nodes]
        for index in range(self.workers):
            port = free_port()
            spec = {"apiUrl": self.api_url, "control": port, "env": self.settings.to_env(),
                    "agents": entries[index::self.workers]}
            path = self.workdir / f"worker-{index}.json"
            path.write_text(json.dumps(spec))
            process = _spawn([sys.executable, "-m", "rackmesh_bench.worker", str(path)],
                             self.workdir / f"worker-{index}.log")
            self._workers.append((process, port))

    async def _wait_joined(self) -> None:
        started, total, racks = time.monotonic(), len(self.topology.nodes), len(self.topology.racks(Role.COMPUTE))
        shown = -1
        while True:
            exited = [process.args for process, _ in self._workers if process.poll() is not None]
            if exited:
                raise RuntimeError(f"a worker exited during start-up; see {self.workdir}/worker-*.log")
            try:
                stats = await self.worker_stats()
            except aiohttp.ClientConnectionError:  # a worker's control API is not listening yet
                await asyncio.sleep(0.5)
                continue
            joined = sum(part["joined"] for part in stats)
            crashed = [node for part in stats for node in part["crashed"]]
            if crashed:
                raise RuntimeError(f"agents stopped during start-up: {crashed[:5]}; see {self.workdir}/worker-*.log")
            led = len(await self.services.directory.leaders(Role.COMPUTE)) if self.services else 0
            if joined != shown:
                self.say(f"{joined}/{total} agents joined, {led}/{racks} compute racks led")
                shown = joined
            if joined == total and led == racks:
                return
            if time.monotonic() - started > 600:
                raise RuntimeError(f"only {joined}/{total} agents joined in 600 s")
            await asyncio.sleep(1.0)

    async def _control(self, method: str, port: int, path: str, body: Any = None) -> Any:
        assert self._http is not None
        async with self._http.request(method, f"http://127.0.0.1:{port}{path}", json=body) as response:
            response.raise_for_status()
            return await response.json()

    async def worker_stats(self) -> list[dict[str, Any]]:
        return await asyncio.gather(*(self._control("GET", port, "/stats") for _, port in self._workers))

    async def service_times(self) -> list[dict[str, Any]]:
        parts = await asyncio.gather(*(self._control("POST", port, "/service-times") for _, port in self._workers))
        return [entry for part in parts for entry in part]

    async def reach(self, node: str) -> dict[str, Any]:
        index = [node.name for node in self.topology.nodes].index(node) % self.workers
        return await self._control("POST", self._workers[index][1], "/reach", {"node": node})

    async def api_calls(self) -> Counter[str]:
        """``apiserver_request_total`` by verb, from the API server's ``/metrics``."""
        assert self._http is not None
        async with self._http.get(f"{self.api_url}/metrics") as response:
            text = await response.text()
        calls: Counter[str] = Counter()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "apiserver_request_total":
                    calls[sample.labels["verb"]] += int(sample.value)
        return calls

    async def snapshot(self) -> Snapshot:
        stats = await self.worker_stats()
        sent: Counter[str] = Counter()
        for part in stats:
            sent.update(part["sent"])
        assert self.services is not None and self._api is not None
        sent.update(self.services.peers.sent)  # the orders the bench hands over, as the operator would
        cpu = {"agents": sum(part["cpuSeconds"] for part in stats), "kubeApi": cpu_seconds(self._api.pid),
               "zookeeper": sum(cpu_seconds(server.pid) for server in self.zookeeper.servers if server.pid),
               "benchDriver": cpu_seconds(os.getpid())}
        connections = sum(part["connectionsOpened"] for part in stats) + self.services.peers.connections_opened
        zookeeper = self.settings.zk_hosts.split(",")[0]
        return Snapshot(await self.api_calls(),
                        await asyncio.to_thread(zookeeper_operations, zookeeper, self.zookeeper.tls),
                        sent, connections, sum(part["sessionsLost"] for part in stats), cpu)

    async def sessions_lost(self) -> int:
        return sum(part["sessionsLost"] for part in await self.worker_stats())


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _wait_until(ready: Callable[[], bool], seconds: float, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start (exit {process.poll()})")
        time.sleep(0.05)


def _wait_or_kill(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
