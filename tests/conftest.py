"""Shared fixtures: the run's rackmesh CA, and real ZooKeeper servers (Debian's package) that speak mutual
TLS only, started once per session."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from rackmesh.identity.credentials import TlsFiles
from rackmesh.identity.names import Identity
from rackmesh_sandbox.zookeeper import ZooKeeperEnsemble, issue_server_tls
from tests.support.pki import Pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def zk_tls(pki: Pki) -> TlsFiles:
    """What a test's own ZooKeeper client presents: an agent's certificate (ZooKeeper names all agents alike)."""
    return pki.credentials(Identity.agent("test-client")).files


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ZooKeeperEnsemble]:
    """One standalone server shared by the tests; each test uses its own ZooKeeper root."""
    directory = tmp_path_factory.mktemp("zookeeper")
    with ZooKeeperEnsemble(directory, size=1, tls=issue_server_tls(pki.ca, directory / "tls")) as ensemble:
        yield ensemble


@pytest.fixture
def zk_root(request: pytest.FixtureRequest) -> str:
    """A ZooKeeper root private to this test, so tests sharing a server never see each other."""
    return "/test-" + request.node.name.replace("[", "-").replace("]", "").replace("/", "-")


@pytest.fixture
def zookeeper_ensemble(tmp_path: Path, pki: Pki) -> Iterator[ZooKeeperEnsemble]:
    """A fresh 3-server quorum for failover tests."""
    with ZooKeeperEnsemble(tmp_path / "zk", size=3, tls=issue_server_tls(pki.ca, tmp_path / "tls")) as ensemble:
        yield ensemble
