"""A watch-fed cache of the objects one selector picks, as client-go's informers keep them: list, then
watch from the list's resourceVersion; a watch that ends is resumed, a broken or expired one lists again.

Readers get the cache and this process's own writes at once: an object it created counts before the
watch event arrives (``wrote``). A deletion counts once the API says the object is gone (the watch's
event), since a terminating object may still use what it holds.
"""

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from rackmesh.kube_client import KubeApiError, KubeClient, ResourceRef, Selector

logger = logging.getLogger(__name__)
# A broken watch lists again after a pause that doubles up to a limit, with jitter, as client-go's
# reflector backs off: many agents that lost the API server at once do not all list again at once.
RETRY_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


def key_of(obj: dict[str, Any]) -> Key:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _uid(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("uid", ""))


class Informer:
    def __init__(self, kube: KubeClient, resource: ResourceRef, selector: Selector | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self._kube = kube
        self._resource = resource
        self._selector = selector or Selector()
        self._on_change = on_change
        self._seen: dict[Key, dict[str, Any]] = {}
        # Our own writes the watch has not shown yet: the object, and when the write was answered.
        self._written: dict[Key, tuple[dict[str, Any], float]] = {}
        self.synced = asyncio.Event()  # the first listing is in
        self.lists = 0  # how many times it listed (once, unless a watch broke)
        self.changes = 0  # bumped on every change of what readers see, so they can keep what they derive
        self._change = asyncio.Event()  # set, and replaced, on every change

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        key = (namespace, name)
        written = self._written.get(key)
        return written[0] if written is not None else self._seen.get(key)

    def objects(self) -> list[dict[str, Any]]:
        return [*(obj for key, obj in self._seen.items() if key not in self._written),
                *(obj for obj, _ in self._written.values())]

    async def wait_until(self, holds: Callable[[], bool], timeout: float) -> bool:
        """Whether ``holds()`` is true now or becomes so, as the cache changes, within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while not holds():
                    await self._change.wait()
        except TimeoutError:
            return False
        return True

    def wrote(self, obj: dict[str, Any]) -> None:
        """This process created or changed ``obj`` (the API's answer): count it now."""
        self._written[key_of(obj)] = (obj, time.monotonic())
        self._changed()

    async def run(self) -> None:
        """List, then watch, for ever."""
        failures = 0
        while True:
            try:
                started = time.monotonic()
                items, version = await self._kube.list_for_watch(self._resource, self._selector)
                self._listed(items, started)
                failures = 0
                while True:  # a watch the server ends after its timeout is resumed where it stopped
                    async for kind, obj in self._kube.watch(self._resource, self._selector, version):
                        version = str(obj["metadata"].get("resourceVersion", version))
                        self._event(kind, obj)
            except (KubeApiError, OSError, ValueError, TimeoutError) as exc:
                failures += 1
                pause = min(RETRY_MAX_SECONDS, RETRY_SECONDS * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
                logger.warning("watch failed; listing again", extra={
                    "resource": self._resource.plural, "selector": self._selector.params(), "error": repr(exc),
                    "pause": round(pause, 2)})
                await asyncio.sleep(pause)

    def _listed(self, items: list[dict[str, Any]], started: float) -> None:
        self.lists += 1
        self._seen = {key_of(obj): obj for obj in items}
        uids = {_uid(obj) for obj in items}
        # A listing that began after a write was answered shows it, or shows that it is gone since.
        self._written = {key: (obj, at) for key, (obj, at) in self._written.items()
                         if at >= started and _uid(obj) not in uids}
        self.synced.set()
        self._changed()

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        key = key_of(obj)
        written = self._written.get(key)
        if written is not None and _uid(written[0]) == _uid(obj):
            del self._written[key]  # the watch has caught up with our write
        if kind == "DELETED":
            self._seen.pop(key, None)
        elif kind in ("ADDED", "MODIFIED"):
            self._seen[key] = obj
        self._changed()

    def _changed(self) -> None:
        self.changes += 1
        self._change.set()
        self._change = asyncio.Event()
        if self._on_change is not None:
            self._on_change()
