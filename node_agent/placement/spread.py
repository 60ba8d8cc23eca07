"""How the coordinator splits a request over the offers: spread over racks, then over nodes.

One VM at a time goes to the rack with the fewest VMs so far, and within it to the node with the
fewest, among those whose offer is not used up. Racks and nodes that offer less simply fill up
first. Deterministic for the same offers, so a resumed coordinator decides the same way.
"""

import heapq
from collections import defaultdict

from rackmesh.protocol import NodeOffer
from rackmesh.request_record import Portion


def decide(offers: list[NodeOffer], replicas: int) -> dict[str, int] | None:
    """VMs per node, or None when the offers cannot cover ``replicas`` (all or nothing)."""
    if sum(offer.count for offer in offers) < replicas:
        return None
    remaining = {offer.node: offer.count for offer in offers if offer.count > 0}
    nodes_of: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for offer in offers:
        if offer.count > 0:
            nodes_of[offer.rack].append((0, offer.node))
    racks = [(0, rack) for rack in sorted(nodes_of)]
    for rack_nodes in nodes_of.values():
        heapq.heapify(rack_nodes)
    assigned: dict[str, int] = defaultdict(int)
    for _ in range(replicas):
        rack_count, rack = heapq.heappop(racks)
        node_count, node = heapq.heappop(nodes_of[rack])
        assigned[node] += 1
        remaining[node] -= 1
        if remaining[node]:
            heapq.heappush(nodes_of[rack], (node_count + 1, node))
        if nodes_of[rack]:
            heapq.heappush(racks, (rack_count + 1, rack))
    return dict(assigned)


def portions(offers: list[NodeOffer], counts: dict[str, int]) -> list[Portion]:
    """Number the VMs: each node gets a consecutive range of indices, in (rack, node) order."""
    chosen = sorted((offer for offer in offers if counts.get(offer.node)), key=lambda o: (o.rack, o.node))
    result, start = [], 0
    for offer in chosen:
        count = counts[offer.node]
        result.append(Portion(node=offer.node, rack=offer.rack, endpoint=offer.endpoint, start=start, count=count))
        start += count
    return result
