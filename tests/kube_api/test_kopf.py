"""A real kopf operator against the API: the product's own client, end to end.

Docs: https://kopf.readthedocs.io/en/stable/authentication/ (kubeconfig login),
https://kopf.readthedocs.io/en/stable/walkthrough/updates/ (patching status),
https://kopf.readthedocs.io/en/stable/events/.

Case matrix: kopf logs in with ``write_kubeconfig``'s file (plain HTTP, token), discovers the CRD,
lists and watches DeploymentRequests, patches ``status`` (through the subresource) and metadata,
posts an Event (generateName), and handles the deletion of an object carrying its finalizer.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import threading
from typing import Any

import kopf
import pytest

from rackmesh_sandbox.kube_api import KubeApiServer
from tests.kube_api.conftest import DRS, Client, dr
from tests.support.waiting import async_eventually


async def test_kopf_operator(
    server: KubeApiServer, client: Client, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    registry = kopf.OperatorRegistry()
    deleted: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.create("rackmesh.io", "v1alpha1", "deploymentrequests", registry=registry)
    def created(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status["phase"] = "Placing"
        kopf.info(body, reason="Accepted", message="placing the VMs")

    @kopf.on.delete("rackmesh.io", "v1alpha1", "deploymentrequests", registry=registry)
    def removed(name: str, **_: Any) -> None:
        deleted.append(name)

    settings = kopf.OperatorSettings()
    settings.posting.level = logging.INFO
    # kopf runs in its own thread and loop, as in production: on exit it would otherwise wait for,
    # then cancel, every task of the loop it runs in — the in-process server's included.
    stop = threading.Event()
    operator = threading.Thread(
        target=asyncio.run,
        args=(
            kopf.operator(
                registry=registry, settings=settings, standalone=True, namespaces=["default"], stop_flag=stop
            ),
        ),
    )
    operator.start()
    try:
        await client.create(DRS, dr())

        async def placed() -> bool:
            obj = (await client.get(f"{DRS}/lob123")).body
            return obj.get("status", {}).get("phase") == "Placing" and bool(obj["metadata"].get("finalizers"))

        await async_eventually(placed, timeout=15, what="kopf handled the creation")

        async def event_posted() -> list[Any]:
            events = await client.get(
                "/api/v1/namespaces/default/events",
                params={"fieldSelector": "involvedObject.name=lob123,reason=Accepted"},
            )
            return events.body["items"]

        [event] = await async_eventually(event_posted, timeout=10, what="kopf posted the event")
        assert event["message"] == "placing the VMs"

        await client.delete(f"{DRS}/lob123")
        await async_eventually(lambda: _gone(client), timeout=15, what="kopf released its finalizer")
        assert deleted == ["lob123"]
    finally:
        stop.set()
        await asyncio.to_thread(operator.join, 15)
        assert not operator.is_alive()


async def _gone(client: Client) -> bool:
    return (await client.get(f"{DRS}/lob123")).status == 404
