"""A sandbox started and stopped through the real CLI, as a user would (shared by test tiers)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rackmesh_sandbox.lifecycle import SandboxState


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

    def token(self) -> str:
        return (self.state_dir / "agent-token").read_text()


def run(argv: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120, env=os.environ)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def start(tmp_path: Path, topology: dict[str, Any]) -> Sandbox:
    topology_file = tmp_path / "topology.yaml"
    topology_file.write_text(json.dumps(topology))
    sandbox = Sandbox(tmp_path / "state")
    sandbox.rackmesh("sandbox", "up", "--topology", str(topology_file), "--state-dir", str(sandbox.state_dir))
    return sandbox
