"""The ``rackmesh`` command as a user runs it (a subprocess), where it must answer without a cluster:

- ``--version``: the installed distribution's version, which is pyproject.toml's, exit 0;
- ``status`` that cannot start: no sandbox state, no certificate, a broken connect string, ZooKeeper
  refusing connections, a name that does not resolve. Each: exit 1 within a few seconds (not kazoo's
  15 s of retries), stderr exactly one line saying what was tried, why it failed and what to pass instead,
  no traceback and none of kazoo's own lines;
- on a terminal, the step under way shows on stderr while it lasts; off a terminal, nothing but the error.
"""

import importlib.metadata
import os
import pty
import select
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pki import Pki

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 2  # --timeout for ZooKeeper
# Python's start-up and imports on two busy cores, on top of the timeout; kazoo alone retried for 15 s.
STARTUP_ALLOWANCE = 8.0
HINT = "pass --state-dir DIR of a running sandbox, or --zookeeper HOST:PORT"
CLEAR_LINE = "\r\x1b[K"


def rackmesh(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "rackmesh", *args], capture_output=True, text=True, timeout=60,
                            env=env or clean_env())
    return result, time.monotonic() - started


def clean_env() -> dict[str, str]:
    """The caller's environment without rackmesh settings, so nothing but the arguments says where to go."""
    return {key: value for key, value in os.environ.items() if not key.startswith("RACKMESH_")}


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port bound but not listening: connections to it are refused, and no one else can take it."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


@pytest.fixture
def operator_dir(pki: Pki) -> Path:
    return pki.operator().directory


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0]
    assert "Traceback" not in result.stderr
    assert "kazoo" not in result.stderr.lower()
    return lines[0]


def test_version_is_the_distributions_which_is_pyprojects():
    result, _ = rackmesh("--version")
    assert result.returncode == 0, result
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert importlib.metadata.version("rackmesh") == declared
    assert result.stdout == f"rackmesh {declared}\n"


def test_status_refuses_a_state_dir_without_a_sandbox(tmp_path: Path):
    result, _ = rackmesh("status", "--state-dir", str(tmp_path))
    assert_one_clear_line(result, f"no sandbox state in {tmp_path}")


def test_status_without_a_certificate_says_where_it_looked_and_what_to_pass(tmp_path: Path):
    result, elapsed = rackmesh("status", "--identity-dir", str(tmp_path / "none"))
    line = assert_one_clear_line(result, f"no certificate for ZooKeeper and the agents in {tmp_path / 'none'}",
                                 "ca.crt, tls.crt, tls.key missing", HINT)
    assert line.startswith("rackmesh status: ")
    assert elapsed < STARTUP_ALLOWANCE


def test_status_reads_the_default_identity_dir_when_given_none(tmp_path: Path):
    env = {**clean_env(), "RACKMESH_IDENTITY_DIR": str(tmp_path / "pod-identity")}
    result, _ = rackmesh("status", env=env)
    assert_one_clear_line(result, f"in {tmp_path / 'pod-identity'} (", HINT)


def test_status_gives_up_on_a_refusing_zookeeper_within_its_timeout(refusing_port: int, operator_dir: Path):
    result, elapsed = rackmesh("status", "--zookeeper", f"127.0.0.1:{refusing_port}", "--identity-dir",
                               str(operator_dir), "--timeout", str(TIMEOUT))
    assert_one_clear_line(result, f"rackmesh status: could not connect to ZooKeeper at 127.0.0.1:{refusing_port} "
                                  f"within {TIMEOUT} s (", "Connection refused", HINT)
    assert TIMEOUT <= elapsed < TIMEOUT + STARTUP_ALLOWANCE


def test_status_names_a_host_that_does_not_resolve(operator_dir: Path):
    result, _ = rackmesh("status", "--zookeeper", "zookeeper.invalid:2181", "--identity-dir", str(operator_dir),
                         "--timeout", str(TIMEOUT))
    assert_one_clear_line(result, "could not connect to ZooKeeper at zookeeper.invalid:2181",
                          "Cannot resolve zookeeper.invalid")


def test_status_refuses_a_broken_connect_string(operator_dir: Path):
    result, _ = rackmesh("status", "--zookeeper", "zk:two", "--identity-dir", str(operator_dir))
    assert_one_clear_line(result, "'zk:two' is not a ZooKeeper connect string (HOST:PORT,...)")


def test_status_takes_a_sandbox_or_an_address_not_both(tmp_path: Path):
    result, _ = rackmesh("status", "--state-dir", str(tmp_path), "--zookeeper", "127.0.0.1:2181")
    assert_one_clear_line(result, "do not also pass --zookeeper or --identity-dir")


def test_status_on_a_terminal_shows_the_step_under_way_then_the_error(refusing_port: int, operator_dir: Path):
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "rackmesh", "status", "--zookeeper",
                                    f"127.0.0.1:{refusing_port}", "--identity-dir", str(operator_dir), "--timeout",
                                    str(TIMEOUT)], stdout=subprocess.DEVNULL, stderr=terminal, env=clean_env())
        os.close(terminal)
        shown = read_until_closed(controller, deadline=time.monotonic() + 60)
        assert process.wait(timeout=10) == 1
    finally:
        os.close(controller)
    assert f"rackmesh status: connecting to ZooKeeper at 127.0.0.1:{refusing_port}..." in shown
    # The progress line is taken away before the error, which stands on a line of its own.
    after_clearing = shown[shown.rindex(CLEAR_LINE) + len(CLEAR_LINE):]
    assert after_clearing.startswith("rackmesh status: could not connect to ZooKeeper")
    assert "Traceback" not in shown


def read_until_closed(fd: int, deadline: float) -> str:
    chunks = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal's other side
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()
