"""The bench's plot: rackmesh beside the central baseline and the floors, against the compute node count.

Drawn on a bare ``Figure`` with the Agg canvas (no pyplot, no display), so it runs on headless machines
and CI. A result missing from one scale (a run cut short, a measurement that did not fit) leaves that
point out rather than losing the whole plot.

    python -m rackmesh_bench.plot bench/results/<run>.json bench/results/<run>.png
"""

import argparse
import json
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

Series = tuple[list[float], list[float]]


def series(scales: list[dict[str, Any]], *keys: str) -> Series:
    """(node counts, values) at ``keys`` in each scale, by node count; scales without that value are left out."""
    points = []
    for scale in scales:
        value: Any = scale
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        nodes = scale.get("nodes")
        if _is_number(value) and _is_number(nodes):
            points.append((nodes, value))
    points.sort()
    return [nodes for nodes, _ in points], [value for _, value in points]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def plot(results: dict[str, Any], path: Path) -> None:
    """Write the PNG: (a) handshake and decision seconds, (b) API reads per request, against node count."""
    scales = results.get("scales") or []
    figure = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(figure)
    seconds, reads = figure.subplots(1, 2)
    _draw(seconds, [
        ("rackmesh handshake p50", "o-", "C0", series(scales, "seed", "handshake", "p50")),
        ("rackmesh handshake p99", "o--", "C0", series(scales, "seed", "handshake", "p99")),
        ("central decision p50", "s-", "C1", series(scales, "central", "decision", "p50")),
        ("transport floor p50", "^:", "C2", series(scales, "transportFloor", "p50")),
        ("rackmesh critical path p50 (estimate: an agent per machine)", "d-.", "C3",
         series(scales, "seed", "criticalPath", "p50")),
    ])
    seconds.set_yscale("log")
    seconds.set_ylabel("seconds (wall, this machine)")
    seconds.set_title("(a) placement decision")
    most = _draw(reads, [
        ("rackmesh", "o-", "C0", series(scales, "seed", "apiReads")),
        ("central baseline", "s-", "C1", series(scales, "central", "apiReads")),
        ("central baseline: objects those reads return", "s:", "C1", series(scales, "central", "objectsRead")),
    ], label_points=True)
    reads.set_yscale("symlog", linthresh=1)  # counts from 0 to tens of thousands; 0 stays on the plot
    reads.set_ylim(0, max(most, 1) * 3)  # from 0, with room above for the labels
    reads.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # counts, not powers of ten
    reads.set_ylabel("API reads per request (VM writes not counted)")
    reads.set_title("(b) Kubernetes API reads")
    machine = results.get("machine") or {}
    load = machine.get("loadAverageBefore") or []
    figure.suptitle("rackmesh bench" + (f": {machine.get('cores')} cores" if machine.get("cores") else "")
                    + (f", load average {load[0]:.2f} at start" if load else ""))
    figure.savefig(path, format="png", dpi=100)


def _draw(axes: Axes, lines: list[tuple[str, str, str, Series]], label_points: bool = False) -> float:
    """Lines that have points, on a log node-count axis ticked at the measured scales; the largest value."""
    ticks: set[float] = set()
    most = 0.0
    for label, style, color, (nodes, values) in lines:
        if not nodes:
            continue
        axes.plot(nodes, values, style, color=color, label=label)
        ticks.update(nodes)
        most = max(most, *values)
        if label_points:
            for x, y in zip(nodes, values, strict=True):
                axes.annotate(f"{y:g}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center",
                              color=color, fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("compute nodes")
    axes.grid(True, which="both", alpha=0.3)
    if ticks:
        axes.set_xticks(sorted(ticks), labels=[f"{tick:g}" for tick in sorted(ticks)])
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.legend()
    return most


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rackmesh_bench.plot", description="Plot a rackmesh bench result.")
    parser.add_argument("results", type=Path, help="the bench's results JSON")
    parser.add_argument("png", type=Path, help="where to write the plot")
    args = parser.parse_args(argv)
    plot(json.loads(args.results.read_text()), args.png)


if __name__ == "__main__":
    main()
