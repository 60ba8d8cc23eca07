"""Raw HTTPS calls to agents from tests: a TLS client context per identity (or none at all), and the name
an agent's certificate carries, which every client checks (``server_hostname``)."""

import ssl
from pathlib import Path

from rackmesh.identity.names import Identity
from tests.support.pki import Pki


def agent_name(node: str) -> str:
    """What a client verifies ``node``'s agent against: ``<node>.agent.rackmesh``."""
    return Identity.agent(node).dns_name


class Callers:
    """Client contexts that trust the rackmesh CA only, one per identity presented (issued on first use)."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self._contexts: dict[Identity, ssl.SSLContext] = {}
        self._anonymous: ssl.SSLContext | None = None

    def context(self, identity: Identity | None) -> ssl.SSLContext:
        """Presenting ``identity``'s certificate; None: no client certificate (a probe, a CDI importer)."""
        if identity is None:
            if self._anonymous is None:
                self._anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                self._anonymous.load_verify_locations(cadata=self.pki.ca.cert_pem.decode())
            return self._anonymous
        if identity not in self._contexts:
            self._contexts[identity] = self.pki.credentials(identity).client_context()
        return self._contexts[identity]

    def stranger(self, directory: Path, identity: Identity) -> ssl.SSLContext:
        """Presenting a certificate for ``identity`` from another CA (made in ``directory``); it trusts the
        rackmesh CA's servers, so only the server's check of the client can refuse it."""
        context = Pki(directory).credentials(identity).client_context()
        context.load_verify_locations(cadata=self.pki.ca.cert_pem.decode())
        return context
