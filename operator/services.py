"""What the operator's handlers share: settings, one ZooKeeper session, the API client, the peer client."""

import dataclasses

from kazoo.client import KazooClient

from rackmesh import zk_async
from rackmesh.config import Settings
from rackmesh.kube_client import Credentials, KubeClient
from rackmesh.peer_client import PeerClient
from rackmesh.registry import Directory
from rackmesh.zk_layout import ZkLayout


@dataclasses.dataclass
class Services:
    settings: Settings
    zk: KazooClient
    kube: KubeClient
    peers: PeerClient
    layout: ZkLayout
    directory: Directory

    @classmethod
    async def open(cls, settings: Settings) -> "Services":
        zk = await zk_async.start_client(settings.zk_hosts, settings.zk_session_timeout)
        layout = ZkLayout(settings.zk_root)
        return cls(settings, zk, KubeClient(Credentials.discover()),
                   PeerClient(settings.agent_token, settings.call_timeout), layout, Directory(zk, layout))

    async def close(self) -> None:
        await self.peers.close()
        await self.kube.close()
        self.directory.close()
        await zk_async.stop_client(self.zk)
