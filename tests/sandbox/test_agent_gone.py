"""Scale-in when a node's agent is gone: the agents delete their own VMs, the operator those of the
node whose agent is dead (the only VMs it may delete itself).

Case matrix (its own sandbox: an agent is killed for good):
- a request over 4 compute nodes; kill -9 the agent of a node with VMs (not the coordinator); once its
  ZooKeeper session has expired, its VMs are still counted (the node is not gone, only its agent)
- scale to 0: every VM goes, those of the dead agent's node too; the request is Ready with 0 VMs
"""

import json
import os
import signal
from collections import Counter
from collections.abc import Iterator

import pytest

from rackmesh_sandbox.lifecycle import SANDBOX_SETTINGS
from tests.support.builders import make_request, make_topology
from tests.support.sandbox import Sandbox, start
from tests.support.waiting import eventually

pytestmark = [pytest.mark.zookeeper, pytest.mark.kubectl]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    running = start(tmp_path_factory.mktemp("agent-gone"),
                    make_topology().compute_racks(2, nodes=2, cpu=8, memory="32Gi").storage_racks(2, nodes=1).obj())
    yield running
    running.rackmesh("sandbox", "down", "--state-dir", str(running.state_dir))


def get(sandbox: Sandbox, *args: str) -> dict:
    return json.loads(sandbox.kubectl("get", *args, "-o", "json").stdout)


def vm_nodes(sandbox: Sandbox, name: str) -> Counter[str]:
    vms = get(sandbox, "vm", "-l", f"rackmesh.io/request={name}")["items"]
    return Counter(vm["metadata"]["labels"]["rackmesh.io/node"] for vm in vms)


def ready(sandbox: Sandbox, name: str, replicas: int) -> dict | None:
    request = get(sandbox, "dr", name)
    status = request.get("status") or {}
    done = status.get("phase") == "Ready" and status.get("observedGeneration") == request["metadata"]["generation"]
    return request if done and sum(vm_nodes(sandbox, name).values()) == replicas else None


def test_scale_in_deletes_the_vms_of_a_node_whose_agent_is_gone(sandbox: Sandbox, tmp_path):
    sandbox.kubectl("apply", "-f", str(make_request("orphans").replicas(8).write(tmp_path / "dr.yaml")))
    request = eventually(lambda: ready(sandbox, "orphans", 8), timeout=60, what="8 VMs ready")
    coordinator = request["status"]["coordinator"]
    victim = next(node for node, _ in vm_nodes(sandbox, "orphans").most_common() if node != coordinator)
    process = next(p for p in sandbox.state.processes if p.name == f"agent-{victim}")
    os.kill(process.pid, signal.SIGKILL)

    def left() -> bool:
        return all(victim not in entry["members"] for entry in sandbox.status())

    eventually(left, timeout=SANDBOX_SETTINGS["zk_session_timeout"] + 5, what=f"{victim}'s agent gone from ZooKeeper")
    assert vm_nodes(sandbox, "orphans")[victim] > 0  # a dead agent is no reason to move or drop its VMs
    assert get(sandbox, "dr", "orphans")["status"]["replicas"] == 8

    sandbox.kubectl("scale", "dr/orphans", "--replicas=0")
    eventually(lambda: ready(sandbox, "orphans", 0), timeout=60, what="every VM gone")
    assert vm_nodes(sandbox, "orphans") == Counter()
