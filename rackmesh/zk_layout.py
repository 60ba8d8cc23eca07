"""The ZooKeeper tree, in one place. ZooKeeper holds coordination state only.

    <root>/members/<role>/<rack>/<node>     ephemeral  MemberRecord: who is alive, and where
    <root>/election/<role>/<rack>/n_<seq>   ephemeral sequential  contenders, lowest wins
    <root>/leaders/<role>/<rack>            ephemeral  MemberRecord of the elected leader
    <root>/requests/<uid>                   persistent (request flow): decided allocation, for resumption
    <root>/coordinators/<uid>               persistent  the record's coordinator alone (written with it)
    <root>/image-access/<namespace>         persistent  sha256 of the namespace's image password (operator)

Capacity is never stored here: each agent is the single writer of its own node's capacity.
"""

import dataclasses
import json
from typing import Any

from rackmesh.labels import Role

ELECTION_PREFIX = "n_"


@dataclasses.dataclass(frozen=True)
class ZkLayout:
    root: str = "/rackmesh"

    def members(self, role: Role, rack: str | None = None) -> str:
        return _join(self.root, "members", role, rack)

    def member(self, role: Role, rack: str, node: str) -> str:
        return _join(self.root, "members", role, rack, node)

    def election(self, role: Role, rack: str) -> str:
        return _join(self.root, "election", role, rack)

    def leaders(self, role: Role) -> str:
        return _join(self.root, "leaders", role)

    def leader(self, role: Role, rack: str) -> str:
        return _join(self.root, "leaders", role, rack)

    def requests(self) -> str:
        return _join(self.root, "requests")

    def request(self, uid: str) -> str:
        return _join(self.root, "requests", uid)

    def coordinators(self) -> str:
        return _join(self.root, "coordinators")

    def coordinator(self, uid: str) -> str:
        return _join(self.root, "coordinators", uid)

    def image_access(self, namespace: str) -> str:
        return _join(self.root, "image-access", namespace)


def _join(*parts: str | None) -> str:
    return "/".join(part.strip("/") if index else part.rstrip("/")
                    for index, part in enumerate(parts) if part)


@dataclasses.dataclass(frozen=True)
class MemberRecord:
    """What an agent publishes about itself under members/ and, when elected, under leaders/."""

    node: str
    rack: str
    role: Role
    endpoint: str  # http://host:port of the agent's peer-to-peer API

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> "MemberRecord":
        raw: dict[str, Any] = json.loads(data)
        return cls(node=raw["node"], rack=raw["rack"], role=Role(raw["role"]), endpoint=raw["endpoint"])
