"""Steps 2 and 3: find the compute leaders in ZooKeeper, choose the request's coordinator, hand it the order.

Coordinators are chosen by rendezvous ranking on the request uid: requests spread over the leaders,
and a retry of the same request goes to the same first choice, then to the next.

A leader entry is only a claim (any agent may write ZooKeeper): the operator hands orders only to an entry
whose node is a compute node of the rack it claims, by the Node's own labels, and the TLS handshake then
checks that the listener holds that node's certificate.
"""

import dataclasses
import logging
import time
from collections.abc import Mapping

from rackmesh.labels import Role
from rackmesh.logs import flow_step, request_fields
from rackmesh.nodes import NodeState
from rackmesh.peer_client import PeerError
from rackmesh.protocol import ORDERS, Order, OrderAccepted
from rackmesh.rendezvous import ranked
from rackmesh.zk_layout import MemberRecord
from rackmesh_operator.services import Services

logger = logging.getLogger(__name__)


class HandoffFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason, self.message = reason, message


@dataclasses.dataclass(frozen=True)
class Handoff:
    coordinator: MemberRecord
    leader_lookup_seconds: float


async def compute_leaders(services: Services, nodes: Mapping[str, NodeState]) -> list[MemberRecord]:
    """The compute leaders whose entry matches their Node: a compute node of the rack it claims to lead."""
    leaders = await services.directory.leaders(Role.COMPUTE)
    claimed = [leader for leader in leaders if leader.node in nodes and Role.COMPUTE in nodes[leader.node].roles
               and nodes[leader.node].rack == leader.rack]
    if len(claimed) < len(leaders):
        logger.warning("leader entries that no Node backs are ignored", extra={
            "entries": sorted(f"{leader.rack}/{leader.node}" for leader in leaders if leader not in claimed)})
    return claimed


async def hand_over(services: Services, order: Order, nodes: Mapping[str, NodeState],
                    avoid: frozenset[str] = frozenset()) -> Handoff:
    """Give ``order`` to the first compute leader (in the request's ranking) that takes it."""
    uid = order.request.uid
    started = time.monotonic()
    leaders = await compute_leaders(services, nodes)
    lookup = round(time.monotonic() - started, 4)
    candidates = [leader for leader in ranked(leaders, uid, lambda m: m.node) if leader.node not in avoid]
    flow_step(logger, 2, "looked up compute leaders", order.request, leaders=[m.node for m in leaders],
              ranking=[m.node for m in candidates], seconds=lookup)
    if not candidates:
        raise HandoffFailed("NoComputeLeaders", "no compute rack has a leader in ZooKeeper yet; "
                                                "are the rackmesh agents running on compute nodes?")
    refusals = []
    for leader in candidates:
        try:
            accepted = await services.peers.post(leader, ORDERS, order, OrderAccepted)
        except PeerError as exc:
            refusals.append(f"{leader.node}: {exc.reason}: {exc.message}")
            logger.warning("coordinator candidate did not take the order",
                           extra={**request_fields(order.request), "candidate": leader.node, "error": str(exc)})
            continue
        flow_step(logger, 3, "handed the order to its coordinator", order.request, coordinator=leader.node,
                  rack=leader.rack, endpoint=leader.endpoint, accepted=accepted is not None)
        return Handoff(leader, lookup)
    raise HandoffFailed("CoordinatorUnreachable", "no compute leader took the request: " + "; ".join(refusals))
