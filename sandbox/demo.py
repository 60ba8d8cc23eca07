"""``make demo``: start the sandbox, apply the seed's request with kubectl, show what happened, stop.

Until the request flow lands, the request stops at phase ``Pending`` (the operator has taken it
in charge); the demo shows the racks and leaders the flow will use.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from rackmesh_sandbox.lifecycle import SandboxState, down, up

WAIT_TIMEOUT = 30.0


def kubectl(state: SandboxState, *args: str) -> str:
    result = subprocess.run(["kubectl", "--kubeconfig", str(state.kubeconfig), *args],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def wait_for_phase(state: SandboxState, namespace: str, name: str) -> str:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while time.monotonic() < deadline:
        request = json.loads(kubectl(state, "get", "dr", name, "-n", namespace, "-o", "json"))
        phase = request.get("status", {}).get("phase")
        if phase:
            return str(phase)
        time.sleep(0.2)
    raise RuntimeError(f"{namespace}/{name} got no phase within {WAIT_TIMEOUT:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topology", type=Path, required=True)
    parser.add_argument("--request", type=Path, required=True)
    args = parser.parse_args()
    manifest = yaml.safe_load(args.request.read_text())
    name, namespace = manifest["metadata"]["name"], manifest["metadata"].get("namespace", "default")

    with tempfile.TemporaryDirectory(prefix="rackmesh-demo-") as state_dir:
        started = time.monotonic()
        state = up(args.topology, Path(state_dir))
        timings = {"sandbox up": time.monotonic() - started}
        try:
            applied = time.monotonic()
            print(kubectl(state, "apply", "-f", str(args.request)), end="")
            phase = wait_for_phase(state, namespace, name)
            timings[f"request accepted ({phase})"] = time.monotonic() - applied
            print(kubectl(state, "get", "dr", "-n", namespace, "-o", "wide"), end="")
            print(subprocess.run([sys.executable, "-m", "rackmesh", "status", "--state-dir", state_dir],
                                 capture_output=True, text=True, check=True).stdout, end="")
        finally:
            stopping = time.monotonic()
            down(Path(state_dir))
            timings["sandbox down"] = time.monotonic() - stopping
    print("\nphase timings:")
    for step, seconds in timings.items():
        print(f"  {step:<28} {seconds:6.2f}s")


if __name__ == "__main__":
    main()
