"""Watches: ``?watch=true`` streams of ADDED/MODIFIED/DELETED events.

Docs: https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-watch
https://kubernetes.io/docs/reference/using-api/api-concepts/#watch-bookmarks (initial-events-end)

Case matrix:
- no resourceVersion: the current state as ADDED, then live changes.
- resourceVersion=N (from a list): exactly the changes after N, in order, nothing before.
- resourceVersion older than the kept history: an ERROR event with a 410 Status.
- label selector: an object entering the selection arrives as ADDED, leaving it as DELETED.
- field selector metadata.name and the namespace in the path filter events.
- timeoutSeconds ends the stream; sendInitialEvents ends the initial state with a BOOKMARK.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from rackmesh_sandbox.kube_api import KubeApiServer
from tests.kube_api.conftest import DRS, Client, dr


async def watch(
    client: Client, path: str, count: int, params: dict[str, str] | None = None, timeout: float = 5.0
) -> list[tuple[str, Any]]:
    """The first ``count`` events of a watch (fails if they do not come within ``timeout``)."""
    events: list[tuple[str, Any]] = []
    async with (
        asyncio.timeout(timeout),
        client.session.get(client.url + path, params={"watch": "true", **(params or {})}) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        async for line in response.content:
            event = json.loads(line)
            events.append((event["type"], event["object"]))
            if len(events) == count:
                break
    return events


def names(events: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [(kind, obj["metadata"].get("name", "")) for kind, obj in events]


async def test_watch_without_version_starts_with_the_state(client: Client) -> None:
    await client.create(DRS, dr("a"))
    task = asyncio.create_task(watch(client, DRS, 2))
    await asyncio.sleep(0.1)  # let the watch start; the event below must come live either way
    await client.create(DRS, dr("b"))
    assert names(await task) == [("ADDED", "a"), ("ADDED", "b")]


async def test_watch_from_a_resource_version(client: Client) -> None:
    await client.create(DRS, dr("before"))
    version = (await client.get(DRS)).body["metadata"]["resourceVersion"]
    await client.create(DRS, dr("a"))
    await client.patch(f"{DRS}/a", {"spec": {"replicas": 4}})
    await client.delete(f"{DRS}/a")
    events = await watch(client, DRS, 3, {"resourceVersion": version})
    assert names(events) == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    versions = [int(obj["metadata"]["resourceVersion"]) for _, obj in events]
    assert versions == sorted(versions) and versions[0] > int(version)
    assert events[1][1]["spec"]["replicas"] == 4


async def test_compacted_version_is_gone(server: KubeApiServer, client: Client) -> None:
    server.emulator.store.changes.capacity = 4
    for index in range(10):
        await client.create(DRS, dr(f"n{index}"))
    events = await watch(client, DRS, 1, {"resourceVersion": "1"})
    assert events[0][0] == "ERROR"
    assert events[0][1]["code"] == 410
    assert events[0][1]["reason"] == "Expired"


async def test_label_selector_transitions(client: Client) -> None:
    await client.create(DRS, {**dr(), "metadata": {"name": "x", "labels": {"team": "a"}}})
    version = (await client.get(DRS)).body["metadata"]["resourceVersion"]
    await client.patch(f"{DRS}/x", {"metadata": {"labels": {"team": "b"}}})  # leaves the selection
    await client.patch(f"{DRS}/x", {"spec": {"replicas": 5}})  # outside: unseen
    await client.patch(f"{DRS}/x", {"metadata": {"labels": {"team": "a"}}})  # enters it again
    await client.patch(f"{DRS}/x", {"spec": {"replicas": 6}})
    events = await watch(client, DRS, 3, {"resourceVersion": version, "labelSelector": "team=a"})
    assert names(events) == [("DELETED", "x"), ("ADDED", "x"), ("MODIFIED", "x")]
    assert events[0][1]["metadata"]["labels"] == {"team": "a"}  # the last content that matched
    assert events[2][1]["spec"]["replicas"] == 6


async def test_field_selector_and_namespace(client: Client) -> None:
    await client.post("/api/v1/namespaces", {"metadata": {"name": "other"}})
    version = (await client.get(DRS)).body["metadata"]["resourceVersion"]
    await client.create(DRS, dr("a"))
    await client.create(DRS, dr("b"))
    await client.create(
        "/apis/rackmesh.io/v1alpha1/namespaces/other/deploymentrequests",
        {**dr("b"), "metadata": {"name": "b"}},
    )
    await client.delete(f"{DRS}/b")
    events = await watch(client, DRS, 2, {"resourceVersion": version, "fieldSelector": "metadata.name=b"})
    assert names(events) == [("ADDED", "b"), ("DELETED", "b")]
    everywhere = await watch(
        client, "/apis/rackmesh.io/v1alpha1/deploymentrequests", 4, {"resourceVersion": version}
    )
    assert [obj["metadata"]["namespace"] for _, obj in everywhere] == [
        "default",
        "default",
        "other",
        "default",
    ]


async def test_timeout_ends_the_stream(client: Client) -> None:
    async with (
        asyncio.timeout(5),
        client.session.get(client.url + DRS, params={"watch": "true", "timeoutSeconds": "1"}) as response,
    ):
        assert await response.read() == b""  # ends by itself, empty: nothing happened


async def test_initial_events_end_with_a_bookmark(client: Client) -> None:
    await client.create(DRS, dr("a"))
    events = await watch(
        client, DRS, 2, {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan"}
    )
    assert events[0][0] == "ADDED"
    assert events[1][0] == "BOOKMARK"
    assert events[1][1]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_server_shutdown_ends_watches(server: KubeApiServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + DRS, params={"watch": "true"}) as reply,
    ):
        closing = asyncio.create_task(server.__aexit__(None, None, None))
        async with asyncio.timeout(5):
            await reply.read()
            await closing
