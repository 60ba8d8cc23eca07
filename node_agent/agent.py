"""One node's agent: its certificate, identity from its Node, presence in ZooKeeper, and its HTTP API.

An ``Agent`` owns its own ZooKeeper session, HTTP site and peer client, so one process can run
many of them (large simulated clusters) as easily as a DaemonSet pod runs one.
"""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from kazoo.client import KazooClient

from rackmesh import zk_async
from rackmesh.config import Settings
from rackmesh.identity import renewal
from rackmesh.identity.authority import trusted_ca
from rackmesh.identity.credentials import Credentials
from rackmesh.identity.names import Identity
from rackmesh.informer import Informer
from rackmesh.kube_client import (
    CLUSTER_INSTANCETYPES,
    DEPLOYMENT_REQUESTS,
    PODS,
    VIRTUAL_MACHINES,
    KubeClient,
    Selector,
)
from rackmesh.labels import NODE_LABEL, Role
from rackmesh.metrics import MetricsServer
from rackmesh.nodes import NodeState
from rackmesh.peer_client import PeerClient
from rackmesh.registry import Directory
from rackmesh.zk_layout import MemberRecord, ZkLayout
from rackmesh_node_agent.capacity.view import CapacityView
from rackmesh_node_agent.http_api import Refusal, app_runner, build_app, serve_tls
from rackmesh_node_agent.images import routes as image_routes
from rackmesh_node_agent.images.access import ImageAccess
from rackmesh_node_agent.images.store import ImageStore
from rackmesh_node_agent.membership.presence import Presence
from rackmesh_node_agent.metrics import AgentMetrics
from rackmesh_node_agent.own_node import OwnNode
from rackmesh_node_agent.placement import routes as placement_routes
from rackmesh_node_agent.placement.coordinator import Coordinator
from rackmesh_node_agent.placement.node_side import NodeSide
from rackmesh_node_agent.service_time import ServiceTimes
from rackmesh_node_agent.vms.disk_sources import DiskSources

logger = logging.getLogger(__name__)
T = TypeVar("T")
CERTIFICATE_RETRY_MAX_SECONDS = 10.0


class NotJoined(Refusal):
    """The agent is asked to act before it knows who it is or has joined ZooKeeper (503 to peers)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, "NotReady", message)


class Agent:
    """``sign`` turns the agent's CSR into its certificate: the operator's signer (``SignerClient.sign``)."""

    def __init__(self, settings: Settings, node_name: str, kube: KubeClient, sign: renewal.Sign) -> None:
        self.settings = settings
        self.node_name = node_name
        self.kube = kube
        self.credentials = Credentials(Identity.agent(node_name), Path(settings.identity_dir),
                                       trusted_ca(Path(settings.ca_dir)))
        self._sign = sign
        self.layout = ZkLayout(settings.zk_root)
        # Watch-fed caches, as kubelet and virt-handler keep theirs: offers and commits never read the API.
        self.own_node = OwnNode(kube, node_name, settings.rack_label)
        self.vms = Informer(kube, VIRTUAL_MACHINES, Selector(labels=f"{NODE_LABEL}={node_name}"))
        self.instancetypes = Informer(kube, CLUSTER_INSTANCETYPES)
        # The pods bound to this node, as the scheduler counts them against its allocatable (kubelet's own
        # pod informer selects them so too).
        self.pods = Informer(kube, PODS, Selector(fields=f"spec.nodeName={node_name}"))
        # The requests that exist: a VM is written only for one of them, as it is now (never for an order
        # alone, which anyone holding a certificate could forge).
        self.requests = Informer(kube, DEPLOYMENT_REQUESTS)
        self.identity: NodeState | None = None  # the Node as it was when the agent joined its racks
        self.presence: Presence | None = None
        self.capacity: CapacityView | None = None
        self.images = ImageStore(Path(settings.image_dir))
        self.image_access = ImageAccess(lambda: self.zk, self.layout)
        self.coordinator = Coordinator(self)
        self.node_side = NodeSide(self)
        self.disk_sources = DiskSources(self)
        self.metrics = AgentMetrics(self)
        # One server context for the API and the metrics (a thousand agents share the bench's process).
        self._server_tls = self.credentials.server_context()
        self.metrics_server = MetricsServer(self.metrics.registry, self._server_tls)
        self.peers = PeerClient(self.credentials, settings.call_timeout, self.metrics.peer_calls)
        self.service_times = ServiceTimes()
        self._zk: KazooClient | None = None
        self._directory: Directory | None = None
        self._runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        host = self.settings.agent_advertise or self.settings.agent_bind
        return f"https://{host}:{self.settings.agent_port}"

    @property
    def ready(self) -> bool:
        """Joined its racks, or known to have nothing to join yet (its Node has no rackmesh role)."""
        if self.presence is not None:
            return self.presence.joined.is_set()
        return self.own_node.listed.is_set() and not (self.own_node.state and self.own_node.state.roles)

    @property
    def zk(self) -> KazooClient:
        if self._zk is None:
            raise NotJoined("no ZooKeeper session yet")
        return self._zk

    @property
    def directory(self) -> Directory:
        if self._directory is None:
            raise NotJoined("no ZooKeeper session yet")
        return self._directory

    @property
    def node(self) -> NodeState:
        if self.identity is None:
            raise NotJoined("the agent has not read its Node yet")
        return self.identity

    def require_capacity(self) -> CapacityView:
        if self.capacity is None:
            raise NotJoined("the agent has not read its Node yet")
        return self.capacity

    def call(self, peer: MemberRecord, local: Callable[[], Awaitable[T]], route: str, message: Any,
             answer: type[T] | None, timeout: float | None = None) -> Awaitable[T | None]:
        """Ask ``peer``: in-process (``local()``) when it is this agent, else ``POST message`` to it."""
        if peer.node == self.node_name:
            return local()
        return self.peers.post(peer, route, message, answer, timeout)

    def has_role(self, role: Role) -> bool:
        return self.identity is not None and role in self.identity.roles

    def leads(self, role: Role) -> bool:
        """Acting as rack leader for ``role`` right now (elected, and the session known alive)."""
        return self.presence is not None and self.presence.leader_duties_active(role)

    def require_leadership(self, role: Role) -> None:
        """Refuse (409 NotLeader) work that only the current leader of this node's ``role`` rack may do."""
        if not self.leads(role):
            raise Refusal(409, "NotLeader", f"{self.node_name} does not lead {role} rack "
                                            f"{self.node.rack} right now")

    async def run(self) -> None:
        """Serve until cancelled; leaves ZooKeeper cleanly (ephemeral entries go at once).

        The agent joins once its Node exists with a rackmesh role: a node labelled later (a node added to
        rackmesh) is taken in then, as a DaemonSet would start its pod then.
        """
        watching: list[asyncio.Task[None]] = []
        try:
            await self._obtain_certificate()
            watching.append(asyncio.create_task(renewal.keep_renewed(self.credentials, self._sign)))
            await self._serve_http()
            caches = (self.own_node, self.vms, self.instancetypes, self.pods, self.requests)
            watching += [asyncio.create_task(cache.run()) for cache in caches]
            if not self.own_node.listed.is_set() or not (self.own_node.state and self.own_node.state.roles):
                logger.info("waiting for the node to exist with a rackmesh role", extra={"node": self.node_name})
            self.identity = await self.own_node.wait_for(lambda state: bool(state.roles))
            await self.vms.synced.wait()
            await self.instancetypes.synced.wait()
            await self.pods.synced.wait()
            await self.requests.synced.wait()
            self.capacity = CapacityView(self.own_node, self.vms, self.instancetypes, self.pods, self.requests)
            self._zk = await zk_async.start_client(self.settings.zk_hosts, self.settings.zk_session_timeout,
                                                   tls=self.credentials.files, session=self.metrics.zookeeper)
            self._directory = Directory(self._zk, self.layout)
            records = [MemberRecord(self.identity.name, self.identity.rack, role, self.endpoint)
                       for role in self.identity.roles]
            self.presence = Presence(self._zk, self.layout, records)
            if Role.COMPUTE in self.identity.roles:  # VMs live on compute nodes only
                watching.append(asyncio.create_task(self.disk_sources.run()))
            logger.info("agent starting", extra={"node": self.identity.name, "rack": self.identity.rack,
                                                 "roles": [str(r) for r in self.identity.roles],
                                                 "endpoint": self.endpoint})
            await self.presence.run()
        finally:
            for task in watching:
                task.cancel()
            await asyncio.gather(*watching, return_exceptions=True)
            await self._shutdown()

    async def _obtain_certificate(self) -> None:
        """The first certificate, before anything is served; the signer may not be up yet (retried)."""
        failures = 0
        while True:
            try:
                return await renewal.obtain(self.credentials, self._sign)
            except Exception as exc:  # unreachable or refusing: nothing works without a certificate
                failures += 1
                pause = min(CERTIFICATE_RETRY_MAX_SECONDS, 0.2 * 2 ** failures) * random.uniform(0.5, 1.0)
                logger.warning("no certificate yet; asking the signer again", extra={
                    "node": self.node_name, "error": repr(exc), "pause": round(pause, 2)})
                await asyncio.sleep(pause)

    async def _serve_http(self) -> None:
        routes = [*placement_routes.routes(), *image_routes.routes()]
        self._runner = app_runner(build_app(self, routes))
        await self._runner.setup()
        await serve_tls(self._runner, self.settings.agent_bind, self.settings.agent_port, self._server_tls)
        await self.metrics_server.start(self.settings.metrics_bind or self.settings.agent_bind,
                                        self.settings.metrics_port)

    async def _shutdown(self) -> None:
        await self.coordinator.stop()
        await self.node_side.stop()
        if self._directory is not None:
            self._directory.close()
        if self._zk is not None:
            await zk_async.stop_client(self._zk)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.metrics_server.stop()
        await self.peers.close()

    async def view(self) -> dict[str, Any]:
        """What this agent knows about itself: role, rack, leadership and free capacity."""
        if self.identity is None or self.presence is None or self.capacity is None:
            return {"node": self.node_name, "ready": False}
        free = self.capacity.free()
        return {
            "node": self.identity.name,
            "rack": self.identity.rack,
            "endpoint": self.endpoint,
            "ready": self.ready,
            "zookeeper": {"connected": self.presence.connected.is_set(), "sessions": self.presence.sessions},
            "roles": [
                {"role": str(role), "leader": self.presence.leads(role),
                 "leaderDutiesActive": self.presence.leader_duties_active(role)}
                for role in self.identity.roles
            ],
            "allocatable": self.capacity.allocatable.to_json(),
            "gone": self.own_node.gone,
            "free": free.to_json(),
            "reservations": self.capacity.reservations.describe(),
            "images": self.images.held() if self.has_role(Role.STORAGE) else [],
        }
