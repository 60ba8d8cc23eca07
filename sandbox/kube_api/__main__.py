"""``python -m rackmesh_sandbox.kube_api``: serve the local Kubernetes API until SIGTERM/SIGINT.

Once listening, ``--ready-file`` gets ``{"url": ..., "pid": ...}`` (written atomically; with ``--auth`` also
``"ca"``, the PEM CA of its HTTPS), so a parent process can wait for the file instead of polling the port.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pathlib
import signal
import sys

from rackmesh_sandbox.kube_api import owner_references
from rackmesh_sandbox.kube_api.authn import AuthConfig
from rackmesh_sandbox.kube_api.kubeconfig import write_atomically
from rackmesh_sandbox.kube_api.server import KubeApiServer

log = logging.getLogger("rackmesh_sandbox.kube_api")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rackmesh_sandbox.kube_api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--crd", action="append", default=[], type=pathlib.Path, help="a CRD YAML file (repeatable)"
    )
    parser.add_argument("--no-kubevirt", action="store_true", help="do not install the KubeVirt/CDI CRDs")
    parser.add_argument("--ready-file", type=pathlib.Path, help="written with the URL and pid once listening")
    parser.add_argument("--kubeconfig", type=pathlib.Path, help="also write a kubeconfig for the server here")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--auth",
        action="store_true",
        help="authenticate requests (the kubeconfig's admin token, --token-file's, ServiceAccount tokens), "
        "authorize them with RBAC and run ValidatingAdmissionPolicies",
    )
    parser.add_argument(
        "--token-file", type=pathlib.Path, help='static tokens, CSV: token,user,uid,"group1,group2" (implies --auth)'
    )
    parser.add_argument(
        "--service-account-key-file",
        type=pathlib.Path,
        help="PEM key signing ServiceAccount tokens, made if missing (tokens outlive restarts; implies --auth)",
    )
    parser.add_argument(
        "--enable-admission-plugins",
        default="",
        help=f"comma-separated admission plugins to enable; known: {owner_references.NAME} (implies --auth)",
    )
    return parser.parse_args(argv)


def auth_config(args: argparse.Namespace) -> AuthConfig | None:
    plugins = frozenset(name for name in args.enable_admission_plugins.split(",") if name)
    if unknown := plugins - {owner_references.NAME}:
        raise SystemExit(f"unknown admission plugins: {', '.join(sorted(unknown))}")
    if not (args.auth or args.token_file or args.service_account_key_file or plugins):
        return None
    return AuthConfig(token_file=args.token_file, service_account_key_file=args.service_account_key_file,
                      admission_plugins=plugins)


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The process lives long: bound kmock's request log so memory stays flat.
    async with KubeApiServer(
        host=args.host,
        port=args.port,
        crd_paths=args.crd,
        kubevirt=not args.no_kubevirt,
        request_log_limit=1000,
        auth=auth_config(args),
    ) as api:
        if args.kubeconfig:
            api.write_kubeconfig(args.kubeconfig)
        if args.ready_file:
            ready = {"url": api.url, "pid": os.getpid(), **({"ca": api.tls.ca_pem} if api.tls else {})}
            write_atomically(args.ready_file, json.dumps(ready))
        log.info("Kubernetes API serving at %s", api.url)
        await stop.wait()
        log.info("Stopping.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.INFO if args.access_log else logging.WARNING)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
