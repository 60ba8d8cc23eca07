"""The sandbox's simulated KubeVirt and CDI: VMs turn Running once their DataVolumes import as CDI would import them.

Case matrix (in process: the API server, an image server and the simulation's loop share the test's loop; the
image server serves HTTPS with a rackmesh certificate and wants the namespace's credential, as an agent does):
- a VM whose image imports (the CA of its certConfigMap trusts the server, the credential of its secretRef
  is taken, the bytes match its sha256) becomes created, ready, Running, Ready True
- a VM whose Secret or ConfigMap is missing, whose credential is wrong, or whose copy does not match its
  sha256 stays Provisioning
- a VM whose URL does not answer (a closed port) stays Provisioning, Ready False (VMINotExists), not ready,
  and its status is not rewritten on every pass
- a VM whose URL answers 404 (the holder lost the image) is Provisioning until the file appears, then Running
- a running VM whose node turns NotReady turns not ready (Running, Ready False, PodNotReady), and ready
  again when the node is Ready
- a running VM has a VMI (valid by KubeVirt's schema, owned by the VM, Running on the node) and one virt-launcher
  pod (KubeVirt's labels, owned by the VMI) bound to the node, Running, requesting the guest plus KubeVirt's
  overhead: u1.small (1 vCPU, 2Gi) is 100m + 2Gi + 256Mi for compute, 5m + 35M for guest-console-log
- a launcher pod that does not fit beside a foreign pod's requests stays Pending (PodScheduled False,
  Unschedulable, the kube-scheduler's message), with one FailedScheduling Event however many passes run, and
  its VM ErrorUnschedulable and not ready; once the foreign pod is gone the pod is bound and the VM runs
- deleting a VM removes its VMI and launcher pod (ownerReferences, the API's garbage collector)
- every status written passes KubeVirt's VM schema
- DataVolumes (sandbox/cdi_simulation.py): each VM's dataVolumeTemplates become DataVolumes as KubeVirt makes them
  (the template's spec and labels, created-by, allowClaimAdoption, owned by the VM, valid by CDI's schema); an
  import goes ImportScheduled -> (ImportInProgress) -> Succeeded, held at either while the namespace says so, and
  the VM waits for it (Provisioning, no launcher pod); a failed import stays ImportInProgress, restartCount up,
  and is retried from the same source; a changed template changes no existing DataVolume, a deleted one is made
  again from the template as it is then; a source that is not HTTP (blank) succeeds; the VM's deletion takes its
  DataVolumes
- the first pass writes the ready file; setting the stop event ends the loop
Process form: ``python -m rackmesh_sandbox.kubevirt_simulation --kubeconfig ... --ready-file ...`` writes the
ready file, marks VMs Running, and exits 0 on SIGTERM.
"""

import asyncio
import base64
import contextlib
import datetime
import hashlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from rackmesh.identity.credentials import Credentials as TlsCredentials
from rackmesh.identity.names import Identity
from rackmesh.image_access import ACCESS_SECRET, CA_CONFIG_MAP, CA_CONFIG_MAP_KEY, basic_credentials
from rackmesh.kube_client import (
    CLUSTER_INSTANCETYPES,
    CONFIG_MAPS,
    DATA_VOLUMES,
    DEPLOYMENT_REQUESTS,
    EVENTS,
    NODES,
    PODS,
    SECRETS,
    VIRTUAL_MACHINES,
    Credentials,
    KubeApiError,
    KubeClient,
)
from rackmesh.pod_requests import pod_requests
from rackmesh.protocol import ImageHolder, Order, RequestRef
from rackmesh.quantities import Resources
from rackmesh_node_agent.vms.manifest import virtual_machine
from rackmesh_sandbox import kubevirt_simulation
from rackmesh_sandbox.cdi_simulation import HOLD_LABEL, NAMESPACES
from rackmesh_sandbox.cluster_seed import instancetype_object, node_object, node_status
from rackmesh_sandbox.kube_api import KubeApiServer
from rackmesh_sandbox.kube_api.schema import load_kubevirt_schemas
from rackmesh_sandbox.lifecycle import CRD_DIR
from rackmesh_sandbox.ports import free_port
from rackmesh_sandbox.topology import Topology
from tests.support.builders import RequestBuilder
from tests.support.waiting import async_eventually

VM_SCHEMA = load_kubevirt_schemas()["VirtualMachine"]
VMI_SCHEMA = load_kubevirt_schemas()["VirtualMachineInstance"]
DV_SCHEMA = load_kubevirt_schemas()["DataVolume"]
VMIS = kubevirt_simulation.VIRTUAL_MACHINE_INSTANCES
LAUNCHERS = "kubevirt.io=virt-launcher"
PASSWORD = "the-namespace-password"


class Cluster:
    def __init__(self, api: KubeApiServer, kube: KubeClient, images: Path, image_base: str, order: Order) -> None:
        self.api, self.kube, self.images, self.image_base, self.order = api, kube, images, image_base, order

    async def vm(self, index: int, url: str, sha256: str | None = None) -> str:
        """VM ``index`` importing ``url``, published with ``sha256`` (by default: of the file, if it exists)."""
        if sha256 is None:
            file = self.images / url.rsplit("/", 1)[1]
            sha256 = hashlib.sha256(file.read_bytes()).hexdigest() if file.exists() else ""
        body = virtual_machine(self.order, "c-a-1", index, [ImageHolder("s-a-1", "rack-a", url, sha256)], "10Gi")
        await self.kube.create(VIRTUAL_MACHINES, body, "default")
        return body["metadata"]["name"]

    async def get(self, name: str) -> dict[str, Any]:
        return await self.kube.get(VIRTUAL_MACHINES, name, "default")

    async def running(self, name: str) -> dict[str, Any] | None:
        vm = await self.get(name)
        return vm if vm.get("status", {}).get("printableStatus") == "Running" else None

    async def provisioning(self, name: str) -> dict[str, Any] | None:
        vm = await self.get(name)
        return vm if vm.get("status", {}).get("printableStatus") == "Provisioning" else None

    async def unschedulable(self, name: str) -> dict[str, Any] | None:
        vm = await self.get(name)
        return vm if vm.get("status", {}).get("printableStatus") == "ErrorUnschedulable" else None

    async def launchers(self, vm: str) -> list[dict[str, Any]]:
        """The launcher pods of VM ``vm`` (its VMI's: named after it)."""
        return [pod for pod in await self.kube.list(PODS, "default", label_selector=LAUNCHERS)
                if pod["metadata"]["ownerReferences"][0]["name"] == vm]


@web.middleware
async def namespace_credential(request: web.Request, handler: Any) -> web.StreamResponse:
    if basic_credentials(request.headers.get("Authorization", "")) != ("default", PASSWORD):
        return web.json_response({"reason": "Unauthenticated"}, status=401)
    return await handler(request)


@pytest.fixture
async def cluster(tmp_path: Path, pki) -> AsyncIterator[Cluster]:
    images = tmp_path / "images"
    images.mkdir()
    (images / "present.img").write_bytes(b"\0" * 4096)
    app = web.Application(middlewares=[namespace_credential])
    app.router.add_static("/images", images)  # a FileResponse per file: Range answers 206, like an agent's
    runner = web.AppRunner(app)
    await runner.setup()
    server = TlsCredentials.issued(pki.ca, Identity.agent("s-a-1"), tmp_path / "tls", datetime.timedelta(hours=1),
                                   ["127.0.0.1"])
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server.server_context())
    await site.start()
    image_base = f"https://127.0.0.1:{runner.addresses[0][1]}/images"
    try:
        async with (KubeApiServer(crd_paths=sorted(CRD_DIR.glob("*.yaml"))) as api,
                    KubeClient(Credentials(api.url, ssl_context=False)) as kube):
            node = Topology.parse({"nodes": [{"name": "c-a-1", "rack": "rack-a", "roles": ["compute"], "cpu": 8,
                                              "memory": "32Gi"}]}).nodes[0]
            await kube.create(NODES, node_object(node, "topology.rackmesh.io/rack"))
            await kube.patch(NODES, node.name, node_status(node), subresource="status")
            await kube.create(CLUSTER_INSTANCETYPES, instancetype_object("u1.small", 1, "2Gi"))
            await kube.create(CONFIG_MAPS, {"metadata": {"name": CA_CONFIG_MAP},
                                            "data": {CA_CONFIG_MAP_KEY: pki.ca.cert_pem.decode()}}, "default")
            await kube.create(SECRETS, {"metadata": {"name": ACCESS_SECRET}, "data": {
                "accessKeyId": _b64("default"), "secretKey": _b64(PASSWORD)}}, "default")
            stored = await kube.create(DEPLOYMENT_REQUESTS, RequestBuilder("lob123").replicas(10).obj(), "default")
            order = Order(RequestRef(stored["metadata"]["uid"], "default", "lob123"), 10, "u1.small",
                          "lob123-rhel-6.0")
            yield Cluster(api, kube, images, image_base, order)
    finally:
        await runner.cleanup()


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


@pytest.fixture
async def simulation(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Path]:
    """The simulation's loop as a task; yields its ready file."""
    stop, ready_file = asyncio.Event(), tmp_path / "simulation.json"
    task = asyncio.create_task(kubevirt_simulation.run(cluster.kube, stop, 0.05, ready_file))
    try:
        yield ready_file
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_vm_whose_image_answers_becomes_running(cluster, simulation):
    name = await cluster.vm(0, f"{cluster.image_base}/present.img")
    vm = await async_eventually(lambda: cluster.running(name), what="VM running")
    status = vm["status"]
    assert status["ready"] is True and status["created"] is True
    assert [(c["type"], c["status"]) for c in status["conditions"]] == [("Ready", "True")]
    assert VM_SCHEMA.errors(vm) == []
    assert simulation.exists()


async def test_a_vm_whose_image_does_not_answer_stays_provisioning(cluster, simulation):
    closed = await cluster.vm(0, f"http://127.0.0.1:{free_port()}/images/present.img")
    vm = await async_eventually(lambda: cluster.provisioning(closed), what="VM provisioning")
    assert VM_SCHEMA.errors(vm) == []
    status = vm["status"]
    assert "ready" not in status and "created" not in status
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("Ready", "False", "VMINotExists")]

    # A VM created later turning Running proves later passes ran; they left the unanswered one alone.
    later = await cluster.vm(1, f"{cluster.image_base}/present.img")
    await async_eventually(lambda: cluster.running(later), what="later VM running")
    again = await cluster.get(closed)
    assert again["status"] == status
    assert again["metadata"]["resourceVersion"] == vm["metadata"]["resourceVersion"]


async def test_a_vm_imports_only_with_its_credential_and_ca_and_a_copy_matching_its_sha256(cluster, simulation):
    corrupt = await cluster.vm(0, f"{cluster.image_base}/present.img", sha256=hashlib.sha256(b"other").hexdigest())
    await async_eventually(lambda: cluster.provisioning(corrupt), what="a copy that does not match: provisioning")
    await cluster.kube.patch(SECRETS, ACCESS_SECRET, {"data": {"secretKey": _b64("wrong")}}, "default")
    wrong = await cluster.vm(1, f"{cluster.image_base}/present.img")
    await async_eventually(lambda: cluster.provisioning(wrong), what="a wrong credential: provisioning")
    await cluster.kube.delete(SECRETS, ACCESS_SECRET, "default")
    await cluster.kube.create(SECRETS, {"metadata": {"name": ACCESS_SECRET}, "data": {
        "accessKeyId": _b64("default"), "secretKey": _b64(PASSWORD)}}, "default")
    await async_eventually(lambda: cluster.running(wrong), what="running once the credential is right")
    await cluster.kube.delete(CONFIG_MAPS, CA_CONFIG_MAP, "default")
    untrusted = await cluster.vm(2, f"{cluster.image_base}/present.img")
    await async_eventually(lambda: cluster.provisioning(untrusted), what="no CA to trust the server: provisioning")
    assert (await cluster.get(corrupt))["status"]["printableStatus"] == "Provisioning"


async def test_a_vm_runs_once_its_missing_image_appears(cluster, simulation):
    sha256 = hashlib.sha256(b"\0" * 16).hexdigest()
    name = await cluster.vm(0, f"{cluster.image_base}/late.img", sha256)
    await async_eventually(lambda: cluster.provisioning(name), what="VM provisioning while the image is missing")
    (cluster.images / "late.img").write_bytes(b"\0" * 16)
    await async_eventually(lambda: cluster.running(name), what="VM running once the image exists")


async def test_a_vm_on_a_node_that_is_not_ready_is_not_ready(cluster, simulation):
    name = await cluster.vm(0, f"{cluster.image_base}/present.img")
    await async_eventually(lambda: cluster.running(name), what="VM running")

    async def node_ready(status: str) -> None:
        conditions = [{"type": "Ready", "status": status, "reason": "Simulated", "message": "test"}]
        await cluster.kube.patch(NODES, "c-a-1", {"status": {"conditions": conditions}}, subresource="status")

    async def ready_is(value: bool) -> dict[str, Any] | None:
        vm = await cluster.get(name)
        return vm if (vm["status"].get("ready") is True) == value else None

    await node_ready("Unknown")
    vm = await async_eventually(lambda: ready_is(False), what="VM not ready on a NotReady node")
    assert vm["status"]["printableStatus"] == "Running" and VM_SCHEMA.errors(vm) == []
    assert [(c["type"], c["status"], c["reason"]) for c in vm["status"]["conditions"]] == [
        ("Ready", "False", "PodNotReady")]
    await node_ready("True")
    await async_eventually(lambda: ready_is(True), what="VM ready again with its node")


async def test_the_process_marks_vms_running_and_stops_on_sigterm(cluster, tmp_path):
    kubeconfig, ready_file = tmp_path / "kubeconfig", tmp_path / "ready.json"
    cluster.api.write_kubeconfig(kubeconfig)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rackmesh_sandbox.kubevirt_simulation", "--kubeconfig", str(kubeconfig),
        "--interval", "0.05", "--ready-file", str(ready_file), stderr=asyncio.subprocess.PIPE)
    try:
        await async_eventually(lambda: asyncio.to_thread(ready_file.exists), what="ready file")
        name = await cluster.vm(0, f"{cluster.image_base}/present.img")
        await async_eventually(lambda: cluster.running(name), what="VM running")
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 0, stderr.decode()
        assert b'"component": "kubevirt-simulation"' in stderr
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def test_a_running_vm_has_a_vmi_and_a_launcher_pod_requesting_guest_and_overhead(cluster, simulation):
    name = await cluster.vm(0, f"{cluster.image_base}/present.img")
    vm = await async_eventually(lambda: cluster.running(name), what="VM running")
    vmi = await cluster.kube.get(VMIS, name, "default")
    assert VMI_SCHEMA.errors(vmi) == []
    assert (vmi["status"]["phase"], vmi["status"]["nodeName"]) == ("Running", "c-a-1")
    assert [(ref["kind"], ref["uid"], ref["controller"]) for ref in vmi["metadata"]["ownerReferences"]] == [
        ("VirtualMachine", vm["metadata"]["uid"], True)]
    [pod] = await cluster.launchers(name)
    assert pod["metadata"]["labels"]["kubevirt.io/created-by"] == vmi["metadata"]["uid"]
    assert pod["metadata"]["labels"]["vm.kubevirt.io/name"] == name
    assert [(ref["kind"], ref["uid"]) for ref in pod["metadata"]["ownerReferences"]] == [
        ("VirtualMachineInstance", vmi["metadata"]["uid"])]
    assert (pod["spec"]["nodeName"], pod["status"]["phase"]) == ("c-a-1", "Running")
    assert {c["name"]: c["resources"]["requests"] for c in pod["spec"]["containers"]}["guest-console-log"] == {
        "cpu": "5m", "memory": "35M"}
    assert pod_requests(pod) == Resources(100 + 5, 2 * 2**30 + 256 * 2**20 + 35_000_000)


async def test_a_launcher_pod_that_does_not_fit_stays_pending_until_room_appears(cluster, simulation):
    hog = {"metadata": {"name": "hog"}, "spec": {"nodeName": "c-a-1", "containers": [
        {"name": "hog", "image": "hog", "resources": {"requests": {"cpu": "1", "memory": "30Gi"}}}]}}
    await cluster.kube.create(PODS, hog, "default")
    name = await cluster.vm(0, f"{cluster.image_base}/present.img")
    vm = await async_eventually(lambda: cluster.unschedulable(name), what="VM unschedulable")
    assert "ready" not in vm["status"] and VM_SCHEMA.errors(vm) == []
    message = ("0/1 nodes are available: 1 Insufficient memory. "
               "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.")
    assert [(c["type"], c["status"], c["reason"]) for c in vm["status"]["conditions"]] == [
        ("Ready", "False", "GuestNotRunning"), ("PodScheduled", "False", "Unschedulable")]
    [pod] = await cluster.launchers(name)
    assert "nodeName" not in pod["spec"] and pod["status"]["phase"] == "Pending"
    assert [(c["type"], c["status"], c["reason"], c["message"]) for c in pod["status"]["conditions"]] == [
        ("PodScheduled", "False", "Unschedulable", message)]

    # A later VM running proves more passes ran: the waiting pod got no second Event.
    await cluster.kube.patch(PODS, "hog", {"status": {"phase": "Succeeded"}}, "default", "status")
    later = await cluster.vm(1, f"{cluster.image_base}/present.img")
    await async_eventually(lambda: cluster.running(later), what="a VM running beside a finished pod")
    events = [event for event in await cluster.kube.list(EVENTS, "default")
              if event["involvedObject"]["name"] == pod["metadata"]["name"]]
    assert [(e["type"], e["reason"], e["message"], e["source"]["component"]) for e in events] == [
        ("Warning", "FailedScheduling", message, "default-scheduler")]
    await async_eventually(lambda: cluster.running(name), what="the waiting VM running once room appeared")
    [pod] = await cluster.launchers(name)
    assert (pod["spec"]["nodeName"], pod["status"]["phase"]) == ("c-a-1", "Running")


async def test_deleting_a_vm_removes_its_vmi_and_launcher_pod(cluster, simulation):
    name = await cluster.vm(0, f"{cluster.image_base}/present.img")
    await async_eventually(lambda: cluster.running(name), what="VM running")
    assert len(await cluster.launchers(name)) == 1
    await cluster.kube.delete(VIRTUAL_MACHINES, name, "default")

    async def gone() -> bool:
        vmis = await cluster.kube.list(VMIS, "default")
        return not vmis and not await cluster.launchers(name)

    await async_eventually(gone, what="the VMI and its pod collected")


# --- DataVolumes: KubeVirt's handling of dataVolumeTemplates and CDI's imports (sandbox/cdi_simulation.py) ------


async def root_disk(cluster: Cluster, vm: str) -> dict[str, Any] | None:
    try:
        return await cluster.kube.get(DATA_VOLUMES, f"{vm}-rootdisk", "default")
    except KubeApiError as exc:
        if exc.status == 404:
            return None
        raise


async def disk_in(cluster: Cluster, vm: str, phase: str) -> dict[str, Any] | None:
    found = await root_disk(cluster, vm)
    return found if found is not None and (found.get("status") or {}).get("phase") == phase else None


async def hold(cluster: Cluster, at: str | None) -> None:
    await cluster.kube.patch(NAMESPACES, "default", {"metadata": {"labels": {HOLD_LABEL: at}}})


async def test_a_vm_gets_its_data_volumes_as_kubevirt_makes_them(cluster, simulation):
    name = await cluster.vm(0, f"{cluster.image_base}/present.img")
    vm = await async_eventually(lambda: cluster.running(name), what="VM running")
    disk = await disk_in(cluster, name, "Succeeded")
    assert disk is not None and DV_SCHEMA.errors(disk) == []
    template = vm["spec"]["dataVolumeTemplates"][0]
    assert disk["spec"] == template["spec"]
    assert disk["metadata"]["labels"] == {**template["metadata"]["labels"],
                                          "kubevirt.io/created-by": vm["metadata"]["uid"]}
    assert disk["metadata"]["annotations"] == {"cdi.kubevirt.io/allowClaimAdoption": "true"}
    assert [(ref["kind"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"])
            for ref in disk["metadata"]["ownerReferences"]] == [("VirtualMachine", vm["metadata"]["uid"], True, True)]
    assert disk["status"]["progress"] == "100.0%"


async def test_imports_go_through_cdis_phases_and_the_vm_waits_for_them(cluster, simulation):
    await hold(cluster, "ImportScheduled")
    name = await cluster.vm(0, f"{cluster.image_base}/present.img")
    await async_eventually(lambda: disk_in(cluster, name, "ImportScheduled"), what="the importer not scheduled")
    assert await cluster.provisioning(name)
    await hold(cluster, "ImportInProgress")
    await async_eventually(lambda: disk_in(cluster, name, "ImportInProgress"), what="the import started")
    assert await cluster.provisioning(name) and not await cluster.launchers(name)
    await hold(cluster, None)
    await async_eventually(lambda: disk_in(cluster, name, "Succeeded"), what="the import done")
    await async_eventually(lambda: cluster.running(name), what="VM running once its disk is imported")


async def test_a_failed_import_is_retried_from_the_same_source(cluster, simulation):
    name = await cluster.vm(0, f"{cluster.image_base}/late.img", hashlib.sha256(b"\0" * 16).hexdigest())
    failed = await async_eventually(lambda: disk_in(cluster, name, "ImportInProgress"), what="the import failing")
    assert failed["status"]["restartCount"] >= 1
    (cluster.images / "late.img").write_bytes(b"\0" * 16)
    done = await async_eventually(lambda: disk_in(cluster, name, "Succeeded"), what="the retried import done")
    assert done["metadata"]["uid"] == failed["metadata"]["uid"]


async def test_a_deleted_data_volume_is_made_again_from_the_template_as_it_is_now(cluster, simulation):
    """KubeVirt changes no existing DataVolume when the template changes, and CDI would refuse it; a DataVolume that
    is gone is made again, from the template."""
    await hold(cluster, "ImportScheduled")
    name = await cluster.vm(0, f"http://127.0.0.1:{free_port()}/images/present.img")
    first = await async_eventually(lambda: disk_in(cluster, name, "ImportScheduled"), what="the first DataVolume")
    vm = await cluster.get(name)
    templates = vm["spec"]["dataVolumeTemplates"]
    templates[0]["spec"]["source"]["http"]["url"] = f"{cluster.image_base}/present.img"
    await cluster.kube.patch(VIRTUAL_MACHINES, name, {"spec": {"dataVolumeTemplates": templates}}, "default")
    # A later VM's DataVolume appearing proves a pass ran since: it left the existing DataVolume as it was.
    later = await cluster.vm(1, f"{cluster.image_base}/present.img")
    await async_eventually(lambda: disk_in(cluster, later, "ImportScheduled"), what="a later VM's DataVolume")
    assert (await root_disk(cluster, name))["spec"] == first["spec"]

    await cluster.kube.delete(DATA_VOLUMES, first["metadata"]["name"], "default", uid=first["metadata"]["uid"],
                              propagation="Foreground")
    again = await async_eventually(lambda: _remade(cluster, name, first["metadata"]["uid"]), what="made again")
    assert again["spec"]["source"]["http"]["url"] == f"{cluster.image_base}/present.img"
    await hold(cluster, None)
    await async_eventually(lambda: cluster.running(name), what="VM running from the template's new source")


async def _remade(cluster: Cluster, vm: str, old_uid: str) -> dict[str, Any] | None:
    found = await root_disk(cluster, vm)
    return found if found is not None and found["metadata"]["uid"] != old_uid else None


async def test_a_disk_without_an_http_source_succeeds_beside_the_root_disk(cluster, simulation):
    url = f"{cluster.image_base}/present.img"
    sha256 = hashlib.sha256((cluster.images / "present.img").read_bytes()).hexdigest()
    scratch = {"metadata": {"name": "scratch"}, "spec": {
        "source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}
    body = virtual_machine(cluster.order, "c-a-1", 0, [ImageHolder("s-a-1", "rack-a", url, sha256)], "10Gi",
                           {"spec": {"dataVolumeTemplates": [scratch]}})
    name = (await cluster.kube.create(VIRTUAL_MACHINES, body, "default"))["metadata"]["name"]
    await async_eventually(lambda: cluster.running(name), what="VM running once both disks are done")
    assert (await cluster.kube.get(DATA_VOLUMES, f"{name}-scratch", "default"))["status"]["phase"] == "Succeeded"


async def test_deleting_a_vm_removes_its_data_volumes(cluster, simulation):
    name = await cluster.vm(0, f"{cluster.image_base}/present.img")
    await async_eventually(lambda: disk_in(cluster, name, "Succeeded"), what="its disk")
    await cluster.kube.delete(VIRTUAL_MACHINES, name, "default")
    await async_eventually(lambda: _no_disks(cluster), what="the DataVolume collected with its VM")


async def _no_disks(cluster: Cluster) -> bool:
    return not await cluster.kube.list(DATA_VOLUMES, "default")
