"""Steps 2 and 3: find the compute leaders in ZooKeeper, choose the request's coordinator, hand it the order.

Coordinators are chosen by rendezvous ranking on the request uid: requests spread over the leaders,
and a retry of the same request goes to the same first choice, then to the next.
"""

import dataclasses
import logging
import time

from rackmesh.labels import Role
from rackmesh.logs import flow_step
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


async def compute_leaders(services: Services) -> list[MemberRecord]:
    return await services.directory.leaders(Role.COMPUTE)


async def hand_over(services: Services, order: Order, avoid: frozenset[str] = frozenset()) -> Handoff:
    """Give ``order`` to the first compute leader (in the request's ranking) that takes it."""
    uid = order.request.uid
    started = time.monotonic()
    leaders = await compute_leaders(services)
    lookup = round(time.monotonic() - started, 4)
    candidates = [leader for leader in ranked(leaders, uid, lambda m: m.node) if leader.node not in avoid]
    flow_step(logger, 2, "looked up compute leaders", uid, leaders=[m.node for m in leaders],
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
                           extra={"request": uid, "candidate": leader.node, "error": str(exc)})
            continue
        flow_step(logger, 3, "handed the order to its coordinator", uid, coordinator=leader.node,
                  rack=leader.rack, endpoint=leader.endpoint, accepted=accepted is not None)
        return Handoff(leader, lookup)
    raise HandoffFailed("CoordinatorUnreachable", "no compute leader took the request: " + "; ".join(refusals))
