"""The status subresource: writes to an object and to its ``/status`` are isolated.

Docs: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#status-subresource
("PUT/POST/PATCH requests to the custom resource ignore changes to the status stanza";
"PUT/PATCH to /status ... ignore changes to anything except the status stanza";
"updates to the status stanza do not increment metadata.generation").

Case matrix, for a custom resource with the subresource (DeploymentRequest), one without
(VirtualMachineInstance), and a built-in (Node):
- create: CR status dropped; Node status kept (nodes may set status on create).
- main-resource PUT/PATCH: status unchanged.
- /status PUT/PATCH: only status changes (spec and labels ignored), generation unchanged.
- /status on a resource without the subresource: 404.
"""

from __future__ import annotations

from tests.kube_api.conftest import DRS, NODES, Client, dr, node

VMIS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances"


async def test_status_is_dropped_on_create_of_a_custom_resource(client: Client) -> None:
    created = await client.create(DRS, {**dr(), "status": {"phase": "Ready"}})
    assert "status" not in created


async def test_main_resource_writes_ignore_status(client: Client) -> None:
    await client.create(DRS, dr())
    await client.patch(f"{DRS}/lob123/status", {"status": {"phase": "Placing"}})
    patched = await client.patch(f"{DRS}/lob123", {"spec": {"replicas": 5}, "status": {"phase": "Failed"}})
    assert patched.body["status"] == {"phase": "Placing"}
    assert patched.body["spec"]["replicas"] == 5
    current = patched.body
    replaced = await client.put(f"{DRS}/lob123", {**current, "status": {"phase": "Ready"}})
    assert replaced.status == 200
    assert replaced.body["status"] == {"phase": "Placing"}


async def test_status_writes_change_only_status(client: Client) -> None:
    created = await client.create(DRS, dr())
    patched = await client.patch(
        f"{DRS}/lob123/status",
        {
            "spec": {"replicas": 9},
            "metadata": {"labels": {"sneaky": "yes"}},
            "status": {"phase": "Deploying"},
        },
    )
    assert patched.status == 200
    assert patched.body["status"] == {"phase": "Deploying"}
    assert patched.body["spec"] == created["spec"]
    assert "labels" not in patched.body["metadata"]
    assert patched.body["metadata"]["generation"] == 1
    current = patched.body
    put = await client.put(
        f"{DRS}/lob123/status",
        {
            **current,
            "spec": {**current["spec"], "replicas": 8},
            "status": {"phase": "Ready", "readyReplicas": 3},
        },
    )
    assert put.body["status"] == {"phase": "Ready", "readyReplicas": 3}
    assert put.body["spec"]["replicas"] == 3
    got = await client.get(f"{DRS}/lob123/status")
    assert got.body["status"]["phase"] == "Ready"


async def test_no_status_subresource_means_status_is_ordinary(client: Client) -> None:
    vmi = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "v"},
        "spec": {"domain": {"devices": {}}},
        "status": {"phase": "Pending"},
    }
    created = await client.create(VMIS, vmi)
    assert created["status"] == {"phase": "Pending"}
    assert (await client.patch(f"{VMIS}/v/status", {"status": {"phase": "Running"}})).status == 404
    patched = await client.patch(f"{VMIS}/v", {"status": {"phase": "Running"}})
    assert patched.body["status"] == {"phase": "Running"}
    assert patched.body["metadata"]["generation"] == 2  # without the subresource, status counts as a change


async def test_nodes_keep_status_on_create_but_not_on_update(client: Client) -> None:
    created = await client.create(NODES, node("n1"))
    assert created["status"]["allocatable"] == {"cpu": "32", "memory": "128Gi"}
    patched = await client.patch(f"{NODES}/n1", {"status": {"allocatable": {"cpu": "1"}}})
    assert patched.body["status"]["allocatable"]["cpu"] == "32"
    patched = await client.patch(f"{NODES}/n1/status", {"status": {"allocatable": {"cpu": "1"}}})
    assert patched.body["status"]["allocatable"] == {"cpu": "1", "memory": "128Gi"}
