"""A test run's rackmesh CA, and credentials for any identity from it."""

import datetime
from pathlib import Path

from rackmesh.identity.authority import CertificateAuthority
from rackmesh.identity.credentials import Credentials
from rackmesh.identity.names import Identity, Role

LIFETIME = datetime.timedelta(hours=1)


class Pki:
    def __init__(self, directory: Path) -> None:
        self.directory = directory  # what Settings.ca_dir names: ca.crt and ca.key
        self.ca = CertificateAuthority.create()
        self.ca.save(directory)
        self._issued = 0

    def credentials(self, identity: Identity, directory: Path | None = None) -> Credentials:
        """Installed credentials for ``identity`` (a fresh directory unless given)."""
        self._issued += 1
        return Credentials.issued(self.ca, identity, directory or self.directory / f"issued-{self._issued}",
                                  LIFETIME, [])

    def operator(self) -> Credentials:
        return self.credentials(Identity(Role.OPERATOR))
