"""Choosing an image's holders (flow step 9), a pure function.

Case matrix:
- holders in several racks: racks interleave, so the first ``redundancy`` are in distinct racks
- racks hold different numbers of copies: the round-robin carries on with the racks that have more
- fewer racks than the redundancy: the rest come from racks already used, all holders are returned
- the same holders in any order (or repeated): the same answer
- too few holders, every rack answered: 409 InsufficientImageReplicas, naming the holders and the requirement
- no holder at all: 409, "no holder"
- too few holders, some racks did not answer: 503 StorageUnreachable naming those racks (a retry may find more)
- enough holders although some racks did not answer: the holders found
"""

import random

import pytest

from rackmesh.protocol import Holders, ImageHolder
from rackmesh_node_agent.http_api import Refusal
from rackmesh_node_agent.images.locate import choose_holders

IMAGE = "lob123-rhel-6.0"


def holder(node: str, rack: str) -> ImageHolder:
    return ImageHolder(node=node, rack=rack, url=f"http://{node}:8470/images/{IMAGE}.img")


def found(*holders: ImageHolder) -> Holders:
    return Holders(image=IMAGE, holders=list(holders))


def nodes(holders: Holders) -> list[str]:
    return [h.node for h in holders.holders]


def test_racks_interleave_so_the_first_holders_are_in_distinct_racks():
    chosen = choose_holders(found(holder("a-1", "rack-a"), holder("a-2", "rack-a"), holder("b-1", "rack-b"),
                                  holder("b-2", "rack-b"), holder("c-1", "rack-c")), redundancy=2)
    assert nodes(chosen) == ["a-1", "b-1", "c-1", "a-2", "b-2"]
    assert chosen.image == IMAGE


def test_racks_with_more_copies_fill_the_later_rounds():
    chosen = choose_holders(found(holder("a-1", "rack-a"), holder("b-1", "rack-b"), holder("b-2", "rack-b"),
                                  holder("b-3", "rack-b")), redundancy=2)
    assert nodes(chosen) == ["a-1", "b-1", "b-2", "b-3"]


def test_fewer_racks_than_the_redundancy_reuse_racks():
    chosen = choose_holders(found(holder("a-2", "rack-a"), holder("a-1", "rack-a"), holder("a-3", "rack-a")),
                            redundancy=3)
    assert nodes(chosen) == ["a-1", "a-2", "a-3"]


def test_the_choice_does_not_depend_on_answer_order_or_repeats():
    holders = [holder(f"{rack}-{n}", f"rack-{rack}") for rack in "abc" for n in range(3)]
    expected = choose_holders(found(*holders), redundancy=2)
    shuffled = holders + holders[:4]
    random.Random(7).shuffle(shuffled)
    assert choose_holders(found(*shuffled), redundancy=2) == expected


def test_too_few_holders_is_insufficient_image_replicas():
    with pytest.raises(Refusal) as refused:
        choose_holders(found(holder("s-0-0", "storage-0")), redundancy=2)
    assert (refused.value.status, refused.value.reason) == (409, "InsufficientImageReplicas")
    assert refused.value.message == f"image {IMAGE} has 1 holder (s-0-0 in storage-0); 2 are required"


def test_no_holder_at_all():
    with pytest.raises(Refusal) as refused:
        choose_holders(found(), redundancy=1)
    assert (refused.value.status, refused.value.reason) == (409, "InsufficientImageReplicas")
    assert refused.value.message == f"image {IMAGE} has no holder; 1 is required"


def test_too_few_holders_with_silent_racks_is_storage_unreachable():
    with pytest.raises(Refusal) as refused:
        choose_holders(found(holder("s-0-0", "storage-0"), holder("s-0-1", "storage-0")), redundancy=3,
                       unanswered=["storage-2", "storage-1"])
    assert (refused.value.status, refused.value.reason) == (503, "StorageUnreachable")
    assert refused.value.message == (
        f"image {IMAGE} has 2 holders (s-0-0 in storage-0, s-0-1 in storage-0) in the storage racks that answered; "
        "3 are required; storage racks that did not answer: storage-1, storage-2")


def test_enough_holders_despite_silent_racks():
    chosen = choose_holders(found(holder("s-0-0", "storage-0"), holder("s-1-0", "storage-1")), redundancy=2,
                            unanswered=["storage-2"])
    assert nodes(chosen) == ["s-0-0", "s-1-0"]
