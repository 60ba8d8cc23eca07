"""The session's sandbox for the end-to-end tests, started and stopped through the real CLI."""

from collections.abc import Iterator

import pytest

from tests.support.builders import make_topology
from tests.support.sandbox import Sandbox, start


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The issue's cluster: 3 compute racks x 3 nodes, 2 storage racks x 2 nodes (shared by the e2e tests)."""
    tmp_path = tmp_path_factory.mktemp("sandbox")
    running = start(tmp_path, make_topology().compute_racks(3, nodes=3).storage_racks(2, nodes=2).obj())
    yield running
    running.rackmesh("sandbox", "down", "--state-dir", str(running.state_dir))
