"""``make bench``: the scale benchmark. For each cluster size it starts a simulated cluster (``cluster.py``:
real ZooKeeper, the sandbox API, the product's agents in one worker process per core) and measures, in
the same run: the transport floor, the seed request (50 x u1.large) many times, the central baseline, the
same request with 10,000 VMs present, and at 1,000+ nodes one 10,000-VM request beside the API floor.

    python -m rackmesh_bench.run [--nodes 100,1000] [--requests 20] [--out bench/results]

Results: ``<out>/bench-<time>.json`` and ``.png``. See bench/README.md for what each figure means.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rackmesh import request_record, zk_async
from rackmesh.informer import Informer
from rackmesh.kube_client import DEPLOYMENT_REQUESTS, VIRTUAL_MACHINES, KubeClient, Selector
from rackmesh.labels import REQUEST_LABEL, Role
from rackmesh.protocol import Order, RequestRef
from rackmesh.request_record import RequestRecord, Stage
from rackmesh_bench.api_floor import write_floor
from rackmesh_bench.central import place_centrally
from rackmesh_bench.cluster import BENCH_SETTINGS, IMAGE, RACK_SIZE, Cluster, Say
from rackmesh_bench.plot import plot
from rackmesh_bench.report import report
from rackmesh_operator.handoff import hand_over

SEED = (50, "u1.large")
BIG = 10_000  # the 10,000-VM request, and the VMs already present
BIG_FROM_NODES = 1_000
NAMESPACE = "default"
STAGE_POLL_SECONDS = 0.005


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 4),
            "p99": round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))], 4),
            "max": round(ordered[-1], 4), "n": len(ordered)}


def reporter() -> Say:
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    return say


class Bench:
    def __init__(self, cluster: Cluster, say: Say) -> None:
        self.cluster = cluster
        self.say = say
        self._serial = 0
        self.own_zookeeper_reads = 0

    @property
    def kube(self) -> KubeClient:
        assert self.cluster.kube is not None
        return self.cluster.kube

    async def stored_order(self, prefix: str, replicas: int) -> Order:
        """An order for a DeploymentRequest that exists (its VMs' owner)."""
        self._serial += 1
        name = f"{prefix}-{self._serial}"
        created = await self.kube.create(DEPLOYMENT_REQUESTS, {
            "apiVersion": "rackmesh.io/v1alpha1", "kind": "DeploymentRequest",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"replicas": replicas, "instancetype": SEED[1], "image": IMAGE}}, NAMESPACE)
        return Order(RequestRef(created["metadata"]["uid"], NAMESPACE, name), replicas, SEED[1], IMAGE,
                     generation=1)

    async def remove(self, order: Order) -> None:
        """Delete the request (its VMs go by garbage collection) and its record; wait until the VMs are gone."""
        services = self.cluster.services
        assert services is not None
        await self.kube.delete(DEPLOYMENT_REQUESTS, order.request.name, NAMESPACE)
        await request_record.delete(services.zk, services.layout, order.request.uid)
        selector = f"{REQUEST_LABEL}={order.request.name}"
        deadline = time.monotonic() + 600
        while await self.kube.list(VIRTUAL_MACHINES, NAMESPACE, label_selector=selector):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the VMs of {order.request.name} were not collected in 600 s")
            await asyncio.sleep(0.2)

    async def settled(self, order: Order, deadline_seconds: float) -> RequestRecord:
        """The record once its round ended (the bench's own reads of it are subtracted from the counts)."""
        services = self.cluster.services
        assert services is not None
        deadline = time.monotonic() + deadline_seconds
        path, version = services.layout.request(order.request.uid), -1
        found = None
        while True:
            # Subtracted: a real operator follows the record too, but less often. The record is decoded only
            # when it changed: a 10,000-VM request's is large, and the bench must not take the agents' CPU.
            self.own_zookeeper_reads += 1
            stat = await zk_async.wait(services.zk.exists_async(path))
            if stat is not None and stat.version != version:
                self.own_zookeeper_reads += 1
                found = await request_record.read(services.zk, services.layout, order.request.uid)
                version = found[1] if found is not None else -1
                if found is not None and found[0].stage in (Stage.SETTLED, Stage.WAITING):
                    return found[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"{order.request.name} did not settle in {deadline_seconds} s: {found}")
            await asyncio.sleep(STAGE_POLL_SECONDS)

    async def rackmesh_request(self, replicas: int, keep: bool = False) -> dict[str, Any]:
        """One request through the product: hand-over as the operator does, then the agents' rounds, until every
        VM object exists (seen by a watch of the bench's own: a round may settle before a slow API has them all,
        and the agents write on)."""
        services = self.cluster.services
        assert services is not None
        order = await self.stored_order("bench", replicas)
        written = WrittenVms(self.kube, order)
        watching = asyncio.create_task(written.informer.run())
        await written.informer.synced.wait()
        await self.cluster.service_times()  # forget what earlier requests left
        before, reads_before = await self.cluster.snapshot(), self.own_zookeeper_reads
        sent_at = time.time()
        await hand_over(services, order, self.cluster.nodes)
        record = await self.settled(order, 60 + replicas / 20)
        if record.stage != Stage.SETTLED:
            raise RuntimeError(f"{order.request.name} did not place: {record.reason}: {record.message}")
        await asyncio.wait_for(written.all.wait(), 600)
        after = await self.cluster.snapshot()
        watching.cancel()
        counts = after.since(before)
        counts["zookeeper"]["read"] -= self.own_zookeeper_reads - reads_before
        result = {
            "handshake": record.timings["handshake"],
            "orderToDeploying": record.deploying_since - sent_at,
            "deployingToWritten": written.at - record.deploying_since,
            "orderToWritten": written.at - sent_at,
            "criticalPath": self.critical_path(order.request.uid, await self.cluster.service_times()),
            "unanswered": record.unanswered,
            "nodes": len(record.portions),
            **counts,
        }
        if keep:
            result["order"], result["record"] = order, record
        else:
            await self.remove(order)
        return result

    def critical_path(self, uid: str, times: list[dict[str, Any]]) -> float:
        """The handshake's longest chain of service times: the coordinator's own work, plus the slowest rack's
        leader and, in that rack, its slowest agent; as if every agent had a machine of its own (no network)."""
        mine = [entry for entry in times if entry["request"] == uid]
        coordinator = sum(entry["seconds"] for entry in mine if entry["step"] == "handshake")
        leaders: dict[str, float] = {}
        agents: dict[str, float] = {}
        for entry in mine:
            rack = self.cluster.rack_of(entry["node"])
            if entry["step"] == "rack-offers":
                leaders[rack] = leaders.get(rack, 0.0) + entry["seconds"]
            elif entry["step"] == "node-offer":
                agents[rack] = max(agents.get(rack, 0.0), entry["seconds"])
        return round(coordinator + max((leaders[rack] + agents.get(rack, 0.0) for rack in leaders), default=0.0), 4)

    async def seed_requests(self, count: int, label: str) -> dict[str, Any]:
        runs = []
        for number in range(1, count + 1):
            runs.append(await self.rackmesh_request(SEED[0]))
            if number % 5 == 0 or number == count:
                self.say(f"  {label}: {number}/{count}, handshake p50 "
                         f"{percentiles([run['handshake'] for run in runs])['p50']:.3f} s")
        return summarize(runs)

    async def transport_floor(self, count: int) -> dict[str, Any]:
        assert self.cluster.services is not None
        coordinator = (await self.cluster.services.directory.leaders(Role.COMPUTE))[0].node
        rounds = [await self.cluster.reach(coordinator) for _ in range(count)]
        reached = {round_["agents"] for round_ in rounds}
        return {**percentiles([round_["seconds"] for round_ in rounds]), "agentsReached": sorted(reached),
                "unanswered": sorted({rack for round_ in rounds for rack in round_["unanswered"]})}

    async def central(self, count: int) -> dict[str, Any]:
        runs = []
        for _ in range(count):
            order = await self.stored_order("central", SEED[0])
            before = await self.cluster.snapshot()
            placed = await place_centrally(self.kube, order, self.cluster.holders(), self.cluster.settings)
            counts = (await self.cluster.snapshot()).since(before)
            runs.append({"decision": placed.decision_seconds, "write": placed.write_seconds,
                         "objectsRead": placed.objects_read,
                         "orderToWritten": placed.decision_seconds + placed.write_seconds, **counts})
            await self.remove(order)
        return summarize(runs)

    async def api_floor(self, placement: dict[str, list[int]]) -> tuple[Order, float]:
        """Write the VMs of ``placement`` with one client; they stay, as VMs already present."""
        order = await self.stored_order("present", sum(map(len, placement.values())))
        seconds = await write_floor(self.kube, order, placement, self.cluster.holders(),
                                    self.cluster.settings.vm_disk_size)
        return order, seconds


class WrittenVms:
    """The bench's own watch of one request's VMs: when the last of them exists. Its list and watch start
    before the request is measured, so they are not counted in its API reads."""

    def __init__(self, kube: KubeClient, order: Order) -> None:
        self.replicas = order.replicas
        self.informer = Informer(kube, VIRTUAL_MACHINES, Selector(labels=f"{REQUEST_LABEL}={order.request.name}"),
                                 on_change=self._changed)
        self.all = asyncio.Event()
        self.at = 0.0

    def _changed(self) -> None:
        if not self.all.is_set() and len(self.informer.objects()) >= self.replicas:
            self.at = time.time()
            self.all.set()


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Percentiles of the times; counts per request as their mean (and max)."""
    summary: dict[str, Any] = {"requests": len(runs)}
    for key in ("handshake", "orderToDeploying", "deployingToWritten", "orderToWritten", "criticalPath",
                "decision", "write"):
        if key in runs[0]:
            summary[key] = percentiles([run[key] for run in runs])
    for key in ("api", "zookeeper", "messages", "cpuSeconds"):
        names = sorted({name for run in runs for name in run[key]})
        summary[key] = {name: round(statistics.mean(run[key].get(name, 0) for run in runs), 3) for name in names}
    if "objectsRead" in runs[0]:
        summary["objectsRead"] = max(run["objectsRead"] for run in runs)
    summary["apiReads"] = max(sum(run["api"].get(verb, 0) for verb in ("GET", "LIST", "WATCH")) for run in runs)
    summary["newConnections"] = {"mean": round(statistics.mean(run["newConnections"] for run in runs), 1),
                                 "max": max(run["newConnections"] for run in runs)}
    summary["messagesPerRequest"] = round(statistics.mean(sum(run["messages"].values()) for run in runs), 1)
    summary["sessionsLost"] = sum(run["sessionsLost"] for run in runs)
    if "unanswered" in runs[0]:
        summary["unanswered"] = sorted({item for run in runs for item in run["unanswered"]})
        summary["nodesUsed"] = percentiles([run["nodes"] for run in runs])
    return summary


def even_placement(nodes: list[str], count: int) -> dict[str, list[int]]:
    placement: dict[str, list[int]] = {node: [] for node in nodes}
    for index in range(count):
        placement[nodes[index % len(nodes)]].append(index)
    return placement


async def measure_scale(nodes: int, requests: int, background: int, big_from: int, workdir: Path,
                        say: Say) -> dict[str, Any]:
    cluster = Cluster(nodes, workdir, say)
    say(f"{nodes} compute nodes: starting ZooKeeper, the API and {cluster.workers} agent workers")
    started = time.monotonic()
    try:
        await cluster.start()
        result: dict[str, Any] = {"nodes": nodes, "racks": len(cluster.topology.racks(Role.COMPUTE)),
                                  "startSeconds": round(time.monotonic() - started, 1)}
        bench = Bench(cluster, say)
        say(f"{nodes} nodes: transport floor")
        result["transportFloor"] = await bench.transport_floor(requests)
        say(f"{nodes} nodes: seed request x {requests}")
        result["seed"] = await bench.seed_requests(requests, "seed")
        say(f"{nodes} nodes: central baseline x {requests}")
        result["central"] = await bench.central(requests)
        if nodes >= big_from:
            say(f"{nodes} nodes: one {BIG}-VM request")
            big = await bench.rackmesh_request(BIG, keep=True)
            record: RequestRecord = big.pop("record")
            placement = {portion.node: portion.indices for portion in record.portions}
            await bench.remove(big.pop("order"))
            say(f"{nodes} nodes: API floor, the same {BIG} VMs from one client")
            _, floor = await bench.api_floor(placement)
            big["apiFloor"] = floor
            big["vmsPerSecond"] = round(BIG / big["orderToWritten"], 1)
            result["big"] = big
        else:
            say(f"{nodes} nodes: writing {background} VMs already present (API floor)")
            _, floor = await bench.api_floor(even_placement(cluster.compute, background))
            result["backgroundWrite"] = {"vms": background, "seconds": round(floor, 3)}
        present = BIG if nodes >= big_from else background
        say(f"{nodes} nodes: seed request x {requests} with {present} VMs present")
        result["seedWithVms"] = await bench.seed_requests(requests, "seed with VMs present")
        result["seedWithVms"]["vmsPresent"] = present
        result["sessionsLost"] = await cluster.sessions_lost()
    finally:
        await cluster.stop()
    return result


def targets(scales: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it was met."""
    by_nodes = {scale["nodes"]: scale for scale in scales}
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float | None, limit: float) -> None:
        if value is not None:
            checks.append({"target": name, "value": round(value, 4), "limit": limit, "met": value <= limit})

    if 100 in by_nodes:
        seed = by_nodes[100]["seed"]
        check("seed handshake p50 at 100 nodes (s)", seed["handshake"]["p50"], 0.05)
        check("seed handshake p99 at 100 nodes (s)", seed["handshake"]["p99"], 0.15)
        check("seed order -> all VMs written p50 at 100 nodes (s)", seed["orderToWritten"]["p50"], 0.5)
    if 100 in by_nodes and 1000 in by_nodes:
        check("handshake p50 at 1,000 / at 100 nodes", by_nodes[1000]["seed"]["handshake"]["p50"]
              / by_nodes[100]["seed"]["handshake"]["p50"], 3)
    for scale in scales:
        nodes = scale["nodes"]
        check(f"seed handshake with VMs present / without, {nodes} nodes",
              scale["seedWithVms"]["handshake"]["p50"] / scale["seed"]["handshake"]["p50"], 1.5)
        check(f"handshake / transport floor (p50), {nodes} nodes",
              scale["seed"]["handshake"]["p50"] / scale["transportFloor"]["p50"], 2)
        check(f"API reads per request, {nodes} nodes", max(scale["seed"]["apiReads"],
                                                           scale["seedWithVms"]["apiReads"]), 10)
        check(f"ZooKeeper sessions lost, {nodes} nodes", scale["sessionsLost"], 0)
        left_out = {*scale["seed"]["unanswered"], *scale["seedWithVms"]["unanswered"],
                    *scale.get("big", {}).get("unanswered", [])}
        check(f"racks or agents a decision was made without, {nodes} nodes", len(left_out), 0)
        if "big" in scale:
            check(f"{BIG}-VM request decision at {nodes} nodes (s)", scale["big"]["handshake"], 1)
            check(f"{BIG}-VM request: all written / API floor, {nodes} nodes",
                  scale["big"]["deployingToWritten"] / scale["big"]["apiFloor"], 1.2)
    return checks


async def measure(nodes: list[int], requests: int, background: int, big_from: int, say: Say,
                  keep: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "loadAverageBefore": os.getloadavg(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "settings": {"rackSize": RACK_SIZE, "seedRequest": f"{SEED[0]} x {SEED[1]}", "requestsPerCase": requests,
                     "workers": os.cpu_count(), **BENCH_SETTINGS},
        "scales": [],
    }
    with _workdir(keep) as workdir:
        for count in nodes:
            results["scales"].append(await measure_scale(count, requests, background, big_from, workdir / f"n{count}",
                                                         say))
    results["machine"]["loadAverageAfter"] = os.getloadavg()
    results["targets"] = targets(results["scales"])
    return results


def write_results(results: dict[str, Any], out: Path, say: Say) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, path.with_suffix(".png"))
    say(f"results: {path} and {path.with_suffix('.png')}")
    print(report(results), flush=True)
    return path


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    """Where the cluster's logs and data go: removed afterwards unless ``keep``."""
    if keep:
        path = Path(tempfile.mkdtemp(prefix="rackmesh-bench-"))
        print(f"logs and data stay in {path}", file=sys.stderr)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="rackmesh-bench-") as tmp:
        yield Path(tmp)


def _interrupted(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default="100,1000", help="compute node counts, comma-separated")
    parser.add_argument("--requests", type=int, default=20, help="requests measured per case")
    parser.add_argument("--background", type=int, default=BIG, help="VMs present below 1,000 nodes")
    parser.add_argument("--big-from", type=int, default=BIG_FROM_NODES,
                        help=f"run the {BIG:,}-VM request from this many nodes on")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--keep", action="store_true", help="keep the clusters' logs and data")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)  # stop the cluster as on Ctrl-C: nothing is left running
    say = reporter()
    results = asyncio.run(measure([int(n) for n in args.nodes.split(",")], args.requests, args.background,
                                  args.big_from, say, args.keep))
    write_results(results, args.out, say)


if __name__ == "__main__":
    main()
