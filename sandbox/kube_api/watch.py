"""Watch streams: ``?watch=true`` as newline-delimited JSON events.

Docs: https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
and https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-watch

- No ``resourceVersion`` (or "0"): synthetic ``ADDED`` events for the current state, then changes.
- ``resourceVersion=N``: the changes after N; ``ERROR`` with a 410 Status if N is compacted away.
- Selectors apply to both states of a change: an object leaving the selection arrives as
  ``DELETED`` (with its previous content), one entering it as ``ADDED``.
- ``timeoutSeconds`` ends the stream; ``sendInitialEvents=true`` ends the initial state with a
  ``BOOKMARK`` annotated ``k8s.io/initial-events-end``.

Each stream is a :class:`.changes.Subscription` of its resource and namespace, indexed by its
selector's exact-match term, so a write reaches only the streams that can see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import Callable
from typing import Any

import aiohttp.web

from rackmesh_sandbox.kube_api import errors
from rackmesh_sandbox.kube_api.api import ObjectApi
from rackmesh_sandbox.kube_api.changes import Subscription
from rackmesh_sandbox.kube_api.registry import ResourceDef
from rackmesh_sandbox.kube_api.selectors import IndexTerm, Matcher

Render = Callable[[dict[str, Any]], dict[str, Any]]  # e.g. into a Table, for `kubectl get -w`
_IDLE = 5.0  # how often an idle stream checks its deadline and whether the client is still there


def _event(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def transition(change_type: str, now: bool, before: bool) -> str | None:
    """The event a selecting watcher sees for a change, given whether the object matches now/before."""
    if change_type == "MODIFIED":
        return "MODIFIED" if now and before else "ADDED" if now else "DELETED" if before else None
    if change_type == "DELETED":
        return "DELETED" if before else None
    return change_type if now else None


async def serve(
    raw: aiohttp.web.BaseRequest,
    api: ObjectApi,
    rd: ResourceDef,
    namespace: str | None,
    matches: Matcher,
    params: dict[str, str],
    render: Render,
    term: IndexTerm | None = None,
) -> aiohttp.web.StreamResponse:
    """Stream the watch; ``term`` is an exact-match requirement of ``matches`` to be indexed by."""
    requested = params.get("resourceVersion", "")
    if requested not in ("", "0") and not requested.isdigit():
        raise errors.bad_request(f"invalid resource version: {requested}")
    try:
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
    except ValueError:
        raise errors.bad_request(f"invalid timeoutSeconds: {params['timeoutSeconds']}") from None
    deadline = asyncio.get_running_loop().time() + timeout if timeout is not None else None

    # Snapshot and cursor are taken together, before any await, so no change is lost or doubled.
    initial: list[dict[str, Any]] = []
    since = api.store.revision
    if requested in ("", "0"):
        initial = [obj for obj in api.list(rd, namespace, term) if matches(obj)]  # by the same index term
    else:
        since = int(requested)
    subscription = api.store.changes.subscribe(rd.storage, namespace if rd.namespaced else None, term, since)

    try:
        return await _respond(raw, api, rd, matches, params, render, initial, since, deadline, subscription)
    finally:
        subscription.close()  # also when the client is gone before the stream even started


async def _respond(
    raw: aiohttp.web.BaseRequest,
    api: ObjectApi,
    rd: ResourceDef,
    matches: Matcher,
    params: dict[str, str],
    render: Render,
    initial: list[dict[str, Any]],
    since: int,
    deadline: float | None,
    subscription: Subscription,
) -> aiohttp.web.StreamResponse:
    response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(raw)
    with contextlib.suppress(ConnectionError):
        for obj in initial:
            await response.write(_event("ADDED", render(obj)))
        if params.get("sendInitialEvents") == "true":
            bookmark = {
                "kind": rd.kind,
                "apiVersion": rd.api_version,
                "metadata": {
                    "resourceVersion": str(since),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                },
            }
            await response.write(_event("BOOKMARK", bookmark))
        try:
            async with asyncio.timeout_at(deadline):
                await _stream(response, raw, api, rd, matches, render, subscription)
        except TimeoutError:
            pass  # timeoutSeconds elapsed: the server ends the stream, the client re-watches
        except errors.ApiError as e:
            await response.write(_event("ERROR", e.status()))
        await response.write_eof()
    return response


async def _stream(
    response: aiohttp.web.StreamResponse,
    raw: aiohttp.web.BaseRequest,
    api: ObjectApi,
    rd: ResourceDef,
    matches: Matcher,
    render: Render,
    subscription: Subscription,
) -> None:
    # The subscription offers only this resource and namespace, and only what the index term admits.
    async with contextlib.aclosing(subscription.follow(idle=_IDLE)) as changes:
        async for change in changes:
            if change is None:
                if raw.transport is None or raw.transport.is_closing():
                    return  # the client went away
                continue
            kind = transition(change.type, matches(change.obj), change.prev is not None and matches(change.prev))
            if kind is None:
                continue
            obj = copy.deepcopy(change.prev if kind == "DELETED" and change.type == "MODIFIED" else change.obj)
            obj["metadata"]["resourceVersion"] = str(change.revision)  # the event's version, even for old content
            await response.write(_event(kind, render(api.present(rd, obj))))
