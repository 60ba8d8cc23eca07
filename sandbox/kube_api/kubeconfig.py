"""Kubeconfig files for the local API (plain HTTP or HTTPS with its CA, a token user), and atomic file writes."""

from __future__ import annotations

import base64
import contextlib
import os
import pathlib
import tempfile

import yaml

DEFAULT_TOKEN = "rackmesh-sandbox-token"  # authn.ADMIN_TOKEN: an authenticating server's admin


def write_atomically(target: pathlib.Path, text: str) -> None:
    """Write to a temporary file beside the target, then rename: readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_kubeconfig(
    path: str | os.PathLike[str],
    server_url: str,
    namespace: str = "default",
    token: str = DEFAULT_TOKEN,
    ca_pem: str | None = None,
) -> pathlib.Path:
    """Write a kubeconfig for ``server_url`` that kubectl and kopf accept; return its path.

    kopf's kubeconfig login accepts plain-http servers and a bearer token; kubectl needs a user entry.
    ``token`` is the user's bearer token: by default the one an authenticating server takes as its admin's;
    ``ca_pem`` the CA of an HTTPS server (``KubeApiServer.tls.ca_pem``; the process form's ready file has it).
    """
    name = "rackmesh-sandbox"
    cluster: dict[str, str] = {"server": server_url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem.encode()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}],
        "current-context": name,
        "preferences": {},
    }
    target = pathlib.Path(path)
    write_atomically(target, yaml.safe_dump(config, sort_keys=False))
    return target
