"""Reservations: held for a time, expired lazily, released on demand."""

from rackmesh.protocol import RequestRef
from rackmesh.quantities import Resources
from rackmesh_node_agent.capacity.reservations import Reservation, Reservations


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_reservation_lives_until_its_time_limit_unless_extended():
    clock = Clock()
    held = Reservations(clock)
    request = RequestRef("u-1", "default", "web")
    held.hold(Reservation(request, "u1.large", Resources.parse(2, "8Gi"), 4, held.expires_in(30)))
    clock.now += 29
    assert held.get("u-1") is not None
    held.extend("u-1", 60)
    clock.now += 59
    assert [r.count for r in held.live()] == [4]
    clock.now += 2
    assert held.get("u-1") is None and held.live() == []


def test_release_returns_what_was_held_and_forgets_it():
    held = Reservations(Clock())
    request = RequestRef("u-2", "default", "db")
    held.hold(Reservation(request, "u1.small", Resources.parse(1, "2Gi"), 2, held.expires_in(10)))
    assert held.describe()[0]["request"] == "default/db"
    assert held.release("u-2").count == 2
    assert held.release("u-2") is None
