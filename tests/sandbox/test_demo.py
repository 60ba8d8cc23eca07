"""`make demo` end to end: the seed's request on the example topology, then everything stopped."""

import sys

from tests.support.sandbox import run


def test_demo_applies_the_seed_request_shows_racks_and_stops_everything():
    result = run([sys.executable, "-m", "rackmesh_sandbox.demo", "--topology", "examples/topology.yaml",
                  "--request", "examples/lob123.yaml"])
    assert "deploymentrequest.rackmesh.io/lob123 created" in result.stdout
    assert any(line.split()[:4] == ["lob123", "50", "0", "Pending"] for line in result.stdout.splitlines())
    assert sum(line.startswith("compute ") for line in result.stdout.splitlines()) == 3
    assert "phase timings:" in result.stdout
    assert "stopped" in result.stderr
