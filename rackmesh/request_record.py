"""The per-request record in ZooKeeper (``requests/<uid>``): what the coordinator decided, so another
coordinator can pick the request up, and the operator can report it.

The coordinator of the moment is its only writer (compare-and-set on the znode version); the
operator reads it and deletes it when the DeploymentRequest goes.
"""

import contextlib
import dataclasses
from enum import StrEnum

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from rackmesh import messages, zk_async
from rackmesh.protocol import ImageHolder, Order
from rackmesh.zk_layout import ZkLayout


class Stage(StrEnum):
    PLACING = "Placing"  # handshake under way; nothing committed yet
    COMMITTED = "Committed"  # portions decided and committed; the agents look up the image
    DEPLOYING = "Deploying"  # every portion has its image holders; the agents write the VMs
    FAILED = "Failed"


@dataclasses.dataclass(frozen=True)
class Portion:
    node: str
    rack: str
    endpoint: str
    start: int
    count: int
    holders: list[ImageHolder] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    order: Order
    coordinator: str
    stage: Stage
    portions: list[Portion] = dataclasses.field(default_factory=list)
    reason: str = ""  # CamelCase, when FAILED
    message: str = ""
    # Seconds per phase, measured where it happens: handshake (coordinator), imageLookup (slowest agent).
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    # Wall clock (epoch seconds) when the coordinator started the agents' deployments: the operator
    # measures "VM objects written" from here.
    deploying_since: float = 0.0


class RecordChanged(Exception):
    """Someone else wrote or deleted the record since we read it."""


async def read(client: KazooClient, layout: ZkLayout, uid: str) -> tuple[RequestRecord, int] | None:
    """The record and its znode version, or None if there is none."""
    try:
        data, stat = await zk_async.wait(client.get_async(layout.request(uid)))
    except NoNodeError:
        return None
    return messages.decode_bytes(RequestRecord, data), stat.version


async def write(client: KazooClient, layout: ZkLayout, record: RequestRecord, version: int | None) -> int:
    """Create (``version`` None) or replace the record version ``version``; returns the new version."""
    path = layout.request(record.order.request.uid)
    data = messages.encode_bytes(record)
    try:
        if version is None:
            await zk_async.wait(client.create_async(path, data, makepath=True))
            return 0
        stat = await zk_async.wait(client.set_async(path, data, version=version))
    except (BadVersionError, NodeExistsError, NoNodeError) as exc:
        raise RecordChanged(f"request record {path} changed: {type(exc).__name__}") from exc
    return int(stat.version)


async def delete(client: KazooClient, layout: ZkLayout, uid: str) -> None:
    with contextlib.suppress(NoNodeError):
        await zk_async.wait(client.delete_async(layout.request(uid)))
