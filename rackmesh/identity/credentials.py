"""A component's current key and certificate: kept in a private directory, served through TLS contexts
that take a renewed certificate without a restart.

Python's ``ssl`` loads keys from files only, and kazoo reads them again on each ZooKeeper connection, so
the credentials live in files (0600, in a memory-backed directory in a cluster). Each renewal rewrites
them atomically and loads them into the same ``SSLContext`` objects: connections made afterwards present
the new certificate, connections already open keep theirs.
"""

import dataclasses
import datetime
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from rackmesh.identity.authority import CLOCK_SKEW, CertificateAuthority, cert_pem, key_pem
from rackmesh.identity.files import write_private
from rackmesh.identity.names import Identity

KEY_FILE = "tls.key"
CERT_FILE = "tls.crt"
CA_FILE = "ca.crt"
# A certificate is renewed once this share of its lifetime has passed (kubelet renews at 70-90%).
RENEW_AT = 2 / 3


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """Where a TLS client or server finds the trusted CA, its certificate and its key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def files_in(directory: str | Path) -> TlsFiles:
    """The files a component's ``Credentials`` keep in ``directory`` (for a process that reads them only)."""
    path = Path(directory)
    return TlsFiles(path / CA_FILE, path / CERT_FILE, path / KEY_FILE)


class Credentials:
    def __init__(self, identity: Identity, directory: Path, ca_pem: bytes) -> None:
        self.identity = identity
        self.directory = directory
        self.ca_pem = ca_pem
        self.cert: x509.Certificate | None = None
        self.renewals = 0  # certificates installed after the first
        self._contexts: list[ssl.SSLContext] = []
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(directory / CA_FILE, ca_pem, 0o644)

    @classmethod
    def issued(cls, authority: CertificateAuthority, identity: Identity, directory: Path,
               lifetime: datetime.timedelta, addresses: list[str]) -> "Credentials":
        """Credentials for a server the CA's holder sets up itself (ZooKeeper), naming the ``addresses``
        clients reach it at."""
        credentials = cls(identity, directory, authority.cert_pem)
        credentials.install(*authority.issue(identity, lifetime, addresses))
        return credentials

    @property
    def files(self) -> TlsFiles:
        return files_in(self.directory)

    @property
    def renew_at(self) -> datetime.datetime:
        if self.cert is None:
            return datetime.datetime.now(datetime.UTC)
        # Measured from when it was signed: its validity starts CLOCK_SKEW earlier.
        start, end = self.cert.not_valid_before_utc + CLOCK_SKEW, self.cert.not_valid_after_utc
        return start + (end - start) * RENEW_AT

    @property
    def expires_at(self) -> datetime.datetime | None:
        return self.cert.not_valid_after_utc if self.cert is not None else None

    def install(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        """Make ``cert`` the one presented from now on (files, then every context made from them)."""
        if Identity.of_dns_names(_dns_names(cert)) != self.identity:
            raise ValueError(f"the certificate does not name {self.identity}")
        write_private(self.directory / KEY_FILE, key_pem(key))
        write_private(self.directory / CERT_FILE, cert_pem(cert))
        if self.cert is not None:
            self.renewals += 1
        self.cert = cert
        for context in self._contexts:
            self._load(context)

    def server_context(self) -> ssl.SSLContext:
        """For the side that accepts: verifies a client certificate when one is sent (routes that need an
        identity refuse a client without one; health probes and image importers have none)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.verify_mode = ssl.CERT_OPTIONAL
        return self._track(context)

    def client_context(self) -> ssl.SSLContext:
        """For the side that connects: trusts the rackmesh CA only and checks the peer's name, which the
        caller gives as ``server_hostname`` (the identity it expects, e.g. ``<node>.agent.rackmesh``)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
        return self._track(context)

    def _track(self, context: ssl.SSLContext) -> ssl.SSLContext:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cadata=self.ca_pem.decode())
        if self.cert is not None:
            self._load(context)
        self._contexts.append(context)
        return context

    def _load(self, context: ssl.SSLContext) -> None:
        context.load_cert_chain(self.directory / CERT_FILE, self.directory / KEY_FILE)


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return names.get_values_for_type(x509.DNSName)

