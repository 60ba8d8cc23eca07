"""What the operator's handlers share: settings, the API client, the signer and the operator's own
certificate, one ZooKeeper session and the peer client (both over TLS with that certificate)."""

import dataclasses
from collections.abc import Awaitable, Callable

from kazoo.client import KazooClient

from rackmesh import zk_async
from rackmesh.config import Settings
from rackmesh.kube_client import Credentials, KubeClient
from rackmesh.peer_client import PeerClient
from rackmesh.registry import Directory
from rackmesh.zk_layout import ZkLayout
from rackmesh_operator import signer as signing
from rackmesh_operator.image_grants import ImageGrants, derived_key


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

    @classmethod
    async def open(cls, settings: Settings) -> "Services":
        kube = KubeClient(Credentials.discover())
        signer = signing.Signer(settings, kube)
        stop_signer = await signing.serve(signer)
        zk = await zk_async.start_client(settings.zk_hosts, settings.zk_session_timeout, tls=signer.credentials.files)
        layout = ZkLayout(settings.zk_root)
        grants = ImageGrants(kube, zk, layout, derived_key(signer.authority.key), signer.authority.cert_pem)
        return cls(settings, zk, kube, PeerClient(signer.credentials, settings.call_timeout), layout,
                   Directory(zk, layout), stop_signer, grants)

    async def close(self) -> None:
        await self.peers.close()
        if self.stop_signer is not None:
            await self.stop_signer()
        await self.kube.close()
        self.directory.close()
        await zk_async.stop_client(self.zk)
