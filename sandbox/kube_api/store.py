"""Objects kept in kmock's ``ObjectsArray``, plus what makes them a Kubernetes store.

kmock holds the objects (so tests can still assert on ``emulator.objects[...]``); this layer adds
the cluster-wide ``resourceVersion`` counter (bumped on every write), a uid index for owner
references, and the change log that watches replay.

It also keeps secondary indexes, maintained on every write and removal, so reads cost what they
return rather than what is stored (as kube-apiserver's watch cache indexes do): objects by
resource, by namespace, by ``metadata.name`` and by label ``k=v`` (the exact-match
:class:`IndexTerm` a list or watch selector has), and by the uid of each owner they reference
(garbage collection). Writes go through this class; kmock's ``objects`` is for reading.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import kmock

from rackmesh_sandbox.kube_api.changes import Change, ChangeLog
from rackmesh_sandbox.kube_api.selectors import IndexTerm, field_value

Key = tuple[kmock.resource, str | None, str]  # (storage resource, namespace, name)
Entry = tuple[Any, ...]  # an index bucket: ("resource", res), ("namespace", ns), ("name", res, name),
# ("label", res, key, value), ("owner", uid)


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.setdefault("metadata", {})


def _entries(key: Key, obj: dict[str, Any]) -> frozenset[Entry]:
    """The index buckets an object belongs in, read as selectors and GC read it."""
    resource, namespace, _ = key
    md = obj.get("metadata") or {}
    found: set[Entry] = {("resource", resource), ("name", resource, field_value(obj, "metadata.name"))}
    if namespace is not None:
        found.add(("namespace", namespace))
    labels = md.get("labels")
    if isinstance(labels, dict):
        found.update(("label", resource, k, v) for k, v in labels.items() if isinstance(v, str))
    for ref in md.get("ownerReferences") or []:
        if isinstance(ref, dict) and isinstance(ref.get("uid"), str):
            found.add(("owner", ref["uid"]))
    return frozenset(found)


class ObjectStore:
    def __init__(self, objects: kmock.ObjectsArray, *, history: int = 4) -> None:
        self.objects = objects
        self.history = history  # versions kept per object in kmock's history (memory stays flat)
        self.revision = 1
        self.changes = ChangeLog()
        self._uids: dict[str, Key] = {}
        # Bucket -> keys in insertion order (a dict as an ordered set: creation order, like kmock's).
        self._index: dict[Entry, dict[Key, None]] = {}
        self._indexed: dict[Key, frozenset[Entry]] = {}  # what each key is filed under now

    def _reindex(self, key: Key, obj: dict[str, Any] | None) -> None:
        """File the key under the buckets of its new state (None: removed); unchanged ones keep its place."""
        old = self._indexed.pop(key, frozenset())
        new = _entries(key, obj) if obj is not None else frozenset()
        for entry in old - new:
            bucket = self._index[entry]
            del bucket[key]
            if not bucket:  # no empty bucket per ever-used label value or owner stays behind
                del self._index[entry]
        for entry in new - old:
            self._index.setdefault(entry, {})[key] = None
        if new:
            self._indexed[key] = new

    def _exists(self, key: Key) -> bool:
        return key in self.objects and not self.objects[key].deleted

    def _live(self, keys: Iterable[Key]) -> list[Key]:
        return [key for key in keys if self._exists(key)]

    def _any(self, bucket: Entry) -> bool:
        """Whether a bucket holds a live object: O(1) in practice (its first key exists), for checks
        asked on every removal (a foreground owner's, a terminating namespace's)."""
        return any(self._exists(key) for key in self._index.get(bucket, ()))

    def get(self, key: Key) -> dict[str, Any] | None:
        if key not in self.objects:
            return None
        stored = self.objects[key]
        return None if stored.deleted else copy.deepcopy(stored.raw)

    def peek(self, key: Key) -> dict[str, Any] | None:
        """The stored object itself, not a copy: for reading only (collection reads many of them)."""
        if key not in self.objects:
            return None
        stored = self.objects[key]
        return None if stored.deleted else stored.raw

    def list(
        self, resource: kmock.resource, namespace: str | None = None, term: IndexTerm | None = None
    ) -> list[dict[str, Any]]:
        """All objects of a resource (in one namespace if given), in etcd key order: namespace, name.

        With ``term`` only those it admits, read from its index: the cost is what the term selects,
        not what is stored. The caller still checks its whole selector (a term is necessary only).
        """
        if term is None:
            bucket: Entry = ("resource", resource)
        elif term.kind == "name":
            bucket = ("name", resource, term.value)
        else:
            bucket = ("label", resource, term.key, term.value)
        keys = [key for key in self._index.get(bucket, ()) if namespace is None or key[1] == namespace]
        keys.sort(key=lambda key: (key[1] or "", key[2]))
        return [copy.deepcopy(self.objects[key].raw) for key in self._live(keys)]

    def keys_of(self, resource: kmock.resource) -> list[Key]:
        return self._live(self._index.get(("resource", resource), ()))

    def keys_in(self, namespace: str) -> list[Key]:
        """The keys of every object in a namespace (in creation order)."""
        return self._live(self._index.get(("namespace", namespace), ()))

    def has_objects_in(self, namespace: str) -> bool:
        return self._any(("namespace", namespace))

    def locate(self, uid: str) -> Key | None:
        """Where the object with this uid lives, if it exists."""
        return self._uids.get(uid)

    def write(self, key: Key, obj: dict[str, Any], change: str) -> dict[str, Any]:
        """Store a new version: bump the revision, stamp it, record the change; return a copy."""
        self.revision += 1
        stored = copy.deepcopy(obj)
        meta(stored)["resourceVersion"] = str(self.revision)
        prev = None
        if key in self.objects and not self.objects[key].deleted:
            prev = self.objects[key].raw
            self.objects[key].history.append(stored)
            del self.objects[key].history[: -self.history]
        else:
            self.objects[key] = stored
        if meta(stored).get("uid"):
            self._uids[meta(stored)["uid"]] = key
        self._reindex(key, stored)
        # Stored versions are never mutated, so the log shares them instead of copying again.
        self.changes.append(Change(self.revision, change, key[0], stored, prev))
        return copy.deepcopy(stored)

    def remove(self, key: Key) -> bool:
        """Delete for good (False: nothing there); the DELETED event carries the last state with a new
        resourceVersion."""
        if key not in self.objects or self.objects[key].deleted:
            return False
        self.revision += 1
        last = self.objects[key].raw
        final = {**last, "metadata": {**meta(last), "resourceVersion": str(self.revision)}}
        del self.objects[key]
        self._uids.pop(meta(last).get("uid", ""), None)
        self._reindex(key, None)
        self.changes.append(Change(self.revision, "DELETED", key[0], final, last))
        return True

    def dependent_keys(self, uid: str) -> list[Key]:
        """The keys of objects with an ownerReference to this uid (from the owner index)."""
        return self._live(self._index.get(("owner", uid), ()))

    def has_dependents(self, uid: str) -> bool:
        return self._any(("owner", uid))

    def dependents(self, uid: str) -> list[tuple[Key, dict[str, Any]]]:
        """Objects with an ownerReference to this uid, with a copy of each."""
        return [(key, copy.deepcopy(self.objects[key].raw)) for key in self.dependent_keys(uid)]
