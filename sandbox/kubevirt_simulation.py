"""A SIMULATED KubeVirt controller, for the sandbox only.

There is no KubeVirt here: a real cluster has CDI, which imports each VM's disk from its DataVolume's HTTP
source; virt-controller, which then makes the VM's VirtualMachineInstance and its virt-launcher pod; the
kube-scheduler, which binds the pod to a node with room for its requests; and the kubelet, which runs it.
This process stands in for all of them, just far enough for rackmesh to follow its VMs and for the
scheduler's arithmetic to hold rackmesh to account. Each pass lists VirtualMachines in every namespace:

- a VM not started yet waits for its DataVolumes: ``cdi_simulation.py`` makes them from its
  ``dataVolumeTemplates`` as KubeVirt does and imports each from its own source as CDI does, with CDI's
  phases. Until all have succeeded the VM is ``Provisioning`` (KubeVirt's status while DataVolumes import),
  Ready False;
- then it gets its VMI (its instancetype applied) and a virt-launcher pod whose containers request what
  virt-controller's would (``rackmesh/virt_launcher.py``: the guest plus KubeVirt's overhead), pinned by the
  VM's nodeSelector. ``sandbox/scheduler.py`` binds the pod where it fits next to the requests of every pod
  bound there already; the pod then runs at once, and so does the VM (``Running``, ready). A pod that fits
  nowhere stays ``Pending``, ``PodScheduled=False/Unschedulable`` with the scheduler's message, a
  ``FailedScheduling`` Event, and its VM ``ErrorUnschedulable``, until room appears;
- a running VM whose node is not Ready (or gone) turns not ready, as a real VM's does once the node
  controller marks its virt-launcher pod not ready; it is ready again when the node is.

Deleting a VM removes its VMI and pod by their ownerReferences (the API's garbage collector). Nothing is
started, copied or booted.

    python -m rackmesh_sandbox.kubevirt_simulation --kubeconfig PATH [--interval 0.3] [--ready-file PATH]

runs until SIGTERM/SIGINT (exit 0); ``--ready-file`` is written once the first pass succeeded.
"""

import argparse
import asyncio
import copy
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from rackmesh import logs
from rackmesh.kube_client import (
    CLUSTER_INSTANCETYPES,
    EVENTS,
    NODES,
    PODS,
    VIRTUAL_MACHINES,
    Credentials,
    KubeApiError,
    KubeClient,
    ResourceRef,
)
from rackmesh.nodes import node_state
from rackmesh.pod_requests import is_terminal
from rackmesh.virt_launcher import (
    APP_LABEL,
    CREATED_BY_LABEL,
    KUBEVIRT_RELEASE,
    LAUNCHER,
    VM_NAME_LABEL,
    Guest,
    launcher_containers,
    launcher_vmi,
)
from rackmesh.vm_fields import is_ready, pinned_node
from rackmesh.vm_room import vm_instance_spec
from rackmesh_sandbox.cdi_simulation import Cdi
from rackmesh_sandbox.kube_api.kubeconfig import write_atomically
from rackmesh_sandbox.scheduler import SCHEDULER, NodeRoom, Placement, place, rooms

logger = logging.getLogger("rackmesh_sandbox.kubevirt_simulation")

DEFAULT_INTERVAL = 0.3
PROBE_TIMEOUT = 2.0
RUNNING = "Running"
PROVISIONING = "Provisioning"
UNSCHEDULABLE = "ErrorUnschedulable"
VIRTUAL_MACHINE_INSTANCES = ResourceRef("kubevirt.io", "v1", "virtualmachineinstances")
LAUNCHER_IMAGE = f"quay.io/kubevirt/virt-launcher:{KUBEVIRT_RELEASE}"


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


def node_not_ready_status() -> dict[str, Any]:
    """A running VM on a node that is not Ready: the VMI's Ready condition follows its pod's (KubeVirt
    keeps ``printableStatus`` Running and omits ``ready`` when false: None removes it in a merge patch)."""
    return {"created": True, "ready": None, "printableStatus": RUNNING,
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodNotReady",
                            "message": "the node is not Ready", "lastTransitionTime": _now()}]}


async def reconcile(kube: KubeClient, cdi: Cdi) -> None:
    """One pass: VMs on a node that is not Ready are not ready; a VM not started yet whose DataVolumes have
    not all succeeded is Provisioning; every other VM on a Ready node is launched (its VMI and launcher pod,
    scheduled) and Running once its pod runs."""
    nodes = await kube.list(NODES)
    ready_nodes = {node["metadata"]["name"] for node in nodes if node_state(node, "").ready}
    vms = await kube.list(VIRTUAL_MACHINES)
    cut_off = [vm for vm in vms if is_ready(vm) and pinned_node(vm) not in ready_nodes]
    await asyncio.gather(*(_patch(kube, vm, node_not_ready_status()) for vm in cut_off))
    if cut_off:
        logger.warning("VMs not ready: their node is not Ready (simulated)",
                       extra={"vms": sorted(vm["metadata"]["name"] for vm in cut_off)})
    world = await World.read(kube, nodes)
    on_ready = [vm for vm in vms if pinned_node(vm) in ready_nodes and not world.name_taken(vm)]
    unstarted = [vm for vm in on_ready if world.instance(vm) is None]
    imported = await cdi.reconcile(vms)
    await asyncio.gather(*(_report_provisioning(kube, vm) for vm in unstarted
                           if vm["metadata"]["uid"] not in imported))
    await launch(kube, world, [vm for vm in on_ready
                               if world.instance(vm) is not None or vm["metadata"]["uid"] in imported])


async def _report_provisioning(kube: KubeClient, vm: dict[str, Any]) -> None:
    if (vm.get("status") or {}).get("printableStatus") == PROVISIONING:
        return  # already reported; writing again would only churn resourceVersions and watches
    if await _patch(kube, vm, provisioning_status()):
        logger.warning("VM provisioning: its DataVolumes have not succeeded yet", extra={"vm": _where(vm)})


# -- the VirtualMachineInstance and its virt-launcher pod ---------------------------------------------------
# What virt-controller makes of a VM once its disks are there, and what the kube-scheduler and the kubelet
# then do with the pod (sandbox/scheduler.py decides where it fits).


@dataclasses.dataclass
class World:
    """What one pass reads besides the Nodes and VMs: the VMIs, every pod (the scheduler counts them all),
    the instancetypes, and each node's room."""

    instances: dict[tuple[str, str], dict[str, Any]]
    launchers: dict[str, dict[str, Any]]  # VMI uid -> its live launcher pod
    guests: dict[str, Guest]
    rooms: dict[str, NodeRoom]

    @classmethod
    async def read(cls, kube: KubeClient, nodes: list[dict[str, Any]]) -> "World":
        vmis, pods, instancetypes = await asyncio.gather(
            kube.list(VIRTUAL_MACHINE_INSTANCES), kube.list(PODS), kube.list(CLUSTER_INSTANCETYPES))
        launchers = {_controller_uid(pod): pod for pod in pods if launcher_vmi(pod) and not is_terminal(pod)}
        return cls({_key(vmi): vmi for vmi in vmis}, launchers,
                   {item["metadata"]["name"]: Guest.of(item) for item in instancetypes}, rooms(nodes, pods))

    def instance(self, vm: dict[str, Any]) -> dict[str, Any] | None:
        """The VM's VMI, if it has one."""
        found = self.instances.get(_key(vm))
        return found if found is not None and _controller_uid(found) == vm["metadata"]["uid"] else None

    def name_taken(self, vm: dict[str, Any]) -> bool:
        """A VMI of the VM's name belongs to another VM (a deleted one's, until garbage collection)."""
        found = self.instances.get(_key(vm))
        return found is not None and _controller_uid(found) != vm["metadata"]["uid"]


@dataclasses.dataclass
class Launch:
    """One VM's launch in this pass: what exists of it, and where the scheduler puts its pod."""

    vm: dict[str, Any]
    guest: Guest
    vmi: dict[str, Any] | None
    pod: dict[str, Any] | None
    placement: Placement | None = None  # None: the pod is bound already

    async def run(self, kube: KubeClient) -> None:
        vm, namespace = self.vm, self.vm["metadata"]["namespace"]
        vmi = self.vmi or await kube.create(VIRTUAL_MACHINE_INSTANCES, instance_object(vm, self.guest), namespace)
        pod = self.pod
        node = self.placement.node if self.placement is not None else None
        if pod is None:
            pod = await kube.create(PODS, launcher_pod(vm, vmi, self.guest, node), namespace)
        elif node is not None:  # a scheduler binds with pods/binding, which sets exactly this field
            pod = await kube.patch(PODS, pod["metadata"]["name"], {"spec": {"nodeName": node}}, namespace)
        bound = str(pod["spec"].get("nodeName") or "")
        message = "" if bound else self.placement.message if self.placement is not None else ""
        wanted = running_pod_status() if bound else unschedulable_pod_status(message)
        if _differs(pod.get("status"), wanted):
            if not bound and _scheduled_message(pod) != message:
                await kube.create(EVENTS, failed_scheduling_event(pod, message), namespace)
            await kube.patch(PODS, pod["metadata"]["name"], {"status": wanted}, namespace, "status")
        wanted = running_instance_status(bound) if bound else unschedulable_instance_status(message)
        if _differs(vmi.get("status"), wanted):
            await kube.patch(VIRTUAL_MACHINE_INSTANCES, vmi["metadata"]["name"], {"status": wanted}, namespace)
        wanted = running_status() if bound else unschedulable_status(message)
        if _differs(vm.get("status"), wanted) and await _patch(kube, vm, wanted):
            if bound:
                logger.info("VM running (simulated)", extra={"vm": _where(vm), "node": bound,
                                                              "pod": pod["metadata"]["name"]})
            else:
                logger.warning("VM unschedulable: its launcher pod fits no node (simulated)",
                               extra={"vm": _where(vm), "scheduler": message})


async def launch(kube: KubeClient, world: World, vms: list[dict[str, Any]]) -> None:
    """Give each VM its VMI and launcher pod, schedule the pods not bound yet (those waiting longest first,
    as the scheduler's queue takes pods of one priority), and report each VM as its pod is."""
    launches, unsized = [], []
    for vm in vms:
        guest = world.guests.get(vm["spec"]["instancetype"]["name"])
        if guest is None:
            unsized.append(vm)
            continue
        vmi = world.instance(vm)
        launches.append(Launch(vm, guest, vmi, world.launchers.get(vmi["metadata"]["uid"]) if vmi else None))
    for planned in sorted(launches, key=lambda each: _created(each.pod or each.vm)):
        if planned.pod is None or not planned.pod["spec"].get("nodeName"):
            pod = planned.pod or {"spec": launcher_pod_spec(planned.vm, planned.guest)}
            planned.placement = place(pod, world.rooms)
    answers = await asyncio.gather(*(planned.run(kube) for planned in launches),
                                   *(_report_unsized(kube, vm) for vm in unsized), return_exceptions=True)
    for answer in answers:
        if isinstance(answer, KubeApiError) and answer.status in (404, 409):
            continue  # the VM or VMI went, or another pass made it: the next pass sees how things are
        if isinstance(answer, BaseException):
            raise answer


async def _report_unsized(kube: KubeClient, vm: dict[str, Any]) -> None:
    """A VM whose instancetype is gone cannot get a VMI (KubeVirt's admission refuses such a VM outright)."""
    instancetype = vm["spec"]["instancetype"]["name"]
    wanted = {**provisioning_status(), "conditions": [
        *provisioning_status()["conditions"],
        {"type": "Failure", "status": "True", "reason": "FailedCreate", "lastTransitionTime": _now(),
         "message": f"VirtualMachineClusterInstancetype {instancetype} not found"}]}
    if _differs(vm.get("status"), wanted) and await _patch(kube, vm, wanted):
        logger.warning("VM not started: its instancetype does not exist",
                       extra={"vm": _where(vm), "instancetype": instancetype})


def instance_object(vm: dict[str, Any], guest: Guest) -> dict[str, Any]:
    """The VM's VirtualMachineInstance, its instancetype applied as KubeVirt applies it (sockets, guest
    memory, and the memory request its defaulting sets); VMIs have no status subresource, so the first
    status is written with it."""
    template = (vm["spec"].get("template") or {})
    spec = copy.deepcopy(template.get("spec") or {})
    domain = spec.setdefault("domain", {})
    domain.setdefault("devices", {})
    memory = str(guest.memory_bytes)
    domain.update({"cpu": {"sockets": guest.vcpus, "cores": 1, "threads": 1}, "memory": {"guest": memory},
                   "resources": {"requests": {"memory": memory}}})
    metadata = vm["metadata"]
    return {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": metadata["name"], "namespace": metadata["namespace"],
                     "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                     "ownerReferences": [_owner(vm)]},
        "spec": spec,
        "status": {"phase": "Pending"},
    }


def launcher_pod_spec(vm: dict[str, Any], guest: Guest, node: str | None = None) -> dict[str, Any]:
    """The launcher pod's spec: its containers' requests as virt-controller renders them
    (``rackmesh/virt_launcher.py``), and the VM's nodeSelector and tolerations."""
    instance = vm_instance_spec(vm)
    spec: dict[str, Any] = {
        "containers": [{**container, "image": LAUNCHER_IMAGE} for container in launcher_containers(guest, instance)],
        "hostname": _hostname(vm),
        "restartPolicy": "Never",
        "schedulerName": SCHEDULER,
    }
    for field in ("nodeSelector", "tolerations"):
        if instance.get(field):
            spec[field] = copy.deepcopy(instance[field])
    if node is not None:
        spec["nodeName"] = node
    return spec


def launcher_pod(vm: dict[str, Any], vmi: dict[str, Any], guest: Guest, node: str | None) -> dict[str, Any]:
    """The VMI's virt-launcher pod, bound to ``node`` when the scheduler found it room (else unbound)."""
    metadata = vmi["metadata"]
    labels = {**(metadata.get("labels") or {}), APP_LABEL: LAUNCHER, CREATED_BY_LABEL: metadata["uid"],
              VM_NAME_LABEL: _hostname(vm)}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": f"{LAUNCHER}-{metadata['name']}-", "namespace": metadata["namespace"],
                     "labels": labels, "ownerReferences": [_owner(vmi)]},
        "spec": launcher_pod_spec(vm, guest, node),
    }


def running_pod_status() -> dict[str, Any]:
    """What the kubelet reports of a launcher pod it started."""
    now = _now()
    return {"phase": "Running", "qosClass": "Burstable", "startTime": now,
            "conditions": [{"type": kind, "status": "True", "lastTransitionTime": now}
                           for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]}


def unschedulable_pod_status(message: str) -> dict[str, Any]:
    """What the kube-scheduler leaves on a pod that fits no node."""
    return {"phase": "Pending", "qosClass": "Burstable",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": message, "lastTransitionTime": _now()}]}


def failed_scheduling_event(pod: dict[str, Any], message: str) -> dict[str, Any]:
    """The kube-scheduler's Warning on the pod (kubectl describe pod shows it)."""
    metadata, now = pod["metadata"], _now()
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": metadata["name"],
                           "namespace": metadata["namespace"], "uid": metadata["uid"]},
        "type": "Warning", "reason": "FailedScheduling", "message": message, "action": "Scheduling",
        "source": {"component": SCHEDULER}, "reportingComponent": SCHEDULER, "reportingInstance": SCHEDULER,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }


def running_instance_status(node: str) -> dict[str, Any]:
    return {"phase": "Running", "nodeName": node, "qosClass": "Burstable",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _now()}]}


def unschedulable_instance_status(message: str) -> dict[str, Any]:
    """A VMI whose pod waits for the scheduler: its Ready condition says the guest does not run, and the
    pod's PodScheduled condition is copied over (virt-controller's syncReadyConditionFromPod)."""
    return {"phase": "Scheduling", "conditions": _waiting_conditions(message)}


def unschedulable_status(message: str) -> dict[str, Any]:
    """The VM's: KubeVirt prints ``ErrorUnschedulable`` and copies the VMI's conditions."""
    return {"created": True, "ready": None, "printableStatus": UNSCHEDULABLE,
            "conditions": _waiting_conditions(message)}


def _waiting_conditions(message: str) -> list[dict[str, Any]]:
    now = _now()
    return [{"type": "Ready", "status": "False", "reason": "GuestNotRunning",
             "message": "Guest VM is not reported as running", "lastTransitionTime": now},
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
             "lastTransitionTime": now}]


def _differs(current: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """Whether writing ``wanted`` changes what a reader acts on (times aside)."""
    def essence(status: dict[str, Any]) -> tuple[Any, ...]:
        return (status.get("phase"), status.get("printableStatus"), status.get("ready"), status.get("nodeName"),
                [(c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
                 for c in status.get("conditions") or []])
    return essence(current or {}) != essence(wanted)


def _scheduled_message(pod: dict[str, Any]) -> str | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return str(condition.get("message", ""))
    return None


def _hostname(vm: dict[str, Any]) -> str:
    """The VMI's hostname, as KubeVirt sanitizes it (pkg/util/net/dns SanitizeHostname)."""
    return str(vm_instance_spec(vm).get("hostname") or vm["metadata"]["name"].split(".")[0][:63])


def _owner(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _controller_uid(obj: dict[str, Any]) -> str:
    return next((str(ref.get("uid", "")) for ref in obj["metadata"].get("ownerReferences") or []
                 if ref.get("controller")), "")


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _created(obj: dict[str, Any]) -> tuple[str, str]:
    return str(obj["metadata"].get("creationTimestamp", "")), str(obj["metadata"].get("name", ""))


def _where(vm: dict[str, Any]) -> str:
    return f"{vm['metadata']['namespace']}/{vm['metadata']['name']}"


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
        cdi = Cdi(kube, http)
        await reconcile(kube, cdi)
        if ready_file is not None:
            write_atomically(ready_file, json.dumps({"pid": os.getpid()}))
        logger.info("KubeVirt simulation running", extra={"interval": interval})
        while not await _stopped(stop, interval):
            try:
                await reconcile(kube, cdi)
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
                                     description="Simulated KubeVirt/CDI for the sandbox: a VM whose image "
                                                 "imports gets a VMI and a launcher pod, scheduled where it "
                                                 "fits, and runs.")
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
