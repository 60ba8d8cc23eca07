"""Garbage collection through ownerReferences, and namespace deletion.

Docs: https://kubernetes.io/docs/concepts/architecture/garbage-collection/
https://kubernetes.io/docs/tasks/administer-cluster/use-cascading-deletion/
https://kubernetes.io/docs/concepts/overview/working-with-objects/owners-dependents/

Case matrix:
- Background (default): owner gone at once; dependents (and theirs, recursively) deleted afterwards.
- Orphan: dependents stay, without the ownerReference to the deleted owner.
- Foreground: the owner lingers (deletionTimestamp, foregroundDeletion finalizer) until dependents are gone.
- Dependents with a finalizer linger until it is removed.
- Several owners: losing one drops that reference only; losing all deletes the dependent.
- A dependent created for an absent owner is collected.
- Deleting a namespace deletes its content, then the namespace.
Collection is asynchronous (as in a cluster), so tests wait for it with a deadline.
"""

from __future__ import annotations

from typing import Any

from tests.kube_api.conftest import DRS, Client, dr
from tests.support.waiting import async_eventually

VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
DVS = "/apis/cdi.kubevirt.io/v1beta1/namespaces/default/datavolumes"


def owned_by(*owners: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": o["apiVersion"],
            "kind": o["kind"],
            "name": o["metadata"]["name"],
            "uid": o["metadata"]["uid"],
            "controller": index == 0,
            "blockOwnerDeletion": True,
        }
        for index, o in enumerate(owners)
    ]


def vm(name: str, *owners: dict[str, Any], finalizers: list[str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "ownerReferences": owned_by(*owners), "finalizers": finalizers or []},
        "spec": {"template": {"spec": {"domain": {"devices": {}}}}},
    }


def dv(name: str, owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": {"name": name, "ownerReferences": owned_by(owner)},
        "spec": {"source": {"http": {"url": "http://x/i"}}, "storage": {}},
    }


async def gone(client: Client, path: str) -> bool:
    return (await client.get(path)).status == 404


async def test_background_cascade_is_recursive(client: Client) -> None:
    owner = await client.create(DRS, dr())
    machine = await client.create(VMS, vm("vm-0", owner))
    await client.create(DVS, dv("dv-0", machine))
    reply = await client.delete(f"{DRS}/lob123")
    assert reply.body["status"] == "Success"
    await async_eventually(lambda: gone(client, f"{VMS}/vm-0"), timeout=5, what="VM collected")
    await async_eventually(lambda: gone(client, f"{DVS}/dv-0"), timeout=5, what="DataVolume collected")


async def test_orphan_keeps_dependents(client: Client) -> None:
    owner = await client.create(DRS, dr())
    await client.create(VMS, vm("vm-0", owner))
    await client.delete(f"{DRS}/lob123", {"propagationPolicy": "Orphan"})
    kept = (await client.get(f"{VMS}/vm-0")).body
    assert "ownerReferences" not in kept["metadata"]
    await client.create(DRS, dr("lob124"))
    assert (await client.get(f"{VMS}/vm-0")).status == 200


async def test_orphan_by_query_parameter(client: Client) -> None:
    owner = await client.create(DRS, dr())
    await client.create(VMS, vm("vm-0", owner))
    await client.delete(f"{DRS}/lob123", params={"propagationPolicy": "Orphan"})
    assert (await client.get(f"{VMS}/vm-0")).status == 200


async def test_foreground_waits_for_dependents(client: Client) -> None:
    owner = await client.create(DRS, dr())
    await client.create(VMS, vm("vm-0", owner, finalizers=["rackmesh.io/hold"]))
    reply = await client.delete(f"{DRS}/lob123", {"propagationPolicy": "Foreground"})
    assert reply.body["metadata"]["finalizers"] == ["foregroundDeletion"]
    await async_eventually(
        lambda: _deletion_started(client, f"{VMS}/vm-0"), timeout=5, what="VM deletion started"
    )
    assert (await client.get(f"{DRS}/lob123")).status == 200  # still waiting for the VM
    await client.patch(f"{VMS}/vm-0", {"metadata": {"finalizers": None}})
    await async_eventually(lambda: gone(client, f"{DRS}/lob123"), timeout=5, what="owner deleted at last")


async def _deletion_started(client: Client, path: str) -> bool:
    return bool((await client.get(path)).body["metadata"].get("deletionTimestamp"))


async def test_several_owners(client: Client) -> None:
    first = await client.create(DRS, dr("first"))
    second = await client.create(DRS, dr("second"))
    await client.create(VMS, vm("vm-0", first, second))
    await client.delete(f"{DRS}/first")

    async def reference_dropped() -> bool:
        refs = (await client.get(f"{VMS}/vm-0")).body["metadata"].get("ownerReferences", [])
        return [ref["name"] for ref in refs] == ["second"]

    await async_eventually(reference_dropped, timeout=5, what="dangling reference removed")
    await client.delete(f"{DRS}/second")
    await async_eventually(lambda: gone(client, f"{VMS}/vm-0"), timeout=5, what="VM collected")


async def test_dependent_of_an_absent_owner_is_collected(client: Client) -> None:
    ghost = {**dr("ghost"), "metadata": {"name": "ghost", "uid": "00000000-0000-4000-8000-000000000000"}}
    await client.create(VMS, vm("vm-0", ghost))
    await async_eventually(lambda: gone(client, f"{VMS}/vm-0"), timeout=5, what="orphan collected")


async def test_namespace_deletion_deletes_its_content(client: Client) -> None:
    await client.create("/api/v1/namespaces", {"metadata": {"name": "team"}})
    team = "/apis/rackmesh.io/v1alpha1/namespaces/team/deploymentrequests"
    await client.create(team, {**dr(), "metadata": {"name": "a"}})
    reply = await client.delete("/api/v1/namespaces/team")
    assert reply.body["status"]["phase"] == "Terminating"
    await async_eventually(
        lambda: gone(client, "/api/v1/namespaces/team"), timeout=5, what="namespace deleted"
    )
    assert (await client.get(f"{team}/a")).status == 404
