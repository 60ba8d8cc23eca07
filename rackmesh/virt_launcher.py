"""The virt-launcher pod KubeVirt runs for each VM, as virt-controller renders it: what it requests (the
guest plus KubeVirt's overhead) and how it is told from other pods. The agents count VMs by it and the
sandbox's simulated KubeVirt makes its pods from it, so both follow one rule: KubeVirt's.

Source: kubevirt/kubevirt at ``KUBEVIRT_RELEASE``, the release ``hack/kind-e2e.sh`` installs, with
KubeVirt's default configuration (no ``additionalGuestMemoryOverheadRatio``, ``memoryOvercommit`` 100,
``cpuAllocationRatio`` 10, the serial console logged), for VMs with shared CPUs and without hugepages or
memory overcommit in their instancetype (the u1 series):

- ``pkg/virt-controller/services/renderresources.go`` ``GetMemoryOverhead``: page tables (one byte per
  512 of guest memory), the fixed RSS of the pod's processes (constants in ``template.go``), 8Mi per vCPU,
  8Mi for the IOThread, 16Mi of video RAM unless ``autoattachGraphicsDevice: false``, 1Gi with VFIO
  devices (GPUs, host devices, SR-IOV interfaces), 1Mi for a downwardMetrics volume, 10Mi per exec probe
  and 100Mi once with any, 256Mi for SEV, 53Mi for a TPM. The compute container requests the guest memory
  plus that (``WithMemoryOverhead``), and ``vCPUs / cpuAllocationRatio`` of cpu (``WithoutDedicatedCPU``).
- ``serialconsolelog.go``: the ``guest-console-log`` container (5m, 35M) unless the VM turns the serial
  console, or its log, off; ``virtiofs.go``: a container (10m, 1M) per virtiofs filesystem.

Later releases count more (v1.6 raised the video RAM to 32Mi); a launcher pod that exists is counted at
what it really requests, whichever is more (``node_agent/capacity/view.py``).
"""

import dataclasses
import decimal
import math
from typing import Any

from rackmesh.pod_requests import pod_requests
from rackmesh.quantities import Resources, parse_quantity

KUBEVIRT_RELEASE = "v1.5.0"
APP_LABEL = "kubevirt.io"  # v1.AppLabel; "virt-launcher" on launcher pods
LAUNCHER = "virt-launcher"
CREATED_BY_LABEL = "kubevirt.io/created-by"  # the VMI's uid
VM_NAME_LABEL = "vm.kubevirt.io/name"  # the VMI's hostname (its name up to the first dot, or spec.hostname)
VMI_KIND = "VirtualMachineInstance"
COMPUTE = "compute"
CONSOLE_LOG = "guest-console-log"

_MI = 2**20
# template.go: "The `ps` RSS for" virt-launcher-monitor, virt-launcher, virtlogd, virtqemud and qemu.
FIXED_OVERHEAD = (25 + 100 + 25 + 40 + 30) * _MI
PER_VCPU, IOTHREAD, VIDEO = 8 * _MI, 8 * _MI, 16 * _MI
VFIO, DOWNWARD_METRICS, SEV, TPM = 1024 * _MI, 1 * _MI, 256 * _MI, 53 * _MI
PER_EXEC_PROBE, ANY_EXEC_PROBE = 10 * _MI, 100 * _MI
CPU_ALLOCATION_RATIO = 10  # pkg/virt-config/virt-config.go DefaultCPUAllocationRatio
CONSOLE_LOG_REQUESTS = {"cpu": "5m", "memory": "35M"}
VIRTIOFS_REQUESTS = {"cpu": "10m", "memory": "1M"}


@dataclasses.dataclass(frozen=True)
class Guest:
    """What an instancetype gives the guest: ``spec.cpu.guest`` vCPUs and ``spec.memory.guest`` bytes."""

    vcpus: int
    memory_bytes: int

    @classmethod
    def of(cls, instancetype: dict[str, Any]) -> "Guest":
        spec = instancetype["spec"]
        return cls(int(spec["cpu"]["guest"]), round(parse_quantity(spec["memory"]["guest"])))


def memory_overhead(guest: Guest, vmi: dict[str, Any] | None = None) -> int:
    """KubeVirt's memory overhead, in bytes, of a VM of ``guest`` whose VMI spec is ``vmi``."""
    vmi = vmi or {}
    domain = vmi.get("domain") or {}
    devices = domain.get("devices") or {}
    # resource.Quantity arithmetic: the request is taken in kilobytes rounded up, then divided by 512.
    overhead = math.ceil(guest.memory_bytes / 1000) * 1000 // 512
    overhead += FIXED_OVERHEAD + PER_VCPU * max(guest.vcpus, 1) + IOTHREAD
    if devices.get("autoattachGraphicsDevice", True) is not False:
        overhead += VIDEO
    if devices.get("gpus") or devices.get("hostDevices") or any(
            "sriov" in interface for interface in devices.get("interfaces") or []):
        overhead += VFIO
    if any("downwardMetrics" in volume for volume in vmi.get("volumes") or []):
        overhead += DOWNWARD_METRICS
    probes = sum(1 for probe in ("livenessProbe", "readinessProbe") if (vmi.get(probe) or {}).get("exec"))
    if probes:
        overhead += PER_EXEC_PROBE * probes + ANY_EXEC_PROBE
    if (domain.get("launchSecurity") or {}).get("sev") is not None:
        overhead += SEV
    if devices.get("tpm") is not None:
        overhead += TPM
    return overhead


def launcher_containers(guest: Guest, vmi: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The launcher pod's containers as virt-controller renders them: names and resource requests."""
    vmi = vmi or {}
    devices = (vmi.get("domain") or {}).get("devices") or {}
    compute = {"cpu": _cpu_request(guest.vcpus),
               "memory": str(guest.memory_bytes + memory_overhead(guest, vmi))}
    containers = [{"name": COMPUTE, "resources": {"requests": compute}}]
    containers += [{"name": f"virtiofs-{fs['name']}", "resources": {"requests": dict(VIRTIOFS_REQUESTS)}}
                   for fs in devices.get("filesystems") or [] if "virtiofs" in fs]
    console = devices.get("autoattachSerialConsole") is not False and devices.get("logSerialConsole") is not False
    if console:
        containers.append({"name": CONSOLE_LOG, "resources": {"requests": dict(CONSOLE_LOG_REQUESTS)}})
    return containers


def launcher_requests(guest: Guest, vmi: dict[str, Any] | None = None) -> Resources:
    """What the scheduler counts a VM's launcher pod as using."""
    return pod_requests({"spec": {"containers": launcher_containers(guest, vmi)}})


def launcher_vmi(pod: dict[str, Any]) -> str | None:
    """The name of the VirtualMachineInstance (= its VirtualMachine's name) a launcher pod runs, if it is one."""
    metadata = pod.get("metadata") or {}
    if (metadata.get("labels") or {}).get(APP_LABEL) != LAUNCHER:
        return None
    for ref in metadata.get("ownerReferences") or []:
        if ref.get("kind") == VMI_KIND and ref.get("controller"):
            return str(ref.get("name", ""))
    return None


def _cpu_request(vcpus: int) -> str:
    """WithoutDedicatedCPU: ``vcpus / cpuAllocationRatio`` as Go formats it (%g; times 1000, with an "m",
    below one core), which the API then rounds up to whole millicores."""
    share = vcpus / CPU_ALLOCATION_RATIO
    written = decimal.Decimal(repr(share * 1000)) if share < 1 else decimal.Decimal(repr(share)) * 1000
    return f"{written.to_integral_value(rounding=decimal.ROUND_CEILING)}m"
