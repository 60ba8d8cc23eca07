"""What ``rackmesh status`` reports, read from where each part lives: every rack's leaders and members,
each member's free capacity and reservations, and the requests with their stage.

Members, leaders and request records are in ZooKeeper. Capacity is not (each agent is the single writer of
its own node's), so every member's agent is asked for its view (``GET /v1/view``, which an agent's or the
operator's certificate may read), all at once and within one deadline: an agent that does not answer by then is
reported as such, never waited for.
"""

import asyncio
import contextlib
import dataclasses
import json
import logging
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from rackmesh import messages, registry, request_record, zk_async
from rackmesh.config import Settings
from rackmesh.identity.credentials import TlsFiles
from rackmesh.identity.names import Identity
from rackmesh.labels import Role
from rackmesh.peer_client import refusal
from rackmesh.protocol import VIEW
from rackmesh.quantities import Resources
from rackmesh.zk_layout import MemberRecord, ZkLayout

Say = Callable[[str], None]
# kazoo's last word after every retry failed; the complaint before it says why.
_KAZOO_GAVE_UP = "Failed connecting to Zookeeper within the connection retry policy."


class StatusError(Exception):
    """The status could not be read; the message says what was tried and why it failed."""


@dataclasses.dataclass(frozen=True)
class Held:
    """Room an agent holds for one request: VMs offered (not yet committed) and VM indices committed."""

    request: str  # namespace/name
    offered: int
    committed: int
    expires_in_seconds: float


@dataclasses.dataclass(frozen=True)
class AgentReport:
    allocatable: Resources
    free: Resources  # allocatable, minus the VMs pinned to the node, minus live reservations
    reservations: list[Held]
    gone: bool  # its Node is deleted or out-of-service: it offers no room


@dataclasses.dataclass(frozen=True)
class NodeStatus:
    node: str
    endpoint: str
    roles: list[Role]  # the roles it is a member of, in ZooKeeper
    leads: list[Role]  # the roles whose rack election it won
    report: AgentReport | None
    problem: str = ""  # why its agent gave no report


@dataclasses.dataclass(frozen=True)
class RackStatus:
    rack: str
    leaders: dict[Role, str | None]  # per role with members in this rack
    nodes: list[NodeStatus]


@dataclasses.dataclass(frozen=True)
class RequestStatus:
    """A request as its record has it: the coordinator's stage of its latest round."""

    uid: str
    request: str  # namespace/name ("" if the record cannot be read)
    stage: str  # request_record.Stage, or "Unreadable"
    coordinator: str = ""
    replicas: int = 0
    placed: int = 0  # VMs the record places (settled and in flight)
    reason: str = ""
    message: str = ""
    unanswered: list[str] = dataclasses.field(default_factory=list)
    changed_at: float = 0.0  # epoch seconds of the latest stage change


@dataclasses.dataclass(frozen=True)
class MeshStatus:
    zookeeper: str
    racks: list[RackStatus]
    requests: list[RequestStatus]


async def read_status(settings: Settings, tls: TlsFiles, timeout: float, say: Say) -> MeshStatus:
    """ZooKeeper's members, leaders and records, then every member's agent, each part within ``timeout``."""
    with _kazoo_complaints() as complaints:
        say(f"connecting to ZooKeeper at {settings.zk_hosts}")
        client = await _connect(settings, tls, timeout, complaints)
        try:
            say(f"reading racks and requests from ZooKeeper at {settings.zk_hosts}")
            views, requests = await _read_zookeeper(client, ZkLayout(settings.zk_root), settings.zk_hosts, timeout)
        finally:
            await zk_async.stop_client(client)
    members = {member.node: member for view in views for member in view.members}
    say(f"asking {len(members)} agents for their capacity and reservations")
    answers = await _ask_agents(list(members.values()), tls, timeout)
    return MeshStatus(settings.zk_hosts, _racks(views, answers), requests)


class _Complaints(logging.Handler):
    """Keeps kazoo's latest complaint (why it could not connect) instead of printing every retry."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.latest = ""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message != _KAZOO_GAVE_UP:
            self.latest = message


@contextlib.contextmanager
def _kazoo_complaints() -> Iterator[_Complaints]:
    logger = logging.getLogger("kazoo")
    complaints, propagate = _Complaints(), logger.propagate
    logger.addHandler(complaints)
    logger.propagate = False
    try:
        yield complaints
    finally:
        logger.removeHandler(complaints)
        logger.propagate = propagate


async def _connect(settings: Settings, tls: TlsFiles, timeout: float, complaints: _Complaints) -> KazooClient:
    try:
        return await zk_async.start_client(settings.zk_hosts, settings.zk_session_timeout, timeout, tls=tls)
    except KazooTimeoutError:  # kazoo has stopped its retries by now
        why = complaints.latest or "no answer"
        raise StatusError(f"could not connect to ZooKeeper at {settings.zk_hosts} within {timeout:g} s "
                          f"({why})") from None
    except ValueError as exc:  # kazoo's parse of the connect string
        raise StatusError(f"{settings.zk_hosts!r} is not a ZooKeeper connect string (HOST:PORT,...): {exc}") from None


async def _read_zookeeper(client: KazooClient, layout: ZkLayout, hosts: str,
                          timeout: float) -> tuple[list[registry.RackView], list[RequestStatus]]:
    directory = registry.Directory(client, layout, watch=False)
    try:
        async with asyncio.timeout(timeout):
            views = [view for role in Role for view in await directory.racks(role)]
            uids = sorted(await request_record.uids(client, layout))
            requests = await asyncio.gather(*(_request(client, layout, uid) for uid in uids))
    except TimeoutError:
        raise StatusError(f"ZooKeeper at {hosts} did not answer the reads of {layout.root} within "
                          f"{timeout:g} s") from None
    except KazooException as exc:  # NoAuth: a certificate ZooKeeper's ACLs do not name
        raise StatusError(f"ZooKeeper at {hosts} refused to read {layout.root}: {type(exc).__name__} "
                          f"{exc}".rstrip()) from None
    return views, sorted((r for r in requests if r is not None), key=lambda r: (r.request, r.uid))


async def _request(client: KazooClient, layout: ZkLayout, uid: str) -> RequestStatus | None:
    try:
        found = await request_record.read(client, layout, uid)
    except messages.MessageError as exc:
        return RequestStatus(uid, "", "Unreadable", message=str(exc))
    if found is None:  # deleted since it was listed
        return None
    record = found[0]
    request = record.order.request
    return RequestStatus(uid, f"{request.namespace}/{request.name}", str(record.stage), record.coordinator,
                         record.order.replicas, len(record.indices()), record.reason, record.message,
                         record.unanswered, record.changed_at)


async def _ask_agents(members: list[MemberRecord], tls: TlsFiles,
                      timeout: float) -> dict[str, AgentReport | str]:
    """Every member's report, or why there is none; the whole round ends within ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    connector = aiohttp.TCPConnector(ssl=_client_context(tls), limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        answers = await asyncio.gather(*(_ask(session, member, deadline, timeout) for member in members))
    return {member.node: answer for member, answer in zip(members, answers, strict=True)}


async def _ask(session: aiohttp.ClientSession, member: MemberRecord, deadline: float,
               timeout: float) -> AgentReport | str:
    try:
        async with (asyncio.timeout_at(deadline),
                    session.get(member.endpoint + VIEW, server_hostname=Identity.agent(member.node).dns_name)
                    as response):
            body = await response.read()
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except aiohttp.ClientError as exc:
        return f"unreachable at {member.endpoint}: {exc}"
    if response.status != 200:
        refused = refusal(member.endpoint, response.status, body)
        return f"refused: {refused.status} {refused.reason}: {refused.message}"
    try:
        return _report(json.loads(body))
    except (KeyError, TypeError, ValueError) as exc:
        return f"an answer that is not an agent's view ({type(exc).__name__}: {exc})"


def _report(view: dict[str, Any]) -> AgentReport | str:
    if "free" not in view:  # the agent answers before it has joined: node and ready only
        return "not joined yet"
    held = [Held(entry["request"], int(entry["offered"]), len(entry["committed"]),
                 float(entry["expiresInSeconds"])) for entry in view["reservations"]]
    return AgentReport(_resources(view["allocatable"]), _resources(view["free"]), held, bool(view["gone"]))


def _resources(raw: dict[str, Any]) -> Resources:
    return Resources(int(raw["cpuMillis"]), int(raw["memoryBytes"]))


def _client_context(tls: TlsFiles) -> ssl.SSLContext:
    """Trusts the rackmesh CA only and presents the certificate; peers are checked by ``server_hostname``."""
    context = ssl.create_default_context(cafile=tls.ca_file)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


def _racks(views: list[registry.RackView], answers: dict[str, AgentReport | str]) -> list[RackStatus]:
    by_rack: dict[str, list[registry.RackView]] = {}
    for view in views:
        by_rack.setdefault(view.rack, []).append(view)
    racks = []
    for rack, role_views in sorted(by_rack.items()):
        members: dict[str, MemberRecord] = {}
        roles: dict[str, list[Role]] = {}
        for view in role_views:
            for member in view.members:
                members.setdefault(member.node, member)
                roles.setdefault(member.node, []).append(view.role)
        leaders = {view.role: view.leader.node if view.leader else None for view in role_views}
        nodes = []
        for name in sorted(members):
            answer = answers[name]
            nodes.append(NodeStatus(name, members[name].endpoint, roles[name],
                                    [role for role, leader in leaders.items() if leader == name],
                                    answer if isinstance(answer, AgentReport) else None,
                                    answer if isinstance(answer, str) else ""))
        racks.append(RackStatus(rack, leaders, nodes))
    return racks
