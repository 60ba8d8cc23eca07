"""The bench's plot.

Case matrix:
- a full result of two scales: a PNG is written, by ``plot`` and by the command line's ``main``
- scales missing some measurements (or all of them, or no scales at all): still a PNG, the gaps left out
- ``series`` picks the values a scale has, ordered by node count, and skips the rest
"""

import json

import pytest

from rackmesh_bench.plot import main, plot, series

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FULL = {
    "machine": {"cores": 2, "loadAverage": [1.5, 1.2, 0.9]},
    "scales": [
        {"nodes": 1000, "seed": {"handshake": {"p50": 0.11, "p99": 0.3}, "apiReads": 6},
         "central": {"decision": {"p50": 0.063}, "apiReads": 3}, "transportFloor": {"p50": 0.08}},
        {"nodes": 100, "seed": {"handshake": {"p50": 0.04, "p99": 0.1}, "apiReads": 6},
         "central": {"decision": {"p50": 0.009}, "apiReads": 3}, "transportFloor": {"p50": 0.03}},
    ],
}
PARTIAL = {
    "machine": {"cores": 2},
    "scales": [
        {"nodes": 100, "seed": {"handshake": {"p50": 0.04}}, "central": {"apiReads": 0}},
        {"nodes": 1000, "seed": {"apiReads": 6}, "transportFloor": None},
        {"nodes": 5000},
    ],
}


@pytest.mark.parametrize("results", [FULL, PARTIAL, {}], ids=["full", "partial", "nothing"])
def test_a_png_is_written(tmp_path, results):
    path = tmp_path / "bench.png"
    plot(results, path)
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_the_command_line_writes_a_png(tmp_path):
    source, path = tmp_path / "results.json", tmp_path / "bench.png"
    source.write_text(json.dumps(FULL))
    main([str(source), str(path)])
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_series_keeps_the_scales_that_have_the_value():
    assert series(FULL["scales"], "seed", "handshake", "p50") == ([100, 1000], [0.04, 0.11])
    assert series(PARTIAL["scales"], "seed", "handshake", "p99") == ([], [])
    assert series(PARTIAL["scales"], "central", "apiReads") == ([100], [0])
    assert series(PARTIAL["scales"], "transportFloor", "p50") == ([], [])
