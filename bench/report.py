"""The bench's results as Markdown tables (printed at the end of a run, and pasted into the READMEs).

    python -m rackmesh_bench.report bench/results/bench-<time>.json
"""

import argparse
import json
from pathlib import Path
from typing import Any


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _p(case: dict[str, Any], key: str) -> str:
    measured = case.get(key) or {}
    return f"{_s(measured.get('p50'))} ({_s(measured.get('p99'))})" if measured else "—"


def scales_table(results: dict[str, Any]) -> str:
    rows = ["| compute nodes | handshake p50 (p99), s | critical path p50, s | transport floor p50, s "
            "| order → Deploying p50, s | Deploying → all written p50, s | central decision p50, s "
            "| API reads / request (central) | messages / request | new connections / request "
            "| ZooKeeper reads / request | agents' CPU s / request | sessions lost |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for scale in results["scales"]:
        seed, central = scale["seed"], scale["central"]
        rows.append(
            f"| {scale['nodes']:,} | {_p(seed, 'handshake')} | {_s(seed['criticalPath']['p50'])} "
            f"| {_s(scale['transportFloor']['p50'])} | {_s(seed['orderToDeploying']['p50'])} "
            f"| {_s(seed['deployingToWritten']['p50'])} | {_s(central['decision']['p50'])} "
            f"| {seed['apiReads']} ({central['apiReads']}) | {seed['messagesPerRequest']:.0f} "
            f"| {seed['newConnections']['mean']:.1f} | {seed['zookeeper'].get('read', 0):.0f} "
            f"| {seed['cpuSeconds'].get('agents', 0):.2f} | {scale['sessionsLost']} |")
    return "\n".join(rows)


def present_table(results: dict[str, Any]) -> str:
    rows = ["| compute nodes | VMs present | handshake p50 (p99), s | ÷ with none | order → all written p50, s "
            "| API reads / request |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for scale in results["scales"]:
        present, none = scale["seedWithVms"], scale["seed"]
        ratio = present["handshake"]["p50"] / none["handshake"]["p50"]
        rows.append(f"| {scale['nodes']:,} | {present['vmsPresent']:,} | {_p(present, 'handshake')} | {ratio:.2f} "
                    f"| {_s(present['orderToWritten']['p50'])} | {present['apiReads']} |")
    return "\n".join(rows)


def big_table(results: dict[str, Any]) -> str:
    rows = ["| compute nodes | VMs | decision (handshake), s | order → Deploying, s | all objects written, s "
            "| API floor, s | written ÷ floor | VMs/s end to end | nodes used | messages | new connections |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for scale in results["scales"]:
        big = scale.get("big")
        if big is None:
            continue
        rows.append(f"| {scale['nodes']:,} | 10,000 | {_s(big['handshake'])} | {_s(big['orderToDeploying'])} "
                    f"| {_s(big['deployingToWritten'])} | {_s(big['apiFloor'])} "
                    f"| {big['deployingToWritten'] / big['apiFloor']:.2f} | {big['vmsPerSecond']:.0f} "
                    f"| {big['nodes']} | {sum(big['messages'].values())} | {big['newConnections']} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def targets_table(results: dict[str, Any]) -> str:
    rows = ["| target | limit | measured | met |", "| --- | ---: | ---: | :---: |"]
    rows += [f"| {row['target']} | {row['limit']} | {row['value']} | {'yes' if row['met'] else 'no'} |"
             for row in results["targets"]]
    return "\n".join(rows)


def report(results: dict[str, Any]) -> str:
    machine = results["machine"]
    head = (f"{machine['cores']} cores, load average {machine['loadAverageBefore'][0]:.2f} before and "
            f"{machine['loadAverageAfter'][0]:.2f} after; {results['settings']['requestsPerCase']} requests per case")
    parts = [head, scales_table(results), present_table(results), big_table(results), targets_table(results)]
    return "\n\n".join(part for part in parts if part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    print(report(json.loads(parser.parse_args().results.read_text())))


if __name__ == "__main__":
    main()
