"""Writing a portion's VMs against the sandbox's Kubernetes API (which validates KubeVirt's schemas).

Case matrix:
- a portion is written once: every VM exists, stored as written (nothing pruned), schema-valid
- writing the same portion again (a retry) returns the same count and creates nothing new
- the request and node labels select exactly one node's portion
- a VM of the same name owned by something else (a deleted request not yet collected) is not counted
- other API errors (a request name too long for a label value: 422) propagate to the caller
"""

from collections.abc import AsyncIterator

import pytest

from rackmesh.kube_client import DEPLOYMENT_REQUESTS, VIRTUAL_MACHINES, Credentials, KubeApiError, KubeClient
from rackmesh.labels import NODE_LABEL, REQUEST_LABEL
from rackmesh.protocol import ImageHolder, Order, RequestRef
from rackmesh_node_agent.vms.manifest import virtual_machine
from rackmesh_node_agent.vms.writer import write_vms
from rackmesh_sandbox.kube_api import KubeApiServer
from rackmesh_sandbox.kube_api.schema import load_kubevirt_schemas
from rackmesh_sandbox.lifecycle import CRD_DIR
from tests.support.builders import RequestBuilder

HOLDERS = [ImageHolder(f"s-{n}", f"rack-{n}", f"http://127.0.1.{n + 1}:9000/images/lob123-rhel-6.0.img")
           for n in range(2)]


@pytest.fixture
async def kube() -> AsyncIterator[KubeClient]:
    async with (KubeApiServer(crd_paths=sorted(CRD_DIR.glob("*.yaml"))) as api,
                KubeClient(Credentials(api.url, ssl_context=False)) as client):
        yield client


async def request(kube: KubeClient, name: str = "lob123", replicas: int = 20) -> Order:
    """A stored DeploymentRequest (VMs need a live owner, or garbage collection removes them)."""
    stored = await kube.create(DEPLOYMENT_REQUESTS, RequestBuilder(name).replicas(replicas).obj(), "default")
    return Order(RequestRef(stored["metadata"]["uid"], "default", name), replicas, "u1.small", "lob123-rhel-6.0")


async def names(kube: KubeClient, selector: str) -> list[str]:
    return sorted(vm["metadata"]["name"] for vm in await kube.list(VIRTUAL_MACHINES, "default", selector))


async def test_a_portion_is_written_once_even_when_retried(kube):
    order = await request(kube)
    assert await write_vms(kube, order, "c-a-1", list(range(3, 15)), HOLDERS, "10Gi") == 12
    first = {vm["metadata"]["name"]: vm["metadata"]["uid"] for vm in await kube.list(VIRTUAL_MACHINES, "default")}
    assert sorted(first) == [f"lob123-{index:04d}" for index in range(3, 15)]

    assert await write_vms(kube, order, "c-a-1", list(range(3, 15)), HOLDERS, "10Gi") == 12
    again = {vm["metadata"]["name"]: vm["metadata"]["uid"] for vm in await kube.list(VIRTUAL_MACHINES, "default")}
    assert again == first  # the same objects, none added


async def test_stored_vms_are_as_written_and_schema_valid(kube):
    order = await request(kube)
    await write_vms(kube, order, "c-a-1", list(range(0, 4)), HOLDERS, "10Gi")
    schema = load_kubevirt_schemas()["VirtualMachine"]
    for index in range(4):
        written = virtual_machine(order, "c-a-1", index, HOLDERS, "10Gi")
        stored = await kube.get(VIRTUAL_MACHINES, written["metadata"]["name"], "default")
        assert schema.errors(stored) == []
        assert stored["spec"] == written["spec"]  # nothing pruned or defaulted away
        for field in ("labels", "annotations", "ownerReferences"):
            assert stored["metadata"][field] == written["metadata"][field]


async def test_labels_select_one_nodes_portion(kube):
    order = await request(kube)
    other = await request(kube, "other")
    await write_vms(kube, order, "c-a-1", list(range(0, 3)), HOLDERS, "10Gi")
    await write_vms(kube, order, "c-b-1", list(range(3, 5)), HOLDERS, "10Gi")
    await write_vms(kube, other, "c-a-1", list(range(0, 2)), HOLDERS, "10Gi")

    assert await names(kube, f"{REQUEST_LABEL}=lob123") == [f"lob123-{index:04d}" for index in range(5)]
    assert await names(kube, f"{REQUEST_LABEL}=lob123,{NODE_LABEL}=c-b-1") == ["lob123-0003", "lob123-0004"]
    assert await names(kube, f"{NODE_LABEL}=c-a-1") == ["lob123-0000", "lob123-0001", "lob123-0002",
                                                        "other-0000", "other-0001"]


async def test_a_vm_of_the_same_name_owned_by_another_object_is_not_counted(kube):
    order = await request(kube)
    stale_owner = await request(kube, "old")
    # As a deleted "lob123" of earlier would leave it until the garbage collector gets to it.
    stale = Order(RequestRef(stale_owner.request.uid, "default", "lob123"), 20, "u1.small", "lob123-rhel-6.0")
    await kube.create(VIRTUAL_MACHINES, virtual_machine(stale, "c-a-1", 1, HOLDERS, "10Gi"), "default")

    with pytest.raises(KubeApiError, match="belongs to another object") as caught:
        await write_vms(kube, order, "c-a-1", list(range(0, 3)), HOLDERS, "10Gi")
    assert caught.value.status == 409
    # The other VMs of the portion were still written, so the retry has only the stale one left.
    assert await names(kube, f"{REQUEST_LABEL}=lob123") == ["lob123-0000", "lob123-0001", "lob123-0002"]


async def test_other_api_errors_propagate(kube):
    # A label value holds at most 63 characters, so the API refuses the VMs of a longer request name.
    order = Order(RequestRef("uid-1", "default", "r" * 64), 2, "u1.small", "lob123-rhel-6.0")
    with pytest.raises(KubeApiError) as caught:
        await write_vms(kube, order, "c-a-1", list(range(0, 2)), HOLDERS, "10Gi")
    assert caught.value.status == 422
    assert await kube.list(VIRTUAL_MACHINES, "default") == []
