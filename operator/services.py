"""What the operator's handlers share: settings, the API client, the signer and the operator's own
certificate, one ZooKeeper session and the peer client (both over TLS with that certificate), and the
metrics (served with that certificate too)."""

import dataclasses
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from kazoo.client import KazooClient

from rackmesh import zk_async
from rackmesh.config import Settings
from rackmesh.kube_client import Credentials, KubeClient
from rackmesh.metrics import MetricsServer
from rackmesh.peer_client import PeerClient
from rackmesh.registry import Directory
from rackmesh.zk_layout import ZkLayout
from rackmesh_operator import signer as signing
from rackmesh_operator.image_grants import ImageGrants, derived_key
from rackmesh_operator.metrics import OperatorMetrics


@dataclasses.dataclass
class Services:
    settings: Settings
    zk: KazooClient
    kube: KubeClient
    peers: PeerClient
    layout: ZkLayout
    directory: Directory
    # None for the benchmark's driver, which hands orders without an operator.
    stop_signer: Callable[[], Awaitable[None]] | None = None
    image_grants: ImageGrants | None = None
    metrics_server: MetricsServer | None = None

    @classmethod
    async def open(cls, settings: Settings, phases: Mapping[str, Collection[Any]]) -> "Services":
        """``phases``: the requests by phase, for the metrics (the handlers' index ``requests_by_phase``)."""
        kube = KubeClient(Credentials.discover())
        signer = signing.Signer(settings, kube)
        stop_signer = await signing.serve(signer)
        metrics = OperatorMetrics(phases)
        metrics_server = MetricsServer(metrics.registry, signer.credentials.server_context())
        await metrics_server.start(settings.metrics_bind or settings.signer_bind, settings.metrics_port)
        zk = await zk_async.start_client(settings.zk_hosts, settings.zk_session_timeout, tls=signer.credentials.files,
                                         session=metrics.zookeeper)
        layout = ZkLayout(settings.zk_root)
        grants = ImageGrants(kube, zk, layout, derived_key(signer.authority.key), signer.authority.cert_pem)
        return cls(settings, zk, kube, PeerClient(signer.credentials, settings.call_timeout, metrics.peer_calls),
                   layout, Directory(zk, layout), stop_signer, grants, metrics_server)

    async def close(self) -> None:
        await self.peers.close()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        if self.stop_signer is not None:
            await self.stop_signer()
        await self.kube.close()
        self.directory.close()
        await zk_async.stop_client(self.zk)
