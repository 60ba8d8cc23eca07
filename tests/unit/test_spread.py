"""How the coordinator splits a request over offers.

Case matrix:
- offers short of the request: no decision (all or nothing)
- equal offers: VMs spread evenly over racks, then over the nodes of each rack
- uneven offers: no node gets more than it offered; small offers fill up, the rest spread
- a rack with many nodes does not take more than its share while other racks still have room
- numbering: consecutive index ranges per node in (rack, node) order, covering 0..N-1 exactly once
"""

import pytest

from rackmesh.protocol import NodeOffer
from rackmesh_node_agent.placement.spread import decide, portions


def offer(node: str, rack: str, count: int) -> NodeOffer:
    return NodeOffer(node=node, rack=rack, endpoint=f"http://{node}", count=count)


def grid(racks: int, nodes: int, count: int) -> list[NodeOffer]:
    return [offer(f"n{r}-{n}", f"r{r}", count) for r in range(racks) for n in range(nodes)]


def test_offers_short_of_the_request_decide_nothing():
    assert decide(grid(2, 2, 3), 13) is None
    assert decide([], 1) is None


def test_equal_offers_spread_evenly_over_racks_and_nodes():
    counts = decide(grid(3, 3, 16), 50)
    assert counts is not None and sum(counts.values()) == 50
    per_rack = [sum(counts[f"n{r}-{n}"] for n in range(3)) for r in range(3)]
    assert sorted(per_rack) == [16, 17, 17]
    assert max(counts.values()) - min(counts.values()) <= 1


@pytest.mark.parametrize("replicas", [1, 7, 20, 31])
def test_no_node_gets_more_than_it_offered(replicas):
    offers = [offer("a1", "a", 1), offer("a2", "a", 10), offer("b1", "b", 2), offer("c1", "c", 30)]
    counts = decide(offers, replicas)
    assert counts is not None and sum(counts.values()) == replicas
    assert all(counts[o.node] <= o.count for o in offers if o.node in counts)


def test_a_big_rack_takes_only_its_share_while_others_have_room():
    offers = [offer(f"big-{n}", "big", 5) for n in range(6)] + [offer("small-0", "small", 5)]
    counts = decide(offers, 10)
    assert counts is not None
    assert counts["small-0"] == 5
    assert sum(v for k, v in counts.items() if k.startswith("big")) == 5


def test_portions_number_every_vm_once_in_rack_and_node_order():
    offers = grid(2, 2, 10)
    result = portions(offers, decide(offers, 9))
    assert [(p.rack, p.node) for p in result] == sorted((p.rack, p.node) for p in result)
    indices = [index for p in result for index in range(p.start, p.start + p.count)]
    assert indices == list(range(9))
    assert {p.endpoint for p in result} == {f"http://{p.node}" for p in result}
