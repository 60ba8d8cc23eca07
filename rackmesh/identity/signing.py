"""How an agent gets its certificate: it proves which node it runs on with its ServiceAccount token, bound
to its pod (and so its node), and sends a CSR; the operator's signer checks the token with a TokenReview
and signs a certificate naming that node, whatever the CSR asks.

    agent --CertificateRequest--> operator's signer    POST /v1/certificates    200 CertificateIssued | 4xx
"""

import dataclasses
import ssl
from pathlib import Path

import aiohttp
from cryptography import x509

from rackmesh import messages
from rackmesh.http_session import SessionClient
from rackmesh.identity.names import Identity, Role
from rackmesh.peer_client import PeerError, refusal

CERTIFICATES = "/v1/certificates"
MAX_PEM = 16 * 1024
MAX_TOKEN = 16 * 1024


@dataclasses.dataclass(frozen=True)
class CertificateRequest:
    csr: str  # PEM
    token: str  # the agent's ServiceAccount token, audience ``Settings.token_audience``

    def __post_init__(self) -> None:
        if len(self.csr) > MAX_PEM or len(self.token) > MAX_TOKEN:
            raise ValueError(f"a CSR or token longer than {MAX_PEM} characters is not one")


@dataclasses.dataclass(frozen=True)
class CertificateIssued:
    certificate: str  # PEM


class SignerClient(SessionClient):
    """Asks the operator's signer, over TLS that trusts the rackmesh CA only and expects the operator."""

    def __init__(self, url: str, ca_pem: bytes, token_file: Path, timeout: float) -> None:
        self.url = url.rstrip("/")
        self._token_file = token_file
        context = ssl.create_default_context(cadata=ca_pem.decode())
        super().__init__(aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context),
                                               timeout=aiohttp.ClientTimeout(total=timeout)))

    async def sign(self, csr_pem: bytes) -> x509.Certificate:
        # Read each time: the kubelet rotates projected tokens.
        request = CertificateRequest(csr_pem.decode(), self._token_file.read_text().strip())
        try:
            async with self._session.post(self.url + CERTIFICATES, json=messages.encode(request),
                                          server_hostname=Identity(Role.OPERATOR).dns_name) as response:
                body = await response.read()
                if response.status >= 400:
                    raise refusal(self.url, response.status, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerError(self.url, 0, "Unreachable", f"{type(exc).__name__}: {exc}") from None
        issued = messages.decode_bytes(CertificateIssued, body)
        return x509.load_pem_x509_certificate(issued.certificate.encode())
