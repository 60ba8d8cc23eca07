"""Background processes the sandbox starts, and stopping exactly those later, from another process.

A process is identified by its pid *and* its start time (from /proc), so a recycled pid is
never mistaken for ours.
"""

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) follows the parenthesised command name, which may hold spaces.
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclasses.dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    start_ticks: int
    log: str
    # How to start it again (``rackmesh sandbox restart``); secrets live in files the environment names.
    argv: list[str] = dataclasses.field(default_factory=list)
    env: dict[str, str] = dataclasses.field(default_factory=dict)

    def alive(self) -> bool:
        return _start_ticks(self.pid) == self.start_ticks and running(self.pid)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "ProcessRecord":
        return cls(**raw)


def running(pid: int) -> bool:
    """The process exists and is not a zombie (one that nobody may ever reap counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> ProcessRecord:
    """Start a process that outlives us, in its own session, logging to ``log_dir/<name>.log`` (appended,
    so a restarted process continues its log)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    ticks = _start_ticks(process.pid)
    if ticks is None:
        raise RuntimeError(f"{name} exited at once; see {log}")
    return ProcessRecord(name, process.pid, ticks, str(log), list(argv), dict(env))


def stop(records: list[ProcessRecord], timeout: float = 10.0) -> list[str]:
    """SIGTERM our live processes, SIGKILL what remains after ``timeout``; returns the names killed hard."""
    live = [record for record in records if record.alive()]
    for record in live:
        _signal(record, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(record.alive() for record in live):
        time.sleep(0.05)
    killed = [record for record in live if record.alive()]
    for record in killed:
        _signal(record, signal.SIGKILL)
    while any(record.alive() for record in killed):
        time.sleep(0.05)
    return [record.name for record in killed]


def _signal(record: ProcessRecord, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, sig)
