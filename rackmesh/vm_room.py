"""What rackmesh counts one VM as using of its node: what its virt-launcher pod will request
(``rackmesh/virt_launcher.py``: the guest plus KubeVirt's overhead), with a full core per vCPU.

KubeVirt's pod asks for a tenth of a core per vCPU (``cpuAllocationRatio``), an overcommit rackmesh does
not take: a guest may keep all its vCPUs busy, and no node is ever given more than it has. Since the count
is at least the pod's request in every resource, every launcher pod fits wherever rackmesh placed its VM.
The agents (``node_agent/capacity/view.py``), the bench's central baseline and the tests all count so.
"""

from typing import Any

from rackmesh.pod_requests import largest
from rackmesh.quantities import Resources
from rackmesh.virt_launcher import Guest, launcher_requests


def vm_room(guest: Guest, vmi: dict[str, Any] | None = None) -> Resources:
    """One VM of ``guest`` whose VMI spec is ``vmi``."""
    return largest(launcher_requests(guest, vmi), Resources(guest.vcpus * 1000, 0))


def instancetype_size(instancetype: dict[str, Any]) -> Resources:
    """One VM of a VirtualMachineClusterInstancetype, without a template of its own."""
    return vm_room(Guest.of(instancetype))


def vm_instance_spec(vm: dict[str, Any]) -> dict[str, Any]:
    """A VirtualMachine's VMI spec (what its template asks of the launcher pod)."""
    return ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}


def request_instance_spec(request: dict[str, Any]) -> dict[str, Any]:
    """The VMI spec a DeploymentRequest's ``spec.template`` gives its VMs."""
    machine = ((request.get("spec") or {}).get("template") or {}).get("spec") or {}
    return (machine.get("template") or {}).get("spec") or {}
