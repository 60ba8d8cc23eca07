"""An agent's service time is its own work on a call: the time it waits for the peers it asks is not in it.

Case matrix: a step that only works; a step that waits for peers (the wait is taken off); nested steps
(each counts only its own share); each time kept with its request and step, and drained once.
"""

import asyncio
import time

from rackmesh_node_agent.service_time import ServiceTimes, waiting_for_peers


def busy(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


async def test_waiting_for_peers_is_not_service_time():
    times = ServiceTimes()
    with times.measure("node-offer", "uid-1"):
        busy(0.02)
    with times.measure("rack-offers", "uid-1"):
        busy(0.02)
        async with waiting_for_peers():
            await asyncio.sleep(0.5)
    offer, rack = times.drain()
    assert (offer.request, offer.step, rack.step) == ("uid-1", "node-offer", "rack-offers")
    assert offer.seconds >= 0.02
    assert 0.02 <= rack.seconds < 0.4  # the 0.5 s wait is not counted
    assert times.drain() == []


async def test_a_nested_step_counts_only_its_own_share():
    times = ServiceTimes()

    async def agent_offer() -> None:
        with times.measure("node-offer", "uid-2"):
            busy(0.02)

    with times.measure("rack-offers", "uid-2"):
        async with waiting_for_peers():
            await asyncio.gather(agent_offer())
    kept = {entry.step: entry.seconds for entry in times.drain()}
    assert kept["node-offer"] >= 0.02
    assert kept["rack-offers"] < kept["node-offer"]  # the local offer ran while the leader waited for it
