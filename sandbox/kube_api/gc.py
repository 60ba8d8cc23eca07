"""Garbage collection by ownerReferences, and namespace deletion.

Docs: https://kubernetes.io/docs/concepts/architecture/garbage-collection/ and
https://kubernetes.io/docs/tasks/administer-cluster/use-cascading-deletion/

- Background (the default): the owner goes at once; dependents are deleted afterwards.
- Foreground: the owner keeps existing with ``deletionTimestamp`` and the ``foregroundDeletion``
  finalizer until its dependents are gone.
- Orphan: the dependents lose their ownerReference to the owner and stay.
- A dependent whose owners are all absent is deleted; a reference to one absent owner among
  existing ones is removed.

Like the real controller, collection runs after the request that triggered it (on the event loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rackmesh_sandbox.kube_api.store import Key, meta

if TYPE_CHECKING:
    from rackmesh_sandbox.kube_api.api import ObjectApi

FOREGROUND = "foregroundDeletion"


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
            for key in list(self.api.store.objects.keys()):
                if key[1] == name:
                    self.api.delete_key(key, {})
            self._finish_namespace(name)

        self._later(delete_content)

    # -- the collection itself ------------------------------------------------------------------

    def _collect_dependents(self, owner_uid: str, *, force: bool = False) -> None:
        for key, _ in self.api.store.dependents(owner_uid):
            if force:
                self.api.delete_key(key, {})
            else:
                self._check_dependent(key)

    def _check_dependent(self, key: Key) -> None:
        obj = self.api.store.get(key)
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
        owner = self.api.store.get(key) if key else None
        if key is None or owner is None or FOREGROUND not in (meta(owner).get("finalizers") or []):
            return
        if not self.api.store.dependents(owner_uid):
            self.api.remove_finalizer(key, owner, FOREGROUND)

    def _finish_namespace(self, name: str) -> None:
        key = self.api.namespace_key(name)
        namespace = self.api.store.get(key)
        if namespace is None or not meta(namespace).get("deletionTimestamp"):
            return
        if not any(k[1] == name for k in self.api.store.objects):
            self.api.remove_finalizer(key, namespace, None)
