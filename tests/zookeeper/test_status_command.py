"""``rackmesh status`` against a real ZooKeeper (mutual TLS), with agents that cannot answer.

| ZooKeeper holds                                     | the command                                           |
| --------------------------------------------------- | ----------------------------------------------------- |
| nothing under its root                              | exit 0: no members, no requests                       |
| a rack whose leader's agent accepts and never       | exit 0 within its time limit: the silent agent "no    |
| answers, a member whose agent refuses, one whose    | answer within", the refusing one "unreachable", the   |
| certificate names another node, a waiting request   | impostor's certificate refused, the request with its  |
| (its record)                                        | stage, coordinator and reason                         |
| (a certificate of another CA)                       | exit 1, one line: could not connect, and why          |
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from kazoo.client import KazooClient

from rackmesh import request_record, zk_async
from rackmesh.identity.credentials import TlsFiles
from rackmesh.identity.names import Identity
from rackmesh.labels import Role
from rackmesh.protocol import VIEW, Order, RequestRef
from rackmesh.request_record import RequestRecord, Stage
from rackmesh.zk_layout import MemberRecord, ZkLayout
from rackmesh_sandbox.zookeeper import ZooKeeperEnsemble
from tests.support.pki import Pki

pytestmark = pytest.mark.zookeeper

TIMEOUT = 1.0
# Python's start-up and imports on two busy cores, beside the three phases each bounded by TIMEOUT.
STARTUP_ALLOWANCE = 8.0


def rackmesh_status(zookeeper: ZooKeeperEnsemble, root: str, identity_dir: Path,
                    *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RACKMESH_")}
    env["RACKMESH_ZK_ROOT"] = root
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "rackmesh", "status", "--zookeeper", zookeeper.connect_string,
                             "--identity-dir", str(identity_dir), "--timeout", str(TIMEOUT), *args],
                            capture_output=True, text=True, timeout=60, env=env)
    return result, time.monotonic() - started


@pytest.fixture
async def writer(zookeeper: ZooKeeperEnsemble, zk_tls: TlsFiles) -> AsyncIterator[KazooClient]:
    """A client with an agent's certificate, writing what agents and coordinators would."""
    client = await zk_async.start_client(zookeeper.connect_string, 10.0, tls=zk_tls)
    yield client
    await zk_async.stop_client(client)


@pytest.fixture
def silent_agent() -> Iterator[str]:
    """An endpoint whose kernel completes the TCP handshake and that then never says a word (a hung agent)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
def refusing_agent() -> Iterator[str]:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"https://127.0.0.1:{bound.getsockname()[1]}"


@pytest.fixture
async def impostor(pki: Pki) -> AsyncIterator[str]:
    """An agent of the rackmesh CA whose certificate names another node (c-x-9) than the member it stands for."""
    async def view(_: web.Request) -> web.Response:
        return web.json_response({"node": "c-x-9", "ready": False})

    app = web.Application()
    app.router.add_get(VIEW, view)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.credentials(Identity.agent("c-x-9")).server_context())
    await site.start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def test_an_empty_root_is_an_empty_mesh(zookeeper: ZooKeeperEnsemble, zk_root: str, pki: Pki):
    result, _ = rackmesh_status(zookeeper, zk_root, pki.operator().directory)
    assert result.returncode == 0, result
    assert result.stdout.splitlines() == [f"no rackmesh members in ZooKeeper at {zookeeper.connect_string}", "",
                                          "no requests in ZooKeeper"]
    assert result.stderr == ""


async def test_agents_that_do_not_answer_are_shown_as_such_within_the_time_limit(
        zookeeper: ZooKeeperEnsemble, zk_root: str, pki: Pki, writer: KazooClient, silent_agent: str,
        refusing_agent: str, impostor: str):
    layout = ZkLayout(zk_root)
    leader = MemberRecord("c-a-1", "rack-a", Role.COMPUTE, silent_agent)
    members = (leader, MemberRecord("c-a-2", "rack-a", Role.COMPUTE, refusing_agent),
               MemberRecord("c-a-3", "rack-a", Role.COMPUTE, impostor))
    for member in members:
        await zk_async.wait(writer.create_async(layout.member(Role.COMPUTE, "rack-a", member.node), member.encode(),
                                                ephemeral=True, makepath=True))
    await zk_async.wait(writer.create_async(layout.leader(Role.COMPUTE, "rack-a"), leader.encode(), ephemeral=True,
                                            makepath=True))
    order = Order(RequestRef("uid-1", "default", "big"), 500, "u1.large", "lob123-rhel-6.0")
    await request_record.write(writer, layout, RequestRecord(
        order, "c-a-1", Stage.WAITING, reason="InsufficientCapacity", message="rack-a could host 0",
        changed_at=time.time()), None)

    result, elapsed = await asyncio.to_thread(rackmesh_status, zookeeper, zk_root, pki.operator().directory, "-o",
                                              "json")  # the impostor answers on this event loop meanwhile

    assert result.returncode == 0, result
    assert elapsed < 3 * TIMEOUT + STARTUP_ALLOWANCE
    status = json.loads(result.stdout)
    [rack] = status["racks"]
    assert rack["rack"] == "rack-a"
    assert rack["leaders"] == {"compute": "c-a-1"}
    silent, refusing, impersonated = rack["members"]
    assert silent == {"node": "c-a-1", "endpoint": silent_agent, "roles": ["compute"], "leads": ["compute"],
                      "answered": False, "problem": f"no answer within {TIMEOUT:g} s"}
    assert (refusing["node"], refusing["answered"], refusing["leads"]) == ("c-a-2", False, [])
    assert refusing["problem"].startswith(f"unreachable at {refusing_agent}: ")
    assert (impersonated["node"], impersonated["answered"]) == ("c-a-3", False)
    assert "certificate verify failed" in impersonated["problem"]
    assert "c-a-3.agent.rackmesh" in impersonated["problem"]
    [request] = status["requests"]
    assert {key: request[key] for key in ("request", "uid", "stage", "coordinator", "replicas", "placed",
                                          "reason")} == {
        "request": "default/big", "uid": "uid-1", "stage": "Waiting", "coordinator": "c-a-1", "replicas": 500,
        "placed": 0, "reason": "InsufficientCapacity"}

    table, _ = await asyncio.to_thread(rackmesh_status, zookeeper, zk_root, pki.operator().directory)
    assert f"c-a-1  compute  compute  <no answer within {TIMEOUT:g} s>" in table.stdout
    assert "default/big  Waiting  c-a-1        0/500" in table.stdout


def test_a_certificate_of_another_ca_gets_one_line_saying_why(zookeeper: ZooKeeperEnsemble, zk_root: str,
                                                              tmp_path: Path):
    stranger = Pki(tmp_path / "another-ca").operator().directory
    result, elapsed = rackmesh_status(zookeeper, zk_root, stranger)
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert line.startswith(f"rackmesh status: could not connect to ZooKeeper at {zookeeper.connect_string} "
                           f"within {TIMEOUT:g} s (")
    assert "CERTIFICATE_VERIFY_FAILED" in line, line
    assert "Traceback" not in result.stderr
    assert elapsed < TIMEOUT + STARTUP_ALLOWANCE
