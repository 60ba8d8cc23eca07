"""`make chaos`, bounded: a short randomized fault schedule against its own sandbox ends with no loss.

Case matrix: 15 s of kill -9 (agents, operator, a ZooKeeper server) and creates/scales/deletes, seed 1:
exit 0, and the table shows faults injected, VMs expected equal to present, 0 duplicates, 0 oversubscribed
nodes, 0 stuck requests.
"""

import sys

import pytest

from tests.support.sandbox import run

pytestmark = [pytest.mark.zookeeper]


def test_a_short_chaos_run_loses_nothing():
    result = run([sys.executable, "-m", "rackmesh_sandbox.chaos", "--topology", "examples/topology.yaml",
                  "--duration", "15", "--seed", "1"], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split("  ", 1) for line in result.stdout.splitlines() if "  " in line and not line.startswith("[")]
    table = {label.strip(): value.strip() for label, value in rows}
    assert "agent" in table["faults injected"] or "operator" in table["faults injected"]
    expected, present = table["VMs expected / present"].split(" / ")
    assert expected == present
    assert (table["duplicates"], table["oversubscribed nodes"], table["stuck requests"]) == ("0", "0", "0")
