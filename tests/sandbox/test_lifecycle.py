"""`rackmesh sandbox up/down` start and stop exactly what they own.

Case matrix:
- down after up: no process left, no listening port left, state file gone
- up on a running state dir: refused, the running sandbox untouched
- up with a broken topology: refused with the topology's message, nothing started
"""

import socket

from rackmesh_sandbox.lifecycle import STATE_FILE
from rackmesh_sandbox.processes import running
from tests.support.builders import make_topology
from tests.support.sandbox import Sandbox, start
from tests.support.waiting import eventually


def listening(address: str) -> bool:
    host, port = address.removeprefix("https://").removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_down_leaves_no_process_and_no_port_behind(tmp_path):
    sandbox = start(tmp_path, make_topology().compute_racks(1, nodes=2).storage_racks(1, nodes=1).obj())
    state = sandbox.state
    addresses = [state.api_url, *state.agents.values(),
                 *(f"{s['host']}:{s['client_port']}" for s in state.zookeeper["servers"])]
    pids = [record.pid for record in state.processes] + [s["pid"] for s in state.zookeeper["servers"]]
    assert all(listening(address) for address in addresses)

    again = sandbox.rackmesh("sandbox", "up", "--topology", str(tmp_path / "topology.yaml"),
                             "--state-dir", str(sandbox.state_dir), check=False)
    assert again.returncode != 0
    assert "already running" in again.stderr
    assert all(listening(address) for address in addresses)

    sandbox.rackmesh("sandbox", "down", "--state-dir", str(sandbox.state_dir))
    assert not (sandbox.state_dir / STATE_FILE).exists()
    eventually(lambda: not any(running(pid) for pid in pids),
               timeout=5, what="every started process gone")
    assert not any(listening(address) for address in addresses)


def test_broken_topology_starts_nothing(tmp_path):
    topology = tmp_path / "topology.yaml"
    topology.write_text("nodes:\n  - {name: c1, rack: r, roles: [gpu]}\n")
    result = Sandbox(tmp_path / "state").rackmesh("sandbox", "up", "--topology", str(topology),
                                                  "--state-dir", str(tmp_path / "state"), check=False)
    assert result.returncode != 0
    assert "roles must be a subset" in result.stderr
    assert not (tmp_path / "state").exists()
