"""Rack membership and leader election against a real ZooKeeper.

Case matrix:
- contenders of one rack: exactly one leader; its record is published under leaders/<role>/<rack>
- racks are independent: one leader per (role, rack)
- no herd effect: every contender but the leader watches exactly one node, its predecessor
- the leader's session ends (closed or expired): the next contender leads; the old one leaves membership
- SUSPENDED then CONNECTED (same session): leadership kept, duties paused then resumed
- LOST (session expired under a live agent): it re-joins membership and contends again
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from kazoo.client import KazooClient

from rackmesh import registry, zk_async
from rackmesh.identity.credentials import TlsFiles
from rackmesh.labels import Role
from rackmesh.zk_layout import MemberRecord, ZkLayout
from rackmesh_node_agent.membership.presence import Presence
from rackmesh_sandbox.zookeeper import ZooKeeperEnsemble, four_letter_word
from tests.support.waiting import async_eventually

pytestmark = pytest.mark.zookeeper
SESSION_TIMEOUT = 2.0


class Contender:
    """One simulated agent: its own session and presence, running in the test's loop."""

    def __init__(self, client: KazooClient, presence: Presence, task: asyncio.Task[None]) -> None:
        self.client, self.presence, self.task = client, presence, task

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await zk_async.stop_client(self.client)


@pytest.fixture
async def contenders(zookeeper: ZooKeeperEnsemble, zk_root: str, zk_tls: TlsFiles) -> AsyncIterator[
        "callable[[str, str, Role], asyncio.Future[Contender]]"]:  # type: ignore[name-defined]
    started: list[Contender] = []

    async def start(node: str, rack: str = "rack-a", role: Role = Role.COMPUTE) -> Contender:
        client = await zk_async.start_client(zookeeper.connect_string, SESSION_TIMEOUT, tls=zk_tls)
        record = MemberRecord(node, rack, role, f"http://{node}:8470")
        presence = Presence(client, ZkLayout(zk_root), [record])
        contender = Contender(client, presence, asyncio.create_task(presence.run()))
        started.append(contender)
        await asyncio.wait_for(presence.joined.wait(), 10)
        return contender

    yield start
    await asyncio.gather(*(contender.stop() for contender in started), return_exceptions=True)


async def rack_view(zookeeper: ZooKeeperEnsemble, zk_root: str, zk_tls: TlsFiles, role: Role = Role.COMPUTE
                    ) -> dict[str, registry.RackView]:
    client = await zk_async.start_client(zookeeper.connect_string, SESSION_TIMEOUT, tls=zk_tls)
    try:
        directory = registry.Directory(client, ZkLayout(zk_root), watch=False)
        return {view.rack: view for view in await directory.racks(role)}
    finally:
        await zk_async.stop_client(client)


def leaders_of(group: list[Contender], role: Role = Role.COMPUTE) -> list[str]:
    return [c.presence.elections[role].record.node for c in group if c.presence.leads(role)]


async def test_one_leader_per_rack_is_elected_and_published(contenders, zookeeper, zk_root, zk_tls):
    group = [await contenders(f"node-{i}") for i in range(4)]
    await async_eventually(lambda: asyncio.sleep(0, len(leaders_of(group)) == 1))
    assert leaders_of(group) == ["node-0"]  # the first contender holds the lowest sequence

    views = await rack_view(zookeeper, zk_root, zk_tls)
    assert views["rack-a"].leader is not None and views["rack-a"].leader.node == "node-0"
    assert [m.node for m in views["rack-a"].members] == ["node-0", "node-1", "node-2", "node-3"]


async def test_racks_and_roles_elect_independently(contenders, zookeeper, zk_root, zk_tls):
    group = [await contenders(f"a-{i}", "rack-a") for i in range(2)]
    group += [await contenders(f"b-{i}", "rack-b") for i in range(2)]
    group += [await contenders(f"s-{i}", "rack-a", Role.STORAGE) for i in range(2)]
    await async_eventually(lambda: asyncio.sleep(0, len(leaders_of(group)) == 2
                                                 and len(leaders_of(group, Role.STORAGE)) == 1))
    assert sorted(leaders_of(group)) == ["a-0", "b-0"]
    assert leaders_of(group, Role.STORAGE) == ["s-0"]
    compute = await rack_view(zookeeper, zk_root, zk_tls)
    storage = await rack_view(zookeeper, zk_root, zk_tls, Role.STORAGE)
    assert {rack: view.leader.node for rack, view in compute.items() if view.leader} == {
        "rack-a": "a-0", "rack-b": "b-0"}
    assert storage["rack-a"].leader is not None and storage["rack-a"].leader.node == "s-0"


async def test_each_contender_watches_only_its_predecessor(contenders, zookeeper, zk_root, zk_tls):
    group = [await contenders(f"node-{i}") for i in range(5)]
    await async_eventually(lambda: asyncio.sleep(0, len(leaders_of(group)) == 1))
    server = zookeeper.servers[0]
    election_dir = ZkLayout(zk_root).election(Role.COMPUTE, "rack-a")

    def watched_election_nodes() -> dict[str, int]:
        # `wchp` lists each watched path followed by the sessions watching it.
        counts: dict[str, int] = {}
        current = ""
        for line in four_letter_word(server.host, server.client_port, "wchp", tls=zookeeper.tls).splitlines():
            if line.startswith("/"):
                current = line
            elif line.strip().startswith("0x") and current.startswith(election_dir + "/"):
                counts[current] = counts.get(current, 0) + 1
        return counts

    contender_paths = sorted(str(c.presence.elections[Role.COMPUTE].contender_path) for c in group)
    expected = {path: 1 for path in contender_paths[:-1]}  # the newest is watched by nobody
    watches = await async_eventually(
        lambda: asyncio.to_thread(lambda: (w := watched_election_nodes()) and sum(w.values()) == 4 and w), timeout=5)
    assert watches == expected


async def test_next_contender_leads_when_the_leader_session_ends(contenders, zookeeper, zk_root, zk_tls):
    group = [await contenders(f"node-{i}") for i in range(3)]
    await async_eventually(lambda: asyncio.sleep(0, leaders_of(group) == ["node-0"]))
    await group[0].stop()
    await async_eventually(lambda: asyncio.sleep(0, leaders_of(group[1:]) == ["node-1"]), timeout=10)
    views = await rack_view(zookeeper, zk_root, zk_tls)
    assert views["rack-a"].leader is not None and views["rack-a"].leader.node == "node-1"
    assert [m.node for m in views["rack-a"].members] == ["node-1", "node-2"]


async def test_lost_session_rejoins_and_contends_again(contenders, zookeeper, zk_root, zk_tls):
    first = await contenders("node-0")
    second = await contenders("node-1")
    await async_eventually(lambda: asyncio.sleep(0, first.presence.leads(Role.COMPUTE)))

    # Expire node-0's session from outside, as the server does when a client is silent too long.
    session_id, password = first.client.client_id
    impostor = KazooClient(hosts=zookeeper.connect_string, client_id=(session_id, password), use_ssl=True,
                           ca=str(zk_tls.ca_file), certfile=str(zk_tls.cert_file), keyfile=str(zk_tls.key_file))
    await asyncio.to_thread(impostor.start)
    await asyncio.to_thread(impostor.stop)
    await asyncio.to_thread(impostor.close)

    await async_eventually(lambda: asyncio.sleep(0, second.presence.leads(Role.COMPUTE)), timeout=10)
    await async_eventually(lambda: asyncio.sleep(0, first.presence.sessions == 2), timeout=15)
    views = await async_eventually(
        lambda: rack_view_with_members(zookeeper, zk_root, zk_tls, {"node-0", "node-1"}), timeout=10)
    assert views["rack-a"].leader is not None and views["rack-a"].leader.node == "node-1"
    assert not first.presence.leads(Role.COMPUTE)


async def rack_view_with_members(zookeeper: ZooKeeperEnsemble, zk_root: str, zk_tls: TlsFiles,
                                 nodes: set[str]) -> dict[str, registry.RackView] | None:
    views = await rack_view(zookeeper, zk_root, zk_tls)
    return views if {m.node for m in views["rack-a"].members} == nodes else None


async def test_suspended_pauses_leader_duties_and_reconnection_resumes_them(zookeeper_ensemble, zk_root, zk_tls,
                                                                           caplog):
    client = await zk_async.start_client(zookeeper_ensemble.connect_string, 6.0, tls=zk_tls)
    presence = Presence(client, ZkLayout(zk_root), [MemberRecord("node-0", "rack-a", Role.COMPUTE, "http://x:1")])
    task = asyncio.create_task(presence.run())
    try:
        await async_eventually(lambda: asyncio.sleep(0, presence.leader_duties_active(Role.COMPUTE)))
        contender = presence.elections[Role.COMPUTE].contender_path
        session = f"{client.client_id[0]:x}"
        serving = next(s for s in zookeeper_ensemble.servers
                       if session in four_letter_word(s.host, s.client_port, "cons", tls=zookeeper_ensemble.tls))

        with caplog.at_level("INFO", logger="rackmesh_node_agent.membership.presence"):
            await asyncio.to_thread(serving.kill)

            def logged(text: str) -> bool:
                return any(text in record.getMessage() for record in caplog.records)

            # Until kazoo notices the dead connection the duties still look active: wait for the pause itself.
            await async_eventually(lambda: asyncio.sleep(0, logged("leader duties paused")), timeout=15)
            await async_eventually(lambda: asyncio.sleep(0, logged("leader duties resume")
                                                         and presence.leader_duties_active(Role.COMPUTE)), timeout=15)

        assert presence.sessions == 1  # same session: no re-join, no re-election
        assert presence.elections[Role.COMPUTE].contender_path == contender
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await zk_async.stop_client(client)
