"""An in-process mesh: the sandbox's Kubernetes API, real ZooKeeper, and real Agents talking real HTTP over
mutual TLS, all in the test's event loop (each agent on its own 127.0.1.x address). No operator runs here:
the agents' certificates come straight from the test's CA, and the test calls agents as the operator
(``mesh.peers``) or as any agent (``mesh.client_as``)."""

import asyncio
import contextlib
import datetime
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError

from rackmesh import image_access, registry, zk_async
from rackmesh.config import Settings
from rackmesh.identity.names import Identity
from rackmesh.kube_client import Credentials, KubeClient
from rackmesh.labels import Role
from rackmesh.peer_client import PeerClient
from rackmesh.zk_layout import MemberRecord, ZkLayout
from rackmesh_node_agent.agent import Agent
from rackmesh_sandbox.cluster_seed import seed
from rackmesh_sandbox.images import write_images
from rackmesh_sandbox.kube_api import KubeApiServer
from rackmesh_sandbox.lifecycle import CRD_DIR, agent_address
from rackmesh_sandbox.ports import port_free_on
from rackmesh_sandbox.topology import Topology
from rackmesh_sandbox.zookeeper import ZooKeeperEnsemble
from tests.support.builders import TopologyBuilder
from tests.support.pki import Pki

SESSION_TIMEOUT = 2.0  # the agents': a killed agent's entries go within seconds
# The harness's own client (records, digests) is no agent; a short session would expire on a loaded machine.
HARNESS_SESSION_TIMEOUT = 10.0


class Mesh:
    def __init__(self, api: KubeApiServer, kube: KubeClient, zk: KazooClient, settings: Settings,
                 peers: PeerClient, pki: Pki, stack: contextlib.AsyncExitStack) -> None:
        self.api, self.kube, self.zk, self.settings, self.peers = api, kube, zk, settings, peers
        self.pki = pki
        self.layout = ZkLayout(settings.zk_root)
        self.agents: dict[str, Agent] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._stack = stack

    def endpoint(self, node: str) -> str:
        return self.agents[node].endpoint

    def peer(self, node: str) -> MemberRecord:
        """``node``'s agent as a peer to call (its first role's membership)."""
        agent = self.agents[node]
        return MemberRecord(node, agent.node.rack, agent.node.roles[0], agent.endpoint)

    async def client_as(self, identity: Identity) -> PeerClient:
        """A peer client presenting a certificate of ``identity`` (closed with the mesh)."""
        return await self._stack.enter_async_context(PeerClient(self.pki.credentials(identity),
                                                                self.settings.call_timeout))

    async def image_credential(self, namespace: str = "default") -> str:
        """An ``Authorization`` header that opens image files, granted to ``namespace`` as the operator grants
        it (the password's digest in ZooKeeper)."""
        password = secrets.token_hex(16)
        path, digest = self.layout.image_access(namespace), image_access.digest(password).encode()
        try:
            await zk_async.wait(self.zk.create_async(path, digest, makepath=True))
        except NodeExistsError:
            await zk_async.wait(self.zk.set_async(path, digest))
        return image_access.basic_header(namespace, password)

    async def as_agent(self, node: str) -> PeerClient:
        return await self.client_as(Identity.agent(node))

    async def as_rack_leader_of(self, node: str) -> PeerClient:
        """A client that calls as the current leader of ``node``'s compute rack."""
        rack = self.agents[node].node.rack
        [leader] = [name for name, agent in self.agents.items()
                    if agent.node.rack == rack and agent.leads(Role.COMPUTE)]
        return await self.as_agent(leader)

    def agent(self, node: str) -> Agent:
        return self.agents[node]

    async def stop_agent(self, node: str) -> None:
        task = self.tasks.pop(node)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


MeshFactory = Callable[..., Awaitable[Mesh]]


@pytest.fixture
async def mesh(zookeeper: ZooKeeperEnsemble, zk_root: str, pki: Pki, tmp_path: Path) -> AsyncIterator[MeshFactory]:
    """``await mesh(make_topology().compute_racks(2, nodes=2), **setting_overrides)`` -> a joined Mesh."""
    stack = contextlib.AsyncExitStack()

    async def start(topology: TopologyBuilder, **overrides: Any) -> Mesh:
        parsed = Topology.parse(topology.obj())
        api = await stack.enter_async_context(KubeApiServer(crd_paths=sorted(CRD_DIR.glob("*.yaml"))))
        kube = await stack.enter_async_context(KubeClient(Credentials(api.url, ssl_context=False)))
        addresses = [agent_address(index) for index in range(len(parsed.nodes))]
        settings = Settings.from_env({}, zk_hosts=zookeeper.connect_string, zk_root=zk_root,
                                     zk_session_timeout=SESSION_TIMEOUT, ca_dir=str(pki.directory),
                                     agent_port=port_free_on(addresses), metrics_port=0, call_timeout=2.0,
                                     **overrides)
        await seed(kube, parsed, settings.rack_label)
        image_dirs = write_images(parsed, tmp_path / "images")
        operator = pki.operator()
        zk = await zk_async.start_client(zookeeper.connect_string, HARNESS_SESSION_TIMEOUT, tls=operator.files)
        stack.push_async_callback(zk_async.stop_client, zk)
        peers = await stack.enter_async_context(PeerClient(operator, settings.call_timeout))
        mesh = Mesh(api, kube, zk, settings, peers, pki, stack)
        for node, address in zip(parsed.nodes, addresses, strict=True):
            agent_settings = Settings.from_env(settings.to_env(), agent_bind=address, agent_advertise=address,
                                               image_dir=str(image_dirs[node.name]),
                                               identity_dir=str(tmp_path / "identity" / node.name))
            lifetime = datetime.timedelta(seconds=settings.cert_lifetime)
            agent = Agent(agent_settings, node.name, kube, pki.ca.signer(Identity.agent(node.name), lifetime))
            mesh.agents[node.name] = agent
            mesh.tasks[node.name] = asyncio.create_task(agent.run())
        stack.push_async_callback(_stop_all, mesh)
        await asyncio.wait_for(_all_joined(mesh), 20)
        return mesh

    yield start
    await stack.aclose()


async def _all_joined(mesh: Mesh) -> None:
    """Every agent joined, and every rack of every role has its leader published."""
    while not (all(agent.ready for agent in mesh.agents.values()) and await _all_racks_led(mesh)):
        for node, task in mesh.tasks.items():
            if task.done():
                task.result()  # surfaces the agent's start-up error
                raise AssertionError(f"agent {node} stopped during start-up")
        await asyncio.sleep(0.05)


async def _all_racks_led(mesh: Mesh) -> bool:
    racks = {(role, agent.node.rack) for agent in mesh.agents.values() for role in agent.node.roles}
    directory = registry.Directory(mesh.zk, mesh.layout, watch=False)
    led = {(role, leader.rack) for role in Role for leader in await directory.leaders(role)}
    return racks <= led


async def _stop_all(mesh: Mesh) -> None:
    for node in list(mesh.tasks):
        await mesh.stop_agent(node)
