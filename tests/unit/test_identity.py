"""The CA, identities and credentials: names come from the signer, TLS is mutual, renewal needs no restart."""

import asyncio
import base64
import datetime
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from rackmesh.identity.authority import CertificateAuthority, CsrError, csr_for, new_key
from rackmesh.identity.credentials import Credentials
from rackmesh.identity.names import Identity, Role

HOUR = datetime.timedelta(hours=1)


def test_the_certificate_names_the_identity_the_signer_chose_not_the_csr() -> None:
    ca = CertificateAuthority.create()
    key = new_key()
    cert = ca.sign(csr_for(key, Identity.agent("victim")), Identity.agent("c-0-0"), HOUR, ["127.0.1.1"])
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["c-0-0.agent.rackmesh"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.1.1"]
    assert cert.subject.rfc4514_string() == "CN=agent,OU=rackmesh"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= HOUR + datetime.timedelta(minutes=1)


def test_a_csr_whose_signature_does_not_match_its_key_is_refused() -> None:
    ca = CertificateAuthority.create()
    der = bytearray(x509.load_pem_x509_csr(csr_for(new_key(), Identity.agent("n"))).public_bytes(Encoding.DER))
    der[-1] ^= 1  # the last byte of the signature
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der)) + \
        b"-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(CsrError, match="signature"):
        ca.sign(pem, Identity.agent("n"), HOUR)
    with pytest.raises(CsrError):
        ca.sign(b"not a csr", Identity.agent("n"), HOUR)


@pytest.mark.parametrize(("name", "identity"), [
    ("c-0-0.agent.rackmesh", Identity.agent("c-0-0")),
    ("a.b.agent.rackmesh", Identity.agent("a.b")),
    ("operator.rackmesh", Identity(Role.OPERATOR)),
    ("agent.rackmesh", None),  # an agent without a node
    ("x.operator.rackmesh", None),  # an operator with one
    ("c-0-0.agent.rackmesh.evil", None),
    ("c-0-0.root.rackmesh", None),
])
def test_identities_are_read_from_dns_names(name: str, identity: Identity | None) -> None:
    assert Identity.from_dns_name(name) == identity


def test_a_peer_certificate_with_two_identities_names_none() -> None:
    peer = {"subjectAltName": [("DNS", "a.agent.rackmesh"), ("DNS", "b.agent.rackmesh")]}
    assert Identity.of_peer(peer) is None
    assert Identity.of_peer({}) is None


def _credentials(ca: CertificateAuthority, identity: Identity, directory: Path) -> Credentials:
    return Credentials.issued(ca, identity, directory, HOUR, [])


async def _serve(credentials: Credentials) -> tuple[web.AppRunner, int]:
    async def whoami(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        identity = Identity.of_peer(peer)
        return web.json_response({"caller": str(identity) if identity else None})

    app = web.Application()
    app.router.add_get("/", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=credentials.server_context())
    await site.start()
    return runner, runner.addresses[0][1]


async def _ask(context: ssl.SSLContext, port: int, server_hostname: str) -> dict[str, str]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, force_close=True)) as session, \
            session.get(f"https://127.0.0.1:{port}/", server_hostname=server_hostname) as response:
        return await response.json()


async def test_mutual_tls_tells_the_server_who_calls_and_the_client_who_answers(tmp_path: Path) -> None:
    ca = CertificateAuthority.create()
    server = _credentials(ca, Identity.agent("c-0-0"), tmp_path / "server")
    client = _credentials(ca, Identity(Role.OPERATOR), tmp_path / "client")
    runner, port = await _serve(server)
    try:
        assert await _ask(client.client_context(), port, "c-0-0.agent.rackmesh") == {"caller": "operator.rackmesh"}
        with pytest.raises(aiohttp.ClientConnectorCertificateError):  # the peer is not the node we meant
            await _ask(client.client_context(), port, "c-0-1.agent.rackmesh")
        stranger = _credentials(CertificateAuthority.create(), Identity(Role.OPERATOR), tmp_path / "stranger")
        with pytest.raises(aiohttp.ClientConnectorCertificateError):  # another CA's server is not trusted
            await _ask(stranger.client_context(), port, "c-0-0.agent.rackmesh")
        untrusted_client = stranger.client_context()
        untrusted_client.load_verify_locations(cadata=ca.cert_pem.decode())
        with pytest.raises(aiohttp.ClientError):  # ... nor is another CA's client
            await _ask(untrusted_client, port, "c-0-0.agent.rackmesh")
    finally:
        await runner.cleanup()


async def test_a_renewed_certificate_is_presented_without_a_restart(tmp_path: Path) -> None:
    ca = CertificateAuthority.create()
    server = _credentials(ca, Identity.agent("c-0-0"), tmp_path / "server")
    client = _credentials(ca, Identity(Role.OPERATOR), tmp_path / "client")
    runner, port = await _serve(server)
    try:
        first = server.cert
        server.install(*ca.issue(Identity.agent("c-0-0"), HOUR))
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client.client_context(),
                                                  server_hostname="c-0-0.agent.rackmesh")
        presented = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        assert server.cert is not None and first is not None
        assert x509.load_der_x509_certificate(presented).serial_number == server.cert.serial_number
        assert server.cert.serial_number != first.serial_number
        assert server.renewals == 1
    finally:
        await runner.cleanup()


def test_credentials_refuse_a_certificate_for_someone_else(tmp_path: Path) -> None:
    ca = CertificateAuthority.create()
    credentials = Credentials(Identity.agent("c-0-0"), tmp_path, ca.cert_pem)
    with pytest.raises(ValueError, match="does not name"):
        credentials.install(*ca.issue(Identity.agent("c-0-1"), HOUR))
    assert (tmp_path / "tls.key").exists() is False
