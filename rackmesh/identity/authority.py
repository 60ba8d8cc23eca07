"""rackmesh's certificate authority: the key that signs every component's short-lived certificate.

The operator holds it (a Secret in a cluster, a 0600 file in the sandbox); the public certificate is what
every component trusts. A certificate's names come from the identity the signer verified, never from the
CSR, so a node cannot ask for another node's name.
"""

import dataclasses
import datetime
import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rackmesh.identity.files import write_private
from rackmesh.identity.names import ORGANIZATIONAL_UNIT, Identity

CA_LIFETIME = datetime.timedelta(days=3650)
# Clocks of nodes differ a little: a certificate is valid from slightly before it was signed.
CLOCK_SKEW = datetime.timedelta(minutes=1)
CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"


class CsrError(ValueError):
    """A CSR that cannot be signed: unparsable, or its signature does not match its key."""


def trusted_ca(directory: Path) -> bytes:
    """The CA certificate (PEM) every component trusts, from the directory a cluster mounts it in."""
    return (directory / CA_CERT_FILE).read_bytes()


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def csr_for(key: ec.EllipticCurvePrivateKey, identity: Identity) -> bytes:
    """A CSR (PEM) for ``identity``; the signer decides the names, the CSR proves possession of ``key``."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(identity.subject)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclasses.dataclass(frozen=True)
class CertificateAuthority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, now: datetime.datetime | None = None) -> "CertificateAuthority":
        now = now or _now()
        key = new_key()
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ORGANIZATIONAL_UNIT),
                          x509.NameAttribute(NameOID.COMMON_NAME, "rackmesh-ca")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + CA_LIFETIME)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             key_cert_sign=True, crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    @classmethod
    def load(cls, directory: Path) -> "CertificateAuthority":
        key = serialization.load_pem_private_key((directory / CA_KEY_FILE).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{directory / CA_KEY_FILE} is not an EC private key")
        return cls(key, x509.load_pem_x509_certificate((directory / CA_CERT_FILE).read_bytes()))

    def save(self, directory: Path) -> None:
        """The key (0600) and the certificate; the certificate alone is what others are given."""
        directory.mkdir(parents=True, exist_ok=True)
        write_private(directory / CA_KEY_FILE, key_pem(self.key))
        write_private(directory / CA_CERT_FILE, self.cert_pem, 0o644)

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    def sign(self, csr_pem: bytes, identity: Identity, lifetime: datetime.timedelta,
             addresses: Iterable[str] = (), now: datetime.datetime | None = None) -> x509.Certificate:
        """A certificate for the CSR's key, naming ``identity`` (and, for servers, the host names or IP
        ``addresses`` clients connect to)."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise CsrError(f"not a PEM certificate signing request: {exc}") from None
        if not csr.is_signature_valid:
            raise CsrError("the CSR's signature does not match its public key")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise CsrError("the CSR's key is not an elliptic-curve key (P-256 expected)")
        return self._issue(public_key, identity, lifetime, addresses, now or _now())

    def signer(self, identity: Identity,
               lifetime: datetime.timedelta) -> Callable[[bytes], Awaitable[x509.Certificate]]:
        """Signs CSRs for ``identity`` in-process: for the CA's holder itself (the operator), and for harnesses
        that start agents without an operator (the agent tests, the benchmark)."""

        async def sign(csr_pem: bytes) -> x509.Certificate:
            return self.sign(csr_pem, identity, lifetime)

        return sign

    def issue(self, identity: Identity, lifetime: datetime.timedelta, addresses: Iterable[str] = (),
              now: datetime.datetime | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A new key and its certificate, for the components the CA's holder starts itself."""
        key = new_key()
        return key, self._issue(key.public_key(), identity, lifetime, addresses, now or _now())

    def _issue(self, public_key: ec.EllipticCurvePublicKey, identity: Identity, lifetime: datetime.timedelta,
               addresses: Iterable[str], now: datetime.datetime) -> x509.Certificate:
        names: list[x509.GeneralName] = [x509.DNSName(identity.dns_name)]
        for address in addresses:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(address)))
            except ValueError:
                names.append(x509.DNSName(address))
        return (x509.CertificateBuilder().subject_name(identity.subject).issuer_name(self.cert.subject)
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + lifetime)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             key_cert_sign=False, crl_sign=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False)
                .sign(self.key, hashes.SHA256()))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
