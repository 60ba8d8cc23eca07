"""The ``rackmesh`` command: run the operator or an agent, drive the local sandbox, show status.

Each command imports its component lazily, so a process loads only what it runs.
"""

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rackmesh import logs
from rackmesh.config import Settings

if TYPE_CHECKING:
    from rackmesh.identity.credentials import TlsFiles


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        args.command(args)
    except KeyboardInterrupt:
        sys.exit(130)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rackmesh", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rackmesh {_version()}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    agent = commands.add_parser("agent", help="run the node agent for one node (the DaemonSet's process)")
    agent.add_argument("--node-name", required=True, help="the Node this agent acts for (downward API)")
    agent.set_defaults(command=_agent)

    operator = commands.add_parser("operator", help="run the cluster-wide operator (kopf)")
    operator.set_defaults(command=_operator)

    status = commands.add_parser(
        "status", help="per rack: leaders, members, free capacity and reservations; the requests and their stage")
    status.add_argument("--state-dir", type=Path, help="a running sandbox's state dir (its ZooKeeper and CA)")
    status.add_argument("--zookeeper", metavar="HOST:PORT[,...]", help="ZooKeeper to read (else RACKMESH_ZK_HOSTS)")
    status.add_argument("--identity-dir", type=Path,
                        help="a rackmesh certificate: ca.crt, tls.crt, tls.key (else RACKMESH_IDENTITY_DIR; the "
                             "operator's pod has one)")
    status.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="for ZooKeeper, and for the agents' answers (else RACKMESH_CALL_TIMEOUT)")
    status.add_argument("-o", "--output", choices=["table", "json"], default="table")
    status.set_defaults(command=_status)

    ca = commands.add_parser("ca", help="rackmesh's certificate authority (install step: before the manifests)")
    ca_commands = ca.add_subparsers(required=True, metavar="ACTION")
    ca_init = ca_commands.add_parser("init", help="a new CA: DIR/ca.crt and DIR/ca.key (0600)")
    ca_init.add_argument("--out", type=Path, required=True)
    ca_init.set_defaults(command=_ca_init)
    ca_zookeeper = ca_commands.add_parser("issue-zookeeper", help="the ZooKeeper servers' key and certificate")
    ca_zookeeper.add_argument("--ca", type=Path, required=True, help="the CA's directory (ca.crt, ca.key)")
    ca_zookeeper.add_argument("--out", type=Path, required=True, help="where tls.crt, tls.key and ca.crt go")
    ca_zookeeper.add_argument("--host", action="append", required=True,
                              help="a name or address clients reach ZooKeeper at (repeat for each)")
    ca_zookeeper.add_argument("--days", type=int, default=365)
    ca_zookeeper.set_defaults(command=_ca_issue_zookeeper)
    ca_scraper = ca_commands.add_parser("issue-scraper", help="the metrics scraper's key and certificate (the "
                                                              "client certificate Prometheus presents)")
    ca_scraper.add_argument("--ca", type=Path, required=True, help="the CA's directory (ca.crt, ca.key)")
    ca_scraper.add_argument("--out", type=Path, required=True, help="where tls.crt, tls.key and ca.crt go")
    ca_scraper.add_argument("--days", type=int, default=365)
    ca_scraper.set_defaults(command=_ca_issue_scraper)

    sandbox = commands.add_parser("sandbox", help="a local cluster on loopback: ZooKeeper, API, agents, operator")
    sandbox_commands = sandbox.add_subparsers(required=True, metavar="ACTION")
    sandbox_up = sandbox_commands.add_parser("up", help="start in the background; return when ready")
    sandbox_up.add_argument("--topology", type=Path, required=True, help="YAML file listing the nodes")
    sandbox_up.add_argument("--state-dir", type=Path, required=True, help="where state, logs and kubeconfig go")
    sandbox_up.add_argument("--zookeeper-servers", type=int, default=1, choices=[1, 3, 5],
                            help="ZooKeeper servers (3 or 5: a quorum on loopback)")
    sandbox_up.set_defaults(command=_sandbox_up)
    sandbox_restart = sandbox_commands.add_parser(
        "restart", help="start again a process of the sandbox that died (e.g. agent-c-a-1, operator)")
    sandbox_restart.add_argument("--state-dir", type=Path, required=True)
    sandbox_restart.add_argument("name", help="the process's name, as in DIR/sandbox.json and DIR/logs/")
    sandbox_restart.set_defaults(command=_sandbox_restart)
    sandbox_down = sandbox_commands.add_parser("down", help="stop exactly what `up` started")
    sandbox_down.add_argument("--state-dir", type=Path, required=True)
    sandbox_down.set_defaults(command=_sandbox_down)
    return parser


def _agent(args: argparse.Namespace) -> None:
    from rackmesh.identity.authority import trusted_ca
    from rackmesh.identity.signing import SignerClient
    from rackmesh.kube_client import Credentials, KubeClient
    from rackmesh_node_agent.agent import Agent

    settings = Settings.from_env()
    logs.configure(f"agent/{args.node_name}", settings.log_level, settings.log_format)

    async def run() -> None:
        signer = SignerClient(settings.signer_url, trusted_ca(Path(settings.ca_dir)), Path(settings.token_file),
                              settings.call_timeout)
        async with KubeClient(Credentials.discover()) as kube, signer:
            await Agent(settings, args.node_name, kube, signer.sign).run()

    run_until_signalled(run())


def _operator(_: argparse.Namespace) -> None:
    from rackmesh_operator.main import run_operator

    settings = Settings.from_env()
    logs.configure("operator", settings.log_level, settings.log_format)
    run_operator(settings)


def _status(args: argparse.Namespace) -> None:
    import tempfile

    from rackmesh.identity.credentials import files_in
    from rackmesh.status_output import Progress, as_json, table
    from rackmesh.status_view import StatusError, read_status

    if args.state_dir and (args.zookeeper or args.identity_dir):
        sys.exit("rackmesh status: --state-dir names a sandbox's ZooKeeper and certificate; do not also pass "
                 "--zookeeper or --identity-dir")
    settings = Settings.from_env(zk_hosts=_sandbox_zk_hosts(args.state_dir) if args.state_dir else args.zookeeper,
                                 identity_dir=str(args.identity_dir) if args.identity_dir else None,
                                 call_timeout=args.timeout)
    if args.state_dir:
        hint = (f"is the sandbox in {args.state_dir} still running? (`rackmesh sandbox up --topology FILE "
                f"--state-dir {args.state_dir}` starts one)")
    else:
        hint = ("pass --state-dir DIR of a running sandbox, or --zookeeper HOST:PORT (RACKMESH_ZK_HOSTS) and "
                "--identity-dir DIR (RACKMESH_IDENTITY_DIR) holding a rackmesh certificate (ca.crt, tls.crt, "
                "tls.key)")
    progress = Progress(sys.stderr)
    with tempfile.TemporaryDirectory() as scratch:
        # In the sandbox, a few minutes' operator certificate from its CA; in a cluster (the operator's pod),
        # the operator's own.
        tls = _sandbox_identity(args.state_dir, Path(scratch)) if args.state_dir else files_in(settings.identity_dir)
        absent = [path.name for path in (tls.ca_file, tls.cert_file, tls.key_file) if not path.is_file()]
        if absent:
            sys.exit(f"rackmesh status: no certificate for ZooKeeper and the agents in {settings.identity_dir} "
                     f"({', '.join(absent)} missing); {hint}")
        try:
            status = asyncio.run(read_status(settings, tls, settings.call_timeout, progress.say))
        except StatusError as exc:
            progress.clear()
            sys.exit(f"rackmesh status: {exc}; {hint}")
    progress.clear()
    print(json.dumps(as_json(status), indent=2) if args.output == "json" else table(status))


def _ca_init(args: argparse.Namespace) -> None:
    from rackmesh.identity.authority import CA_KEY_FILE, CertificateAuthority

    if (args.out / CA_KEY_FILE).exists():
        sys.exit(f"rackmesh: {args.out / CA_KEY_FILE} exists; a new CA would orphan every certificate it signed")
    CertificateAuthority.create().save(args.out)
    print(f"CA written to {args.out} (ca.crt; ca.key is for the operator only)")


def _ca_issue_zookeeper(args: argparse.Namespace) -> None:
    import datetime

    from rackmesh.identity.authority import CertificateAuthority
    from rackmesh.identity.credentials import Credentials
    from rackmesh.identity.names import Identity, Role

    Credentials.issued(CertificateAuthority.load(args.ca), Identity(Role.ZOOKEEPER), args.out,
                       datetime.timedelta(days=args.days), args.host)
    print(f"ZooKeeper's certificate for {', '.join(args.host)} written to {args.out}")


def _version() -> str:
    """The installed distribution's version: pyproject.toml's, the one source."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rackmesh")
    except PackageNotFoundError:  # run from a checkout that was never installed (pip install -e .)
        return "(not installed: no package metadata)"


def _ca_issue_scraper(args: argparse.Namespace) -> None:
    import datetime

    from rackmesh.identity.authority import CertificateAuthority
    from rackmesh.identity.credentials import Credentials
    from rackmesh.identity.names import Identity, Role

    scraper = Identity(Role.METRICS)  # rackmesh.metrics.SCRAPER, without what serving needs (install.sh runs this)
    Credentials.issued(CertificateAuthority.load(args.ca), scraper, args.out, datetime.timedelta(days=args.days), [])
    print(f"the scraper's certificate ({scraper}) written to {args.out}")


def _sandbox_identity(state_dir: Path, scratch: Path) -> "TlsFiles":
    import datetime

    from rackmesh.identity.authority import CertificateAuthority
    from rackmesh.identity.credentials import Credentials
    from rackmesh.identity.names import Identity, Role
    from rackmesh_sandbox.lifecycle import CA_DIR

    authority = CertificateAuthority.load(state_dir / CA_DIR)
    return Credentials.issued(authority, Identity(Role.OPERATOR), scratch, datetime.timedelta(minutes=5), []).files


def _sandbox_zk_hosts(state_dir: Path) -> str:
    from rackmesh_sandbox.lifecycle import SandboxState

    state = SandboxState.load(state_dir.absolute())
    if state is None:
        sys.exit(f"rackmesh: no sandbox state in {state_dir}")
    return state.zk_hosts


def _sandbox_up(args: argparse.Namespace) -> None:
    from rackmesh_sandbox.lifecycle import SandboxError, up
    from rackmesh_sandbox.topology import TopologyError

    try:
        up(args.topology, args.state_dir, zookeeper_servers=args.zookeeper_servers)
    except (SandboxError, TopologyError) as exc:
        sys.exit(f"rackmesh: {exc}")


def _sandbox_restart(args: argparse.Namespace) -> None:
    from rackmesh_sandbox.lifecycle import SandboxError, restart

    try:
        restart(args.state_dir, args.name)
    except SandboxError as exc:
        sys.exit(f"rackmesh: {exc}")


def _sandbox_down(args: argparse.Namespace) -> None:
    from rackmesh_sandbox.lifecycle import down

    down(args.state_dir)


def run_until_signalled(main_coroutine: Coroutine[Any, Any, None]) -> None:
    """Run until SIGTERM/SIGINT, then cancel the work so it leaves ZooKeeper and closes its sockets."""

    async def supervised() -> None:
        task = asyncio.ensure_future(main_coroutine)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(supervised())
