"""A bench worker: many of the product's own ``Agent``s in one process, each with its own ZooKeeper
session, loopback address, API client and peer client, as a DaemonSet pod runs one. A small control
API on loopback lets the driver read the agents' counters and start a reachability round.

    python -m rackmesh_bench.worker SPEC.json

SPEC: ``{"apiUrl", "control": port, "env": {RACKMESH_*}, "agents": [{"node", "address", "imageDir",
"identityDir"}]}``; the agents' certificates come from the CA in ``RACKMESH_CA_DIR`` (no operator runs).
"""

import argparse
import asyncio
import datetime
import gc
import json
import logging
import os
import resource
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from rackmesh import logs
from rackmesh.cli import run_until_signalled
from rackmesh.config import Settings
from rackmesh.identity.authority import CertificateAuthority
from rackmesh.identity.names import Identity
from rackmesh.kube_client import Credentials, KubeClient
from rackmesh_node_agent.agent import Agent
from rackmesh_node_agent.placement.reach import reach_compute_agents

logger = logging.getLogger(__name__)
START_BATCH = 25
START_BATCH_SECONDS = 30.0
CERTIFICATE_LIFETIME = datetime.timedelta(days=1)  # a benchmark never waits for a renewal


class Worker:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.agents: dict[str, Agent] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the agents a batch at a time, each once the one before has its caches listed (or after a
        while), as a DaemonSet rolls out: a thousand agents listing at the same instant only time out."""
        entries = self.spec["agents"]
        authority = CertificateAuthority.load(Path(Settings.from_env(self.spec["env"]).ca_dir))
        for first in range(0, len(entries), START_BATCH):
            batch = []
            for entry in entries[first:first + START_BATCH]:
                settings = Settings.from_env(self.spec["env"], agent_bind=entry["address"],
                                             agent_advertise=entry["address"], image_dir=entry["imageDir"],
                                             identity_dir=entry["identityDir"])
                kube = KubeClient(Credentials(self.spec["apiUrl"], ssl_context=False))
                agent = Agent(settings, entry["node"], kube, authority.signer(Identity.agent(entry["node"]),
                                                                              CERTIFICATE_LIFETIME))
                self.agents[entry["node"]] = agent
                self.tasks.append(asyncio.create_task(agent.run()))
                batch.append(agent)
            waits = [asyncio.create_task(_synced(agent)) for agent in batch]
            _, late = await asyncio.wait(waits, timeout=START_BATCH_SECONDS)
            for wait in late:
                wait.cancel()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(agent.kube.close() for agent in self.agents.values()))

    def stats(self) -> dict[str, Any]:
        sent: dict[str, int] = {}
        for agent in self.agents.values():
            for route, count in agent.peers.sent.items():
                sent[route] = sent.get(route, 0) + count
        sessions = [agent.presence.sessions for agent in self.agents.values() if agent.presence is not None]
        cpu = os.times()
        return {
            "agents": len(self.agents),
            "joined": sum(agent.ready and agent.presence is not None for agent in self.agents.values()),
            "crashed": [node for node, task in zip(self.agents, self.tasks, strict=True) if task.done()],
            "sessionsLost": sum(max(0, count - 1) for count in sessions),
            "sent": sent,
            "connectionsOpened": sum(agent.peers.connections_opened for agent in self.agents.values()),
            "cpuSeconds": round(cpu.user + cpu.system, 3),
        }

    def service_times(self) -> list[dict[str, Any]]:
        return [{"node": node, "request": kept.request, "step": kept.step, "seconds": kept.seconds}
                for node, agent in self.agents.items() for kept in agent.service_times.drain()]

    async def reach(self, node: str) -> dict[str, Any]:
        started = time.perf_counter()
        reached = await reach_compute_agents(self.agents[node])
        return {"seconds": time.perf_counter() - started, "agents": reached.agents,
                "unanswered": reached.unanswered}


async def _synced(agent: Agent) -> None:
    for listed in (agent.own_node.listed, agent.vms.synced, agent.instancetypes.synced):
        await listed.wait()


def control_app(worker: Worker) -> web.Application:
    async def stats(_: web.Request) -> web.Response:
        return web.json_response(worker.stats())

    async def service_times(_: web.Request) -> web.Response:
        return web.json_response(worker.service_times())

    async def reach(request: web.Request) -> web.Response:
        return web.json_response(await worker.reach((await request.json())["node"]))

    app = web.Application()
    app.add_routes([web.get("/stats", stats), web.post("/service-times", service_times), web.post("/reach", reach)])
    return app


async def serve(spec: dict[str, Any]) -> None:
    worker = Worker(spec)
    runner = web.AppRunner(control_app(worker), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", spec["control"]).start()
    await worker.start()
    try:
        await asyncio.Event().wait()  # until the driver stops us (SIGTERM cancels this)
    finally:
        await worker.stop()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("spec", type=Path)
    spec = json.loads(parser.parse_args().spec.read_text())
    # Hundreds of agents hold sockets: listeners, watches, ZooKeeper, pooled peer connections.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # One process holds the caches of hundreds of agents (a pod holds one): the collector's full passes over
    # that heap would stall every agent of the process at once, so they are made rarer.
    gc.set_threshold(50_000, 50, 1_000)
    settings = Settings.from_env(spec["env"])
    logs.configure("bench-worker", settings.log_level, settings.log_format)
    run_until_signalled(serve(spec))


if __name__ == "__main__":
    main()
