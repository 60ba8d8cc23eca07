"""A compute agent moves the root disk of its VMs whose import has not started off a holder that is gone.

Real agents (a compute node, two storage nodes in two racks, each VM's primary copy on s-0-0) against the sandbox's
API; the DataVolumes are written as KubeVirt makes them and given the phase CDI would report. Case matrix:
- every holder answers: nothing is touched (the first check, and the agent's own periodic ones)
- the primary's agent stops (no longer a storage member, no answer), for each state of the VM's root disk:
  no phase, Pending, ImportScheduled, WaitForFirstConsumer -> Moved: the VM's template names the next holder of
  its image-sources, the DataVolume is deleted (for KubeVirt to recreate from the template); ImportInProgress ->
  Started: left to CDI, reported once however often it is checked; Succeeded, Failed, no DataVolume yet (no phase
  says anything), a DataVolume of the VM's name that another owns -> untouched
- the primary still a member but no longer serving the copy (404) counts as gone: Moved
- no holder of the list answers -> Stranded, nothing written
- a DataVolume older than its template (a move whose delete did not happen) and not started -> Recreating
- the agent does it by itself, every disk_source_check_interval
"""

import json
import logging
from pathlib import Path
from typing import Any

from rackmesh.kube_client import DATA_VOLUMES, DEPLOYMENT_REQUESTS, VIRTUAL_MACHINES, KubeApiError
from rackmesh.protocol import ImageHolder, Order, RequestRef, image_file_name
from rackmesh.vm_fields import disk_source_url
from rackmesh_node_agent.vms.disk_sources import Outcome
from rackmesh_node_agent.vms.manifest import data_volume_name, virtual_machine
from rackmesh_sandbox.cdi_simulation import data_volume_object
from tests.agent.conftest import Mesh, MeshFactory
from tests.support.builders import RequestBuilder, make_topology
from tests.support.waiting import async_eventually

IMAGE = "lob123-rhel-6.0"
COMPUTE, PRIMARY, SECOND = "c-0-0", "s-0-0", "s-1-0"
NO_DATA_VOLUME = "none"
NOT_MINE = "another's"


def topology():
    return make_topology().compute_racks(1, nodes=1).storage_racks(2, nodes=1)


def holder(mesh: Mesh, node: str) -> ImageHolder:
    agent = mesh.agent(node)
    return ImageHolder(node, agent.node.rack, f"{agent.endpoint}/images/{image_file_name(IMAGE)}")


async def order(mesh: Mesh, name: str = "lob123") -> Order:
    """A stored DeploymentRequest: its VMs' owner (garbage collection removes VMs whose owner is gone)."""
    stored = await mesh.kube.create(DEPLOYMENT_REQUESTS, RequestBuilder(name).replicas(40).obj(), "default")
    return Order(RequestRef(stored["metadata"]["uid"], "default", name), 40, "u1.small", IMAGE)


async def vm_with_disk(mesh: Mesh, request: Order, index: int, holders: list[ImageHolder], phase: str | None,
                       disk_url: str | None = None) -> dict[str, Any]:
    """VM ``index`` as the compute agent writes it, and its root disk as KubeVirt makes it, in ``phase`` (None: no
    status yet; NO_DATA_VOLUME: not made yet; NOT_MINE: a DataVolume of its name owned by something else)."""
    vm = await mesh.kube.create(VIRTUAL_MACHINES, virtual_machine(request, COMPUTE, index, holders, "1Gi"), "default")
    if phase != NO_DATA_VOLUME:
        disk = data_volume_object(vm, vm["spec"]["dataVolumeTemplates"][0])
        if phase == NOT_MINE:
            disk["metadata"]["ownerReferences"] = []
        if disk_url is not None:
            disk["spec"]["source"]["http"]["url"] = disk_url
        await mesh.kube.create(DATA_VOLUMES, disk, "default")
        if phase not in (None, NOT_MINE):
            await mesh.kube.patch(DATA_VOLUMES, disk["metadata"]["name"], {"status": {"phase": phase}}, "default",
                                  "status")
    name = vm["metadata"]["name"]
    await async_eventually(lambda: _cached(mesh, name, phase), what=f"{name} and its disk in the agent's caches")
    return vm


async def _cached(mesh: Mesh, name: str, phase: str | None) -> bool:
    agent = mesh.agent(COMPUTE)
    disk = agent.disk_sources.data_volumes.get("default", data_volume_name(name))
    return agent.vms.get("default", name) is not None and (
        disk is None if phase == NO_DATA_VOLUME else
        disk is not None and (disk.get("status") or {}).get("phase") == (phase if phase != NOT_MINE else None))


async def stored_url(mesh: Mesh, name: str) -> str:
    return disk_source_url(await mesh.kube.get(VIRTUAL_MACHINES, name, "default"))


async def disk_uid(mesh: Mesh, name: str) -> str | None:
    """The uid of VM ``name``'s DataVolume, None once it is gone (or is being deleted)."""
    try:
        disk = await mesh.kube.get(DATA_VOLUMES, data_volume_name(name), "default")
    except KubeApiError as exc:
        if exc.status == 404:
            return None
        raise
    return None if disk["metadata"].get("deletionTimestamp") else disk["metadata"]["uid"]


async def test_a_gone_holder_moves_only_the_disks_whose_import_has_not_started(mesh: MeshFactory, caplog):
    mesh = await mesh(topology(), disk_source_check_interval=3600.0)
    holders = [holder(mesh, PRIMARY), holder(mesh, SECOND)]
    request = await order(mesh)
    moved_phases = [None, "Pending", "ImportScheduled", "WaitForFirstConsumer"]
    kept_phases = ["ImportInProgress", "Succeeded", "Failed", NO_DATA_VOLUME, NOT_MINE]
    # Even indices: holders[index % 2], the primary, is s-0-0 for all of them.
    vms = {phase: await vm_with_disk(mesh, request, 2 * n, holders, phase)
           for n, phase in enumerate(moved_phases + kept_phases)}
    names = {phase: vm["metadata"]["name"] for phase, vm in vms.items()}
    disks = {phase: await disk_uid(mesh, name) for phase, name in names.items()}
    repairs = mesh.agent(COMPUTE).disk_sources

    assert await repairs.check() == []  # both copies answer

    await mesh.stop_agent(PRIMARY)
    with caplog.at_level(logging.WARNING, logger="rackmesh_node_agent.vms.disk_sources"):
        outcomes = {repair.vm.removeprefix("default/"): (repair.outcome, repair.url)
                    for repair in await repairs.check()}
        again = {repair.vm.removeprefix("default/"): repair.outcome for repair in await repairs.check()}
    assert outcomes == {
        **{names[phase]: (Outcome.MOVED, holders[1].url) for phase in moved_phases},
        names["ImportInProgress"]: (Outcome.STARTED, holders[0].url),
    }
    for phase in moved_phases:
        assert await stored_url(mesh, names[phase]) == holders[1].url, phase
        await async_eventually(lambda name=names[phase]: _gone(mesh, name), what=f"{phase}: its DataVolume deleted")
    for phase in kept_phases:
        assert await stored_url(mesh, names[phase]) == holders[0].url, phase
        assert await disk_uid(mesh, names[phase]) == disks[phase], phase
    # Moved disks are done with; the started import is still left alone, and said so once.
    assert again == {names["ImportInProgress"]: Outcome.STARTED}
    started = [r for r in caplog.records if "the import has started" in r.getMessage()]
    assert [r.vm for r in started] == [f"default/{names['ImportInProgress']}"]


async def _gone(mesh: Mesh, name: str) -> bool:
    return await disk_uid(mesh, name) is None


async def test_a_member_that_no_longer_serves_the_copy_is_gone_too(mesh: MeshFactory):
    mesh = await mesh(topology(), disk_source_check_interval=3600.0)
    holders = [holder(mesh, PRIMARY), holder(mesh, SECOND)]
    vm = await vm_with_disk(mesh, await order(mesh), 0, holders, "ImportScheduled")
    (Path(mesh.agent(PRIMARY).settings.image_dir) / image_file_name(IMAGE)).unlink()  # 404 from now on

    [repair] = await mesh.agent(COMPUTE).disk_sources.check()
    assert (repair.outcome, repair.url) == (Outcome.MOVED, holders[1].url)
    assert await stored_url(mesh, vm["metadata"]["name"]) == holders[1].url


async def test_with_no_holder_answering_the_disk_waits_untouched(mesh: MeshFactory):
    mesh = await mesh(topology(), disk_source_check_interval=3600.0)
    holders = [holder(mesh, PRIMARY), holder(mesh, SECOND)]
    vm = await vm_with_disk(mesh, await order(mesh), 0, holders, "ImportScheduled")
    name = vm["metadata"]["name"]
    disk = await disk_uid(mesh, name)
    await mesh.stop_agent(PRIMARY)
    await mesh.stop_agent(SECOND)

    [repair] = await mesh.agent(COMPUTE).disk_sources.check()
    assert (repair.outcome, repair.url) == (Outcome.STRANDED, holders[0].url)
    assert await stored_url(mesh, name) == holders[0].url and await disk_uid(mesh, name) == disk


async def test_a_disk_older_than_its_template_is_recreated(mesh: MeshFactory):
    """The template was moved to s-1-0 but the DataVolume, made before, still names s-0-0 (and CDI refuses to change
    a DataVolume's spec): it is deleted, for KubeVirt to make it again from the template."""
    mesh = await mesh(topology(), disk_source_check_interval=3600.0)
    moved = [holder(mesh, SECOND), holder(mesh, PRIMARY)]
    vm = await vm_with_disk(mesh, await order(mesh), 0, moved, "Pending", disk_url=moved[1].url)

    [repair] = await mesh.agent(COMPUTE).disk_sources.check()
    assert (repair.outcome, repair.url) == (Outcome.RECREATING, moved[0].url)
    await async_eventually(lambda: _gone(mesh, vm["metadata"]["name"]), what="the old DataVolume deleted")
    assert await stored_url(mesh, vm["metadata"]["name"]) == moved[0].url


async def test_the_agent_checks_by_itself(mesh: MeshFactory):
    mesh = await mesh(topology(), disk_source_check_interval=0.2)
    holders = [holder(mesh, PRIMARY), holder(mesh, SECOND)]
    vm = await vm_with_disk(mesh, await order(mesh), 0, holders, "ImportScheduled")
    name = vm["metadata"]["name"]
    assert await stored_url(mesh, name) == holders[0].url
    await mesh.stop_agent(PRIMARY)

    await async_eventually(lambda: _url_is(mesh, name, holders[1].url), what="the disk moved to s-1-0")
    await async_eventually(lambda: _gone(mesh, name), what="its DataVolume deleted")
    sources = json.loads((await mesh.kube.get(VIRTUAL_MACHINES, name, "default"))["metadata"]["annotations"]
                         ["rackmesh.io/image-sources"])
    assert sources == [holders[0].url, holders[1].url]  # the list stays as written: it says which copies exist


async def _url_is(mesh: Mesh, name: str, url: str) -> bool:
    return await stored_url(mesh, name) == url
