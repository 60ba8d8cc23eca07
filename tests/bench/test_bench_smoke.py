"""A short, bounded run of ``make bench`` (one rack of 25 compute nodes, 3 requests per case): the bench
runs end to end, writes its JSON and plot, and what it measures holds even at this size.

Case matrix: every case measured; no ZooKeeper session lost; no rack or agent left out of a decision;
API reads per request within the target; counts of messages and connections present.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.zookeeper


def test_a_small_bench_run_measures_every_case(tmp_path: Path):
    finished = subprocess.run([sys.executable, "-m", "rackmesh_bench.run", "--nodes", "25", "--requests", "3",
                               "--background", "200", "--out", str(tmp_path)],
                              capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    [result_file] = tmp_path.glob("bench-*.json")
    assert result_file.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    results = json.loads(result_file.read_text())
    assert results["machine"]["cores"] >= 1
    [scale] = results["scales"]
    assert scale["nodes"] == 25 and scale["sessionsLost"] == 0
    for case in ("seed", "seedWithVms"):
        measured = scale[case]
        assert measured["requests"] == 3 and measured["unanswered"] == []
        assert measured["handshake"]["p50"] > 0 and measured["criticalPath"]["p50"] > 0
        assert measured["apiReads"] <= 10
        assert measured["api"]["POST"] >= 50  # the VMs, and the request object
        assert measured["messagesPerRequest"] > 25  # at least an offer ask per agent
    assert scale["seedWithVms"]["vmsPresent"] == 200
    assert scale["central"]["apiReads"] >= 3  # Nodes, VMs, instancetypes: every one of them
    assert scale["transportFloor"]["agentsReached"] == [25]
    assert "bench-" in finished.stderr and "seed request" in finished.stderr  # progress while it runs
