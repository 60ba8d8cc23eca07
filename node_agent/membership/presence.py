"""The agent's presence in ZooKeeper: membership entries and rack elections, across session changes.

SUSPENDED (connection lost, session maybe alive): leader duties pause, nothing is torn down.
CONNECTED again with the same session: duties resume.
LOST (session expired, every ephemeral node gone): elections stop, and on the next
connection the agent re-joins its racks and contends again.
"""

import asyncio
import contextlib
import logging

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.protocol.states import KazooState

from rackmesh import zk_async
from rackmesh.labels import Role
from rackmesh.zk_layout import MemberRecord, ZkLayout
from rackmesh_node_agent.membership.election import OwnContenderGone, RackElection

logger = logging.getLogger(__name__)


class Presence:
    def __init__(self, client: KazooClient, layout: ZkLayout, records: list[MemberRecord]) -> None:
        self._client = client
        self._layout = layout
        self._records = records
        self.connected = asyncio.Event()
        self.suspended = False
        self.joined = asyncio.Event()
        self.sessions = 0  # how many sessions this agent has joined with
        self.elections: dict[Role, RackElection] = {}
        self._election_tasks: list[asyncio.Task[None]] = []

    def leads(self, role: Role) -> bool:
        election = self.elections.get(role)
        return election is not None and election.is_leader

    def leader_duties_active(self, role: Role) -> bool:
        """Lead and act as leader only while the session is known to be alive."""
        return self.leads(role) and not self.suspended

    async def run(self) -> None:
        """Keep membership and elections true to the current session, until cancelled."""
        loop = asyncio.get_running_loop()
        states = zk_async.SessionStates(self._client, loop)
        if self._client.connected:
            self.connected.set()
        try:
            while True:
                await self.connected.wait()
                await self._join()
                await self._follow_until_lost(states)
        finally:
            states.close()
            await self._stop_elections()

    async def _follow_until_lost(self, states: zk_async.SessionStates) -> None:
        while True:
            state = await states.queue.get()
            if state == KazooState.SUSPENDED:
                self.connected.clear()
                self.suspended = True
                logger.warning("zookeeper connection suspended; leader duties paused")
            elif state == KazooState.CONNECTED:
                self.connected.set()
                if self.suspended:
                    self.suspended = False
                    logger.info("zookeeper connection restored with the same session; leader duties resume")
            elif state == KazooState.LOST:
                self.connected.clear()
                self.joined.clear()
                logger.warning("zookeeper session lost; re-joining on the next session")
                await self._stop_elections()
                self.suspended = False
                await self._wait_reconnected(states)
                return

    async def _wait_reconnected(self, states: zk_async.SessionStates) -> None:
        while not self._client.connected:
            if await states.queue.get() == KazooState.CONNECTED:
                break
        self.connected.set()

    async def _join(self) -> None:
        for record in self._records:
            await self._register(record)
        for record in self._records:
            election = RackElection(self._client, self._layout, record, self.connected)
            await election.enter()
            self.elections[record.role] = election
            self._election_tasks.append(asyncio.create_task(self._contend(election)))
        self.sessions += 1
        self.joined.set()
        logger.info("joined racks", extra={"memberships": [f"{r.role}/{r.rack}" for r in self._records]})

    async def _contend(self, election: RackElection) -> None:
        try:
            await election.run()
        except (*zk_async.SESSION_GONE, OwnContenderGone) as exc:
            logger.warning("election ended with the session", extra={"error": repr(exc)})

    async def _register(self, record: MemberRecord) -> None:
        """Create our ephemeral membership entry, replacing one left by a previous session of ours."""
        path = self._layout.member(record.role, record.rack, record.node)
        while True:
            try:
                await zk_async.wait(self._client.create_async(path, record.encode(), ephemeral=True,
                                                              makepath=True))
                return
            except NodeExistsError:
                # We are the only writer of our node's entry: an existing one is our own dead session's.
                with contextlib.suppress(NoNodeError):
                    await zk_async.wait(self._client.delete_async(path))

    async def _stop_elections(self) -> None:
        for task in self._election_tasks:
            task.cancel()
        await asyncio.gather(*self._election_tasks, return_exceptions=True)
        self._election_tasks.clear()
