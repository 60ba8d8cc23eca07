"""A SIMULATED KubeVirt controller, for the sandbox only.

There is no KubeVirt here: a real cluster has CDI, which imports each VM's disk from its
DataVolume's HTTP source, and virt-controller, which starts the VM once the disk is there and
reports it in the VM's status. This process stands in for both, just far enough for rackmesh to
follow its VMs: it lists VirtualMachines in every namespace and, for each one not ready yet, imports
its ``dataVolumeTemplates[0]`` HTTP source as CDI's importer would: trusting the CAs of the source's
``certConfigMap``, with the basic-auth credential of its ``secretRef`` (both read from the VM's namespace),
and checking the file against the VM's ``rackmesh.io/image-sha256``. If the import succeeds, the VM's
status becomes what KubeVirt
reports for a running VM (``Running``, ready, condition Ready True); if not, it stays
``Provisioning`` (KubeVirt's status while DataVolumes import) with Ready False, and is tried again
on the next pass. A running VM whose node is not Ready (or gone) turns not ready, as a real VM's
does once the node controller marks its virt-launcher pod not ready; it is ready again when the node
is. Nothing is started, copied or booted.

    python -m rackmesh_sandbox.kubevirt_simulation --kubeconfig PATH [--interval 0.3] [--ready-file PATH]

runs until SIGTERM/SIGINT (exit 0); ``--ready-file`` is written once the first pass succeeded.
"""

import argparse
import asyncio
import base64
import dataclasses
import hashlib
import json
import logging
import os
import signal
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from rackmesh import logs
from rackmesh.image_access import basic_header
from rackmesh.kube_client import CONFIG_MAPS, NODES, SECRETS, VIRTUAL_MACHINES, Credentials, KubeApiError, KubeClient
from rackmesh.nodes import node_state
from rackmesh.vm_fields import IMAGE_SHA256_ANNOTATION, disk_source_url, is_ready, pinned_node
from rackmesh_sandbox.kube_api.kubeconfig import write_atomically

logger = logging.getLogger("rackmesh_sandbox.kubevirt_simulation")

DEFAULT_INTERVAL = 0.3
PROBE_TIMEOUT = 2.0
PROBE_CONCURRENCY = 16
RUNNING = "Running"
PROVISIONING = "Provisioning"


def running_status() -> dict[str, Any]:
    """What KubeVirt reports once the VM's instance runs (its Ready condition copied from the VMI)."""
    return {"created": True, "ready": True, "printableStatus": RUNNING,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _now()}]}


def provisioning_status() -> dict[str, Any]:
    """What KubeVirt reports while a DataVolume imports: no VMI yet (``created``/``ready`` stay absent,
    as KubeVirt omits false ones)."""
    return {"printableStatus": PROVISIONING,
            "conditions": [{"type": "Ready", "status": "False", "reason": "VMINotExists",
                            "message": "VMI does not exist", "lastTransitionTime": _now()}]}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclasses.dataclass(frozen=True)
class ImportSource:
    """What a DataVolume's HTTP source tells CDI's importer (the VM's first DataVolume template)."""

    namespace: str
    url: str
    secret: str = ""  # secretRef: accessKeyId / secretKey, basic auth
    ca_config_map: str = ""  # certConfigMap: the CAs to trust for an https URL
    sha256: str = ""

    @classmethod
    def of(cls, vm: dict[str, Any]) -> "ImportSource | None":
        url = disk_source_url(vm)
        if not url:
            return None
        http = vm["spec"]["dataVolumeTemplates"][0]["spec"]["source"]["http"]
        return cls(vm["metadata"]["namespace"], url, http.get("secretRef", ""), http.get("certConfigMap", ""),
                   (vm["metadata"].get("annotations") or {}).get(IMAGE_SHA256_ANNOTATION, ""))


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


def node_not_ready_status() -> dict[str, Any]:
    """A running VM on a node that is not Ready: the VMI's Ready condition follows its pod's (KubeVirt
    keeps ``printableStatus`` Running and omits ``ready`` when false: None removes it in a merge patch)."""
    return {"created": True, "ready": None, "printableStatus": RUNNING,
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodNotReady",
                            "message": "the node is not Ready", "lastTransitionTime": _now()}]}


async def reconcile(kube: KubeClient, http: aiohttp.ClientSession) -> None:
    """One pass: VMs on a node that is not Ready are not ready; every other VM not ready yet becomes
    Running if its image URL answers, else Provisioning."""
    ready_nodes = {node["metadata"]["name"] for node in await kube.list(NODES) if node_state(node, "").ready}
    vms = await kube.list(VIRTUAL_MACHINES)
    cut_off = [vm for vm in vms if is_ready(vm) and pinned_node(vm) not in ready_nodes]
    await asyncio.gather(*(_patch(kube, vm, node_not_ready_status()) for vm in cut_off))
    if cut_off:
        logger.warning("VMs not ready: their node is not Ready (simulated)",
                       extra={"vms": sorted(vm["metadata"]["name"] for vm in cut_off)})
    waiting = [vm for vm in vms if not is_ready(vm) and pinned_node(vm) in ready_nodes]
    sources = {vm["metadata"]["uid"]: ImportSource.of(vm) for vm in waiting}
    distinct = sorted({source for source in sources.values() if source is not None}, key=lambda s: s.url)
    # Many VMs share a holder's copy; import each once per pass, a bounded number at a time.
    limit = asyncio.Semaphore(PROBE_CONCURRENCY)

    async def probe(source: ImportSource) -> bool:
        async with limit:
            return await imports(kube, http, source)

    answers = dict(zip(distinct, await asyncio.gather(*(probe(source) for source in distinct)), strict=True))
    await asyncio.gather(*(_report(kube, vm, answers.get(sources[vm["metadata"]["uid"]], False))
                           for vm in waiting))


async def _report(kube: KubeClient, vm: dict[str, Any], answers: bool) -> None:
    metadata, status = vm["metadata"], vm.get("status", {})
    where = f"{metadata['namespace']}/{metadata['name']}"
    if not answers and status.get("printableStatus") == PROVISIONING:
        return  # already reported; writing again would only churn resourceVersions and watches
    if not await _patch(kube, vm, running_status() if answers else provisioning_status()):
        return
    if answers:
        logger.info("VM running (simulated)", extra={"vm": where, "url": disk_source_url(vm)})
    else:
        logger.warning("VM provisioning: image source does not answer", extra={"vm": where, "url": disk_source_url(vm)})


async def _patch(kube: KubeClient, vm: dict[str, Any], status: dict[str, Any]) -> bool:
    """Write ``status``; False if the VM was deleted since the list."""
    metadata = vm["metadata"]
    try:
        await kube.patch(VIRTUAL_MACHINES, metadata["name"], {"status": status}, metadata["namespace"], "status")
    except KubeApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


async def run(kube: KubeClient, stop: asyncio.Event, interval: float = DEFAULT_INTERVAL,
              ready_file: Path | None = None) -> None:
    """Reconcile every ``interval`` seconds until ``stop`` is set.

    The first pass must succeed (it proves the API answers) before ``ready_file`` is written; later
    failures are logged and retried on the next pass, as a controller would.
    """
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)) as http:
        await reconcile(kube, http)
        if ready_file is not None:
            write_atomically(ready_file, json.dumps({"pid": os.getpid()}))
        logger.info("KubeVirt simulation running", extra={"interval": interval})
        while not await _stopped(stop, interval):
            try:
                await reconcile(kube, http)
            except (KubeApiError, aiohttp.ClientError, OSError) as exc:
                logger.warning("pass failed; retrying", extra={"error": str(exc)})


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """True as soon as ``stop`` is set, False after ``seconds``."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rackmesh_sandbox.kubevirt_simulation",
                                     description="Simulated KubeVirt/CDI for the sandbox: marks VMs Running "
                                                 "once their image URL answers.")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, help="seconds between passes")
    parser.add_argument("--ready-file", type=Path, help="written once the first pass succeeded")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=["json", "plain"], default="json")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with KubeClient(Credentials.from_kubeconfig(args.kubeconfig)) as kube:
        await run(kube, stop, args.interval, args.ready_file)
    logger.info("KubeVirt simulation stopped")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure("kubevirt-simulation", args.log_level, args.log_format)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
