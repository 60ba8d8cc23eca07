"""``make chaos``: a randomized fault schedule against a sandbox, with a loss report.

Starts a sandbox (3 ZooKeeper servers), then for ``--duration`` seconds, from one seeded random source:
- a stream of creates, scales and deletes of DeploymentRequests (through the Kubernetes API, as kubectl
  would), together never asking for more than ``--fill`` of the compute room;
- faults, one at a time: kill -9 of a random agent (leaders included), of the operator, and of one
  ZooKeeper server; while the process is down (1-5 s) the requests keep changing, then it is started
  again (the ZooKeeper server is not: the quorum goes on with two).
Then it lets the cluster settle and counts what a user would: for every request, VMs expected vs present,
names twice, nodes given more than they have, requests not Ready, and how long the cluster took to be
whole again after each fault (every request converged, the changes made while the process was down
included). It prints a table and exits 1 on any loss.

    python -m rackmesh_sandbox.chaos --topology examples/topology.yaml --duration 120 --seed 7
"""

import argparse
import asyncio
import dataclasses
import io
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from rackmesh.kube_client import DEPLOYMENT_REQUESTS, NODES, VIRTUAL_MACHINES, Credentials, KubeApiError, KubeClient
from rackmesh.labels import REQUEST_LABEL, Role
from rackmesh.quantities import Resources
from rackmesh.virt_launcher import Guest
from rackmesh.vm_fields import controller_uid, pinned_node
from rackmesh.vm_room import vm_room
from rackmesh_sandbox.lifecycle import SandboxState, down, restart, up

INSTANCETYPE, SIZE = "u1.small", vm_room(Guest(1, 2 * 2**30))  # as the agents count one
IMAGE = "lob123-rhel-6.0"
SETTLE_TIMEOUT = 120.0
SETTLE_POLL_SECONDS = 0.5


@dataclasses.dataclass
class Tally:
    faults: Counter[str] = dataclasses.field(default_factory=Counter)
    actions: Counter[str] = dataclasses.field(default_factory=Counter)
    recoveries: list[float] = dataclasses.field(default_factory=list)


class Chaos:
    def __init__(self, state: SandboxState, kube: KubeClient, rng: random.Random, fill: float) -> None:
        self.state, self.kube, self.rng, self.fill = state, kube, rng, fill
        self.tally = Tally()
        self.requests: dict[str, int] = {}  # name -> replicas asked
        self.serial = 0
        self.zookeeper_killed = False
        self.room = 0

    async def measure_room(self) -> None:
        nodes = await self.kube.list(NODES, label_selector=f"{Role.COMPUTE.node_label}=true")
        self.room = sum(Resources.parse(n["status"]["allocatable"]["cpu"], n["status"]["allocatable"]["memory"])
                        .fits_times(SIZE) for n in nodes)

    async def act(self) -> None:
        """One user action: create, scale or delete a request."""
        asked = sum(self.requests.values())
        choice = self.rng.choice(["create", "create", "scale", "delete"] if self.requests else ["create"])
        if choice == "create" and asked < self.room * self.fill:
            self.serial += 1
            name = f"chaos-{self.serial:03d}"
            replicas = self.rng.randint(1, max(1, min(12, int(self.room * self.fill) - asked)))
            body = {"apiVersion": "rackmesh.io/v1alpha1", "kind": "DeploymentRequest",
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {"replicas": replicas, "instancetype": INSTANCETYPE, "image": IMAGE}}
            await self.kube.create(DEPLOYMENT_REQUESTS, body, "default")
            self.requests[name] = replicas
        elif choice == "scale" and self.requests:
            name = self.rng.choice(sorted(self.requests))
            room_left = int(self.room * self.fill) - asked + self.requests[name]
            replicas = self.rng.randint(0, max(0, min(12, room_left)))
            await self.kube.patch(DEPLOYMENT_REQUESTS, name, {"spec": {"replicas": replicas}}, "default")
            self.requests[name] = replicas
        elif choice == "delete" and self.requests:
            name = self.rng.choice(sorted(self.requests))
            await self.kube.delete(DEPLOYMENT_REQUESTS, name, "default")
            del self.requests[name]
        else:
            return
        self.tally.actions[choice] += 1

    def fault(self) -> str | None:
        """kill -9 one process; the name of a process to start again later, if any."""
        self.state = SandboxState.load(self.state.state_dir) or self.state  # pids change as processes restart
        kinds = ["agent"] * 6 + ["operator"] + ([] if self.zookeeper_killed else ["zookeeper"])
        kind = self.rng.choice(kinds)
        if kind == "zookeeper":
            server = self.rng.choice([s for s in self.state.zookeeper["servers"] if s.get("pid")])
            os.kill(server["pid"], signal.SIGKILL)
            self.zookeeper_killed = True
            name = None
        else:
            candidates = [r for r in self.state.processes
                          if (r.name.startswith("agent-") if kind == "agent" else r.name == "operator") and r.alive()]
            if not candidates:
                return None
            record = self.rng.choice(candidates)
            os.kill(record.pid, signal.SIGKILL)
            name = record.name
        self.tally.faults[kind] += 1
        return name

    async def converged(self) -> bool:
        """Every request has exactly its VMs, all ready, and its status says Ready."""
        vms = await self.kube.list(VIRTUAL_MACHINES, "default")
        ready = Counter((vm["metadata"]["labels"].get(REQUEST_LABEL), (vm.get("status") or {}).get("ready") is True)
                        for vm in vms)
        for name, replicas in self.requests.items():
            try:
                request = await self.kube.get(DEPLOYMENT_REQUESTS, name, "default")
            except KubeApiError:
                return False
            phase = (request.get("status") or {}).get("phase")
            generation = request["metadata"].get("generation")
            if ((request.get("status") or {}).get("observedGeneration") != generation or phase != "Ready"
                    or ready[(name, True)] != replicas or ready[(name, False)]):
                return False
        return not any(vm["metadata"]["labels"].get(REQUEST_LABEL) not in self.requests for vm in vms)

    async def report(self) -> tuple[list[tuple[str, str]], bool]:
        vms = await self.kube.list(VIRTUAL_MACHINES, "default")
        nodes = {n["metadata"]["name"]: n for n in await self.kube.list(NODES)}
        per_request = Counter(vm["metadata"]["labels"].get(REQUEST_LABEL) for vm in vms if controller_uid(vm))
        names = Counter(vm["metadata"]["name"] for vm in vms)
        per_node = Counter(pinned_node(vm) for vm in vms)
        oversubscribed = [node for node, count in per_node.items() if count > Resources.parse(
            nodes[node]["status"]["allocatable"]["cpu"], nodes[node]["status"]["allocatable"]["memory"]
        ).fits_times(SIZE)]
        expected = sum(self.requests.values())
        present = sum(per_request[name] for name in self.requests)
        leftovers = sum(count for name, count in per_request.items() if name not in self.requests)
        duplicates = sum(count - 1 for count in names.values() if count > 1) + max(0, present - expected)
        stuck = []
        for name in self.requests:
            status = (await self.kube.get(DEPLOYMENT_REQUESTS, name, "default")).get("status") or {}
            if status.get("phase") != "Ready":
                stuck.append(name)
        recoveries = sorted(self.tally.recoveries)
        rows = [
            ("faults injected", ", ".join(f"{kind} {count}" for kind, count in sorted(self.tally.faults.items()))),
            ("user actions", ", ".join(f"{kind} {count}" for kind, count in sorted(self.tally.actions.items()))),
            ("requests at the end", str(len(self.requests))),
            ("VMs expected / present", f"{expected} / {present}"),
            ("VMs of deleted requests left", str(leftovers)),
            ("duplicates", str(duplicates)),
            ("oversubscribed nodes", str(len(oversubscribed))),
            ("stuck requests", ", ".join(stuck) or "0"),
            ("recovery after a fault (s)", _percentiles(recoveries)),
        ]
        lost = expected != present or leftovers or duplicates or oversubscribed or stuck
        return rows, not lost


async def run_chaos(state: SandboxState, duration: float, seed: int, fill: float) -> bool:
    """Cycles until ``duration`` is spent: a fault; user actions while the killed process is down; the
    process started again; then no action until the cluster is whole (the fault's recovery time)."""
    rng = random.Random(seed)
    async with KubeClient(Credentials.from_kubeconfig(state.kubeconfig)) as kube:
        chaos = Chaos(state, kube, rng, fill)
        await chaos.measure_room()
        started = time.monotonic()
        print(f"chaos: {duration:.0f} s, seed {seed}, room for {chaos.room} x {INSTANCETYPE}", flush=True)
        while time.monotonic() - started < duration:
            for _ in range(rng.randint(1, 3)):  # some requests before the next fault
                await chaos.act()
            fault_at = time.monotonic()
            killed = chaos.fault()
            print(f"[{fault_at - started:5.1f}s] fault: {killed or 'a zookeeper server'}", flush=True)
            down_until = fault_at + rng.uniform(1, 5)
            while time.monotonic() < down_until:
                await chaos.act()
                await asyncio.sleep(rng.uniform(0.3, 1.5))
            if killed:
                await asyncio.to_thread(restart, state.state_dir, killed, io.StringIO())
            if await _settled(chaos):
                chaos.tally.recoveries.append(time.monotonic() - fault_at)
        rows, whole = await chaos.report()
    width = max(len(label) for label, _ in rows)
    print("\n".join(f"{label:<{width}}  {value}" for label, value in rows))
    return whole


async def _settled(chaos: Chaos) -> bool:
    """Wait (bounded) until every request is converged."""
    for _ in range(int(SETTLE_TIMEOUT / SETTLE_POLL_SECONDS)):
        if await chaos.converged():
            return True
        await asyncio.sleep(SETTLE_POLL_SECONDS)
    return False


def _percentiles(values: list[float]) -> str:
    if not values:
        return "no fault recovered"
    if len(values) == 1:
        return f"{values[0]:.1f} (one fault)"
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {cuts[49]:.1f}, p90 {cuts[89]:.1f}, max {max(values):.1f} ({len(values)} faults)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", type=Path, required=True)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of faults (default 120)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fill", type=float, default=0.6, help="at most this share of the room is asked for")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rackmesh-chaos-") as state_dir:
        state = up(args.topology, Path(state_dir), zookeeper_servers=3)
        try:
            whole = asyncio.run(run_chaos(state, args.duration, args.seed, args.fill))
        finally:
            down(Path(state_dir))
    sys.exit(0 if whole else 1)


if __name__ == "__main__":
    main()
