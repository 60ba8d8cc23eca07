"""Start and stop real ZooKeeper servers (standalone, or a quorum on loopback) for the sandbox and the tests.

In-process use (tests, fixtures)::

    with ZooKeeperEnsemble(tmp_path, size=3) as zk:     # start() returns once a leader is elected
        client = KazooClient(hosts=zk.connect_string)
        zk.leader().kill()                               # failover: SIGKILL, then wait_for_leader()

Across processes (``rackmesh sandbox up`` / ``down``): ``up`` starts ``ZooKeeperEnsemble(..., detached=True)``
and saves ``ensemble.state()`` as JSON; ``down`` calls ``stop_from_state(state)``, which signals only the
pids that are still our QuorumPeerMain with our config file.

Each server lives in ``state_dir/zk<id>/`` (zoo.cfg, log4j.properties, server.log, data/). Stopping the
ensemble removes the data dirs and keeps the small config and log files for post-mortems.

With ``tls=`` (the CA, the servers' certificate and key; ``issue_server_tls`` makes them from rackmesh's
CA) the servers serve mutual TLS only: a Netty ``secureClientPort`` that needs a client certificate from
that CA, no plaintext client port, clients named by x509 (their certificate's subject), and TLS between
quorum peers. The harness asks for ``srvr`` through TLS too, presenting the servers' own certificate.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rackmesh.identity.authority import CertificateAuthority
from rackmesh.identity.credentials import Credentials, TlsFiles
from rackmesh.identity.names import Identity, Role
from rackmesh_sandbox.ports import stable_ports

MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
SERVING_MODES = frozenset({"standalone", "leader", "follower", "observer"})
DEBIAN_JAR = Path("/usr/share/java/zookeeper.jar")
# Debian's zookeeper.jar manifest pulls in its dependencies but no SLF4J binding: without these the
# server silently logs nothing at all.
DEBIAN_LOGGING_JARS = (Path("/usr/share/java/slf4j-log4j12.jar"), Path("/usr/share/java/log4j-1.2.jar"))
# Nor Netty's codec and resolver, which the Netty connection factory (the one that speaks TLS) needs, nor
# the servlet API the AdminServer's Jetty needs (libjetty9-java depends on it).
DEBIAN_EXTRA_JARS = (Path("/usr/share/java/netty-codec.jar"), Path("/usr/share/java/netty-resolver.jar"),
                     Path("/usr/share/java/servlet-api.jar"))
INSTALL_HINT = "install it with `apt-get install zookeeper`, or set ZOOKEEPER_HOME to an unpacked release"
STATE_KIND = "rackmesh-zookeeper/v1"
LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] %m%n
"""
# The sandbox starts its servers afresh each time, and ZooKeeper 3.8 never reloads its client-port certificate.
SERVER_CERT_LIFETIME = datetime.timedelta(days=365)


class ZooKeeperNotFound(RuntimeError):
    """Java or the ZooKeeper jars are missing."""


class ZooKeeperStartError(RuntimeError):
    """A server did not come up (the message carries the log tails)."""


@dataclass(frozen=True)
class Installation:
    java: str
    classpath: tuple[Path, ...]


def find_zookeeper(home: str | os.PathLike[str] | None = None) -> Installation:
    """Locate java and ZooKeeper: ``home`` / ``$ZOOKEEPER_HOME`` (release tarball layout), else Debian's."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home, "bin", "java")) if java_home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise ZooKeeperNotFound("no java in JAVA_HOME or PATH; install it with `apt-get install zookeeper`")
    home = home or os.environ.get("ZOOKEEPER_HOME")
    if home:
        root = Path(home)
        jars = sorted(root.glob("lib/*.jar")) + sorted(root.glob("zookeeper-*.jar"))
        if not any(jar.name.startswith("zookeeper-") for jar in jars):
            raise ZooKeeperNotFound(f"ZOOKEEPER_HOME={root} has no zookeeper-*.jar in lib/ or at its root; "
                                    + INSTALL_HINT)
        # conf/ carries the release's logback.xml (or log4j.properties), as zkEnv.sh does.
        return Installation(java, (root / "conf", *jars))
    if DEBIAN_JAR.is_file():
        extra = (jar for jar in (*DEBIAN_LOGGING_JARS, *DEBIAN_EXTRA_JARS) if jar.is_file())
        return Installation(java, (DEBIAN_JAR, *extra))
    raise ZooKeeperNotFound(f"ZooKeeper not found: ZOOKEEPER_HOME is unset and {DEBIAN_JAR} is missing; "
                            + INSTALL_HINT)


def issue_server_tls(ca: CertificateAuthority, directory: Path, hosts: Sequence[str] = ("127.0.0.1",),
                     lifetime: datetime.timedelta = SERVER_CERT_LIFETIME) -> TlsFiles:
    """A ZooKeeper server key and certificate from ``ca``, naming ``hosts`` (and localhost) so that clients
    checking the host name accept it; one certificate serves every server of a loopback ensemble."""
    addresses = [*dict.fromkeys(hosts), "localhost"]
    return Credentials.issued(ca, Identity(Role.ZOOKEEPER), directory, lifetime, addresses).files


def four_letter_word(host: str, port: int, command: str, timeout: float = 1.0,
                     tls: TlsFiles | None = None) -> str:
    """Send a four-letter command (``ruok``, ``srvr``, ``mntr``...) and return the whole answer; with
    ``tls``, through TLS, presenting ``tls``'s certificate (the secure port wants one from the CA)."""
    with socket.create_connection((host, port), timeout=timeout) as raw:
        sock = _tls_context(tls).wrap_socket(raw, server_hostname=host) if tls else raw
        with sock:
            sock.sendall(command.encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def server_mode(host: str, port: int, timeout: float = 1.0, tls: TlsFiles | None = None) -> str | None:
    """``standalone``/``leader``/``follower``/``observer``, or None when not serving or unreachable."""
    try:
        answer = four_letter_word(host, port, "srvr", timeout, tls)
    except OSError:  # ssl.SSLError too: a server still starting may drop the handshake
        return None
    for line in answer.splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return None


def _tls_context(tls: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The probe asks whether a server serves; whether its certificate names the address it is reached at
    # is the clients' check (kazoo's check_hostname), tested there.
    context.check_hostname = False
    context.load_verify_locations(tls.ca_file)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


class ZooKeeperServer:
    """One server of an ensemble: ``stop()``, ``kill()`` and ``start()`` it again to test failover."""

    def __init__(self, ensemble: ZooKeeperEnsemble, server_id: int, host: str, ports: Sequence[int]) -> None:
        self.ensemble = ensemble
        self.id = server_id
        self.host = host
        self.client_port, self.quorum_port, self.election_port, self.admin_port = ports
        self.dir = ensemble.state_dir / f"zk{server_id}"
        self.config_path = self.dir / "zoo.cfg"
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "server.log"
        # ZooKeeper's PEM key store reads the key and its certificate from one file.
        self.keystore_path = self.dir / "keystore.pem"
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<ZooKeeperServer {self.id} {self.address} pid={self.pid}>"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def mode(self) -> str | None:
        return server_mode(self.host, self.client_port, tls=self.ensemble.tls)

    def start(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Launch the JVM (same id, ports and data dir as before); with ``wait``, until it serves."""
        if not self.running():
            self._launch()
        if wait:
            _wait_until(lambda: self.mode() in SERVING_MODES, timeout, lambda: self._failure("serve"), [self])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds."""
        self._signal(signal.SIGTERM)
        self._reap(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self._signal(signal.SIGKILL)
        self._reap(10.0)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _launch(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "myid").write_text(f"{self.id}\n")
        if (tls := self.ensemble.tls) is not None:
            _write_private(self.keystore_path, tls.key_file.read_bytes() + tls.cert_file.read_bytes())
        self.config_path.write_text(self.ensemble.config_for(self))
        log4j = self.dir / "log4j.properties"
        log4j.write_text(LOG4J_PROPERTIES)
        install = self.ensemble.install
        command = [
            install.java, f"-Xmx{self.ensemble.heap_mb}m", "-Xms16m", "-Xss512k",
            # Small and quick to start: one GC thread, C1 only, no hsperfdata files in /tmp.
            "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.net.preferIPv4Stack=true", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration={log4j.as_uri()}",
            # A dead peer is noticed in 1 s instead of the default 5 s, so elections after a crash are fast.
            "-Dzookeeper.cnxTimeout=1000",
            # Throwaway data: no fsync per write, and 4 MiB instead of 64 MiB preallocated transaction logs.
            "-Dzookeeper.forceSync=no", "-Dzookeeper.preAllocSize=4096",
            "-cp", os.pathsep.join(map(str, install.classpath)), MAIN_CLASS, str(self.config_path),
        ]
        with self.log_path.open("ab") as log:
            # Own session/process group: a Ctrl-C in the terminal or the test runner does not hit the JVM
            # first, and a detached ensemble outlives `rackmesh sandbox up`.
            self._process = subprocess.Popen(command, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)

    def _signal(self, sig: signal.Signals) -> None:
        if self.running():
            assert self._process is not None
            self._process.send_signal(sig)

    def _reap(self, timeout: float) -> None:
        if self._process is None:
            return
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _failure(self, what: str) -> str:
        state = "running" if self.running() else f"exited with {self._process and self._process.returncode}"
        return f"ZooKeeper server {self.id} ({self.address}, {state}) did not {what}; {self.log_path}:\n" \
               f"{self.log_tail()}"


class ZooKeeperEnsemble:
    """``size`` real ZooKeeper servers: 1 is a standalone server, 3 (or 5) a quorum on loopback."""

    def __init__(
        self, state_dir: str | os.PathLike[str], size: int = 1, *, hosts: Sequence[str] | None = None,
        tick_time_ms: int = 200, heap_mb: int = 128, start_timeout: float = 30.0, detached: bool = False,
        zookeeper_home: str | os.PathLike[str] | None = None, tls: TlsFiles | None = None,
        admin_server: bool = False,
    ) -> None:
        """``hosts``: one loopback address per server (default all 127.0.0.1, distinct free ports).
        ``detached``: keep the servers running when this Python process exits (for ``sandbox up``).
        ``tls``: serve mutual TLS only, with this CA, server certificate and key (every server presents
        the same one, so it must name every host: ``issue_server_tls``).
        ``admin_server``: each server's AdminServer (HTTP) on its host at ``admin_port``, as the
        manifests' probes use it."""
        hosts = list(hosts) if hosts else ["127.0.0.1"] * size
        if size < 1 or len(hosts) != size:
            raise ValueError(f"size must be >= 1 and match the {len(hosts)} hosts given")
        self.install = find_zookeeper(zookeeper_home)
        self.state_dir = Path(state_dir).absolute()
        self.tick_time_ms = tick_time_ms
        self.heap_mb = heap_mb
        self.start_timeout = start_timeout
        self.detached = detached
        self.tls = tls
        self.admin_server = admin_server
        self.servers = [ZooKeeperServer(self, i, ip, stable_ports(ip, 4)) for i, ip in enumerate(hosts, 1)]

    def __enter__(self) -> ZooKeeperEnsemble:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def connect_string(self) -> str:
        return ",".join(server.address for server in self.servers)

    def config_for(self, server: ZooKeeperServer) -> str:
        tick = self.tick_time_ms
        lines = [
            f"tickTime={tick}",
            # Generous sync windows (in ticks) so a loaded 2-core CI box does not drop followers.
            "initLimit=50", "syncLimit=15",
            f"dataDir={server.data_dir}",
            # Clients may ask for sessions from 2 ticks up to 60 s (kazoo's default is 10 s).
            f"minSessionTimeout={2 * tick}", "maxSessionTimeout=60000",
            "maxClientCnxns=0",  # many agents of one simulated cluster share 127.0.0.1
            "4lw.commands.whitelist=*",
            *([f"admin.serverAddress={server.host}", f"admin.serverPort={server.admin_port}"]
              if self.admin_server else ["admin.enableServer=false"]),
        ]
        if self.tls is None:
            lines += [f"clientPortAddress={server.host}", f"clientPort={server.client_port}"]
        else:
            lines += [f"secureClientPortAddress={server.host}", f"secureClientPort={server.client_port}",
                      *self._tls_config(server)]
        if len(self.servers) > 1:
            lines += [f"server.{s.id}={s.host}:{s.quorum_port}:{s.election_port}" for s in self.servers]
        return "\n".join(lines) + "\n"

    def _tls_config(self, server: ZooKeeperServer) -> list[str]:
        """Mutual TLS for clients (x509-authenticated: a session's id is its certificate's subject) and,
        in a quorum, between peers; both trust only ``tls.ca_file``."""
        assert self.tls is not None
        stores = [f"keyStore.location={server.keystore_path}", "keyStore.type=PEM",
                  f"trustStore.location={self.tls.ca_file}", "trustStore.type=PEM"]
        lines = [
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",  # NIO has no TLS
            "authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider",
            "ssl.clientAuth=need",
            # A client's certificate names its identity, not the address it connects from.
            "ssl.hostnameVerification=false",
            *(f"ssl.{line}" for line in stores),
        ]
        if len(self.servers) > 1:
            # Peers do check each other's address against the certificate (ZooKeeper's default).
            lines += ["sslQuorum=true", "portUnification=false", *(f"ssl.quorum.{line}" for line in stores)]
        return lines

    def start(self) -> ZooKeeperEnsemble:
        """Launch every server; return once all serve (a quorum: with exactly one leader)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            for server in self.servers:
                server.start(wait=False)
            self.wait_for_leader(self.start_timeout, self.servers)
        except BaseException:
            self.stop()
            raise
        if not self.detached:  # never leave JVMs behind a test run that forgot to stop us
            atexit.unregister(self.stop)
            atexit.register(self.stop)
        return self

    def leader(self) -> ZooKeeperServer | None:
        """The leader (or the standalone server), by asking each server."""
        modes = {server: server.mode() for server in self.servers}
        return next((s for s, mode in modes.items() if mode in ("leader", "standalone")), None)

    def wait_for_leader(self, timeout: float = 30.0,
                        members: Sequence[ZooKeeperServer] | None = None) -> ZooKeeperServer:
        """Wait until every server of ``members`` (default: the running ones) serves, exactly one leading."""
        group = list(members) if members is not None else [s for s in self.servers if s.running()]

        def settled() -> bool:
            modes = [server.mode() for server in group]
            return all(mode in SERVING_MODES for mode in modes) and (
                len(self.servers) == 1 or modes.count("leader") == 1)

        _wait_until(settled, timeout, lambda: self._failure(group), group)
        leader = self.leader()
        assert leader is not None
        return leader

    def stop(self, timeout: float = 10.0, keep_data: bool = False) -> None:
        """Stop every server (SIGTERM all, then SIGKILL stragglers) and remove the data dirs."""
        atexit.unregister(self.stop)
        for server in self.servers:
            server._signal(signal.SIGTERM)
        for server in self.servers:
            server._reap(timeout)
        if not keep_data:
            for server in self.servers:
                shutil.rmtree(server.data_dir, ignore_errors=True)

    def state(self) -> dict[str, Any]:
        """A JSON-serializable description of the running servers, for ``stop_from_state``."""
        return {
            "kind": STATE_KIND,
            "state_dir": str(self.state_dir),
            "connect_string": self.connect_string,
            "tls": {name: str(path) for name, path in vars(self.tls).items()} if self.tls else None,
            "servers": [
                {"id": s.id, "pid": s.pid if s.running() else None, "host": s.host,
                 "client_port": s.client_port, "quorum_port": s.quorum_port, "election_port": s.election_port,
                 "dir": str(s.dir), "config": str(s.config_path), "data_dir": str(s.data_dir),
                 "log": str(s.log_path)}
                for s in self.servers
            ],
        }

    def _failure(self, group: Sequence[ZooKeeperServer]) -> str:
        modes = ", ".join(f"{s.id}={s.mode()}" for s in group)
        details = "\n\n".join(s._failure("join") for s in group if s.mode() not in SERVING_MODES)
        return f"ZooKeeper ensemble in {self.state_dir} not ready (modes: {modes})\n\n{details}"


def stop_from_state(state: dict[str, Any], timeout: float = 10.0, keep_data: bool = False) -> None:
    """Stop the servers that ``ZooKeeperEnsemble.state()`` described, possibly from another process.

    A pid is signalled only while /proc says it is still QuorumPeerMain running our config file, so a
    recycled pid or a server stopped already is left alone."""
    if state.get("kind") != STATE_KIND:
        raise ValueError(f"not a ZooKeeper ensemble state: {state.get('kind')!r}")
    ours = [(s["pid"], s["config"]) for s in state["servers"] if s.get("pid")]
    ours = [(pid, config) for pid, config in ours if _is_our_server(pid, config)]
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        for pid, config in ours:
            if _is_our_server(pid, config):
                with contextlib.suppress(ProcessLookupError):  # it may exit between the check and the kill
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while any(_is_our_server(*server) for server in ours) and time.monotonic() < deadline:
            time.sleep(0.05)
    for pid, _ in ours:
        with contextlib.suppress(ChildProcessError):  # reap it if we happen to be the process that started it
            os.waitpid(pid, os.WNOHANG)
    if not keep_data:
        root = Path(state["state_dir"])
        for server in state["servers"]:
            data_dir = Path(server["data_dir"])
            if data_dir.is_relative_to(root):  # never delete outside the ensemble's own directory
                shutil.rmtree(data_dir, ignore_errors=True)


def _write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, from the moment it exists."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


def _is_our_server(pid: int, config: str) -> bool:
    """Whether ``pid`` is alive (not a zombie) and is QuorumPeerMain running ``config``."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return status != "Z" and MAIN_CLASS.encode() in argv and config.encode() in argv


def _wait_until(
    condition: Callable[[], bool], timeout: float, describe: Callable[[], str],
    servers: Sequence[ZooKeeperServer],
) -> None:
    """Poll ``condition`` until true; fail early, with log tails, if one of ``servers`` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while not condition():
        dead = [s for s in servers if not s.running()]
        if dead or time.monotonic() > deadline:
            raise ZooKeeperStartError(describe() if not dead else dead[0]._failure("stay up"))
        time.sleep(0.05)
