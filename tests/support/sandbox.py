"""A sandbox started and stopped through the real CLI, as a user would (shared by test tiers)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rackmesh_sandbox.lifecycle import TOKEN_FILE, SandboxState


class Sandbox:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @property
    def state(self) -> SandboxState:
        state = SandboxState.load(self.state_dir)
        assert state is not None, f"no sandbox state in {self.state_dir}"
        return state

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["kubectl", "--kubeconfig", str(self.state_dir / "kubeconfig"), *args], stdin=stdin, check=check)

    def rackmesh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([sys.executable, "-m", "rackmesh", *args], check=check)

    def status(self) -> list[dict[str, Any]]:
        return json.loads(self.rackmesh("status", "--state-dir", str(self.state_dir), "-o", "json").stdout)

    def pid(self, name: str) -> int:
        """The pid of the sandbox's process ``name`` (agent-<node>, operator, kube-api, ...)."""
        return next(record.pid for record in self.state.processes if record.name == name)

    def kill(self, name: str) -> int:
        """kill -9 the sandbox's process ``name``; returns its pid."""
        pid = self.pid(name)
        os.kill(pid, signal.SIGKILL)
        return pid

    def restart(self, name: str) -> None:
        """Start a killed process again, as `rackmesh sandbox restart` does (waits until it is gone first)."""
        record = next(record for record in self.state.processes if record.name == name)
        deadline = time.monotonic() + 10
        while record.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.rackmesh("sandbox", "restart", "--state-dir", str(self.state_dir), name)

    def token(self) -> str:
        return (self.state_dir / TOKEN_FILE).read_text()


def run(argv: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120, env=os.environ)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def start(tmp_path: Path, topology: dict[str, Any], zookeeper_servers: int = 1) -> Sandbox:
    topology_file = tmp_path / "topology.yaml"
    topology_file.write_text(json.dumps(topology))
    sandbox = Sandbox(tmp_path / "state")
    sandbox.rackmesh("sandbox", "up", "--topology", str(topology_file), "--state-dir", str(sandbox.state_dir),
                     "--zookeeper-servers", str(zookeeper_servers))
    return sandbox
