"""kmock stays usable underneath: its DSL overrides answers, its object store shows what was written.

Docs: https://kmock.readthedocs.io/ (reactions with ``<<``, ``objects`` for assertions).

Case matrix: a user reaction answers instead of the emulation (fault injection) and only for what
it matches; requests are recorded; objects written through the API are visible in ``objects``.
"""

from __future__ import annotations

import kmock

from rackmesh_sandbox.kube_api import KubeApiServer
from tests.kube_api.conftest import DRS, Client, dr


async def test_reactions_take_precedence(server: KubeApiServer, client: Client) -> None:
    server.emulator["get /api/v1/nodes"] << 503
    assert (await client.get("/api/v1/nodes")).status == 503
    assert (await client.get(DRS)).status == 200  # everything else is still emulated
    assert len(list(server.emulator)) >= 2  # requests are recorded


async def test_objects_are_in_kmock_store(server: KubeApiServer, client: Client) -> None:
    created = await client.create(DRS, dr())
    stored = server.emulator.objects[
        kmock.resource("rackmesh.io", "v1alpha1", "deploymentrequests"), "default", "lob123"
    ]
    assert stored >= {"spec": {"replicas": 3}, "metadata": {"uid": created["metadata"]["uid"]}}
