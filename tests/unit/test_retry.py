"""When the operator retries a waiting round: capped exponential backoff, or soon after the world changes.

Case matrix:
- backoff: 1 s after the first wait, doubling, never more than 5 minutes
- a waiting record is not retried before its backoff runs out, and is once it has
- a change in the world retries it at once (after a one-second spacing), only changes after it started waiting
- only a waiting record is retried this way
"""

import dataclasses
import time

from rackmesh.protocol import Order, RequestRef
from rackmesh.request_record import RequestRecord, Stage
from rackmesh_operator.reconcile import Reconciler, backoff
from rackmesh_operator.world import World

ORDER = Order(RequestRef("u-1", "default", "web"), 3, "u1.large", "lob123-rhel-6.0", generation=1)


def reconciler(world: World) -> Reconciler:
    body = {"metadata": {"uid": "u-1", "namespace": "default", "name": "web", "generation": 1},
            "spec": {"replicas": 3, "instancetype": "u1.large", "image": "lob123-rhel-6.0"}}
    return Reconciler(None, world, body, vms=list, nodes=dict, instancetype_exists=lambda _: True)  # type: ignore[arg-type]


def waiting(waits: int, seconds_ago: float) -> RequestRecord:
    return RequestRecord(ORDER, "c-0", Stage.WAITING, reason="InsufficientCapacity", waits=waits,
                         changed_at=time.time() - seconds_ago)


def test_backoff_doubles_from_one_second_up_to_five_minutes():
    assert [backoff(waits) for waits in (1, 2, 3, 4, 9, 10, 50)] == [1, 2, 4, 8, 256, 300, 300]


def test_a_waiting_round_is_retried_when_its_backoff_runs_out():
    world = World()
    follower = reconciler(world)
    assert not follower.retry_due(waiting(waits=3, seconds_ago=3.0), version=7)  # 4 s backoff
    assert follower.retry_due(waiting(waits=3, seconds_ago=4.1), version=7)
    assert not follower.retry_due(dataclasses.replace(waiting(3, 10.0), stage=Stage.SETTLED), version=7)


def test_a_change_in_the_world_retries_it_at_once():
    world = World()
    follower = reconciler(world)
    record = waiting(waits=8, seconds_ago=1.5)  # 128 s backoff
    assert not follower.retry_due(record, version=7)
    world.changed("a compute node joined or grew", node="c-9")
    assert follower.retry_due(record, version=7)
    fresh = waiting(waits=8, seconds_ago=0.2)
    assert not follower.retry_due(fresh, version=8)  # a new wait: earlier changes do not count
    world.changed("an instancetype exists")
    assert not follower.retry_due(fresh, version=8)  # ... and not within a second of the last round
    assert follower.retry_due(dataclasses.replace(fresh, changed_at=time.time() - 1.1), version=8)
