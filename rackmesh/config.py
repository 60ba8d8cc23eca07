"""Settings shared by every rackmesh process: one source of truth, defaults in one place.

Values come from the environment (``RACKMESH_*``); command-line flags override them.
"""

import dataclasses
import os
from typing import Any

from rackmesh.labels import DEFAULT_RACK_LABEL

ENV_PREFIX = "RACKMESH_"


@dataclasses.dataclass(frozen=True)
class Settings:
    zk_hosts: str = "127.0.0.1:2181"
    zk_root: str = "/rackmesh"
    # A dead agent's ephemeral nodes (membership, leadership) vanish after this long.
    zk_session_timeout: float = 10.0
    rack_label: str = DEFAULT_RACK_LABEL
    agent_bind: str = "0.0.0.0"
    agent_advertise: str = ""  # address other agents use; empty means the bind address
    agent_port: int = 8470
    # Identity (docs/architecture.md, "Identity"): the rackmesh CA's certificate (ca.crt; the operator's
    # directory also holds ca.key), where a component keeps its own key and certificate (memory-backed in a
    # cluster), and how long a certificate lives (it is renewed at two thirds of that).
    ca_dir: str = "/etc/rackmesh/ca"
    identity_dir: str = "/run/rackmesh/identity"
    cert_lifetime: float = 3600.0
    # The operator's signer, which agents ask for their certificates, and where it listens.
    signer_url: str = "https://rackmesh-operator.rackmesh-system.svc:8471"
    signer_bind: str = "0.0.0.0"
    signer_port: int = 8471
    # The agent's ServiceAccount token (projected, bound to its pod and so its node) and its audience, and
    # the ServiceAccount the signer accepts as an agent's.
    token_file: str = "/var/run/secrets/rackmesh/token"
    token_audience: str = "rackmesh"
    agent_service_account: str = "system:serviceaccount:rackmesh-system:rackmesh-agent"
    # Every peer-to-peer call is bounded by this (a call that fans out further gets a multiple of it).
    call_timeout: float = 5.0
    # What an agent offers stays reserved this long unless the coordinator commits it.
    reservation_ttl: float = 30.0
    # A committed portion stays reserved until its VMs exist, at most this long.
    commit_ttl: float = 600.0
    # Storage agents keep image files (<image>.img) here and serve them over HTTP.
    image_dir: str = "/var/lib/rackmesh/images"
    # How many holders of the image a request needs, in distinct racks where possible.
    image_redundancy: int = 2
    # Size of each VM's root disk (the DataVolume's storage request).
    vm_disk_size: str = "10Gi"
    # How often a compute agent looks at its VMs' root disks whose import has not started: one whose holder is
    # gone (no longer a storage member, or not answering) is moved to the next holder (node_agent/vms/disk_sources.py).
    disk_source_check_interval: float = 5.0
    # How often the operator looks for request records whose DeploymentRequest is gone (it deletes a record
    # found orphaned twice in a row: a coordinator may write one after the request's finalizer ran).
    record_sweep_interval: float = 30.0
    # Every component's Prometheus metrics (GET /metrics, HTTPS, to the scraper's certificate only), on a port of
    # their own; an empty bind is the component's own (agent_bind, or signer_bind for the operator), port 0 one
    # the kernel picks.
    metrics_bind: str = ""
    metrics_port: int = 8472
    # kopf peering keeps one operator replica active; empty runs standalone (the sandbox's single process).
    operator_peering: str = "rackmesh"
    # kopf's liveness probe URL, e.g. http://0.0.0.0:8080/healthz; empty disables it.
    operator_liveness: str = ""
    log_format: str = "json"  # json | plain
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> "Settings":
        """Defaults, then ``RACKMESH_<FIELD>`` variables, then explicit non-None overrides."""
        environ = dict(os.environ) if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is not None:
                values[field.name] = _coerce(field, raw)
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        return {ENV_PREFIX + key.upper(): str(value) for key, value in dataclasses.asdict(self).items()}


def _coerce(field: dataclasses.Field[Any], raw: str) -> Any:
    kind = field.type if isinstance(field.type, type) else type(field.default)
    try:
        return kind(raw)
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}{field.name.upper()}={raw!r} is not a valid {kind.__name__}") from exc
