"""Read who is alive and who leads, from ZooKeeper (the read side of ``zk_layout``)."""

import asyncio
import dataclasses

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from rackmesh import zk_async
from rackmesh.labels import Role
from rackmesh.zk_layout import MemberRecord, ZkLayout


@dataclasses.dataclass(frozen=True)
class RackView:
    role: Role
    rack: str
    members: list[MemberRecord]
    leader: MemberRecord | None


async def _children(client: KazooClient, path: str) -> list[str]:
    try:
        return sorted(await zk_async.wait(client.get_children_async(path)))
    except NoNodeError:
        return []


async def _record(client: KazooClient, path: str) -> MemberRecord | None:
    try:
        data, _ = await zk_async.wait(client.get_async(path))
    except NoNodeError:  # the owner's session ended between listing and reading
        return None
    return MemberRecord.decode(data)


async def leaders(client: KazooClient, layout: ZkLayout, role: Role) -> list[MemberRecord]:
    """The current leader of every rack of ``role``, in rack order."""
    racks = await _children(client, layout.leaders(role))
    found = await asyncio.gather(*(_record(client, layout.leader(role, rack)) for rack in racks))
    return [record for record in found if record is not None]


async def member(client: KazooClient, layout: ZkLayout, role: Role, rack: str, node: str) -> MemberRecord | None:
    """The membership entry of ``node``, or None when its agent is not present."""
    return await _record(client, layout.member(role, rack, node))


async def members(client: KazooClient, layout: ZkLayout, role: Role, rack: str) -> list[MemberRecord]:
    """The live members of one rack, in node order."""
    names = await _children(client, layout.members(role, rack))
    found = await asyncio.gather(*(_record(client, layout.member(role, rack, name)) for name in names))
    return [member for member in found if member is not None]


async def racks(client: KazooClient, layout: ZkLayout, role: Role) -> list[RackView]:
    """Every rack of ``role`` that has members, with its members and leader."""
    views = []
    for rack in await _children(client, layout.members(role)):
        alive = await members(client, layout, role, rack)
        if alive:
            views.append(RackView(role, rack, alive, await _record(client, layout.leader(role, rack))))
    return views
