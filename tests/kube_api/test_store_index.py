"""Reads by index: lists, a watch's initial state and garbage collection cost what they return,
not what is stored, and answer exactly as the unindexed reads did.

Case matrix:
- store, property-based: after any sequence of creates, relabels, owner changes and removals, over
  two resources and namespaces, an indexed list (name or label term) equals a scan of every stored
  object filtered by the term (same items, same order), in each namespace and in all; unindexed
  lists equal the scan; dependents by the owner index equal a scan of ownerReferences.
- store: an indexed list, the dependents of an owner and "has dependents" examine only what they
  select (counted, not timed).
- HTTP: label (``k=v``, ``k in (v)``), field (``metadata.name``), mixed and namespaced selectors
  answer as the unselected list filtered by the whole selector (items, order, resourceVersions),
  also after an update moves the indexed label, after deletes and re-creates; a watch without
  resourceVersion starts from the same state.
- GC: deleting the owner of 1,200 dependents (more than a batch) removes exactly them (others and
  co-owned ones stay, the latter without the reference); foreground waits for all of them; orphan
  keeps them, and the owner index forgets the reference.
- change log: keeps changes for its time window (no 410 for a burst of 10,000), compacts what is
  older (410 for a watcher still behind), and is bounded by count.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import kmock
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rackmesh_sandbox.kube_api import KubeApiServer, errors, gc, selectors
from rackmesh_sandbox.kube_api.api import WriteOptions
from rackmesh_sandbox.kube_api.changes import Change, ChangeLog, Subscription
from rackmesh_sandbox.kube_api.selectors import IndexTerm
from rackmesh_sandbox.kube_api.store import Key, ObjectStore
from tests.kube_api.conftest import Client
from tests.support.waiting import async_eventually

CONFIGMAPS = "/api/v1/configmaps"
RESOURCES = (kmock.resource("", "v1", "configmaps"), kmock.resource("", "v1", "secrets"))
NAMESPACES = ("a", "b")
NAMES = ("n0", "n1", "n2", "n3")
VALUES = ("x", "y", "z")
OWNERS = ("u1", "u2")


def configmaps(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps"


def stored_object(key: Key, label: str | None, owners: tuple[str, ...], uid: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": key[2], "namespace": key[1], "uid": uid}
    if label is not None:
        metadata["labels"] = {"node": label, "app": "web"}
    if owners:
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": o, "uid": o} for o in owners]
    return {"metadata": metadata}


def scan(store: ObjectStore, resource: kmock.resource, namespace: str | None) -> list[dict[str, Any]]:
    """What the store answered before it had indexes: every stored object looked at, in key order."""
    found = [
        (ns or "", name, stored.raw)
        for (res, ns, name), stored in store.objects.items()
        if res == resource and (namespace is None or ns == namespace) and not stored.deleted
    ]
    return [obj for _, _, obj in sorted(found, key=lambda t: (t[0], t[1]))]


def scan_dependents(store: ObjectStore, uid: str) -> list[Key]:
    return [
        key
        for key, stored in store.objects.items()
        if any(ref.get("uid") == uid for ref in stored.raw["metadata"].get("ownerReferences") or [])
    ]


# -- the store's indexes ------------------------------------------------------------------------------

keys = st.tuples(st.sampled_from(RESOURCES), st.sampled_from(NAMESPACES), st.sampled_from(NAMES))
operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), keys, st.none() | st.sampled_from(VALUES), st.sets(st.sampled_from(OWNERS))),
        st.tuples(st.just("remove"), keys, st.none(), st.just(set())),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_indexed_reads_equal_a_scan_after_any_writes(ops: list[tuple[str, Key, str | None, set[str]]]) -> None:
    store = ObjectStore(kmock.ObjectsArray())
    for index, (op, key, label, owners) in enumerate(ops):
        if op == "write":  # a create, or an update that may move the label or change the owners
            change = "ADDED" if store.get(key) is None else "MODIFIED"
            store.write(key, stored_object(key, label, tuple(sorted(owners)), f"uid-{index}"), change)
        else:
            store.remove(key)
    terms = [IndexTerm("name", name) for name in NAMES] + [IndexTerm("label", v, "node") for v in VALUES]
    terms += [IndexTerm("label", "web", "app"), IndexTerm("label", "x", "absent")]
    for resource in RESOURCES:
        for namespace in (None, *NAMESPACES):
            everything = scan(store, resource, namespace)
            assert store.list(resource, namespace) == everything
            for term in terms:
                assert store.list(resource, namespace, term) == [o for o in everything if term.admits(o)], term
        assert store.keys_of(resource) == [k for k in store.objects if k[0] == resource]  # in creation order
    for uid in OWNERS:
        assert set(store.dependent_keys(uid)) == set(scan_dependents(store, uid))
        assert store.has_dependents(uid) == bool(scan_dependents(store, uid))
    for namespace in NAMESPACES:
        assert store.keys_in(namespace) == [k for k in store.objects if k[1] == namespace]
    for key in list(store.objects.keys()):
        store.remove(key)
    assert not store._index and not store._indexed  # nothing is left filed under a bucket


def test_indexed_reads_examine_only_what_they_select(monkeypatch: pytest.MonkeyPatch) -> None:
    store = ObjectStore(kmock.ObjectsArray())
    vms, nodes = RESOURCES
    for index in range(2000):  # 2,000 objects over 100 label values, each 20 owned by one owner
        key = (vms, NAMESPACES[index % 2], f"vm-{index:04d}")
        store.write(key, stored_object(key, f"node-{index % 100}", (f"owner-{index % 100}",), f"vm-{index}"), "ADDED")
    store.write((nodes, None, "node-7"), {"metadata": {"name": "node-7", "uid": "n7"}}, "ADDED")
    examined: list[Key] = []
    exists = store._exists
    monkeypatch.setattr(store, "_exists", lambda key: examined.append(key) or exists(key))

    selected = store.list(vms, None, IndexTerm("label", "node-7", "node"))
    assert len(selected) == 20 and len(examined) == 20
    examined.clear()
    assert len(store.list(vms, "a", IndexTerm("name", "vm-0008"))) == 1 and len(examined) == 1
    examined.clear()
    assert len(store.list(nodes, None)) == 1 and len(examined) == 1  # other resources are not looked at
    examined.clear()
    assert len(store.dependent_keys("owner-7")) == 20 and len(examined) == 20
    examined.clear()
    assert store.has_dependents("owner-7") and len(examined) == 1


# -- lists and watches over HTTP -----------------------------------------------------------------------


def configmap(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}}


SELECTORS = [
    {"labelSelector": "node=a"},
    {"labelSelector": "node in (a)"},
    {"labelSelector": "node==b,app=web"},
    {"labelSelector": "node=a,app!=web"},
    {"labelSelector": "node=nowhere"},
    {"fieldSelector": "metadata.name=x"},
    {"fieldSelector": "metadata.name=x", "labelSelector": "node=b"},
    {"fieldSelector": "metadata.name=y,metadata.namespace=other", "labelSelector": "app"},
    {"labelSelector": "node in (a,b)"},  # no exact-match term: the unindexed path, as a control
]


async def assert_lists_equal_unindexed(client: Client) -> None:
    """Each selected list equals the unselected one filtered by the whole selector, item for item."""
    for path in (CONFIGMAPS, configmaps("default"), configmaps("other")):
        everything = (await client.get(path)).body
        for params in SELECTORS:
            by_label = selectors.label_matcher(params.get("labelSelector"))
            fields = ("metadata.name", "metadata.namespace")
            by_field = selectors.field_matcher(params.get("fieldSelector"), fields, custom=False)
            reply = await client.get(path, params=params)
            assert reply.status == 200, reply
            expected = [o for o in everything["items"] if by_label(o) and by_field(o)]
            assert reply.body["items"] == expected, (path, params)
            assert reply.body["metadata"] == everything["metadata"]  # the same resourceVersion: no writes since


async def test_selected_lists_equal_the_unindexed_answer(client: Client) -> None:
    await client.post("/api/v1/namespaces", {"metadata": {"name": "other"}})
    for namespace in ("default", "other"):  # the same names in both namespaces
        await client.create(configmaps(namespace), configmap("x", node="a", app="web"))
        await client.create(configmaps(namespace), configmap("y", node="b", app="web"))
        await client.create(configmaps(namespace), configmap("z", node="a"))
    await client.create(configmaps("other"), configmap("w", node="b", app="db"))
    await assert_lists_equal_unindexed(client)
    assert len((await client.get(CONFIGMAPS, params={"labelSelector": "node=a"})).body["items"]) == 4

    # Move x from a to b in one namespace, delete y in the other, re-create it with another label.
    await client.patch(f"{configmaps('default')}/x", {"metadata": {"labels": {"node": "b"}}})
    await client.patch(f"{configmaps('other')}/z", {"metadata": {"labels": {"node": None, "app": "web"}}})
    await client.delete(f"{configmaps('other')}/y")
    await client.delete(f"{configmaps('default')}/z")
    await client.create(configmaps("other"), configmap("y", node="a", app="web"))
    await assert_lists_equal_unindexed(client)
    on_a = (await client.get(CONFIGMAPS, params={"labelSelector": "node=a"})).body["items"]
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in on_a] == [("other", "x"), ("other", "y")]


async def test_a_watch_starts_from_the_indexed_state(client: Client) -> None:
    await client.create(configmaps("default"), configmap("p", node="a"))
    await client.create(configmaps("default"), configmap("q", node="b"))
    await client.create(configmaps("default"), configmap("r", node="a", app="web"))
    await client.patch(f"{configmaps('default')}/p", {"metadata": {"labels": {"node": "b"}}})
    listed = (await client.get(CONFIGMAPS, params={"labelSelector": "node=b"})).body["items"]
    params = {"watch": "true", "sendInitialEvents": "true", "labelSelector": "node=b"}
    initial = []
    async with client.session.get(client.url + CONFIGMAPS, params=params) as reply:
        async for line in reply.content:
            event = json.loads(line)
            if event["type"] == "BOOKMARK":
                break
            initial.append(event)
    assert [e["type"] for e in initial] == ["ADDED", "ADDED"]
    assert [e["object"] for e in initial] == listed  # same objects, order and resourceVersions
    assert [o["metadata"]["name"] for o in listed] == ["p", "q"]


# -- garbage collection by the owner index ----------------------------------------------------------


def create_configmaps(server: KubeApiServer, names: list[str], *owners: dict[str, Any]) -> None:
    """Bulk creation in-process (the HTTP path is not what is under test here)."""
    rd = server.emulator.registry.get("", "v1", "configmaps")
    assert rd is not None
    refs = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}
        for o in owners
    ]
    for name in names:
        body = {"metadata": {"name": name, "ownerReferences": refs}} if refs else {"metadata": {"name": name}}
        server.emulator.api.create(rd, "default", body, WriteOptions())


async def names_of(client: Client) -> list[str]:
    return [o["metadata"]["name"] for o in (await client.get(configmaps("default"))).body["items"]]


async def test_deleting_an_owner_collects_exactly_its_many_dependents(server: KubeApiServer, client: Client) -> None:
    big = await client.create(configmaps("default"), configmap("big"))
    small = await client.create(configmaps("default"), configmap("small"))
    many = [f"dep-{index:04d}" for index in range(gc.BATCH * 2 + 200)]  # several collection batches
    create_configmaps(server, many, big)
    create_configmaps(server, ["small-0", "small-1"], small)
    create_configmaps(server, ["both-0", "both-1"], big, small)
    create_configmaps(server, ["free"])
    assert len(server.emulator.store.dependent_keys(big["metadata"]["uid"])) == len(many) + 2

    assert (await client.delete(f"{configmaps('default')}/big")).status == 200
    kept = ["both-0", "both-1", "free", "small", "small-0", "small-1"]

    async def collected() -> bool:
        return await names_of(client) == kept

    await async_eventually(collected, what="the owner's dependents collected")
    for name in ("both-0", "both-1"):  # co-owned: only the reference to the deleted owner is dropped
        refs = (await client.get(f"{configmaps('default')}/{name}")).body["metadata"]["ownerReferences"]
        assert [ref["name"] for ref in refs] == ["small"]
    assert server.emulator.store.dependent_keys(big["metadata"]["uid"]) == []
    assert len(server.emulator.store.dependent_keys(small["metadata"]["uid"])) == 4


async def test_foreground_deletion_waits_for_many_dependents(server: KubeApiServer, client: Client) -> None:
    owner = await client.create(configmaps("default"), configmap("owner"))
    create_configmaps(server, [f"dep-{index:04d}" for index in range(gc.BATCH + 100)], owner)
    create_configmaps(server, ["free"])
    reply = await client.delete(f"{configmaps('default')}/owner", {"propagationPolicy": "Foreground"})
    assert reply.status == 200 and reply.body["metadata"]["deletionTimestamp"]

    async def owner_gone() -> bool:
        return (await client.get(f"{configmaps('default')}/owner")).status == 404

    await async_eventually(owner_gone, what="the foreground owner removed")
    assert await names_of(client) == ["free"]  # the owner went only once every dependent had


async def test_orphaning_many_dependents_forgets_the_reference(server: KubeApiServer, client: Client) -> None:
    owner = await client.create(configmaps("default"), configmap("owner"))
    many = [f"dep-{index:04d}" for index in range(gc.BATCH + 100)]
    create_configmaps(server, many, owner)
    await client.delete(f"{configmaps('default')}/owner", {"propagationPolicy": "Orphan"})
    assert await names_of(client) == many
    assert not server.emulator.store.has_dependents(owner["metadata"]["uid"])
    listed = (await client.get(configmaps("default"))).body["items"]
    assert all("ownerReferences" not in o["metadata"] for o in listed)


# -- the change log's time window -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def changes(log: ChangeLog, first: int, count: int) -> None:
    for revision in range(first, first + count):
        log.append(Change(revision, "ADDED", "vms", {"metadata": {"name": f"vm{revision}", "namespace": "default"}}))


def test_a_burst_is_kept_with_default_bounds() -> None:
    log = ChangeLog()
    assert (log.window, log.capacity) == (300.0, 200_000)
    changes(log, 1, 10_000)  # what used to compact within seconds
    sub = log.subscribe("vms", None, None, since=0)
    assert sub.pending == 10_000
    sub.close()


async def test_history_is_kept_for_the_window_then_compacted() -> None:
    clock = Clock()
    log = ChangeLog(window=300.0, clock=clock)
    behind = log.subscribe("vms", None, None, since=0)
    changes(log, 1, 1000)
    clock.now = 299.0
    changes(log, 1001, 1)
    late = log.subscribe("vms", None, None, since=0)  # five minutes on, still replayable
    assert (behind.pending, late.pending) == (1001, 1001)
    late.close()

    clock.now = 331.0  # past the window by more than a tenth of it: what is older than 300 s goes
    changes(log, 1002, 1)
    assert await expired(behind)  # it had not taken what was compacted
    assert await expired(log.subscribe("vms", None, None, since=0))
    recent = log.subscribe("vms", None, None, since=1000)  # changes of the last 300 s stay
    assert recent.pending == 2
    recent.close()


async def test_the_count_bound_still_compacts() -> None:
    log = ChangeLog(capacity=10)
    changes(log, 1, 11)  # over the bound: down to 90% of it
    assert await expired(log.subscribe("vms", None, None, since=1))
    assert log.subscribe("vms", None, None, since=2).pending == 9


async def expired(sub: Subscription) -> bool:
    """Whether following the subscription starts with the 410 error (it has nothing else queued)."""
    async with contextlib.aclosing(sub.follow(idle=0)) as followed:
        try:
            await anext(followed)
        except errors.ApiError as e:
            return e.code == 410
    return False
