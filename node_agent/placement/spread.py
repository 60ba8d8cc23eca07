"""How a request is spread over racks and nodes: where new VMs go, which VMs go first on scale-in,
and which names (indices) new VMs take. Deterministic, so a resumed coordinator decides the same way.

Placing: one VM at a time goes to the rack where the request has the fewest VMs so far (those it
already has included), and within it to the node with the fewest, among those whose offer is not
used up. Racks and nodes that offer less simply fill up first.

Removing (scale-in): one VM at a time comes from the rack where the request has the most VMs, within
it from the node with the most, and on that node the VM with the highest index; ties go to the rack
and node whose name sorts last. So the spread stays as even as placing made it.
"""

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable

from rackmesh.protocol import MAX_REPLICAS, NodeOffer
from rackmesh.request_record import Portion


def decide(offers: list[NodeOffer], wanted: int, existing: Iterable[Portion] = ()) -> dict[str, int] | None:
    """New VMs per node, or None when the offers cannot cover ``wanted`` (all or nothing)."""
    if sum(offer.count for offer in offers) < wanted:
        return None
    on_node: Counter[str] = Counter()
    on_rack: Counter[str] = Counter()
    for portion in existing:
        on_node[portion.node] += len(portion.indices)
        on_rack[portion.rack] += len(portion.indices)
    remaining = {offer.node: offer.count for offer in offers if offer.count > 0}
    nodes_of: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for offer in offers:
        if offer.count > 0:
            nodes_of[offer.rack].append((on_node[offer.node], offer.node))
    racks = [(on_rack[rack], rack) for rack in sorted(nodes_of)]
    heapq.heapify(racks)
    for rack_nodes in nodes_of.values():
        heapq.heapify(rack_nodes)
    assigned: dict[str, int] = defaultdict(int)
    for _ in range(wanted):
        rack_count, rack = heapq.heappop(racks)
        node_count, node = heapq.heappop(nodes_of[rack])
        assigned[node] += 1
        remaining[node] -= 1
        if remaining[node]:
            heapq.heappush(nodes_of[rack], (node_count + 1, node))
        if nodes_of[rack]:
            heapq.heappush(racks, (rack_count + 1, rack))
    return dict(assigned)


def portions(offers: list[NodeOffer], counts: dict[str, int], indices: list[int]) -> list[Portion]:
    """Give the new VMs' ``indices`` (in order) to the chosen nodes: consecutive runs, in (rack, node) order."""
    chosen = sorted((offer for offer in offers if counts.get(offer.node)), key=lambda o: (o.rack, o.node))
    if sum(counts[offer.node] for offer in chosen) != len(indices):
        raise ValueError("the counts must cover exactly the given indices")
    result, start = [], 0
    for offer in chosen:
        count = counts[offer.node]
        result.append(Portion(node=offer.node, rack=offer.rack, endpoint=offer.endpoint,
                              indices=indices[start:start + count]))
        start += count
    return result


def new_indices(taken: set[int], preferred: Iterable[int], wanted: int) -> list[int]:
    """The indices (VM names) for ``wanted`` new VMs: ``preferred`` ones first (VMs that were lost come
    back under their own names), then the lowest indices not ``taken``."""
    chosen = [index for index in sorted(set(preferred)) if index not in taken][:wanted]
    used = taken | set(chosen)
    candidate = 0
    while len(chosen) < wanted:
        if candidate >= MAX_REPLICAS:
            raise ValueError(f"no free VM index below {MAX_REPLICAS}")
        if candidate not in used:
            chosen.append(candidate)
        candidate += 1
    return chosen


def surplus(existing: list[Portion], count: int) -> dict[str, list[int]]:
    """Which ``count`` VMs to remove, per node (see the module's rule)."""
    left = {portion.node: sorted(portion.indices) for portion in existing}
    rack_of = {portion.node: portion.rack for portion in existing}
    removed: dict[str, list[int]] = defaultdict(list)
    for _ in range(min(count, sum(map(len, left.values())))):
        on_rack: Counter[str] = Counter()
        for node, indices in left.items():
            on_rack[rack_of[node]] += len(indices)
        rack = max(on_rack, key=lambda name: (on_rack[name], name))
        node = max((n for n in left if rack_of[n] == rack and left[n]), key=lambda name: (len(left[name]), name))
        removed[node].append(left[node].pop())
    return dict(removed)


def without(existing: list[Portion], indices: set[int]) -> list[Portion]:
    """``existing`` less the VMs ``indices`` (a node left with none drops out)."""
    kept = [Portion(p.node, p.rack, p.endpoint, [i for i in p.indices if i not in indices], p.holders)
            for p in existing]
    return [portion for portion in kept if portion.indices]


def merged(existing: list[Portion], added: list[Portion]) -> list[Portion]:
    """One portion per node: the new VMs join the node's earlier ones (and their image holders)."""
    by_node = {portion.node: portion for portion in existing}
    for portion in added:
        before = by_node.get(portion.node)
        if before is None:
            by_node[portion.node] = portion
            continue
        holders = before.holders + [holder for holder in portion.holders if holder not in before.holders]
        by_node[portion.node] = Portion(portion.node, portion.rack, portion.endpoint,
                                        sorted(before.indices + portion.indices), holders)
    return sorted(by_node.values(), key=lambda p: (p.rack, p.node))
