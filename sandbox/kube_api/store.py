"""Objects kept in kmock's ``ObjectsArray``, plus what makes them a Kubernetes store.

kmock holds the objects (so tests can still assert on ``emulator.objects[...]``); this layer adds
the cluster-wide ``resourceVersion`` counter (bumped on every write), a uid index for owner
references, and the change log that watches replay.
"""

from __future__ import annotations

import copy
from typing import Any

import kmock

from rackmesh_sandbox.kube_api.changes import Change, ChangeLog

Key = tuple[kmock.resource, str | None, str]  # (storage resource, namespace, name)


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.setdefault("metadata", {})


class ObjectStore:
    def __init__(self, objects: kmock.ObjectsArray, *, history: int = 4) -> None:
        self.objects = objects
        self.history = history  # versions kept per object in kmock's history (memory stays flat)
        self.revision = 1
        self.changes = ChangeLog()
        self._uids: dict[str, Key] = {}

    def get(self, key: Key) -> dict[str, Any] | None:
        if key not in self.objects:
            return None
        stored = self.objects[key]
        return None if stored.deleted else copy.deepcopy(stored.raw)

    def list(self, resource: kmock.resource, namespace: str | None = None) -> list[dict[str, Any]]:
        """All objects of a resource (in one namespace if given), in etcd key order: namespace, name."""
        found = [
            (ns or "", name, stored)
            for (res, ns, name), stored in self.objects.items()
            if res == resource and (namespace is None or ns == namespace) and not stored.deleted
        ]
        return [copy.deepcopy(stored.raw) for _, _, stored in sorted(found, key=lambda t: (t[0], t[1]))]

    def keys_of(self, resource: kmock.resource) -> list[Key]:
        return [key for key, stored in self.objects.items() if key[0] == resource and not stored.deleted]

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
        # Stored versions are never mutated, so the log shares them instead of copying again.
        self.changes.append(Change(self.revision, change, key[0], stored, prev))
        return copy.deepcopy(stored)

    def remove(self, key: Key) -> dict[str, Any] | None:
        """Delete for good; the DELETED event carries the last state with a new resourceVersion."""
        if key not in self.objects or self.objects[key].deleted:
            return None
        self.revision += 1
        last = self.objects[key].raw
        final = {**last, "metadata": {**meta(last), "resourceVersion": str(self.revision)}}
        del self.objects[key]
        self._uids.pop(meta(last).get("uid", ""), None)
        self.changes.append(Change(self.revision, "DELETED", key[0], final, last))
        return copy.deepcopy(final)

    def dependents(self, uid: str) -> list[tuple[Key, dict[str, Any]]]:
        """Objects with an ownerReference to this uid."""
        found = []
        for key, stored in list(self.objects.items()):
            if stored.deleted:
                continue
            refs = (stored.raw.get("metadata") or {}).get("ownerReferences") or []
            if any(isinstance(ref, dict) and ref.get("uid") == uid for ref in refs):
                found.append((key, copy.deepcopy(stored.raw)))
        return found
