"""Reservations: offers and commitments, held for a time, expired lazily, released on demand.

Case matrix:
- an offer lives until its time limit; a new offer replaces it
- a commit turns the offer into VM indices held for the longer commit limit; a commitment counts only
  its VMs not written yet
- settling written VMs frees their room; release forgets everything of the request
"""

from rackmesh.protocol import RequestRef
from rackmesh.quantities import Resources
from rackmesh_node_agent.capacity.reservations import Reservations

SIZE = Resources.parse(2, "8Gi")
WEB = RequestRef("u-1", "default", "web")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_offer_lives_until_its_time_limit_and_a_new_one_replaces_it():
    clock = Clock()
    held = Reservations(clock)
    held.offer(WEB, "u1.large", SIZE, 4, 30)
    clock.now += 29
    assert held.get("u-1").offered == 4
    held.offer(WEB, "u1.large", SIZE, 2, 30)
    clock.now += 29
    assert [r.offered for r in held.live()] == [2]
    clock.now += 2
    assert held.get("u-1") is None and held.live() == []


def test_a_commitment_outlives_the_offer_and_counts_only_unwritten_vms():
    clock = Clock()
    held = Reservations(clock)
    held.offer(WEB, "u1.large", SIZE, 3, 30)
    reservation = held.commit(WEB, "u1.large", SIZE, [4, 7], 600)
    assert (reservation.offered, reservation.committed) == (0, {4, 7})
    clock.now += 300
    assert held.get("u-1").outstanding(pinned={("default", "web-0004")}) == 1
    assert held.get("u-1").unwritten(pinned=set()) == [4, 7]
    held.settle("u-1", [4, 7])
    assert held.get("u-1") is None


def test_release_returns_what_was_held_and_forgets_it():
    held = Reservations(Clock())
    held.offer(WEB, "u1.small", Resources.parse(1, "2Gi"), 2, 10)
    assert held.describe()[0]["request"] == "default/web"
    assert held.release("u-1").offered == 2
    assert held.release("u-1") is None
