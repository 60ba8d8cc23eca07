"""The operator's signer: issues agents their certificates (``rackmesh/identity/signing.py``), and the
operator its own.

An agent proves its node with its projected ServiceAccount token: a TokenReview must find it authentic,
for the audience ``token_audience``, of the agent ServiceAccount, and bound to a pod on exactly one node
(the extras ``authentication.kubernetes.io/pod-name`` and ``node-name`` the API sets for pod-bound tokens,
from Kubernetes 1.30). The certificate names that node, and the addresses the agent is reached at: its node's
(the agent advertises ``status.hostIP`` and is published there by a hostPort; CDI's importer checks the server's
certificate against the image URL's host) and its pod's. Whatever the CSR asks.
"""

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509

from rackmesh import messages
from rackmesh.config import Settings
from rackmesh.identity import renewal
from rackmesh.identity.authority import CertificateAuthority, CsrError, cert_pem
from rackmesh.identity.credentials import Credentials
from rackmesh.identity.names import Identity, Role
from rackmesh.identity.signing import CERTIFICATES, CertificateIssued, CertificateRequest
from rackmesh.kube_client import PODS, TOKEN_REVIEWS, KubeApiError, KubeClient
from rackmesh.tls_site import TlsSite

logger = logging.getLogger(__name__)
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
SIGNER_KEY = web.AppKey("signer", "Signer")
# Agents give up on a signing call after call_timeout (5 s); a handshake still unfinished after this is someone
# holding the connection open.
HANDSHAKE_TIMEOUT = 20.0


class SigningRefused(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


class Signer:
    def __init__(self, settings: Settings, kube: KubeClient) -> None:
        self.settings = settings
        self.kube = kube
        self.authority = CertificateAuthority.load(Path(settings.ca_dir))
        self.lifetime = datetime.timedelta(seconds=settings.cert_lifetime)
        self.credentials = Credentials(Identity(Role.OPERATOR), Path(settings.identity_dir),
                                       self.authority.cert_pem)
        self.issued = 0

    async def sign_agent(self, request: CertificateRequest) -> x509.Certificate:
        node, pod = await self._reviewed(request.token)
        try:
            cert = self.authority.sign(request.csr.encode(), Identity.agent(node), self.lifetime,
                                       await self._agent_addresses(pod))
        except CsrError as exc:
            raise SigningRefused(400, "BadCsr", str(exc)) from None
        self.issued += 1
        logger.info("issued an agent certificate", extra={"node": node, "serial": f"{cert.serial_number:x}",
                                                         "expires": cert.not_valid_after_utc.isoformat()})
        return cert

    async def _reviewed(self, token: str) -> tuple[str, str]:
        """The node and the pod the token is bound to."""
        review = await self.kube.create(TOKEN_REVIEWS, {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": [self.settings.token_audience]}})
        status: dict[str, Any] = review.get("status") or {}
        if not status.get("authenticated") or self.settings.token_audience not in status.get("audiences", []):
            raise SigningRefused(401, "TokenRejected", f"the token is not valid for audience "
                                                       f"{self.settings.token_audience}: {status.get('error', '')}")
        user = status.get("user") or {}
        if user.get("username") != self.settings.agent_service_account:
            raise SigningRefused(403, "NotAnAgent", f"{user.get('username')} is not the agents' ServiceAccount "
                                                    f"({self.settings.agent_service_account})")
        extra = user.get("extra") or {}
        nodes, pods = extra.get(NODE_NAME_EXTRA, []), extra.get(POD_NAME_EXTRA, [])
        if len(nodes) != 1 or len(pods) != 1:
            raise SigningRefused(403, "NotBoundToPod", "the token is not bound to a pod on a node (no "
                                                       f"{POD_NAME_EXTRA} and {NODE_NAME_EXTRA} in its user info)")
        return str(nodes[0]), str(pods[0])

    async def _agent_addresses(self, pod: str) -> list[str]:
        """The node's IPs, then the pod's, as the kubelet of the token's node reports them in the pod's status."""
        namespace = self.settings.agent_service_account.split(":")[2]  # system:serviceaccount:<ns>:<name>
        try:
            found = await self.kube.get(PODS, pod, namespace)
        except KubeApiError as exc:
            if exc.status == 404:
                raise SigningRefused(403, "NoSuchPod", f"the token's pod {pod} does not exist") from None
            raise
        status = found.get("status") or {}
        # hostIPs is the dual-stack list (Kubernetes 1.28+); hostIP alone is what older kubelets report.
        hosts = [ip.get("ip") for ip in status.get("hostIPs") or []] or [status.get("hostIP")]
        pods = [ip.get("ip") for ip in status.get("podIPs") or []]
        return list(dict.fromkeys(str(ip) for ip in [*hosts, *pods] if ip))


async def certificates(request: web.Request) -> web.Response:
    signer = request.app[SIGNER_KEY]
    try:
        asked = messages.decode_bytes(CertificateRequest, await request.read())
        cert = await signer.sign_agent(asked)
    except messages.MessageError as exc:
        return web.json_response({"reason": "BadMessage", "message": str(exc)}, status=400)
    except SigningRefused as refusal:
        logger.warning("refused a certificate", extra={"reason": refusal.reason, "error": refusal.message,
                                                      "peer": request.remote})
        return web.json_response({"reason": refusal.reason, "message": refusal.message}, status=refusal.status)
    except KubeApiError as exc:
        return web.json_response({"reason": "ReviewFailed", "message": f"TokenReview failed: {exc}"}, status=503)
    return web.json_response(messages.encode(CertificateIssued(cert_pem(cert).decode())))


async def serve(signer: Signer) -> Callable[[], Awaitable[None]]:
    """Obtain the operator's certificate, keep it renewed, and serve the signer over TLS; returns the stop."""
    sign_own = signer.authority.signer(Identity(Role.OPERATOR), signer.lifetime)  # it holds the CA
    await renewal.obtain(signer.credentials, sign_own)
    renewing = asyncio.create_task(renewal.keep_renewed(signer.credentials, sign_own))
    app = web.Application(client_max_size=messages.MAX_MESSAGE_BYTES)
    app[SIGNER_KEY] = signer
    app.router.add_post(CERTIFICATES, certificates)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await TlsSite(runner, signer.settings.signer_bind, signer.settings.signer_port,
                  signer.credentials.server_context(), HANDSHAKE_TIMEOUT).start()
    logger.info("signer serving", extra={"bind": signer.settings.signer_bind, "port": signer.settings.signer_port})

    async def stop() -> None:
        renewing.cancel()
        await asyncio.gather(renewing, return_exceptions=True)
        await runner.cleanup()

    return stop
