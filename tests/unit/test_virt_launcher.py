"""What a VM's virt-launcher pod requests, as KubeVirt v1.5.0's virt-controller renders it, and how rackmesh
counts a VM from it.

The figures are KubeVirt's, worked out by hand from kubevirt/kubevirt v1.5.0
pkg/virt-controller/services/renderresources.go GetMemoryOverhead (constants in template.go) and
WithoutDedicatedCPU (cpuAllocationRatio 10, pkg/virt-config), and serialconsolelog.go:

- u1.nano (1 vCPU, 512Mi): page tables 1Mi (512Mi rounded up to kB = 536,871,000 B / 512 = 1,048,576) +
  fixed 220Mi (virt-launcher-monitor 25, virt-launcher 100, virtlogd 25, virtqemud 40, qemu 30) + 8Mi per
  vCPU + 8Mi IOThread + 16Mi video = 253Mi; compute requests 100m and 512Mi + 253Mi = 765Mi;
  guest-console-log 5m and 35M; the pod 105m and 765Mi + 35M = 837,160,640 B.
- u1.large (2 vCPUs, 8Gi): page tables 16Mi + 220Mi + 2 x 8Mi + 8Mi + 16Mi = 276Mi; compute 200m and
  8Gi + 276Mi; the pod 205m and 8Gi + 276Mi + 35M = 8,914,341,568 B.

Case matrix: those two; what a template changes (no video device, exec probes, a TPM, VFIO devices, no
serial console or its log, a virtiofs filesystem); the cpu request as Go writes it; which pods are launcher
pods; rackmesh's count of a VM (a full core per vCPU, the pod's memory) and of an instancetype.
"""

import pytest

from rackmesh.quantities import Resources
from rackmesh.virt_launcher import Guest, launcher_containers, launcher_requests, launcher_vmi, memory_overhead
from rackmesh.vm_room import instancetype_size, vm_room

MI, GI = 2**20, 2**30
U1_NANO, U1_LARGE = Guest(1, 512 * MI), Guest(2, 8 * GI)


def requests_by_container(guest: Guest, vmi: dict | None = None) -> dict[str, dict[str, str]]:
    return {c["name"]: c["resources"]["requests"] for c in launcher_containers(guest, vmi)}


def test_u1_nano_as_kubevirt_renders_it():
    assert memory_overhead(U1_NANO) == 253 * MI
    assert requests_by_container(U1_NANO) == {"compute": {"cpu": "100m", "memory": str(765 * MI)},
                                              "guest-console-log": {"cpu": "5m", "memory": "35M"}}
    assert launcher_requests(U1_NANO) == Resources(105, 837_160_640)


def test_u1_large_as_kubevirt_renders_it():
    assert memory_overhead(U1_LARGE) == 276 * MI
    assert requests_by_container(U1_LARGE)["compute"] == {"cpu": "200m", "memory": str(8 * GI + 276 * MI)}
    assert launcher_requests(U1_LARGE) == Resources(205, 8_914_341_568)


def devices(**fields: object) -> dict:
    return {"domain": {"devices": fields}}


@pytest.mark.parametrize(("vmi", "extra"), [
    (devices(autoattachGraphicsDevice=False), -16 * MI),
    (devices(autoattachGraphicsDevice=True), 0),
    ({"livenessProbe": {"exec": {"command": ["true"]}}}, 110 * MI),
    ({"livenessProbe": {"exec": {"command": ["true"]}}, "readinessProbe": {"exec": {"command": ["true"]}}}, 120 * MI),
    ({"readinessProbe": {"tcpSocket": {"port": 22}}}, 0),  # only exec probes run virt-probe in the pod
    (devices(tpm={}), 53 * MI),
    (devices(gpus=[{"name": "gpu", "deviceName": "nvidia.com/GP102GL"}]), GI),
    (devices(interfaces=[{"name": "sriov", "sriov": {}}]), GI),
    ({"volumes": [{"name": "metrics", "downwardMetrics": {}}]}, MI),
    ({"domain": {"launchSecurity": {"sev": {}}, "devices": {}}}, 256 * MI),
])
def test_what_a_template_adds_to_the_overhead(vmi, extra):
    assert memory_overhead(U1_LARGE, vmi) == 276 * MI + extra


@pytest.mark.parametrize("vmi", [devices(autoattachSerialConsole=False), devices(logSerialConsole=False)])
def test_no_console_log_container_without_the_serial_console_or_its_log(vmi):
    assert set(requests_by_container(U1_NANO, vmi)) == {"compute"}


def test_a_virtiofs_filesystem_gets_its_container():
    vmi = devices(filesystems=[{"name": "shared", "virtiofs": {}}])
    assert requests_by_container(U1_NANO, vmi)["virtiofs-shared"] == {"cpu": "10m", "memory": "1M"}


@pytest.mark.parametrize(("vcpus", "cpu"), [(1, "100m"), (4, "400m"), (8, "800m"), (16, "1600m"), (32, "3200m")])
def test_the_compute_container_requests_a_tenth_of_the_vcpus(vcpus, cpu):
    assert requests_by_container(Guest(vcpus, GI))["compute"]["cpu"] == cpu


def launcher(labels: dict, owners: list[dict]) -> dict:
    return {"metadata": {"name": "virt-launcher-web-0000-abcde", "labels": labels, "ownerReferences": owners}}


VMI_OWNER = {"kind": "VirtualMachineInstance", "name": "web-0000", "uid": "u", "controller": True}


def test_launcher_pods_are_told_by_label_and_their_vmi():
    assert launcher_vmi(launcher({"kubevirt.io": "virt-launcher"}, [VMI_OWNER])) == "web-0000"
    assert launcher_vmi(launcher({}, [VMI_OWNER])) is None
    assert launcher_vmi(launcher({"kubevirt.io": "virt-handler"}, [VMI_OWNER])) is None
    assert launcher_vmi(launcher({"kubevirt.io": "virt-launcher"}, [{**VMI_OWNER, "kind": "ReplicaSet"}])) is None


def test_rackmesh_counts_a_full_core_per_vcpu_and_the_pods_memory():
    assert vm_room(U1_LARGE) == Resources(2000, 8_914_341_568)
    assert vm_room(U1_NANO) == Resources(1000, 837_160_640)
    assert instancetype_size({"spec": {"cpu": {"guest": 2}, "memory": {"guest": "8Gi"}}}) == vm_room(U1_LARGE)
    # a 32-core, 128Gi node: 16 u1.large by cpu, 15 by memory once the overhead is counted
    assert Resources.parse(32, "128Gi").fits_times(vm_room(U1_LARGE)) == 15
