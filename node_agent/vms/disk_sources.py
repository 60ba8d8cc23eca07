"""The root disks of this node's VMs: one whose import has not started, and whose image holder is gone, is moved to
the next holder of the VM's ``rackmesh.io/image-sources``.

A VM's root disk is a DataVolume that KubeVirt creates from the VM's ``dataVolumeTemplates`` (owned by the VM,
carrying the template's labels) and CDI imports from the DataVolume's own ``spec.source``. CDI's webhook refuses
any change of a DataVolume's spec ("Cannot update DataVolume Spec"), and KubeVirt's VM controller never updates an
existing DataVolume from a changed template, but creates one that is missing from it. So the repair is the one the
real stack accepts: patch the VM's root-disk template to the next holder that answers, then delete the DataVolume
and let KubeVirt create it again from the template. The delete carries the uid and resourceVersion the cache saw,
so a DataVolume whose import started meanwhile is left alone (409), and propagates in the foreground, so the
DataVolume stays until CDI's claim is gone: KubeVirt marks the DataVolumes it creates
``cdi.kubevirt.io/allowClaimAdoption``, and a new one finding the old claim would adopt it as populated.

Only a disk whose DataVolume says its import has not started is touched (``NOT_STARTED``; a VM whose DataVolume
KubeVirt has not made yet is not, so nothing is asked where nothing imports); an import under way, finished or
failed is CDI's (its importer retries the same URL, the holder's node address, which outlives the holder's
restarts). Gone: the URL belongs to no storage member in ZooKeeper, or the copy does not answer
(``PeerClient.answers``). The decision reads the agent's caches (its VMs, its node's DataVolumes, the
``Directory``); it calls only the holders of disks that wait, and writes only to repair.
"""

import asyncio
import copy
import dataclasses
import enum
import json
import logging
from typing import TYPE_CHECKING, Any

import aiohttp
from kazoo.exceptions import KazooException

from rackmesh.informer import Informer
from rackmesh.kube_client import DATA_VOLUMES, VIRTUAL_MACHINES, KubeApiError, Selector
from rackmesh.labels import NODE_LABEL, Role
from rackmesh.protocol import IMAGE_FILES
from rackmesh.vm_fields import controller_uid, disk_source_url, is_ready
from rackmesh.zk_layout import MemberRecord
from rackmesh_node_agent.vms.manifest import IMAGE_SOURCES_ANNOTATION, data_volume_name

if TYPE_CHECKING:
    from rackmesh_node_agent.agent import Agent

logger = logging.getLogger(__name__)
# CDI's DataVolume phases before an importer runs (containerized-data-importer, DataVolumePhase): none yet (CDI has
# not seen it), Pending and PVCBound while its claim is made, ImportScheduled while the importer pod waits to be
# scheduled, WaitForFirstConsumer and PendingPopulation while the claim waits for the VM's pod.
NOT_STARTED = frozenset({"", "Pending", "PVCBound", "ImportScheduled", "WaitForFirstConsumer", "PendingPopulation"})
IMPORTING = "ImportInProgress"


class Outcome(enum.StrEnum):
    MOVED = "Moved"  # the template now names another holder; its DataVolume, if there was one, is being recreated
    RECREATING = "Recreating"  # the DataVolume was older than the template (an earlier move): deleted
    STARTED = "Started"  # the holder is gone, but the import is under way: left to CDI
    STRANDED = "Stranded"  # no holder of the list answers: nothing to move to, checked again later


@dataclasses.dataclass(frozen=True)
class Repair:
    """What a check did, or found it could not do, for one VM's root disk."""

    vm: str  # namespace/name
    outcome: Outcome
    url: str  # the source the disk imports from now


class DiskSources:
    """A compute agent's root disks: a watch-fed cache of its node's DataVolumes (the root-disk templates carry the
    node's label, which KubeVirt copies), read beside the agent's VM cache."""

    def __init__(self, agent: "Agent") -> None:
        self.agent = agent
        self.data_volumes = Informer(agent.kube, DATA_VOLUMES, Selector(labels=f"{NODE_LABEL}={agent.node_name}"))
        self.checks = 0
        self._reported: dict[str, Repair] = {}  # by VM uid: what was logged last, so a state is logged once

    async def run(self) -> None:
        """Watch the node's DataVolumes and check every ``disk_source_check_interval`` seconds; until cancelled."""
        watching = asyncio.create_task(self.data_volumes.run())
        try:
            await self.data_volumes.synced.wait()
            while True:
                try:
                    await self.check()
                except (KubeApiError, KazooException, aiohttp.ClientError, OSError) as exc:
                    logger.warning("checking the root disks' sources failed; trying again",
                                   extra={"node": self.agent.node_name, "error": repr(exc)})
                await asyncio.sleep(self.agent.settings.disk_source_check_interval)
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)

    async def check(self) -> list[Repair]:
        """One pass over this node's VMs whose root disk has not finished importing."""
        self.checks += 1
        vms = self.agent.vms.objects()
        for gone in set(self._reported) - {vm["metadata"]["uid"] for vm in vms}:
            del self._reported[gone]
        waiting = [(vm, dv) for vm in vms if self._ours(vm)
                   for dv in [self.data_volumes.get(vm["metadata"]["namespace"],
                                                    data_volume_name(vm["metadata"]["name"]))]
                   if dv is not None and _made_for(dv, vm) and not dv["metadata"].get("deletionTimestamp")
                   and _phase(dv) in NOT_STARTED | {IMPORTING}]
        if not waiting:
            return []
        holders = _Holders(self.agent, [member for rack in await self.agent.directory.racks(Role.STORAGE)
                                        for member in rack.members])
        repairs = await asyncio.gather(*(self._check_one(vm, dv, holders) for vm, dv in waiting))
        return [repair for repair in repairs if repair is not None]

    def _ours(self, vm: dict[str, Any]) -> bool:
        """A request's VM on this node, not ready yet, whose root disk this agent wrote (labelled for the node)."""
        templates = (vm.get("spec") or {}).get("dataVolumeTemplates") or [{}]
        root = templates[0].get("metadata") or {}
        return (controller_uid(vm) is not None and not is_ready(vm) and not vm["metadata"].get("deletionTimestamp")
                and root.get("name") == data_volume_name(vm["metadata"]["name"])
                and (root.get("labels") or {}).get(NODE_LABEL) == self.agent.node_name)

    async def _check_one(self, vm: dict[str, Any], dv: dict[str, Any], holders: "_Holders") -> Repair | None:
        where = f"{vm['metadata']['namespace']}/{vm['metadata']['name']}"
        current, importing_from = disk_source_url(vm), _source_url(dv)
        if _phase(dv) == IMPORTING:
            if not await holders.alive(importing_from):
                return self._report(vm, Repair(where, Outcome.STARTED, importing_from))
            return None
        if await holders.alive(current):
            if importing_from == current:
                return None
            return await self._recreate(vm, dv, Repair(where, Outcome.RECREATING, current))
        sources = _sources(vm)
        start = sources.index(current) + 1 if current in sources else 0
        for url in sources[start:] + sources[:start]:
            if url != current and await holders.alive(url):
                if not await self._move(vm, url):
                    return None
                repair = Repair(where, Outcome.MOVED, url)
                if importing_from != url:
                    await self._recreate(vm, dv, repair)
                return self._report(vm, repair)
        return self._report(vm, Repair(where, Outcome.STRANDED, current))

    async def _move(self, vm: dict[str, Any], url: str) -> bool:
        """Point the VM's root-disk template at ``url``, if the VM is still as the cache holds it."""
        metadata = vm["metadata"]
        templates = copy.deepcopy(vm["spec"]["dataVolumeTemplates"])
        templates[0]["spec"]["source"]["http"]["url"] = url
        try:
            patched = await self.agent.kube.patch(VIRTUAL_MACHINES, metadata["name"], {
                "metadata": {"resourceVersion": metadata["resourceVersion"]},
                "spec": {"dataVolumeTemplates": templates}}, metadata["namespace"])
        except KubeApiError as exc:
            if exc.status in (404, 409):  # deleted, or changed since the cache saw it: the next check decides
                return False
            raise
        self.agent.vms.wrote(patched)
        return True

    async def _recreate(self, vm: dict[str, Any], dv: dict[str, Any], repair: Repair) -> Repair | None:
        """Delete the DataVolume as the cache saw it (its import not started), for KubeVirt to make it again from
        the VM's template; None when it changed or went meanwhile."""
        metadata = dv["metadata"]
        try:
            await self.agent.kube.delete(DATA_VOLUMES, metadata["name"], metadata["namespace"], uid=metadata["uid"],
                                         resource_version=metadata["resourceVersion"], propagation="Foreground")
        except KubeApiError as exc:
            if exc.status in (404, 409):
                return None
            raise
        logger.info("deleted a root disk whose import had not started, for KubeVirt to recreate it from its VM",
                    extra={"vm": repair.vm, "node": self.agent.node_name, "dataVolume": metadata["name"],
                           "phase": _phase(dv), "from": _source_url(dv), "to": repair.url})
        return self._report(vm, repair)

    def _report(self, vm: dict[str, Any], repair: Repair) -> Repair:
        uid = vm["metadata"]["uid"]
        if self._reported.get(uid) != repair:
            self._reported[uid] = repair
            fields = {"vm": repair.vm, "node": self.agent.node_name, "url": repair.url}
            if repair.outcome is Outcome.MOVED:
                logger.warning("image holder gone before the import started: root disk moved to the next holder",
                               extra={**fields, "from": disk_source_url(vm)})
            elif repair.outcome is Outcome.STARTED:
                logger.warning("image holder gone, but the import has started: left to CDI, which retries it",
                               extra=fields)
            elif repair.outcome is Outcome.STRANDED:
                logger.warning("image holder gone and no other holder of the VM answers: the disk waits", extra={
                    **fields, "holders": _sources(vm)})
        return repair


class _Holders:
    """Whether an image URL's holder is alive, asked once per check: a storage member serves it and answers."""

    def __init__(self, agent: "Agent", members: list[MemberRecord]) -> None:
        self._agent = agent
        self._members = members
        self._answers: dict[str, asyncio.Task[bool]] = {}

    async def alive(self, url: str) -> bool:
        if url not in self._answers:  # the VMs of a check share a few copies: each is asked once
            self._answers[url] = asyncio.create_task(self._ask(url))
        return await self._answers[url]

    async def _ask(self, url: str) -> bool:
        member = next((m for m in self._members if url.startswith(f"{m.endpoint}{IMAGE_FILES}/")), None)
        if member is None:
            return False
        return await self._agent.peers.answers(member.node, url, self._agent.settings.call_timeout)


def _made_for(dv: dict[str, Any], vm: dict[str, Any]) -> bool:
    """KubeVirt made ``dv`` for ``vm`` (its controller): a DataVolume of that name owned by another, or by nobody,
    is not the VM's to touch."""
    return any(ref.get("controller") and ref.get("uid") == vm["metadata"]["uid"]
               for ref in dv["metadata"].get("ownerReferences") or [])


def _phase(dv: dict[str, Any]) -> str:
    return str((dv.get("status") or {}).get("phase") or "")


def _source_url(dv: dict[str, Any]) -> str:
    return str((((dv.get("spec") or {}).get("source") or {}).get("http") or {}).get("url") or "")


def _sources(vm: dict[str, Any]) -> list[str]:
    """The holders' URLs the VM was written with, primary first (``vms/manifest.py``); [] if unreadable."""
    try:
        sources = json.loads((vm["metadata"].get("annotations") or {}).get(IMAGE_SOURCES_ANNOTATION, "[]"))
    except ValueError:
        return []
    return [url for url in sources if isinstance(url, str)] if isinstance(sources, list) else []
