"""What a namespace's image importers need (``rackmesh/image_access.py``): the ConfigMap ``rackmesh-ca``
(the CA that signs the image servers' certificates) and the Secret ``rackmesh-image-access`` (its
credential) in the namespace, and the credential's digest in ZooKeeper for the storage agents. Written
once per namespace and operator process, before the namespace's first order is handed over."""

import base64
import logging
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError

from rackmesh import image_access, zk_async
from rackmesh.kube_client import CONFIG_MAPS, SECRETS, KubeApiError, KubeClient, ResourceRef
from rackmesh.zk_layout import ZkLayout

logger = logging.getLogger(__name__)


def derived_key(ca_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The key the namespaces' passwords are derived from: every operator replica (and restart) derives the
    same one from the CA key, so no password is ever stored or read back."""
    secret = ca_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    return HKDF(hashes.SHA256(), length=32, salt=None, info=b"rackmesh image access").derive(secret)


class ImageGrants:
    def __init__(self, kube: KubeClient, zk: KazooClient, layout: ZkLayout, key: bytes, ca_pem: bytes) -> None:
        self._kube, self._zk, self._layout = kube, zk, layout
        self._key, self._ca_pem = key, ca_pem
        self._granted: set[str] = set()

    async def ensure(self, namespace: str) -> None:
        if namespace in self._granted:
            return
        password = image_access.password_for(self._key, namespace)
        await self._put(CONFIG_MAPS, namespace, {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": image_access.CA_CONFIG_MAP},
            "data": {image_access.CA_CONFIG_MAP_KEY: self._ca_pem.decode()}})
        await self._put(SECRETS, namespace, {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": image_access.ACCESS_SECRET},
            "data": {"accessKeyId": _b64(namespace), "secretKey": _b64(password)}})
        path, digest = self._layout.image_access(namespace), image_access.digest(password).encode()
        try:
            await zk_async.wait(self._zk.create_async(path, digest, makepath=True))
        except NodeExistsError:
            await zk_async.wait(self._zk.set_async(path, digest))
        self._granted.add(namespace)
        logger.info("image access granted", extra={"namespace": namespace})

    async def _put(self, resource: ResourceRef, namespace: str, body: dict[str, Any]) -> None:
        """Create, or restore what someone changed (a merge patch of the same content)."""
        try:
            await self._kube.create(resource, body, namespace)
        except KubeApiError as exc:
            if exc.status != 409:
                raise
            await self._kube.patch(resource, body["metadata"]["name"], {"data": body["data"]}, namespace)


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()
