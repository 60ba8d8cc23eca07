"""How the coordinator splits a request over offers.

Case matrix:
- offers short of the request: no decision (all or nothing)
- equal offers: VMs spread evenly over racks, then over the nodes of each rack
- uneven offers: no node gets more than it offered; small offers fill up, the rest spread
- a rack with many nodes does not take more than its share while other racks still have room
- numbering: the given indices in consecutive runs per node, in (rack, node) order, each exactly once
- scale-out: new VMs go where the request has fewest (its existing VMs count)
- new indices: lost ones first (same names back), then the lowest free ones
- scale-in: from the rack with the most, then the node with the most, highest index first; ties to the
  name that sorts last; deterministic
- merging a round's portions: one portion per node, indices and holders joined
"""

import pytest

from rackmesh.protocol import ImageHolder, NodeOffer
from rackmesh.request_record import Portion
from rackmesh_node_agent.placement.spread import decide, merged, new_indices, portions, surplus, without


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
    result = portions(offers, decide(offers, 9), [0, 1, 2, 3, 4, 5, 6, 7, 12])
    assert [(p.rack, p.node) for p in result] == sorted((p.rack, p.node) for p in result)
    assert [index for p in result for index in p.indices] == [0, 1, 2, 3, 4, 5, 6, 7, 12]
    assert {p.endpoint for p in result} == {f"http://{p.node}" for p in result}
    with pytest.raises(ValueError, match="cover exactly"):
        portions(offers, decide(offers, 9), [0, 1])


def portion(node: str, rack: str, *indices: int) -> Portion:
    return Portion(node, rack, f"http://{node}", list(indices))


def test_scale_out_goes_where_the_request_has_fewest():
    existing = [portion("n0-0", "r0", 0, 1, 2), portion("n0-1", "r0", 3, 4), portion("n1-0", "r1", 5)]
    counts = decide(grid(3, 2, 10), 6, existing)
    assert counts is not None
    added = {rack: sum(v for k, v in counts.items() if k.startswith(f"n{rack[1]}")) for rack in ("r0", "r1", "r2")}
    assert added == {"r0": 0, "r1": 3, "r2": 3}  # 5, 1, 0 before; 5, 4, 3 after
    assert (counts["n1-0"], counts["n1-1"]) == (1, 2)  # n1-0 had one already


def test_new_indices_bring_lost_vms_back_under_their_names_then_the_lowest_free():
    assert new_indices({0, 1, 3}, [7], 3) == [7, 2, 4]
    assert new_indices(set(), [], 3) == [0, 1, 2]
    assert new_indices({5}, [5, 9], 1) == [9]  # a lost index that is taken again is not reused twice
    assert new_indices({0, 1}, [8, 6], 1) == [6]


def test_scale_in_takes_from_the_fullest_rack_and_node_highest_index_first():
    existing = [portion("n0-0", "r0", 0, 1, 2), portion("n0-1", "r0", 3, 4), portion("n1-0", "r1", 5, 6),
                portion("n2-0", "r2", 7)]
    assert surplus(existing, 1) == {"n0-0": [2]}
    assert surplus(existing, 3) == {"n0-0": [2, 1], "n0-1": [4]}  # r0 keeps the most, 2 of 5
    removed = surplus(existing, 7)
    assert sum(map(len, removed.values())) == 7 and surplus(existing, 7) == removed
    kept = without(existing, {i for indices in removed.values() for i in indices})
    assert [i for p in kept for i in p.indices] == [0]  # everything but the lowest index of the fullest rack
    assert surplus(existing, 0) == {} and sum(map(len, surplus(existing, 99).values())) == 8


def test_a_rounds_portions_merge_into_one_per_node():
    a, b = ImageHolder("s-0", "st", "http://s-0"), ImageHolder("s-1", "st", "http://s-1")
    before = [Portion("n0", "r0", "http://n0", [0, 2], [a]), Portion("n1", "r1", "http://n1", [1], [a])]
    result = merged(before, [Portion("n0", "r0", "http://n0", [5], [b]), Portion("n2", "r0", "http://n2", [6], [b])])
    assert [(p.node, p.indices, p.holders) for p in result] == [
        ("n0", [0, 2, 5], [a, b]), ("n2", [6], [b]), ("n1", [1], [a])]
