"""The per-request record in ZooKeeper (``requests/<uid>``): what the coordinator decided, so another
coordinator can pick the request up, and the operator can report it.

The coordinator of the moment is its only writer (compare-and-set on the znode version); the
operator reads it and deletes it when the DeploymentRequest goes.
"""

import contextlib
import dataclasses
import zlib
from enum import StrEnum

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from rackmesh import messages, zk_async
from rackmesh.protocol import ImageHolder, Order
from rackmesh.zk_layout import ZkLayout

COMPRESS_ABOVE = 64 * 1024
# 10,000 VMs (the most a request has) one per node, each portion with its holders: about 6 MB of JSON.
MAX_RECORD_BYTES = 16 * 1024 * 1024


class Stage(StrEnum):
    """Where the record's round is. A round brings the VMs to the order's replicas: it removes the surplus
    and places the missing VMs, all or nothing."""

    PLACING = "Placing"  # handshake under way; nothing of the round committed yet
    COMMITTED = "Committed"  # the round's portions decided; they are committed and the image looked up
    DEPLOYING = "Deploying"  # every new portion has its image holders; the agents write the VMs
    SETTLED = "Settled"  # the round is done: ``portions`` are the request's VMs, nothing is in flight
    WAITING = "Waiting"  # the round could not be met now (``reason``); nothing of it was created


IN_FLIGHT = frozenset({Stage.PLACING, Stage.COMMITTED, Stage.DEPLOYING})


@dataclasses.dataclass(frozen=True)
class Portion:
    """VMs ``indices`` of the request on ``node``; ``holders`` are the image copies their disks come from."""

    node: str
    rack: str
    endpoint: str
    indices: list[int]
    holders: list[ImageHolder] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    order: Order  # the order of the current (or last) round
    coordinator: str
    stage: Stage
    # The VMs of settled rounds, node by node (at most one portion per node).
    portions: list[Portion] = dataclasses.field(default_factory=list)
    # The round's new VMs (from COMMITTED on); they join ``portions`` when the round settles.
    placing: list[Portion] = dataclasses.field(default_factory=list)
    reason: str = ""  # CamelCase, when WAITING
    message: str = ""
    waits: int = 0  # rounds in a row that ended WAITING: the operator's retry backoff grows with it
    # Racks and agents that did not answer the latest decision's offers, even when asked again: the round
    # was placed without them, so its spread may be narrower than the cluster.
    unanswered: list[str] = dataclasses.field(default_factory=list)
    # Seconds per phase of the latest round, measured where it happens: handshake (coordinator),
    # imageLookup (coordinator, once per round).
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    # Wall clock (epoch seconds) when the coordinator started the agents' deployments, and when the
    # round last changed stage: the operator measures "VM objects written" and its retry backoff from them.
    deploying_since: float = 0.0
    changed_at: float = 0.0

    def indices(self) -> set[int]:
        """Every VM index the record places: settled and in flight."""
        return {index for portion in (*self.portions, *self.placing) for index in portion.indices}

    def node_of(self) -> dict[int, Portion]:
        return {index: portion for portion in (*self.portions, *self.placing) for index in portion.indices}


class RecordChanged(Exception):
    """Someone else wrote or deleted the record since we read it."""


def encode(record: RequestRecord) -> bytes:
    """JSON; compressed once large (a 10,000-VM request over 1,000 nodes is about 560 KB of JSON, much of it the
    same holders per portion, and a znode holds at most 1 MB). Small records stay readable in ``zkCli``."""
    data = messages.encode_bytes(record)
    return zlib.compress(data) if len(data) > COMPRESS_ABOVE else data


def decode(data: bytes) -> RequestRecord:
    """The record from its znode's data, plain or compressed; what would expand past ``MAX_RECORD_BYTES`` is
    refused (``MessageError``) without being expanded."""
    if data[:1] != b"{":
        expander = zlib.decompressobj()
        try:
            data = expander.decompress(data, MAX_RECORD_BYTES + 1)
        except zlib.error as exc:
            raise messages.MessageError(f"RequestRecord: neither JSON nor zlib data ({exc})") from None
        if len(data) > MAX_RECORD_BYTES or expander.unconsumed_tail:
            raise messages.MessageError(f"RequestRecord: expands past {MAX_RECORD_BYTES} bytes")
    return messages.decode_bytes(RequestRecord, data, limit=MAX_RECORD_BYTES)


async def read(client: KazooClient, layout: ZkLayout, uid: str) -> tuple[RequestRecord, int] | None:
    """The record and its znode version, or None if there is none."""
    try:
        data, stat = await zk_async.wait(client.get_async(layout.request(uid)))
    except NoNodeError:
        return None
    return decode(data), stat.version


async def write(client: KazooClient, layout: ZkLayout, record: RequestRecord, version: int | None) -> int:
    """Create (``version`` None) or replace the record version ``version``; returns the new version.

    The coordinator's name goes to ``coordinators/<uid>`` in the same transaction: agents check who may
    commit and deploy against it, a few bytes, where the record of a 10,000-VM request is a megabyte to
    read and decode (a thousand agents doing that at once took longer than the calls may)."""
    uid = record.order.request.uid
    path, coordinator = layout.request(uid), layout.coordinator(uid)
    data, name = encode(record), record.coordinator.encode()
    transaction = client.transaction()
    if version is None:
        for parent in (layout.requests(), layout.coordinators()):
            await zk_async.wait(client.ensure_path_async(parent))
        transaction.create(path, data)
        transaction.create(coordinator, name)
    else:
        transaction.set_data(path, data, version=version)
        transaction.set_data(coordinator, name)
    results = await zk_async.wait(transaction.commit_async())
    failed = [result for result in results if isinstance(result, Exception)]
    if failed:
        raise RecordChanged(f"request record {path} changed: {type(failed[0]).__name__}")
    return 0 if version is None else int(results[0].version)


async def coordinator_of(client: KazooClient, layout: ZkLayout, uid: str) -> str | None:
    """The coordinator the request's record names, or None if there is no record."""
    try:
        data, _ = await zk_async.wait(client.get_async(layout.coordinator(uid)))
    except NoNodeError:
        return None
    return data.decode()


async def uids(client: KazooClient, layout: ZkLayout) -> set[str]:
    """The uids of every request that has a record."""
    try:
        return set(await zk_async.wait(client.get_children_async(layout.requests())))
    except NoNodeError:
        return set()


async def delete(client: KazooClient, layout: ZkLayout, uid: str) -> None:
    for path in (layout.request(uid), layout.coordinator(uid)):
        with contextlib.suppress(NoNodeError):
            await zk_async.wait(client.delete_async(path))
