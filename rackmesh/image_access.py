"""Who may read image files: CDI's importer, with a credential of the VM's namespace (HTTP basic auth, from
the DataVolume's ``secretRef``), over HTTPS it verifies with the rackmesh CA (``certConfigMap``), checking
the file against its published sha256 (``checksum``). Agents read them with their own certificates.

The operator puts, in every namespace it places VMs in, the Secret ``rackmesh-image-access``
(``accessKeyId`` = the namespace, ``secretKey`` = a password derived from its own key, so it never reads a
Secret back) and the ConfigMap ``rackmesh-ca``; it publishes the password's sha256 in ZooKeeper
(``image-access/<namespace>``), where storage agents check it. A credential opens images only: it is
worth no more than the image files, which are no secret from any agent.
"""

import base64
import binascii
import hashlib
import hmac

ACCESS_SECRET = "rackmesh-image-access"
CA_CONFIG_MAP = "rackmesh-ca"
CA_CONFIG_MAP_KEY = "ca.pem"
REALM = "rackmesh-images"


def password_for(key: bytes, namespace: str) -> str:
    """The namespace's password: an HMAC of its name under the operator's key (the same on every replica)."""
    return hmac.new(key, b"rackmesh image access/" + namespace.encode(), hashlib.sha256).hexdigest()


def digest(password: str) -> str:
    """What ZooKeeper holds of a password: its sha256 (the password is 256 random-looking bits)."""
    return hashlib.sha256(password.encode()).hexdigest()


def matches(stored_digest: str, password: str) -> bool:
    return hmac.compare_digest(stored_digest, digest(password))


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) from ``Authorization: Basic ...``; None for anything else."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.isascii():
        return None
    try:
        user, colon, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if colon else None


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
