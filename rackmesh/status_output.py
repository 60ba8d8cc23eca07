"""How ``rackmesh status`` shows a ``MeshStatus``: a table grouped by rack for people, JSON for scripts, and
a progress line on stderr while it is being read."""

import asyncio
import time
from typing import Any, TextIO

from rackmesh.labels import Role
from rackmesh.quantities import Resources
from rackmesh.request_record import IN_FLIGHT
from rackmesh.status_view import AgentReport, MeshStatus, NodeStatus, RackStatus, RequestStatus

_BINARY_UNITS = (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
# A step is shown only once it has taken this long: a quick status prints nothing but its answer.
PROGRESS_DELAY = 0.5


def table(status: MeshStatus, now: float | None = None) -> str:
    """Each rack (its leaders, then a row per member), then the requests."""
    now = time.time() if now is None else now
    blocks = [_rack(rack) for rack in status.racks] or [f"no rackmesh members in ZooKeeper at {status.zookeeper}"]
    blocks.append(_requests(status.requests, now))
    return "\n\n".join(blocks)


def as_json(status: MeshStatus) -> dict[str, Any]:
    return {
        "zookeeper": status.zookeeper,
        "racks": [{"rack": rack.rack, "leaders": {str(role): node for role, node in rack.leaders.items()},
                   "members": [_node_json(node) for node in rack.nodes]} for rack in status.racks],
        "requests": [_request_json(request) for request in status.requests],
    }


class Progress:
    """The step under way, on one line of a terminal, once it has taken more than ``PROGRESS_DELAY``; nothing
    when the stream is not a terminal, so a script's stderr holds only what went wrong."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._enabled = stream.isatty()
        self._pending: asyncio.TimerHandle | None = None
        self._shown = False

    def say(self, step: str) -> None:
        """The step now under way (call from the event loop)."""
        if not self._enabled:
            return
        if self._pending is not None:
            self._pending.cancel()
        if self._shown:
            self._show(step)
        else:
            self._pending = asyncio.get_running_loop().call_later(PROGRESS_DELAY, self._show, step)

    def clear(self) -> None:
        """Take the line away, before the answer or an error is printed."""
        if self._pending is not None:
            self._pending.cancel()
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False

    def _show(self, step: str) -> None:
        self._stream.write(f"\r\x1b[Krackmesh status: {step}...")
        self._stream.flush()
        self._shown = True


def _rack(rack: RackStatus) -> str:
    leaders = ", ".join(f"{role} {node or '<none>'}" for role, node in rack.leaders.items())
    rows = [["NODE", "ROLES", "LEADS", "FREE CPU", "FREE MEMORY", "RESERVATIONS"]]
    rows += [_node_row(node) for node in rack.nodes]
    return f"RACK {rack.rack}   leaders: {leaders}\n" + _aligned(rows, indent="  ")


def _node_row(node: NodeStatus) -> list[str]:
    cells = [node.node, ",".join(node.roles), ",".join(node.leads) or "-"]
    report = node.report
    if report is None:
        return [*cells, f"<{node.problem}>"]
    if Role.COMPUTE not in node.roles:  # room on a storage-only node hosts no VMs
        return [*cells, "-", "-", "-"]
    cpu, memory = _of(report.free, report.allocatable)
    return [*cells, cpu, memory, _held(report)]


def _of(free: Resources, allocatable: Resources) -> tuple[str, str]:
    return (f"{_cpu(free.cpu_millis)} of {_cpu(allocatable.cpu_millis)}",
            f"{_memory(free.memory_bytes)} of {_memory(allocatable.memory_bytes)}")


def _held(report: AgentReport) -> str:
    held = [f"{entry.request} ({', '.join(_counts(entry.offered, entry.committed))}, "
            f"{entry.expires_in_seconds:g}s left)" for entry in report.reservations]
    if report.gone:
        held.insert(0, "Node gone: offers no room")
    return "; ".join(held) or "-"


def _counts(offered: int, committed: int) -> list[str]:
    return [text for count, text in ((offered, f"{offered} offered"), (committed, f"{committed} committed")) if count]


def _requests(requests: list[RequestStatus], now: float) -> str:
    if not requests:
        return "no requests in ZooKeeper"
    in_flight = sum(request.stage in IN_FLIGHT for request in requests)
    rows = [["REQUEST", "STAGE", "COORDINATOR", "VMS", "SINCE", "NOTE"]]
    rows += [[request.request or request.uid, request.stage, request.coordinator or "-",
              f"{request.placed}/{request.replicas}", _age(now - request.changed_at) if request.changed_at else "-",
              _note(request)] for request in requests]
    return f"REQUESTS   {in_flight} in flight, {len(requests)} recorded\n" + _aligned(rows, indent="  ")


def _note(request: RequestStatus) -> str:
    parts = [f"{request.reason}: {request.message}" if request.reason else request.message]
    if request.unanswered:
        parts.append(f"placed without {', '.join(request.unanswered)}")
    return "; ".join(part for part in parts if part)


def _aligned(rows: list[list[str]], indent: str) -> str:
    """Columns padded to their widest cell; a row's last cell is never padded nor counted, so a long note or a
    problem that stands for the rest of a row does not widen the columns."""
    widths: dict[int, int] = {}
    for row in rows:
        for index, cell in enumerate(row[:-1]):
            widths[index] = max(widths.get(index, 0), len(cell))
    lines = ["  ".join([*(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])), row[-1]]).rstrip()
             for row in rows]
    return "\n".join(indent + line for line in lines)


def _cpu(millis: int) -> str:
    return f"{millis // 1000}" if millis % 1000 == 0 else f"{millis / 1000:g}"


def _memory(size: int) -> str:
    for unit, factor in _BINARY_UNITS:
        if abs(size) >= factor:
            return f"{size // factor}{unit}" if size % factor == 0 else f"{size / factor:.1f}{unit}"
    return str(size)


def _age(seconds: float) -> str:
    """As kubectl shows an age."""
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * length:
            return f"{int(seconds // length)}{unit}"
    return f"{max(0, int(seconds))}s"


def _node_json(node: NodeStatus) -> dict[str, Any]:
    entry: dict[str, Any] = {"node": node.node, "endpoint": node.endpoint, "roles": [str(r) for r in node.roles],
                             "leads": [str(r) for r in node.leads], "answered": node.report is not None}
    if node.report is None:
        entry["problem"] = node.problem
        return entry
    return {**entry, "allocatable": node.report.allocatable.to_json(), "free": node.report.free.to_json(),
            "gone": node.report.gone,
            "reservations": [{"request": held.request, "offered": held.offered, "committed": held.committed,
                              "expiresInSeconds": held.expires_in_seconds} for held in node.report.reservations]}


def _request_json(request: RequestStatus) -> dict[str, Any]:
    return {"request": request.request, "uid": request.uid, "stage": request.stage,
            "coordinator": request.coordinator, "replicas": request.replicas, "placed": request.placed,
            "reason": request.reason, "message": request.message, "unanswered": request.unanswered,
            "changedAt": request.changed_at}
