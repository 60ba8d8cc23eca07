"""Garbage collection by ownerReferences, and namespace deletion.

Docs: https://kubernetes.io/docs/concepts/architecture/garbage-collection/ and
https://kubernetes.io/docs/tasks/administer-cluster/use-cascading-deletion/

- Background (the default): the owner goes at once; dependents are deleted afterwards.
- Foreground: the owner keeps existing with ``deletionTimestamp`` and the ``foregroundDeletion``
  finalizer until its dependents are gone.
- Orphan: the dependents lose their ownerReference to the owner and stay.
- A dependent whose owners are all absent is deleted; a reference to one absent owner among
  existing ones is removed.

Like the real controller, collection runs after the request that triggered it (on the event loop),
a batch of dependents at a time. Dependents are found by the store's owner-uid index, so
collecting an owner costs what it owns, not what is stored.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from rackmesh_sandbox.kube_api.store import Key, meta

if TYPE_CHECKING:
    from rackmesh_sandbox.kube_api.api import ObjectApi

FOREGROUND = "foregroundDeletion"
BATCH = 500  # dependents collected per turn of the event loop


class GarbageCollector:
    def __init__(self, api: ObjectApi) -> None:
        self.api = api

    def _later(self, fn: Callable[[], None]) -> None:
        try:
            asyncio.get_running_loop().call_soon(fn)
        except RuntimeError:  # no loop (offline use): collect at once
            fn()

    def owner_exists(self, ref: dict[str, Any], namespace: str | None) -> bool:
        key = self.api.store.locate(ref.get("uid", ""))
        # Owners must be cluster-scoped or in the dependent's namespace.
        return key is not None and key[1] in (None, namespace)

    # -- hooks called by the API ---------------------------------------------------------------

    def created(self, key: Key, obj: dict[str, Any]) -> None:
        if meta(obj).get("ownerReferences"):
            self._later(lambda: self._check_dependent(key))

    def removed(self, key: Key, obj: dict[str, Any]) -> None:
        uid = meta(obj).get("uid", "")
        self._later(lambda: self._collect_dependents(uid))
        for ref in meta(obj).get("ownerReferences") or []:
            self._later(lambda ref=ref: self._finish_foreground(ref.get("uid", "")))
        if key[1] is not None:
            self._later(lambda: self._finish_namespace(key[1]))

    def orphan(self, obj: dict[str, Any]) -> None:
        """Remove references to this owner from its dependents (propagationPolicy=Orphan)."""
        uid = meta(obj)["uid"]
        for key, dependent in self.api.store.dependents(uid):
            self._drop_refs(key, dependent, {uid})

    def foreground(self, obj: dict[str, Any]) -> None:
        uid = meta(obj)["uid"]
        self._later(lambda: self._collect_dependents(uid, force=True))
        self._later(lambda: self._finish_foreground(uid))

    def terminate_namespace(self, name: str) -> None:
        def delete_content() -> None:
            for key in self.api.store.keys_in(name):
                self.api.delete_key(key, {})
            self._finish_namespace(name)

        self._later(delete_content)

    # -- the collection itself ------------------------------------------------------------------

    def _collect_dependents(
        self, owner_uid: str, *, force: bool = False, keys: Iterator[Key] | None = None
    ) -> None:
        """Collect the owner's dependents (from the owner index), ``BATCH`` per turn of the event loop,
        so a large cascade does not stall every other request until it is done."""
        if keys is None:
            keys = iter(self.api.store.dependent_keys(owner_uid))
        batch = list(itertools.islice(keys, BATCH))
        for key in batch:
            if force:
                # Still a dependent? Earlier batches' deletions may have changed or recreated it.
                if owner_uid in self._owners_of(key):
                    self.api.delete_key(key, {})
            else:
                self._check_dependent(key)
        if len(batch) == BATCH:
            self._later(lambda: self._collect_dependents(owner_uid, force=force, keys=keys))

    def _owners_of(self, key: Key) -> set[str]:
        obj = self.api.store.peek(key)
        refs = ((obj.get("metadata") or {}).get("ownerReferences") or []) if obj is not None else []
        return {ref.get("uid") for ref in refs if isinstance(ref, dict)}

    def _check_dependent(self, key: Key) -> None:
        obj = self.api.store.peek(key)  # read only: _drop_refs builds a new object
        if obj is None:
            return
        refs = meta(obj).get("ownerReferences") or []
        dangling = {ref.get("uid") for ref in refs if not self.owner_exists(ref, key[1])}
        if not dangling:
            return
        if len(dangling) == len(refs):
            self.api.delete_key(key, {})
        else:
            self._drop_refs(key, obj, dangling)

    def _drop_refs(self, key: Key, obj: dict[str, Any], uids: set[str | None]) -> None:
        new = {**obj, "metadata": dict(meta(obj))}
        new["metadata"]["ownerReferences"] = [
            r for r in meta(obj)["ownerReferences"] if r.get("uid") not in uids
        ]
        if not new["metadata"]["ownerReferences"]:
            del new["metadata"]["ownerReferences"]
        self.api.store.write(key, new, "MODIFIED")

    def _finish_foreground(self, owner_uid: str) -> None:
        key = self.api.store.locate(owner_uid)
        owner = self.api.store.peek(key) if key else None
        if key is None or owner is None or FOREGROUND not in (meta(owner).get("finalizers") or []):
            return
        if not self.api.store.has_dependents(owner_uid):
            self.api.remove_finalizer(key, owner, FOREGROUND)

    def _finish_namespace(self, name: str) -> None:
        key = self.api.namespace_key(name)
        namespace = self.api.store.peek(key)
        if namespace is None or not meta(namespace).get("deletionTimestamp"):
            return
        if not self.api.store.has_objects_in(name):
            self.api.remove_finalizer(key, namespace, None)
