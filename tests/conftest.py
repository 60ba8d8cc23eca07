"""Shared fixtures: real ZooKeeper servers (Debian's package), started once per session."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from rackmesh_sandbox.zookeeper import ZooKeeperEnsemble


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    """One standalone server shared by the tests; each test uses its own ZooKeeper root."""
    with ZooKeeperEnsemble(tmp_path_factory.mktemp("zookeeper"), size=1) as ensemble:
        yield ensemble


@pytest.fixture
def zk_root(request: pytest.FixtureRequest) -> str:
    """A ZooKeeper root private to this test, so tests sharing a server never see each other."""
    return "/test-" + request.node.name.replace("[", "-").replace("]", "").replace("/", "-")


@pytest.fixture
def zookeeper_ensemble(tmp_path: Path) -> Iterator[ZooKeeperEnsemble]:
    """A fresh 3-server quorum for failover tests."""
    with ZooKeeperEnsemble(tmp_path / "zk", size=3) as ensemble:
        yield ensemble
