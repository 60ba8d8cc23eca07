"""``python -m rackmesh_sandbox.kube_api.watchbench``: how the sandbox API's watches hold up at scale.

Measures, it asserts nothing: the API runs as its own process (as in the sandbox, so the clients
here do not share its core), N simulated agents each hold a VirtualMachine watch selected by
``rackmesh.io/node=<node>`` (with ``--all-watches`` also their Node by ``metadata.name`` and all
instancetypes, the three watches of a node agent), then M VirtualMachines spread over the nodes are
created. It prints how long the creates took, when the last watcher had all of its VMs, the
delivery lag, the API's CPU time, and whether every watcher got exactly its own VMs.

``--lists N`` then has N agents LIST their VMs by the same label (what a thousand informers do
after a 410), and ``--gc`` makes every VM a dependent of one owner (a ConfigMap: collection does not
depend on the owner's kind) and deletes it, timing until the last VM is gone. Watches that end with
``ERROR`` (410: they fell behind the change log) are counted as ``expired``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

NODE_LABEL = "rackmesh.io/node"
VMS = "/apis/kubevirt.io/v1/virtualmachines"
NAMESPACED_VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
NODES = "/api/v1/nodes"
INSTANCETYPES = "/apis/instancetype.kubevirt.io/v1beta1/virtualmachineclusterinstancetypes"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
OWNER = "bench-owner"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rackmesh_sandbox.kube_api.watchbench", description=__doc__)
    parser.add_argument("--agents", type=int, default=1000, help="simulated node agents (one node each)")
    parser.add_argument("--objects", type=int, default=5000, help="VirtualMachines to create")
    parser.add_argument("--all-watches", action="store_true", help="3 watches per agent instead of 1")
    parser.add_argument("--concurrency", type=int, default=16, help="creates in flight at once")
    parser.add_argument("--lists", type=int, default=0, help="label-selected LISTs after delivery (agents relisting)")
    parser.add_argument("--gc", action="store_true", help="VMs owned by one owner, deleted at the end; time until gone")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    return parser.parse_args(argv)


def vm(name: str, node: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """A VirtualMachine the KubeVirt schema accepts, pinned to ``node`` as the product pins them."""
    labels = {NODE_LABEL: node, "rackmesh.io/request": "bench"}
    metadata: dict[str, Any] = {"name": name, "namespace": "default", "labels": labels}
    if owner is not None:
        owned = owner["metadata"]
        ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owned["name"], "uid": owned["uid"]}
        metadata["ownerReferences"] = [ref]
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": metadata,
        "spec": {
            "runStrategy": "Always",
            "instancetype": {"kind": "VirtualMachineClusterInstancetype", "name": "u1.large"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]}},
                    "volumes": [{"name": "root", "containerDisk": {"image": "example/rhel"}}],
                },
            },
        },
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests_by_verb(text: str) -> dict[str, float]:
    """The API's own count of answered requests (``apiserver_request_total``) and open watches, by verb."""
    found: dict[str, float] = collections.Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "apiserver_request_total":
                found[f"{sample.labels['verb']} {sample.labels['code']}"] += sample.value
            elif sample.name == "apiserver_longrunning_requests":
                found[f"{sample.labels['verb']} open"] += sample.value
    return dict(sorted(found.items()))


class Watcher:
    """One watch stream; counts the VMs it is told about and notes when each arrived."""

    def __init__(self, path: str, params: dict[str, str], expected: set[str]) -> None:
        self.path, self.params, self.expected = path, params, expected
        self.started = asyncio.Event()  # the initial-events bookmark came: the watch is live
        self.complete = asyncio.Event()
        self.seen: dict[str, float] = {}
        self.deleted: set[str] = set()
        self.unexpected: list[str] = []
        self.expired = False
        self.emptied = asyncio.Event()  # every VM it had was deleted (or the watch expired)
        if not expected:
            self.complete.set()

    async def run(self, session: aiohttp.ClientSession, url: str) -> None:
        params = {"watch": "true", "sendInitialEvents": "true", "allowWatchBookmarks": "true", **self.params}
        async with session.get(url + self.path, params=params, timeout=aiohttp.ClientTimeout(total=None)) as reply:
            async for line in reply.content:
                event = json.loads(line)
                if event["type"] == "BOOKMARK":
                    self.started.set()
                    continue
                if event["type"] == "ERROR":  # 410: fell behind the log (an informer would relist)
                    self.expired = True
                    self.complete.set()
                    self.emptied.set()
                    return
                name = event["object"]["metadata"]["name"]
                if event["type"] == "DELETED" and name in self.seen and name not in self.deleted:
                    self.deleted.add(name)
                    if len(self.deleted) == len(self.expected):
                        self.emptied.set()
                    continue
                if event["type"] != "ADDED" or name not in self.expected or name in self.seen:
                    self.unexpected.append(f"{event['type']} {name}")
                    continue
                self.seen[name] = time.monotonic()
                if len(self.seen) == len(self.expected):
                    self.complete.set()


async def bench(args: argparse.Namespace, url: str, pid: int) -> dict[str, Any]:
    nodes = [f"node-{index:04d}" for index in range(args.agents)]
    names = [f"vm-{index:05d}" for index in range(args.objects)]
    node_of = {name: nodes[index % len(nodes)] for index, name in enumerate(names)}
    placed: dict[str, set[str]] = {node: set() for node in nodes}
    for name, node in node_of.items():
        placed[node].add(name)
    watchers = [Watcher(VMS, {"labelSelector": f"{NODE_LABEL}={node}"}, placed[node]) for node in nodes]
    extra = []
    if args.all_watches:
        extra += [Watcher(NODES, {"fieldSelector": f"metadata.name={node}"}, set()) for node in nodes]
        extra += [Watcher(INSTANCETYPES, {}, set()) for _ in nodes]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.monotonic()
        tasks = [asyncio.create_task(w.run(session, url)) for w in watchers + extra]
        await asyncio.gather(*(w.started.wait() for w in watchers + extra))
        opened = time.monotonic() - began

        owner = None
        if args.gc:
            async with session.post(url + CONFIGMAPS, json={"metadata": {"name": OWNER}}) as reply:
                owner = await reply.json()
        sent: dict[str, float] = {}
        queue = list(reversed(names))

        async def creator() -> None:
            while queue:
                name = queue.pop()
                sent[name] = time.monotonic()
                async with session.post(url + NAMESPACED_VMS, json=vm(name, node_of[name], owner)) as reply:
                    if reply.status != 201:
                        raise RuntimeError(f"create {name}: {reply.status} {await reply.text()}")

        cpu_before = cpu_seconds(pid)
        start = time.monotonic()
        await asyncio.gather(*(creator() for _ in range(args.concurrency)))
        created = time.monotonic() - start
        await asyncio.gather(*(w.complete.wait() for w in watchers))
        delivered = time.monotonic() - start
        cpu = cpu_seconds(pid) - cpu_before
        extras: dict[str, Any] = {}
        if args.lists:
            extras.update(await relist(session, url, pid, nodes[: args.lists], placed, args.concurrency))
        if args.gc:
            gc_began = time.monotonic()
            extras.update(await collect(session, url, pid, names))
            await asyncio.gather(*(w.emptied.wait() for w in watchers if w.expected))
            extras["gc_delivered_s"] = round(time.monotonic() - gc_began, 2)  # until every watcher saw its VMs go
            extras["deletions_delivered"] = sum(len(w.deleted) for w in watchers)
        async with session.get(url + "/metrics") as reply:
            counted = requests_by_verb(await reply.text())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    lags = sorted(at - sent[name] for w in watchers for name, at in w.seen.items())
    return {
        "watches": len(watchers) + len(extra),
        "objects": args.objects,
        "watches_open_s": round(opened, 2),
        "create_s": round(created, 2),
        "creates_per_s": round(args.objects / created, 1),
        "all_delivered_s": round(delivered, 2),
        "lag_p50_ms": round(statistics.median(lags) * 1000, 1) if lags else None,
        "lag_p99_ms": round(lags[int(len(lags) * 0.99) - 1] * 1000, 1) if lags else None,
        "lag_max_ms": round(lags[-1] * 1000, 1) if lags else None,
        "api_cpu_s": round(cpu, 2),
        "expired": sum(w.expired for w in watchers + extra),
        **extras,
        "api_requests": counted,
        "exact": all(len(w.seen) == len(w.expected) and not w.unexpected for w in watchers + extra),
    }


async def relist(
    session: aiohttp.ClientSession, url: str, pid: int, nodes: list[str], placed: dict[str, set[str]], concurrency: int
) -> dict[str, Any]:
    """LIST each node's VMs by label, ``concurrency`` at a time; check each answer is exactly its VMs."""
    queue, exact = list(nodes), True

    async def lister() -> None:
        nonlocal exact
        while queue:
            node = queue.pop()
            params = {"labelSelector": f"{NODE_LABEL}={node}"}
            async with session.get(url + VMS, params=params, timeout=aiohttp.ClientTimeout(total=None)) as reply:
                items = (await reply.json())["items"]
            exact = exact and {item["metadata"]["name"] for item in items} == placed[node]

    cpu_before, start = cpu_seconds(pid), time.monotonic()
    await asyncio.gather(*(lister() for _ in range(concurrency)))
    took = time.monotonic() - start
    return {
        "lists": len(nodes),
        "lists_s": round(took, 2),
        "list_ms_mean": round(took / len(nodes) * 1000, 1),
        "lists_api_cpu_s": round(cpu_seconds(pid) - cpu_before, 2),
        "lists_exact": exact,
    }


async def collect(session: aiohttp.ClientSession, url: str, pid: int, names: list[str]) -> dict[str, Any]:
    """Delete the owner of every VM; poll the last VM (collected last) until gone, then LIST to confirm."""
    cpu_before, start = cpu_seconds(pid), time.monotonic()
    async with session.delete(f"{url}{CONFIGMAPS}/{OWNER}") as reply:
        if reply.status != 200:
            raise RuntimeError(f"delete {OWNER}: {reply.status} {await reply.text()}")
    unbounded = aiohttp.ClientTimeout(total=None)
    while True:  # a GET is cheap however many objects are stored; the LIST runs once it is gone
        async with session.get(f"{url}{NAMESPACED_VMS}/{names[-1]}", timeout=unbounded) as reply:
            if reply.status == 404:
                async with session.get(url + VMS, timeout=unbounded) as listed:
                    if not (await listed.json())["items"]:
                        break
        await asyncio.sleep(0.1)
    took = time.monotonic() - start
    return {"gc_s": round(took, 2), "gc_api_cpu_s": round(cpu_seconds(pid) - cpu_before, 2)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ready = pathlib.Path(tmp) / "ready.json"
        argv = [sys.executable, "-m", "rackmesh_sandbox.kube_api", "--port", "0", "--ready-file", str(ready)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the API process did not start")
                time.sleep(0.05)
            url = json.loads(ready.read_text())["url"]
            result = asyncio.run(asyncio.wait_for(bench(args, url, proc.pid), args.timeout))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
