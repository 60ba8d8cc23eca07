"""ZooKeeper with mutual TLS and x509 ACLs, against real servers.

Who connects, and what they get (one standalone TLS server shared by the module, a 3-server TLS quorum):

| client                                         | connects | under /rackmesh                 |
| ---------------------------------------------- | -------- | ------------------------------- |
| no TLS at all                                  | no       | -                               |
| TLS, no client certificate                     | no       | -                               |
| agent, server certificate for another address  | no       | -                               |
| TLS, agent certificate from another CA         | no       | -                               |
| TLS, rackmesh CA, not agent/operator (ZK's)    | yes      | nothing: read, create, setACL   |
| agent / operator (``start_client(tls=...)``)   | yes      | everything, each other's nodes  |

and every node a rackmesh client makes, parents included, carries exactly the two x509 ids.
"""

from __future__ import annotations

import datetime
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.security import ACL, Id

from rackmesh import zk_async
from rackmesh.identity.authority import CertificateAuthority
from rackmesh.identity.credentials import Credentials, TlsFiles
from rackmesh.identity.names import Identity, Role
from rackmesh.zk_acl import rackmesh_acl
from rackmesh_sandbox.zookeeper import ZooKeeperEnsemble, issue_server_tls, server_mode

pytestmark = pytest.mark.zookeeper

SESSION_TIMEOUT = 4.0
LIFETIME = datetime.timedelta(hours=1)
AGENT_ID = Id("x509", "CN=agent,OU=rackmesh")
OPERATOR_ID = Id("x509", "CN=operator,OU=rackmesh")
# A refused client never connects: kazoo retries until this deadline, so keep it short.
REFUSED_WITHIN = 2.0


def credentials(ca: CertificateAuthority, identity: Identity, directory: Path) -> TlsFiles:
    installed = Credentials(identity, directory, ca.cert_pem)
    installed.install(*ca.issue(identity, LIFETIME))
    return installed.files


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create()


@pytest.fixture(scope="module")
def secure_zookeeper(ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory,
                     ) -> Iterator[ZooKeeperEnsemble]:
    root = tmp_path_factory.mktemp("zookeeper-tls")
    with ZooKeeperEnsemble(root / "zk", tls=issue_server_tls(ca, root / "server-tls")) as ensemble:
        yield ensemble


@pytest.fixture(scope="module")
def agent_tls(ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return credentials(ca, Identity.agent("c-a-1"), tmp_path_factory.mktemp("agent"))


@pytest.fixture(scope="module")
def operator_tls(ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return credentials(ca, Identity(Role.OPERATOR), tmp_path_factory.mktemp("operator"))


@pytest.fixture
async def agent(secure_zookeeper: ZooKeeperEnsemble, agent_tls: TlsFiles) -> AsyncIterator[KazooClient]:
    client = await zk_async.start_client(secure_zookeeper.connect_string, SESSION_TIMEOUT, tls=agent_tls)
    yield client
    await zk_async.stop_client(client)


@pytest.fixture
async def operator(secure_zookeeper: ZooKeeperEnsemble, operator_tls: TlsFiles) -> AsyncIterator[KazooClient]:
    client = await zk_async.start_client(secure_zookeeper.connect_string, SESSION_TIMEOUT, tls=operator_tls)
    yield client
    await zk_async.stop_client(client)


@pytest.fixture
def outsider(secure_zookeeper: ZooKeeperEnsemble) -> Iterator[KazooClient]:
    """Connected with a certificate from rackmesh's CA that is neither an agent's nor the operator's: the
    servers' own (the closest an attacker with some valid certificate gets)."""
    tls = secure_zookeeper.tls
    assert tls is not None
    client = kazoo_tls(secure_zookeeper, tls.ca_file, tls.cert_file, tls.key_file)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()


def kazoo_tls(zk: ZooKeeperEnsemble, ca_file: Path, cert_file: Path | None = None,
              key_file: Path | None = None) -> KazooClient:
    return KazooClient(hosts=zk.connect_string, timeout=SESSION_TIMEOUT, use_ssl=True, ca=str(ca_file),
                       certfile=cert_file and str(cert_file), keyfile=key_file and str(key_file),
                       verify_certs=True, check_hostname=True)


def refused(client: KazooClient) -> bool:
    try:
        client.start(timeout=REFUSED_WITHIN)
    except KazooTimeoutError:
        return True
    finally:
        client.stop()
        client.close()
    return False


def tls_handshake(zk: ZooKeeperEnsemble, ca_file: Path, cert_file: Path | None = None,
                  key_file: Path | None = None) -> bytes:
    """A TLS session with the server asking ``srvr``: its answer, or ssl.SSLError when refused (in TLS 1.2,
    which ZooKeeper 3.8 speaks, a missing or untrusted client certificate fails the handshake itself)."""
    (server,) = zk.servers
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert_file and key_file:
        context.load_cert_chain(cert_file, key_file)
    with socket.create_connection((server.host, server.client_port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=server.host) as sock:
        sock.sendall(b"srvr")
        return sock.recv(4096)


def test_only_a_secure_client_port_is_served(secure_zookeeper: ZooKeeperEnsemble) -> None:
    (server,) = secure_zookeeper.servers
    config = server.config_path.read_text().splitlines()
    assert f"secureClientPort={server.client_port}" in config
    assert not [line for line in config if line.startswith(("clientPort=", "clientPortAddress="))]
    assert server.mode() == "standalone"  # srvr through TLS with the servers' certificate
    assert server_mode(server.host, server.client_port) is None  # in plaintext: nothing
    assert refused(KazooClient(hosts=secure_zookeeper.connect_string, timeout=SESSION_TIMEOUT))


def test_a_client_without_a_certificate_is_refused(secure_zookeeper: ZooKeeperEnsemble) -> None:
    tls = secure_zookeeper.tls
    assert tls is not None
    with pytest.raises(ssl.SSLError, match="BAD_CERTIFICATE"):
        tls_handshake(secure_zookeeper, tls.ca_file)
    assert refused(kazoo_tls(secure_zookeeper, tls.ca_file))


def test_a_certificate_from_another_ca_is_refused(secure_zookeeper: ZooKeeperEnsemble, tmp_path: Path) -> None:
    tls = secure_zookeeper.tls
    assert tls is not None
    # The same subject and names as a real agent's, signed by a CA the servers do not trust.
    forged = credentials(CertificateAuthority.create(), Identity.agent("c-a-1"), tmp_path / "forged")
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_UNKNOWN"):
        tls_handshake(secure_zookeeper, tls.ca_file, forged.cert_file, forged.key_file)
    assert refused(kazoo_tls(secure_zookeeper, tls.ca_file, forged.cert_file, forged.key_file))


async def test_clients_refuse_a_server_whose_certificate_does_not_name_its_address(
    ca: CertificateAuthority, agent_tls: TlsFiles, tmp_path: Path,
) -> None:
    elsewhere = issue_server_tls(ca, tmp_path / "server-tls", hosts=["127.0.0.9"])
    with ZooKeeperEnsemble(tmp_path / "zk", tls=elsewhere) as zk:  # served at 127.0.0.1
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
            tls_handshake(zk, agent_tls.ca_file, agent_tls.cert_file, agent_tls.key_file)
        with pytest.raises(KazooTimeoutError):
            await zk_async.start_client(zk.connect_string, SESSION_TIMEOUT, REFUSED_WITHIN, tls=agent_tls)


async def test_agents_and_the_operator_share_everything_under_rackmesh(agent: KazooClient,
                                                                       operator: KazooClient) -> None:
    records = "/rackmesh/requests/default"
    agent.create(f"{records}/by-agent", b"offer", makepath=True)
    operator.create(f"{records}/by-operator", b"plan", makepath=True)
    assert operator.get(f"{records}/by-agent")[0] == b"offer"
    assert agent.get(f"{records}/by-operator")[0] == b"plan"
    assert sorted(agent.get_children(records)) == ["by-agent", "by-operator"]
    operator.set(f"{records}/by-agent", b"taken")
    # Each deletes what the other wrote (the operator deletes the records agents wrote).
    operator.delete(f"{records}/by-agent")
    agent.delete(f"{records}/by-operator")
    assert agent.get_children(records) == []
    agent.delete(records)


async def test_every_node_and_its_parents_get_exactly_the_rackmesh_acl(agent: KazooClient,
                                                                      operator: KazooClient) -> None:
    assert {acl.id for acl in rackmesh_acl()} == {AGENT_ID, OPERATOR_ID}
    expected = [ACL(31, AGENT_ID), ACL(31, OPERATOR_ID)]
    agent.create("/rackmesh/acl-test/made/by/makepath", b"", makepath=True)
    operator.ensure_path("/rackmesh/acl-test/ensured/path")
    agent.create("/rackmesh/acl-test/ephemeral-", b"", ephemeral=True, sequence=True)
    made = ["/rackmesh", "/rackmesh/acl-test", "/rackmesh/acl-test/made", "/rackmesh/acl-test/made/by",
            "/rackmesh/acl-test/made/by/makepath", "/rackmesh/acl-test/ensured",
            "/rackmesh/acl-test/ensured/path",
            *(f"/rackmesh/acl-test/{child}" for child in agent.get_children("/rackmesh/acl-test")
              if child.startswith("ephemeral-"))]
    for path in made:
        acls, _ = operator.get_acls(path)
        assert sorted(acls, key=str) == sorted(expected, key=str), path


async def test_an_outsider_can_neither_read_nor_write_under_rackmesh(agent: KazooClient,
                                                                    outsider: KazooClient) -> None:
    agent.ensure_path("/rackmesh/leaders/compute")
    agent.create("/rackmesh/leaders/compute/rack-a", b"c-a-1:8443", ephemeral=True)
    # The attack: a client that is not rackmesh's registering itself as a rack's leader.
    with pytest.raises(NoAuthError):
        outsider.create("/rackmesh/leaders/compute/rack-evil", b"evil:8443")
    with pytest.raises(NoAuthError):
        outsider.create("/rackmesh/leaders/compute/rack-evil", b"evil:8443", makepath=True)
    with pytest.raises(NoAuthError):
        outsider.get("/rackmesh/leaders/compute/rack-a")
    with pytest.raises(NoAuthError):
        outsider.get_children("/rackmesh/leaders/compute")
    with pytest.raises(NoAuthError):
        outsider.set("/rackmesh/leaders/compute/rack-a", b"evil:8443")
    with pytest.raises(NoAuthError):
        outsider.delete("/rackmesh/leaders/compute/rack-a")
    with pytest.raises(NoAuthError):  # nor open the ACL up
        outsider.set_acls("/rackmesh", [ACL(31, Id("world", "anyone"))])
    assert agent.get_children("/rackmesh/leaders/compute") == ["rack-a"]


async def test_without_tls_the_client_is_plain_and_its_nodes_open(tmp_path: Path) -> None:
    with ZooKeeperEnsemble(tmp_path / "zk") as plain:
        client = await zk_async.start_client(plain.connect_string, SESSION_TIMEOUT)
        try:
            client.create("/rackmesh/open", b"", makepath=True)
            assert client.get_acls("/rackmesh/open")[0] == [ACL(31, Id("world", "anyone"))]
        finally:
            await zk_async.stop_client(client)


async def test_a_tls_quorum_elects_a_leader_and_serves_rackmesh_clients(
    ca: CertificateAuthority, agent_tls: TlsFiles, tmp_path: Path,
) -> None:
    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    tls = issue_server_tls(ca, tmp_path / "server-tls", hosts)
    with ZooKeeperEnsemble(tmp_path / "zk", size=3, hosts=hosts, tls=tls) as zk:
        assert sorted(s.mode() or "" for s in zk.servers) == ["follower", "follower", "leader"]
        assert all("sslQuorum=true" in s.config_path.read_text() for s in zk.servers)
        assert "Using TLS encrypted quorum communication" in zk.servers[0].log_path.read_text()
        assert zk.state()["tls"] == {"ca_file": str(tls.ca_file), "cert_file": str(tls.cert_file),
                                     "key_file": str(tls.key_file)}
        writer = await zk_async.start_client(zk.servers[0].address, SESSION_TIMEOUT, tls=agent_tls)
        reader = await zk_async.start_client(zk.servers[2].address, SESSION_TIMEOUT, tls=agent_tls)
        try:
            writer.create("/rackmesh/members/c-a-1", b"up", makepath=True, ephemeral=True)
            reader.sync("/rackmesh/members/c-a-1")  # the quorum carried it to the other server
            assert reader.get("/rackmesh/members/c-a-1")[0] == b"up"
        finally:
            await zk_async.stop_client(writer)
            await zk_async.stop_client(reader)
