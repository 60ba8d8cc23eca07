"""`make demo` end to end: the seed's request on the example topology, then everything stopped."""

import re
import sys

from tests.support.sandbox import run

TIMINGS = ["leader lookup (ZooKeeper)", "capacity handshake", "image lookup", "VM objects written", "all VMs ready"]


def test_demo_places_the_seed_request_reports_where_and_how_long_and_stops_everything():
    result = run([sys.executable, "-m", "rackmesh_sandbox.demo", "--topology", "examples/topology.yaml",
                  "--request", "examples/lob123.yaml"])
    out = result.stdout
    assert "deploymentrequest.rackmesh.io/lob123 created" in out
    assert any(line.split()[:4] == ["lob123", "50", "50", "Ready"] for line in out.splitlines())
    placements = re.findall(r"^  (rack-[abc]) +(c-[abc]-\d) +(\d+)$", out, re.MULTILINE)
    assert len(placements) == 9 and sum(int(count) for _, _, count in placements) == 50
    assert re.search(r"^  total +50$", out, re.MULTILINE)
    copies = re.findall(r"^  (rack-s\d) +(s-\w-\d) +(\d+)  (https://\S+/images/lob123-rhel-6.0.img)$", out,
                        re.MULTILINE)
    assert len({rack for rack, *_ in copies}) == 2 and sum(int(vms) for _, _, vms, _ in copies) == 50
    for label in TIMINGS:
        assert re.search(rf"^  {re.escape(label)} +\d+\.\d{{3}}$", out, re.MULTILINE), label
    assert "stopped" in result.stderr
