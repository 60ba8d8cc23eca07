"""A SIMULATED CDI, with KubeVirt's handling of a VM's ``dataVolumeTemplates``, for the sandbox only: one pass of
it runs in each pass of ``kubevirt_simulation.py``, which starts a VM only once its DataVolumes have succeeded.

What it stands for, as the real controllers do it:

- KubeVirt's VM controller creates every dataVolumeTemplate's DataVolume that is missing (``handleDataVolumes``):
  named as the template, with its labels and annotations, its spec, the label ``kubevirt.io/created-by`` and an
  ownerReference to the VM (controller, blockOwnerDeletion), and ``cdi.kubevirt.io/allowClaimAdoption``. It
  creates one again when it is deleted (once it is gone, not while it is being deleted), and never changes an
  existing one: a changed template reaches only a DataVolume made after the change.
- CDI imports a DataVolume from its own ``spec.source``. Phases: ``ImportScheduled`` while the importer pod waits
  to be scheduled (CDI's ``Pending``/``PVCBound`` before that are not told apart here: there are no claims), then
  the import: ``Succeeded`` if the importer gets the image, else ``ImportInProgress`` with ``restartCount`` one up,
  retried after a back-off, as CDI keeps the phase of an import whose importer restarts. The importer trusts the
  CAs of the source's ``certConfigMap`` (checking the server's certificate against the URL's host), sends the
  basic-auth credential of its ``secretRef``, and checks the bytes against the owning VM's
  ``rackmesh.io/image-sha256``. A source that is not HTTP (``blank``, or any other) succeeds at once.

No claims, pods or bytes are written. Tests hold imports back with a label on the DataVolume's Namespace,
``cdi-simulation.rackmesh.io/hold``: ``ImportScheduled`` keeps every importer unscheduled (as behind a full node
or a WaitForFirstConsumer claim), ``ImportInProgress`` lets importers start but not finish; removing it releases.
"""

import asyncio
import base64
import dataclasses
import hashlib
import logging
import ssl
import time
from collections.abc import Iterable
from typing import Any

import aiohttp

from rackmesh.image_access import basic_header
from rackmesh.kube_client import CONFIG_MAPS, DATA_VOLUMES, SECRETS, KubeApiError, KubeClient, ResourceRef
from rackmesh.vm_fields import IMAGE_SHA256_ANNOTATION

logger = logging.getLogger("rackmesh_sandbox.cdi_simulation")

NAMESPACES = ResourceRef("", "v1", "namespaces", namespaced=False)
HOLD_LABEL = "cdi-simulation.rackmesh.io/hold"
IMPORT_SCHEDULED = "ImportScheduled"
IMPORT_IN_PROGRESS = "ImportInProgress"
SUCCEEDED = "Succeeded"
CREATED_BY_LABEL = "kubevirt.io/created-by"
ALLOW_CLAIM_ADOPTION = "cdi.kubevirt.io/allowClaimAdoption"
IMPORT_CONCURRENCY = 16
# An importer that failed is started again after this, doubling up to the limit (the kubelet's restart back-off,
# shortened for a sandbox).
RETRY_SECONDS = 1.0
RETRY_MAX_SECONDS = 8.0


@dataclasses.dataclass(frozen=True)
class ImportSource:
    """What a DataVolume's HTTP source tells CDI's importer."""

    namespace: str
    url: str
    secret: str = ""  # secretRef: accessKeyId / secretKey, basic auth
    ca_config_map: str = ""  # certConfigMap: the CAs to trust for an https URL
    sha256: str = ""

    @classmethod
    def of(cls, dv: dict[str, Any], owner: dict[str, Any] | None) -> "ImportSource | None":
        """The HTTP source of ``dv`` (None for any other kind), checked against its VM's published sha256."""
        http = ((dv.get("spec") or {}).get("source") or {}).get("http") or {}
        if not http.get("url"):
            return None
        sha256 = ((owner or {}).get("metadata", {}).get("annotations") or {}).get(IMAGE_SHA256_ANNOTATION, "")
        return cls(dv["metadata"]["namespace"], str(http["url"]), http.get("secretRef", ""),
                   http.get("certConfigMap", ""), sha256)


async def imports(kube: KubeClient, http: aiohttp.ClientSession, source: ImportSource) -> bool:
    """Whether the importer would get the image: its CA and credential exist, the server is trusted and
    takes the credential, and the bytes match the published sha256."""
    headers: dict[str, str] = {}
    trust: ssl.SSLContext | bool = True
    try:
        if source.ca_config_map:
            found = await kube.get(CONFIG_MAPS, source.ca_config_map, source.namespace)
            trust = ssl.create_default_context(cadata="".join((found.get("data") or {}).values()))
        if source.secret:
            data = (await kube.get(SECRETS, source.secret, source.namespace)).get("data") or {}
            user, password = (base64.b64decode(data.get(key, "")).decode() for key in ("accessKeyId", "secretKey"))
            headers["Authorization"] = basic_header(user, password)
        async with http.get(source.url, headers=headers, ssl=trust) as response:
            if response.status != 200:
                return False
            body = await response.read()
    except KubeApiError as exc:
        if exc.status == 404:  # the importer waits for its ConfigMap or Secret
            return False
        raise
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError, ssl.SSLError):
        return False
    if source.sha256 and hashlib.sha256(body).hexdigest() != source.sha256:
        logger.warning("image does not match its sha256 (simulated import fails)", extra={"url": source.url})
        return False
    return True


def data_volume_object(vm: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """The DataVolume KubeVirt makes of one of ``vm``'s dataVolumeTemplates (its GenerateDataVolumeFromTemplate
    and CreateDataVolumeManifest)."""
    metadata = template.get("metadata") or {}
    vm_metadata = vm["metadata"]
    return {
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": {
            "name": metadata["name"],
            "namespace": vm_metadata["namespace"],
            "labels": {**(metadata.get("labels") or {}), CREATED_BY_LABEL: vm_metadata["uid"]},
            "annotations": {**(metadata.get("annotations") or {}), ALLOW_CLAIM_ADOPTION: "true"},
            "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": vm_metadata["name"],
                                 "uid": vm_metadata["uid"], "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": template.get("spec") or {},
    }


class Cdi:
    """One simulated CDI (and KubeVirt's DataVolume handling); keeps each failed importer's back-off."""

    def __init__(self, kube: KubeClient, http: aiohttp.ClientSession) -> None:
        self.kube = kube
        self.http = http
        self._retries: dict[str, tuple[float, float]] = {}  # DataVolume uid -> (next attempt, pause)

    async def reconcile(self, vms: list[dict[str, Any]]) -> set[str]:
        """One pass: create the VMs' missing DataVolumes, move every DataVolume's import on; returns the uids of
        the VMs whose DataVolumes all succeeded."""
        listed = await self.kube.list(DATA_VOLUMES)
        held = {ns["metadata"]["name"]: (ns["metadata"].get("labels") or {}).get(HOLD_LABEL, "")
                for ns in await self.kube.list(NAMESPACES)}
        volumes = {_key(dv): dv for dv in listed}
        created = await asyncio.gather(*(self._create(vm, template) for vm in vms if not _deleting(vm)
                                         for template in _templates(vm)
                                         if (vm["metadata"]["namespace"], template["metadata"]["name"]) not in volumes))
        volumes.update({_key(dv): dv for dv in created if dv is not None})
        owners = {vm["metadata"]["uid"]: vm for vm in vms}
        limit = asyncio.Semaphore(IMPORT_CONCURRENCY)
        phases = await asyncio.gather(*(self._advance(dv, owners, held.get(dv["metadata"]["namespace"], ""), limit)
                                        for dv in volumes.values()))
        done = {key for key, phase in zip(volumes, phases, strict=True) if phase == SUCCEEDED}
        present = {dv["metadata"]["uid"] for dv in volumes.values()}
        self._retries = {uid: retry for uid, retry in self._retries.items() if uid in present}
        return {vm["metadata"]["uid"] for vm in vms
                if all(_made_for(volumes.get((vm["metadata"]["namespace"], template["metadata"]["name"])), vm)
                       and (vm["metadata"]["namespace"], template["metadata"]["name"]) in done
                       for template in _templates(vm))}

    async def _create(self, vm: dict[str, Any], template: dict[str, Any]) -> dict[str, Any] | None:
        try:
            created = await self.kube.create(DATA_VOLUMES, data_volume_object(vm, template),
                                             vm["metadata"]["namespace"])
        except KubeApiError as exc:
            if exc.status in (404, 409):  # the VM's namespace went, or the DataVolume is back already
                return None
            raise
        logger.info("DataVolume created from its VM's template (simulated KubeVirt)",
                    extra={"vm": _where(vm), "dataVolume": template["metadata"]["name"]})
        return created

    async def _advance(self, dv: dict[str, Any], owners: dict[str, dict[str, Any]], hold: str,
                       limit: asyncio.Semaphore) -> str:
        """Move ``dv``'s import one step on, as far as ``hold`` lets it; returns its phase."""
        status = dv.get("status") or {}
        phase = str(status.get("phase") or "")
        if dv["metadata"].get("deletionTimestamp") or phase == SUCCEEDED:
            return phase
        if phase != IMPORT_SCHEDULED and phase != IMPORT_IN_PROGRESS:
            return await self._write(dv, {"phase": IMPORT_SCHEDULED, "progress": "N/A"})
        if hold == IMPORT_SCHEDULED:
            return phase
        if hold == IMPORT_IN_PROGRESS:
            return phase if phase == IMPORT_IN_PROGRESS else await self._write(dv, {"phase": IMPORT_IN_PROGRESS})
        uid = dv["metadata"]["uid"]
        next_attempt, pause = self._retries.get(uid, (0.0, RETRY_SECONDS))
        if time.monotonic() < next_attempt:
            return phase
        source = ImportSource.of(dv, owners.get(_controller_uid(dv)))
        if source is not None:
            async with limit:
                imported = await imports(self.kube, self.http, source)
            if not imported:
                self._retries[uid] = (time.monotonic() + pause, min(RETRY_MAX_SECONDS, 2 * pause))
                logger.warning("import failed; the importer will be started again (simulated CDI)",
                               extra={"dataVolume": _where(dv), "url": source.url})
                return await self._write(dv, {"phase": IMPORT_IN_PROGRESS,
                                              "restartCount": int(status.get("restartCount") or 0) + 1})
        self._retries.pop(uid, None)
        logger.info("DataVolume imported (simulated CDI)", extra={
            "dataVolume": _where(dv), "url": source.url if source is not None else ""})
        return await self._write(dv, {"phase": SUCCEEDED, "progress": "100.0%"})

    async def _write(self, dv: dict[str, Any], status: dict[str, Any]) -> str:
        metadata = dv["metadata"]
        try:
            await self.kube.patch(DATA_VOLUMES, metadata["name"], {"status": status}, metadata["namespace"], "status")
        except KubeApiError as exc:
            if exc.status == 404:  # deleted since the list
                return ""
            raise
        return str(status["phase"])


def _templates(vm: dict[str, Any]) -> Iterable[dict[str, Any]]:
    return [t for t in (vm.get("spec") or {}).get("dataVolumeTemplates") or [] if (t.get("metadata") or {}).get("name")]


def _made_for(dv: dict[str, Any] | None, vm: dict[str, Any]) -> bool:
    return dv is not None and _controller_uid(dv) == vm["metadata"]["uid"]


def _controller_uid(obj: dict[str, Any]) -> str:
    return next((str(ref.get("uid", "")) for ref in obj["metadata"].get("ownerReferences") or []
                 if ref.get("controller")), "")


def _deleting(obj: dict[str, Any]) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _where(obj: dict[str, Any]) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
