"""``make demo``: start the sandbox, apply the seed's request with kubectl, follow it to Ready, show
where the VMs went, which image copies serve them and how long each phase took, then stop everything.

Exits 0 when the request reaches Ready, 1 when it fails, stalls or times out (the sandbox is stopped
either way).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from rackmesh_sandbox.lifecycle import SandboxState, down, up

WAIT_TIMEOUT = 120.0
POLL_SECONDS = 0.3
TIMING_ROWS = [("leaderLookup", "leader lookup (ZooKeeper)"), ("handshake", "capacity handshake"),
               ("imageLookup", "image lookup"), ("vmsWritten", "VM objects written"), ("allReady", "all VMs ready")]


class DemoFailed(RuntimeError):
    pass


def kubectl(state: SandboxState, *args: str) -> str:
    result = subprocess.run(["kubectl", "--kubeconfig", str(state.kubeconfig), *args],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise DemoFailed(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def follow(state: SandboxState, namespace: str, name: str) -> dict[str, Any]:
    """Print each change of phase and counts until Ready, Failed or Stalled (it would wait for the world
    to change, which no one does in a demo); the final request."""
    started = time.monotonic()
    seen = None
    while time.monotonic() - started < WAIT_TIMEOUT:
        request = json.loads(kubectl(state, "get", "dr", name, "-n", namespace, "-o", "json"))
        status = request.get("status") or {}
        shown = (status.get("phase"), status.get("replicas"), status.get("readyReplicas"))
        if shown != seen and shown[0]:
            seen = shown
            print(f"[{time.monotonic() - started:5.1f}s] {shown[0]:<9} VMs written {shown[1] or 0:>3}, "
                  f"ready {shown[2] or 0:>3}  {_ready_message(status)}", flush=True)
        stalled = _condition(status, "Stalled").get("status") == "True"
        if status.get("phase") in ("Ready", "Failed") or stalled:
            return request
        time.sleep(POLL_SECONDS)
    raise DemoFailed(f"{namespace}/{name} did not reach Ready or Failed within {WAIT_TIMEOUT:.0f}s")


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return {c["type"]: c for c in status.get("conditions") or []}.get(type_) or {}


def _ready_message(status: dict[str, Any]) -> str:
    ready = _condition(status, "Ready")
    return f"({ready.get('reason', '')}: {ready.get('message', '')})" if ready else ""


def report(request: dict[str, Any]) -> str:
    status = request["status"]
    lines = [f"\ncoordinator: {status.get('coordinator', '')}", "", "where the VMs went:",
             f"  {'RACK':<10} {'NODE':<10} {'VMS':>4}"]
    lines += [f"  {p['rack']:<10} {p['node']:<10} {p['count']:>4}" for p in status.get("placements") or []]
    lines.append(f"  {'total':<21} {sum(p['count'] for p in status.get('placements') or []):>4}")
    lines += ["", "image copies serving them:", f"  {'RACK':<10} {'NODE':<10} {'VMS':>4}  URL"]
    lines += [f"  {c.get('rack', ''):<10} {c['node']:<10} {c.get('vms', 0):>4}  {c['url']}"
              for c in status.get("imageCopies") or []]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topology", type=Path, required=True)
    parser.add_argument("--request", type=Path, required=True)
    args = parser.parse_args()
    manifest = yaml.safe_load(args.request.read_text())
    name, namespace = manifest["metadata"]["name"], manifest["metadata"].get("namespace", "default")

    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="rackmesh-demo-") as state_dir:
        started = time.monotonic()
        state = up(args.topology, Path(state_dir))
        sandbox_up = time.monotonic() - started
        try:
            print(kubectl(state, "apply", "-f", str(args.request)), end="", flush=True)
            request = follow(state, namespace, name)
            print(kubectl(state, "get", "dr", "-n", namespace, "-o", "wide"), end="")
            print(report(request))
            timings = request["status"].get("timings") or {}
            phase = request["status"]["phase"]
            stalled = _condition(request["status"], "Stalled")
            if stalled.get("status") == "True":
                phase = f"{phase}, stalled: {stalled.get('reason')}: {stalled.get('message')}"
        except DemoFailed as failure:
            phase = f"failed: {failure}"
        finally:
            stopping = time.monotonic()
            down(Path(state_dir))
            sandbox_down = time.monotonic() - stopping
    print("\nphase timings (seconds; measured by the operator and the agents, see status.timings):")
    print(f"  {'sandbox up':<28} {sandbox_up:7.3f}")
    for key, label in TIMING_ROWS:
        print(f"  {label:<28} {timings[key]:7.3f}" if key in timings else f"  {label:<28} {'-':>7}")
    print(f"  {'sandbox down':<28} {sandbox_down:7.3f}")
    if phase != "Ready":
        sys.exit(f"demo: the request ended {phase}")


if __name__ == "__main__":
    main()
