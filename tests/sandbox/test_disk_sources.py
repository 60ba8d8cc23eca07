"""A VM's image holder dies before its import started: the VM's node's agent moves the disk to the next holder, and
the VM boots from it; an import that already started is left to CDI.

Its own sandbox (storage agents are killed): one compute node, two storage racks of one node each, so every request
has both copies, VM 0's primary on s-0-0 and VM 1's on s-1-0. The simulated CDI holds imports back while the
namespace is labelled ``cdi-simulation.rackmesh.io/hold`` (sandbox/cdi_simulation.py). Case matrix:
- imports held before they start (ImportScheduled); kill -9 s-0-0: VM 0's template is moved to s-1-0, its
  DataVolume deleted and made again by KubeVirt from the template (a new uid, s-1-0's URL); VM 1 is untouched;
  released, both import and the request is Ready
- imports held once started (ImportInProgress); kill -9 s-0-0: the agent says it leaves VM 0's import to CDI, and
  VM 0's template and DataVolume stay; released, the import fails and is retried (restartCount) from s-0-0; s-0-0
  back, it succeeds and the request is Ready, VM 0 imported from s-0-0
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rackmesh_sandbox.cdi_simulation import HOLD_LABEL
from tests.support.builders import make_request, make_topology
from tests.support.sandbox import Sandbox, start
from tests.support.waiting import eventually

pytestmark = [pytest.mark.zookeeper, pytest.mark.kubectl]
HOLDER, OTHER, COMPUTE = "s-0-0", "s-1-0", "c-0-0"
# The agents' periodic check (disk_source_check_interval, 5 s), a ZooKeeper session (4 s) and the simulation's
# passes, on two busy cores.
DEADLINE = 60


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    running = start(tmp_path_factory.mktemp("disk-sources"),
                    make_topology().compute_racks(1, nodes=1).storage_racks(2, nodes=1).obj())
    yield running
    running.rackmesh("sandbox", "down", "--state-dir", str(running.state_dir))


def get(sandbox: Sandbox, *args: str) -> dict[str, Any]:
    return json.loads(sandbox.kubectl("get", *args, "-o", "json").stdout)


def disk(sandbox: Sandbox, vm: str) -> dict[str, Any] | None:
    found = sandbox.kubectl("get", "dv", f"{vm}-rootdisk", "-o", "json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def url_of(obj: dict[str, Any]) -> str:
    """The HTTP source of a DataVolume, or of a VM's root-disk template."""
    spec = obj["spec"]["dataVolumeTemplates"][0]["spec"] if obj["kind"] == "VirtualMachine" else obj["spec"]
    return str(spec["source"]["http"]["url"])


def phase(found: dict[str, Any] | None) -> str:
    return str(((found or {}).get("status") or {}).get("phase") or "")


def hold(sandbox: Sandbox, at: str | None) -> None:
    sandbox.kubectl("label", "namespace", "default", "--overwrite", f"{HOLD_LABEL}={at}" if at else f"{HOLD_LABEL}-")


def holder_url(sandbox: Sandbox, node: str) -> str:
    return f"{sandbox.state.agents[node]}/images/lob123-rhel-6.0.img"


def request_ready(sandbox: Sandbox, name: str) -> bool:
    status = get(sandbox, "dr", name).get("status") or {}
    return status.get("phase") == "Ready" and status.get("readyReplicas") == 2


def logged(sandbox: Sandbox, process: str, message: str, vm: str) -> bool:
    log = Path(next(record.log for record in sandbox.state.processes if record.name == process))
    entries = (json.loads(line) for line in log.read_text().splitlines() if line.startswith("{"))
    return any(message in entry.get("message", "") and entry.get("vm") == f"default/{vm}" for entry in entries)


def start_held(sandbox: Sandbox, tmp_path: Path, name: str, at: str) -> tuple[str, str]:
    """A request of 2 VMs whose imports are held at ``at``; returns (VM 0, VM 1), their primaries s-0-0, s-1-0."""
    hold(sandbox, at)
    sandbox.kubectl("apply", "-f", str(make_request(name).replicas(2).instancetype("u1.small").write(tmp_path / "dr")))
    first, second = f"{name}-0000", f"{name}-0001"
    eventually(lambda: all(phase(disk(sandbox, vm)) == at for vm in (first, second)), timeout=DEADLINE,
               what=f"both root disks held at {at}")
    assert url_of(get(sandbox, "vm", first)) == holder_url(sandbox, HOLDER)
    assert url_of(get(sandbox, "vm", second)) == holder_url(sandbox, OTHER)
    return first, second


def test_a_holder_gone_before_the_import_started_is_replaced_by_the_next(sandbox: Sandbox, tmp_path):
    first, second = start_held(sandbox, tmp_path, "moved", "ImportScheduled")
    before = {vm: disk(sandbox, vm)["metadata"]["uid"] for vm in (first, second)}
    sandbox.kill(f"agent-{HOLDER}")
    try:
        eventually(lambda: url_of(get(sandbox, "vm", first)) == holder_url(sandbox, OTHER), timeout=DEADLINE,
                   what="VM 0's root disk moved to s-1-0")
        remade = eventually(lambda: (found := disk(sandbox, first)) and found["metadata"]["uid"] != before[first]
                            and not found["metadata"].get("deletionTimestamp") and found, timeout=DEADLINE,
                            what="VM 0's DataVolume made again from its template")
        assert url_of(remade) == holder_url(sandbox, OTHER)
        assert [ref["name"] for ref in remade["metadata"]["ownerReferences"]] == [first]
        assert disk(sandbox, second)["metadata"]["uid"] == before[second]  # its holder answers: untouched
        assert url_of(get(sandbox, "vm", second)) == holder_url(sandbox, OTHER)

        hold(sandbox, None)
        eventually(lambda: request_ready(sandbox, "moved"), timeout=DEADLINE, what="the request Ready")
        assert phase(disk(sandbox, first)) == "Succeeded" and url_of(disk(sandbox, first)) == holder_url(sandbox, OTHER)
        copies = {copy["url"]: copy["vms"] for copy in get(sandbox, "dr", "moved")["status"]["imageCopies"]}
        assert copies == {holder_url(sandbox, HOLDER): 0, holder_url(sandbox, OTHER): 2}  # the status says so
    finally:
        hold(sandbox, None)
        sandbox.restart(f"agent-{HOLDER}")
        sandbox.kubectl("delete", "dr", "moved", "--ignore-not-found")


def test_an_import_that_started_is_left_to_cdi(sandbox: Sandbox, tmp_path):
    first, _ = start_held(sandbox, tmp_path, "started", "ImportInProgress")
    uid = disk(sandbox, first)["metadata"]["uid"]
    sandbox.kill(f"agent-{HOLDER}")
    restarted = False
    try:
        eventually(lambda: logged(sandbox, f"agent-{COMPUTE}", "the import has started", first), timeout=DEADLINE,
                   what="the agent saying it leaves VM 0's import to CDI")
        assert url_of(get(sandbox, "vm", first)) == holder_url(sandbox, HOLDER)
        assert disk(sandbox, first)["metadata"]["uid"] == uid

        hold(sandbox, None)  # the importer runs against the dead holder, fails and is started again
        eventually(lambda: (disk(sandbox, first).get("status") or {}).get("restartCount", 0) >= 1,
                   timeout=DEADLINE, what="VM 0's import failing and retried")
        assert phase(disk(sandbox, first)) == "ImportInProgress"
        assert url_of(get(sandbox, "vm", first)) == holder_url(sandbox, HOLDER)

        sandbox.restart(f"agent-{HOLDER}")  # the same address: the retried import finds it
        restarted = True
        eventually(lambda: request_ready(sandbox, "started"), timeout=DEADLINE, what="the request Ready")
        found = disk(sandbox, first)
        assert (found["metadata"]["uid"], phase(found), url_of(found)) == (uid, "Succeeded",
                                                                          holder_url(sandbox, HOLDER))
    finally:
        hold(sandbox, None)
        if not restarted:
            sandbox.restart(f"agent-{HOLDER}")
        sandbox.kubectl("delete", "dr", "started", "--ignore-not-found")
