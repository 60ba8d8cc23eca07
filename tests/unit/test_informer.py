"""The informer keeps a watch-fed cache consistent with this process's own writes.

Case matrix:
- the first listing fills the cache and marks it synced; watch events add, change and delete
- an object this process wrote counts at once, before its watch event; the event then takes over
- a broken watch lists again (the cache becomes the listing); a write the listing already shows, or
  that was deleted since, is not kept twice
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from rackmesh import informer
from rackmesh.informer import Informer
from rackmesh.kube_client import VIRTUAL_MACHINES, KubeApiError, Selector


def vm(name: str, uid: str, version: str = "1") -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": name, "uid": uid, "resourceVersion": version}}


class FakeKube:
    """Listings and watch streams the test feeds; each watch ends when it is fed ``None``, or breaks on an error."""

    def __init__(self, *listings: list[dict[str, Any]]) -> None:
        self.listings = list(listings)
        self.events: asyncio.Queue[tuple[str, dict[str, Any]] | BaseException | None] = asyncio.Queue()
        self.selectors: list[Selector] = []

    async def list_for_watch(self, _resource: Any, selector: Selector) -> tuple[list[dict[str, Any]], str]:
        self.selectors.append(selector)
        return self.listings.pop(0), "1"

    async def watch(self, _resource: Any, _selector: Selector, _version: str) -> AsyncIterator[tuple[str, Any]]:
        while (event := await self.events.get()) is not None:
            if isinstance(event, BaseException):
                raise event
            yield event


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def started(kube: FakeKube) -> tuple[Informer, asyncio.Task[None]]:
    cache = Informer(kube, VIRTUAL_MACHINES, Selector(labels="rackmesh.io/node=c-1"))  # type: ignore[arg-type]
    task = asyncio.create_task(cache.run())
    await asyncio.wait_for(cache.synced.wait(), 5)
    return cache, task


def names(cache: Informer) -> list[str]:
    return sorted(obj["metadata"]["name"] for obj in cache.objects())


async def test_listing_then_watch_events_keep_the_cache():
    kube = FakeKube([vm("a", "1")])
    cache, task = await started(kube)
    assert names(cache) == ["a"] and kube.selectors == [Selector(labels="rackmesh.io/node=c-1")]
    kube.events.put_nowait(("ADDED", vm("b", "2")))
    kube.events.put_nowait(("MODIFIED", vm("a", "1", "3")))
    kube.events.put_nowait(("DELETED", vm("b", "2")))
    await settle()
    assert names(cache) == ["a"] and cache.get("default", "a")["metadata"]["resourceVersion"] == "3"
    task.cancel()


async def test_own_writes_count_before_their_event():
    kube = FakeKube([])
    cache, task = await started(kube)
    cache.wrote(vm("mine", "7"))
    assert names(cache) == ["mine"]  # no event yet
    kube.events.put_nowait(("ADDED", vm("mine", "7", "2")))
    kube.events.put_nowait(("DELETED", vm("mine", "7", "3")))
    await settle()
    assert names(cache) == []  # once the watch caught up, its events rule
    task.cancel()


async def test_a_broken_watch_lists_again_without_doubling_own_writes(monkeypatch):
    monkeypatch.setattr(informer, "RETRY_SECONDS", 0.0)
    kube = FakeKube([vm("a", "1")], [vm("a", "1"), vm("mine", "7")])
    cache, task = await started(kube)
    cache.wrote(vm("mine", "7"))
    kube.events.put_nowait(KubeApiError(410, "Expired", "too old resource version"))
    for _ in range(50):
        await settle()
        if cache.lists == 2:
            break
    assert cache.lists == 2
    assert names(cache) == ["a", "mine"]
    task.cancel()
