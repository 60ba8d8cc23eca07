"""The ZooKeeper manifests serve mutual TLS only, and their probes work with it.

Case matrix (each check on every install build: manifests/default and the kind overlay):
  - zoo.cfg (ZOO_SERVERS, ZOO_CFG_EXTRA): no plaintext client port anywhere, the TLS port is the one
    RACKMESH_ZK_HOSTS names, Netty, clientAuth=need, x509 provider, quorum TLS without port unification;
  - every key and trust store path lies in a volume mounted from the Secret rackmesh-zookeeper-tls (its
    keys tls.crt, tls.key, ca.crt) or the in-memory key store the container writes from it;
  - Services: only the TLS client port and the quorum ports; the AdminServer stays on loopback, unexposed;
  - the probes themselves, run against real ZooKeeper 3.8 servers with TLS and the AdminServer: a lone
    server of the three is alive but not ready, and ready once it has a quorum.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rackmesh.identity.authority import CertificateAuthority
from rackmesh_sandbox.zookeeper import ZooKeeperEnsemble, issue_server_tls
from tests.manifests.support import WORKLOAD_BUILDS, Doc, build, container, env, find, pod_spec
from tests.support.waiting import eventually

builds = pytest.mark.parametrize("directory", WORKLOAD_BUILDS)
SECRET = "rackmesh-zookeeper-tls"
NETTY = "org.apache.zookeeper.server.NettyServerCnxnFactory"
X509 = "org.apache.zookeeper.server.auth.X509AuthenticationProvider"


def zookeeper(directory: str) -> Doc:
    return find(build(directory), "StatefulSet", "zookeeper")


def zoo_cfg_extra(main: Doc) -> dict[str, str]:
    """ZOO_CFG_EXTRA as the image's entrypoint writes it: one zoo.cfg line per word."""
    lines = env(main, "ZOO_CFG_EXTRA")["value"].split()
    config = dict(line.split("=", 1) for line in lines)
    assert len(config) == len(lines), "a zoo.cfg key is set twice"
    return config


def mounted_from(statefulset: Doc, main: Doc, path: str) -> Doc:
    """The volume whose mount holds ``path``."""
    mounts = [m for m in main["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(mounts) == 1, f"{path} is in no single mount"
    volumes = {v["name"]: v for v in pod_spec(statefulset)["volumes"]}
    return volumes[mounts[0]["name"]]


@builds
def test_clients_get_a_tls_port_only(directory: str) -> None:
    main = container(zookeeper(directory), "zookeeper")
    config = zoo_cfg_extra(main)
    # A ";port" on a server line would be a plaintext client port, as clientPort would.
    assert all(";" not in server for server in env(main, "ZOO_SERVERS")["value"].split())
    assert "clientPort" not in config and "clientPortAddress" not in config
    assert config["secureClientPort"] == "2181"
    assert {p["name"]: p["containerPort"] for p in main["ports"]}["client-tls"] == 2181
    settings = find(build(directory), "ConfigMap", next(
        d["metadata"]["name"] for d in build(directory)
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("rackmesh-config")))
    assert {host.rsplit(":", 1)[1] for host in settings["data"]["RACKMESH_ZK_HOSTS"].split(",")} == {"2181"}


@builds
def test_tls_needs_a_client_certificate_and_names_clients_by_it(directory: str) -> None:
    config = zoo_cfg_extra(container(zookeeper(directory), "zookeeper"))
    assert config["serverCnxnFactory"] == NETTY  # NIO speaks no TLS
    assert config["authProvider.x509"] == X509
    assert config["ssl.clientAuth"] == "need"
    assert config["sslQuorum"] == "true"
    assert config["portUnification"] == "false"
    for prefix in ("ssl.", "ssl.quorum."):
        assert config[f"{prefix}keyStore.type"] == config[f"{prefix}trustStore.type"] == "PEM"
    # Peers check each other's names (ZooKeeper's default); clients are named by certificate instead.
    assert config.get("ssl.quorum.hostnameVerification", "true") == "true"


@builds
def test_stores_come_from_the_secret(directory: str) -> None:
    statefulset = zookeeper(directory)
    main = container(statefulset, "zookeeper")
    config = zoo_cfg_extra(main)
    script = " ".join(main["args"])
    for prefix in ("ssl.", "ssl.quorum."):
        trust_store = config[f"{prefix}trustStore.location"]
        secret = mounted_from(statefulset, main, trust_store)
        assert secret["secret"]["secretName"] == SECRET
        assert secret["secret"]["defaultMode"] == 0o440  # the zookeeper user reads it through fsGroup
        tls_dir = next(m["mountPath"] for m in main["volumeMounts"] if m["name"] == secret["name"])
        assert trust_store == f"{tls_dir}/ca.crt"
        # The PEM key store is the Secret's key and certificate in one file, written at start into memory.
        key_store = config[f"{prefix}keyStore.location"]
        assert mounted_from(statefulset, main, key_store)["emptyDir"]["medium"] == "Memory"
        assert f"cat {tls_dir}/tls.key {tls_dir}/tls.crt > {key_store}" in script

@builds
def test_services_expose_the_tls_client_port_and_not_the_admin_server(directory: str) -> None:
    docs = build(directory)
    main = container(zookeeper(directory), "zookeeper")
    assert zoo_cfg_extra(main)["admin.serverAddress"] == "127.0.0.1"
    ports = {
        name: {p["name"]: p["port"] for p in find(docs, "Service", name)["spec"]["ports"]}
        for name in ("zookeeper", "zookeeper-headless")
    }
    assert ports == {"zookeeper": {"client-tls": 2181},
                     "zookeeper-headless": {"client-tls": 2181, "server": 2888, "election": 3888}}
    assert 8080 not in {p["containerPort"] for p in main["ports"]}


def probe(main: Doc, kind: str, host: str, admin_port: int) -> bool:
    """Run the manifest's exec probe against a local server (its loopback AdminServer moved to ``host``
    and ``admin_port``, as the test servers share this machine)."""
    command = main[kind]["exec"]["command"]
    config = zoo_cfg_extra(main)
    here = [part.replace(f"/dev/tcp/{config['admin.serverAddress']}/{config['admin.serverPort']}",
                         f"/dev/tcp/{host}/{admin_port}") for part in command]
    assert here != command, "the probe does not ask the AdminServer"
    try:
        return subprocess.run(here, capture_output=True, timeout=main[kind]["timeoutSeconds"]).returncode == 0
    except subprocess.TimeoutExpired:  # the kubelet counts a probe past its timeoutSeconds as failed
        return False


@pytest.mark.zookeeper
def test_probes_against_real_tls_servers(tmp_path: Path) -> None:
    main = container(zookeeper("manifests/default"), "zookeeper")
    ca = CertificateAuthority.create()
    zk = ZooKeeperEnsemble(tmp_path / "zk", size=3, tls=issue_server_tls(ca, tmp_path / "tls"),
                           admin_server=True)
    first, second, _ = zk.servers
    try:
        first.start(wait=False)
        eventually(lambda: probe(main, "livenessProbe", first.host, first.admin_port), what="alive")
        assert not probe(main, "readinessProbe", first.host, first.admin_port)  # alone: no quorum
        second.start(wait=False)
        zk.wait_for_leader(members=[first, second])
        for server in (first, second):  # one leads, the other follows: both ready
            eventually(lambda s=server: probe(main, "readinessProbe", s.host, s.admin_port), what="ready")
    finally:
        zk.stop()
