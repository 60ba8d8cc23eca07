"""The ZooKeeper harness against real servers: standalone, a 3-server quorum, failover, cross-process stop."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from rackmesh_sandbox.processes import running
from rackmesh_sandbox.zookeeper import (
    ZooKeeperEnsemble,
    ZooKeeperNotFound,
    ZooKeeperStartError,
    find_zookeeper,
    stop_from_state,
)
from tests.support.waiting import NOT_YET, eventually

pytestmark = pytest.mark.zookeeper


def listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def connect(connect_string: str, session_timeout: float = 4.0) -> KazooClient:
    client = KazooClient(hosts=connect_string, timeout=session_timeout)
    client.start(timeout=15)
    return client


def test_standalone_serves_kazoo_and_stop_leaves_nothing(tmp_path: Path) -> None:
    with ZooKeeperEnsemble(tmp_path) as zk:
        (server,) = zk.servers
        assert server.mode() == "standalone"
        assert zk.connect_string == f"127.0.0.1:{server.client_port}"
        client = connect(zk.connect_string)
        try:
            client.create("/rackmesh/probe", b"hello", makepath=True)
            assert client.get("/rackmesh/probe")[0] == b"hello"
        finally:
            client.stop()
            client.close()
        pid, port, data_dir = server.pid, server.client_port, server.data_dir
        assert pid is not None
        assert running(pid)
        assert data_dir.is_dir()
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped
    assert not listening("127.0.0.1", port)
    assert not data_dir.exists()
    assert "binding to port" in server.log_path.read_text()  # Debian's jars log only with our binding added


def test_quorum_elects_one_leader_and_survives_losing_it(tmp_path: Path) -> None:
    with ZooKeeperEnsemble(tmp_path, size=3) as zk:
        modes = sorted(s.mode() or "" for s in zk.servers)
        assert modes == ["follower", "follower", "leader"]
        client = connect(zk.connect_string)
        try:
            client.create("/owner", b"me", ephemeral=True)
            old = zk.leader()
            assert old is not None
            old.kill()
            assert not old.running()
            assert old.mode() is None

            survivors = [s for s in zk.servers if s is not old]
            new = zk.wait_for_leader(timeout=20, members=survivors)
            assert new is not old

            # The client fails over by itself, and its session (holding the ephemeral node) survives.
            # ensure_path is idempotent, so safe to retry
            eventually(lambda: client.ensure_path("/after-failover"), retry_on=(KazooException, *NOT_YET))
            assert client.get("/owner")[0] == b"me"

            old.start(timeout=20)
            assert old.mode() == "follower"
            assert zk.wait_for_leader(timeout=20) is new
            # The restarted server caught up with what was written while it was down.
            rejoined = connect(old.address)
            try:
                assert rejoined.exists("/after-failover")
            finally:
                rejoined.stop()
                rejoined.close()
        finally:
            client.stop()
            client.close()


# What `rackmesh sandbox up` does: start detached servers, print their state, exit.
UP_SCRIPT = """
import json, sys
from rackmesh_sandbox.zookeeper import ZooKeeperEnsemble
zk = ZooKeeperEnsemble(sys.argv[1], size=3, hosts=["127.0.0.1", "127.0.0.2", "127.0.0.3"], detached=True)
print(json.dumps(zk.start().state()))
"""


def test_stop_from_state_stops_servers_started_by_another_process(tmp_path: Path) -> None:
    up = subprocess.run([sys.executable, "-c", UP_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                        timeout=60)
    assert up.returncode == 0, up.stderr
    state = json.loads(up.stdout)
    try:
        servers = state["servers"]
        assert [s["host"] for s in servers] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        assert all(running(s["pid"]) and listening(s["host"], s["client_port"]) for s in servers)
        client = connect(state["connect_string"])
        client.ensure_path("/still/there")
        client.stop()
        client.close()
    finally:
        stop_from_state(json.loads(json.dumps(state)))
    for server in servers:
        assert not running(server["pid"])
        assert not listening(server["host"], server["client_port"])
        assert not Path(server["data_dir"]).exists()
        assert Path(server["log"]).is_file()  # logs are kept for post-mortems
    stop_from_state(state)  # idempotent: the pids are gone (or, later, someone else's)


def test_stop_from_state_leaves_other_processes_alone(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        config, data_dir = tmp_path / "zk1" / "zoo.cfg", tmp_path / "zk1" / "data"
        state = {"kind": "rackmesh-zookeeper/v1", "state_dir": str(tmp_path), "servers": [
            {"pid": stranger.pid, "config": str(config), "data_dir": str(data_dir)},
        ]}
        stop_from_state(state, timeout=1)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_start_failure_names_the_cause_and_cleans_up(tmp_path: Path) -> None:
    zk = ZooKeeperEnsemble(tmp_path, start_timeout=20)
    (server,) = zk.servers
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server.client_port = taken.getsockname()[1]  # occupied: ZooKeeper cannot bind and exits
        with pytest.raises(ZooKeeperStartError, match=r"(?s)did not stay up.*Address already in use"):
            zk.start()
    assert not server.running()
    assert not server.data_dir.exists()


def test_missing_installation_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOOKEEPER_HOME", str(tmp_path))
    with pytest.raises(ZooKeeperNotFound, match="apt-get install zookeeper"):
        find_zookeeper()
    with pytest.raises(ZooKeeperNotFound, match="apt-get install zookeeper"):
        ZooKeeperEnsemble(tmp_path / "state")


def test_zookeeper_home_tarball_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("zookeeper-3.8.4.jar", "zookeeper-jute-3.8.4.jar", "netty-handler-4.1.jar"):
        (lib / name).touch()
    monkeypatch.setenv("ZOOKEEPER_HOME", str(tmp_path))
    classpath = find_zookeeper().classpath
    assert classpath[0] == tmp_path / "conf"
    assert {p.name for p in classpath[1:]} == {"zookeeper-3.8.4.jar", "zookeeper-jute-3.8.4.jar",
                                              "netty-handler-4.1.jar"}


def test_a_second_start_is_harmless_and_state_round_trips(tmp_path: Path) -> None:
    with ZooKeeperEnsemble(tmp_path) as zk:
        pid = zk.servers[0].pid
        zk.start()
        assert zk.servers[0].pid == pid
        state = json.loads(json.dumps(zk.state()))
        assert state["connect_string"] == zk.connect_string
        assert state["servers"][0]["pid"] == pid
    client = KazooClient(hosts=zk.connect_string, timeout=2)
    with pytest.raises(KazooTimeoutError):  # nothing serves any more
        client.start(timeout=1)
    client.close()
