"""Watch dispatch by index: a change reaches only the watches of its resource and namespace whose
exact-match selector term (``metadata.name=x``, label ``k=v``) admits its new or previous state.

Case matrix:
- the log offers a change only to matching subscriptions (namespace, name, label, unindexed).
- an object moving between label values reaches the watchers of both values (DELETED / ADDED).
- label- and name-selected watch streams see their own transitions; other values get nothing.
- a subscription that lags behind compaction expires with 410; ended watches leave no subscription.
- 300 watch streams and 1,000 creates: every watcher gets exactly its objects.
- the measuring script (watchbench) runs on a tiny cluster: delivery, relists and collection checked.

"Gets nothing" is shown by order, not by waiting: a last write that every watcher does select
must be its first (or next) event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from rackmesh_sandbox.kube_api import KubeApiServer, errors, watchbench
from rackmesh_sandbox.kube_api.changes import Change, ChangeLog
from rackmesh_sandbox.kube_api.selectors import IndexTerm, index_term
from tests.kube_api.conftest import NODES, Client, node
from tests.support.waiting import async_eventually

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
ALL_CONFIGMAPS = "/api/v1/configmaps"


def obj(name: str, namespace: str | None = "default", **labels: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"metadata": metadata}


def configmap(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}}


# -- the index itself --------------------------------------------------------------------------------


def test_index_term_prefers_the_name_then_an_equality_label() -> None:
    assert index_term("a=1,b=2", "metadata.name=x") == IndexTerm("name", "x")
    assert index_term("a!=1,b==2", "") == IndexTerm("label", "2", "b")
    assert index_term("a in (1)", None) == IndexTerm("label", "1", "a")
    assert index_term("a in (1,2),b,!c", "metadata.name!=x,spec.unschedulable=true") is None


def test_a_change_is_offered_only_to_matching_subscriptions() -> None:
    log = ChangeLog()
    vms, nodes = "vms", "nodes"
    on_a = log.subscribe(vms, None, IndexTerm("label", "a", "node"), since=0)
    on_b = log.subscribe(vms, None, IndexTerm("label", "b", "node"), since=0)
    here = log.subscribe(vms, "default", None, since=0)
    elsewhere = log.subscribe(vms, "other", None, since=0)
    node_a = log.subscribe(nodes, None, IndexTerm("name", "a"), since=0)
    everything = log.subscribe(vms, None, None, since=0)

    log.append(Change(1, "ADDED", vms, obj("vm1", node="a")))
    log.append(Change(2, "ADDED", nodes, obj("b", namespace=None)))
    assert [s.pending for s in (on_a, on_b, here, elsewhere, node_a, everything)] == [1, 0, 1, 0, 0, 1]

    # Moving from a to b: both watchers of the label are offered it (one sees DELETED, one ADDED).
    log.append(Change(3, "MODIFIED", vms, obj("vm1", node="b"), prev=obj("vm1", node="a")))
    log.append(Change(4, "MODIFIED", nodes, obj("a", namespace=None), prev=obj("a", namespace=None)))
    assert [s.pending for s in (on_a, on_b, here, elsewhere, node_a, everything)] == [2, 1, 2, 0, 1, 2]

    for sub in (on_a, on_b, here, elsewhere, node_a, everything):
        sub.close()
    assert log.subscriptions == 0
    assert not log._watchers  # no empty buckets are left behind


def test_replay_from_a_version_uses_the_same_index() -> None:
    log = ChangeLog()
    for revision, value in enumerate(["a", "b", "a", "c"], start=1):
        log.append(Change(revision, "ADDED", "vms", obj(f"vm{revision}", node=value)))
    sub = log.subscribe("vms", None, IndexTerm("label", "a", "node"), since=1)
    assert sub.pending == 1  # vm3 only: vm1 is not after the version, vm2/vm4 are other nodes


async def test_a_lagging_subscription_expires_with_410() -> None:
    log = ChangeLog(capacity=4)
    slow = log.subscribe("vms", None, IndexTerm("label", "a", "node"), since=0)
    other = log.subscribe("vms", None, IndexTerm("label", "b", "node"), since=0)
    for revision in range(1, 11):  # compaction drops slow's oldest untaken change
        log.append(Change(revision, "ADDED", "vms", obj(f"vm{revision}", node="a")))
    async with contextlib.aclosing(slow.follow()) as changes:
        with pytest.raises(errors.ApiError) as raised:
            await anext(changes)  # nothing of what it missed: the error first
    assert raised.value.code == 410
    assert log.subscriptions == 1  # the expired one is gone; the one with nothing to take stays
    other.close()


async def test_a_subscription_from_a_compacted_version_is_gone() -> None:
    log = ChangeLog(capacity=4)
    for revision in range(1, 11):
        log.append(Change(revision, "ADDED", "vms", obj(f"vm{revision}")))
    sub = log.subscribe("vms", None, None, since=1)
    with pytest.raises(errors.ApiError) as raised:
        async with contextlib.aclosing(sub.follow()) as changes:
            await anext(changes)
    assert (raised.value.code, raised.value.reason) == (410, "Expired")


# -- watch streams over HTTP -------------------------------------------------------------------------


class Stream:
    """A watch stream read in the background: its events in order, and when the initial ones ended."""

    def __init__(self, session: aiohttp.ClientSession, url: str, params: dict[str, str]) -> None:
        self.events: list[tuple[str, str]] = []
        self.live = asyncio.Event()
        self.arrived = asyncio.Condition()
        self._task = asyncio.create_task(self._read(session, url, params))

    async def _read(self, session: aiohttp.ClientSession, url: str, params: dict[str, str]) -> None:
        params = {"watch": "true", "sendInitialEvents": "true", **params}
        async with session.get(url, params=params) as reply:
            assert reply.status == 200
            async for line in reply.content:
                event = json.loads(line)
                if event["type"] == "BOOKMARK":
                    self.live.set()
                    continue
                async with self.arrived:
                    self.events.append((event["type"], event["object"]["metadata"]["name"]))
                    self.arrived.notify_all()

    async def first(self, count: int, timeout: float = 10.0) -> list[tuple[str, str]]:
        async with asyncio.timeout(timeout), self.arrived:
            await self.arrived.wait_for(lambda: len(self.events) >= count or self._task.done())
        return self.events[:count]

    async def until_eof(self, timeout: float = 10.0) -> list[tuple[str, str]]:
        async with asyncio.timeout(timeout):
            await self._task
        return self.events

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as opened:
        yield opened


async def test_label_watchers_see_transitions_and_others_nothing(
    client: Client, session: aiohttp.ClientSession
) -> None:
    url = client.url + ALL_CONFIGMAPS
    a = Stream(session, url, {"labelSelector": "node=a"})
    b = Stream(session, url, {"labelSelector": "node=b,app"})  # the rest of the selector still applies
    c = Stream(session, client.url + CONFIGMAPS, {"labelSelector": "node=c"})
    try:
        await asyncio.gather(a.live.wait(), b.live.wait(), c.live.wait())
        await client.create(CONFIGMAPS, configmap("x", node="a", app="web"))
        await client.patch(f"{CONFIGMAPS}/x", {"data": {"k": "v"}})
        await client.patch(f"{CONFIGMAPS}/x", {"metadata": {"labels": {"node": "b"}}})  # a → b
        await client.patch(f"{CONFIGMAPS}/x", {"metadata": {"labels": {"app": None}}})  # leaves b's selection
        await client.create(CONFIGMAPS, configmap("y", node="b"))  # not app: b does not select it
        await client.delete(f"{CONFIGMAPS}/x")
        await client.create(CONFIGMAPS, configmap("last-a", node="a"))
        await client.create(CONFIGMAPS, configmap("last-b", node="b", app="db"))
        await client.create(CONFIGMAPS, configmap("last-c", node="c"))
        assert await a.first(4) == [("ADDED", "x"), ("MODIFIED", "x"), ("DELETED", "x"), ("ADDED", "last-a")]
        assert await b.first(3) == [("ADDED", "x"), ("DELETED", "x"), ("ADDED", "last-b")]
        assert await c.first(1) == [("ADDED", "last-c")]
    finally:
        for stream in (a, b, c):
            await stream.stop()


async def test_name_watchers_see_only_their_node(
    server: KubeApiServer, client: Client, session: aiohttp.ClientSession
) -> None:
    streams = {name: Stream(session, client.url + NODES, {"fieldSelector": f"metadata.name={name}"}) for name in "ab"}
    whole = Stream(session, client.url + NODES + "/b", {})  # a watch on the object's own path
    try:
        await asyncio.gather(whole.live.wait(), *(s.live.wait() for s in streams.values()))
        assert server.emulator.store.changes.subscriptions == 3
        await client.create(NODES, node("a"))
        await client.patch(f"{NODES}/a", {"spec": {"unschedulable": True}})
        await client.delete(f"{NODES}/a")
        await client.create(NODES, node("b"))
        assert await streams["a"].first(3) == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
        assert await streams["b"].first(1) == [("ADDED", "b")]
        assert await whole.first(1) == [("ADDED", "b")]
    finally:
        for stream in (whole, *streams.values()):
            await stream.stop()


async def test_many_watchers_get_exactly_their_objects(
    server: KubeApiServer, client: Client, session: aiohttp.ClientSession
) -> None:
    slots, objects = 300, 1000
    streams = [
        Stream(session, client.url + (CONFIGMAPS if slot % 2 else ALL_CONFIGMAPS), {"labelSelector": f"slot={slot}"})
        for slot in range(slots)
    ]
    unindexed = Stream(session, client.url + CONFIGMAPS, {"labelSelector": "bench"})
    everyone = [*streams, unindexed]
    await asyncio.gather(*(s.live.wait() for s in everyone))
    names = [f"cm-{index:04d}" for index in range(objects)]
    pending = list(reversed(range(objects)))

    async def creator() -> None:
        while pending:
            index = pending.pop()
            await client.create(CONFIGMAPS, configmap(names[index], slot=str(index % slots), bench="yes"))

    await asyncio.gather(*(creator() for _ in range(8)))
    # Every offer happened inside the creates; once nothing is left to take, closing the log ends each
    # stream after what it already took, so any extra event would be in what the streams read.
    changes = server.emulator.store.changes
    await async_eventually(lambda: _all_taken(changes), what="every watch took what it was offered")
    changes.close()
    for slot, stream in enumerate(streams):
        expected = [("ADDED", name) for index, name in enumerate(names) if index % slots == slot]
        assert await stream.until_eof() == expected, f"slot {slot}"
    assert await unindexed.until_eof() == [("ADDED", name) for name in names]
    await async_eventually(lambda: _unsubscribed(changes), what="ended watches unsubscribed")


async def _all_taken(changes: ChangeLog) -> bool:
    return changes.undelivered == 0


async def _unsubscribed(changes: ChangeLog) -> bool:
    return changes.subscriptions == 0


def test_the_benchmark_runs_and_checks_delivery(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--agents", "4", "--objects", "20", "--all-watches", "--lists", "4", "--gc", "--timeout", "60"]
    assert watchbench.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["exact"] is True and report["expired"] == 0
    assert report["watches"] == 12
    assert report["api_requests"]["POST 201"] == 21  # the VMs and their owner
    assert report["lists"] == 4 and report["lists_exact"] is True
    assert report["deletions_delivered"] == 20  # collected with their owner, and every watcher saw it
