"""Authentication as kube-apiserver does it: static bearer tokens and ServiceAccount tokens (JWTs).

Static tokens are ``--token-auth-file``'s (CSV: ``token,user,uid,"group1,group2"``). ServiceAccount
tokens are JWTs this server signs (ES256 with a key made at start, or a PEM key file: EC keys sign
ES256, RSA keys RS256) with the claims of bound tokens (kubernetes ``pkg/serviceaccount/claims.go``),
and are refused as its validator refuses them: bad signature, expired, not yet valid, audience not
asked for, ServiceAccount or bound object gone (or recreated with another uid). Every authenticated
user also gets ``system:authenticated`` (the server's group adder).

Docs: https://kubernetes.io/docs/reference/access-authn-authz/authentication/ (static token file,
service account tokens, TokenReview), https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import pathlib
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rackmesh_sandbox.kube_api.kubeconfig import DEFAULT_TOKEN, write_atomically

API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"  # kubeadm's --api-audiences (= the issuer)
ISSUER = API_AUDIENCE
ADMIN_TOKEN = DEFAULT_TOKEN  # what write_kubeconfig writes unless told otherwise
AUTHENTICATED = "system:authenticated"
SA_PREFIX = "system:serviceaccount:"
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
NODE_NAME = "authentication.kubernetes.io/node-name"
NODE_UID = "authentication.kubernetes.io/node-uid"
POD_NAME = "authentication.kubernetes.io/pod-name"
POD_UID = "authentication.kubernetes.io/pod-uid"
_LEEWAY = 60  # go-jose's jwt.DefaultLeeway, which the validator uses for exp, nbf and iat

# Reads a stored object: (resource plural, namespace or None, name) -> object or None.
Lookup = Callable[[str, str | None, str], dict[str, Any] | None]


@dataclasses.dataclass
class UserInfo:
    """Who a request is from (k8s.io/apiserver's user.Info)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """As authentication.k8s.io/v1 UserInfo (TokenReview status, admission requests' userInfo)."""
        found: dict[str, Any] = {"username": self.username}
        if self.uid:
            found["uid"] = self.uid
        if self.groups:
            found["groups"] = list(self.groups)
        if self.extra:
            found["extra"] = {key: list(values) for key, values in self.extra.items()}
        return found


ADMIN = UserInfo("kubernetes-admin", groups=("system:masters", AUTHENTICATED))


def with_authenticated(user: UserInfo) -> UserInfo:
    """Add ``system:authenticated`` as kube-apiserver's authenticatedGroupAdder does."""
    if AUTHENTICATED in user.groups:
        return user
    return dataclasses.replace(user, groups=(*user.groups, AUTHENTICATED))


def read_token_file(path: str | pathlib.Path) -> dict[str, UserInfo]:
    """``--token-auth-file``: CSV lines ``token,user,uid[,"group1,group2"]``; refused if a line has fewer."""
    found: dict[str, UserInfo] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for line, record in enumerate(csv.reader(f, skipinitialspace=True), start=1):
            if not record or record == [""]:
                continue
            if len(record) < 3:
                raise ValueError(
                    f"token file '{path}' must have at least 3 columns (token, user name, user uid), "
                    f"found {len(record)} on line {line}"
                )
            if not record[0]:
                continue  # the server skips (and logs) empty tokens
            groups = tuple(g.strip() for g in record[3].split(",") if g.strip()) if len(record) > 3 else ()
            found[record[0]] = UserInfo(record[1], record[2], groups)
    return found


class AuthenticationError(Exception):
    """A token that is ours but refused; ``str()`` is the error TokenReview reports."""


@dataclasses.dataclass
class Authenticated:
    """A token's user and the audiences it was accepted for (TokenReview's status)."""

    user: UserInfo
    audiences: list[str]


def load_or_create_key(path: pathlib.Path | None) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """The signing key in ``path`` (PEM); a new P-256 key, written there if a path is given, otherwise."""
    if path is not None and path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"{path}: a service account key must be an EC or RSA private key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    if path is not None:
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_atomically(path, pem.decode())
        path.chmod(0o600)
    return key


def _key_id(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    """The ``kid`` kube-apiserver puts in its tokens: base64url(SHA-256(the public key's DER))."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return base64.urlsafe_b64encode(digest.finalize()).decode().rstrip("=")


def _go_quoted(values: Iterable[str]) -> str:
    """A []string printed with Go's %q: ["a" "b"]."""
    return "[" + " ".join(f'"{v}"' for v in values) + "]"


def _ref(obj: dict[str, Any]) -> dict[str, str]:
    return {"name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"]}


def _check_bound(lookup: Lookup, kind: str, namespace: str | None, ref: dict[str, str]) -> None:
    """Refuse a token whose bound object is gone, or was recreated (another uid)."""
    found = lookup(f"{kind}s", namespace, ref["name"])
    if found is None:
        raise AuthenticationError(f'{kind}s "{ref["name"]}" not found')
    if found["metadata"].get("uid") != ref["uid"]:
        raise AuthenticationError(f"{kind} UID ({found['metadata'].get('uid')}) does not match claim ({ref['uid']})")


class ServiceAccountTokens:
    """Issues and validates bound ServiceAccount tokens."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
        *,
        issuer: str = ISSUER,
        audiences: Iterable[str] = (API_AUDIENCE,),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.algorithm = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
        self.key_id = _key_id(key)
        self.issuer = issuer
        self.audiences = list(audiences)
        self.clock = clock

    def issue(
        self,
        sa: dict[str, Any],
        audiences: list[str],
        expiration_seconds: int,
        bound: tuple[str, dict[str, Any]] | None = None,
        node: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        """A token for ServiceAccount ``sa``, bound to ``bound`` ((kind, object): Node, Pod or Secret) and
        naming ``node`` (a bound Pod's Node); return it and its expiry (epoch seconds)."""
        now = int(self.clock())
        expiry = now + expiration_seconds
        md = sa["metadata"]
        private: dict[str, Any] = {"namespace": md["namespace"], "serviceaccount": _ref(sa)}
        if bound is not None:
            private[bound[0].lower()] = _ref(bound[1])
        if node is not None:
            private["node"] = _ref(node)
        claims = {
            "aud": audiences,
            "exp": expiry,
            "iat": now,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "nbf": now,
            "sub": f"{SA_PREFIX}{md['namespace']}:{md['name']}",
        }
        token = jwt.encode(claims, self.key, algorithm=self.algorithm, headers={"kid": self.key_id})
        return token, expiry

    def authenticate(self, token: str, audiences: list[str] | None, lookup: Lookup) -> Authenticated | None:
        """The user of a token this server issued; None if it is not one (not a JWT, another issuer)."""
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return None
        if unverified.get("iss") != self.issuer or "kubernetes.io" not in unverified:
            return None
        try:
            claims = jwt.decode(
                token,
                self.key.public_key(),
                algorithms=[self.algorithm],
                options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError as e:
            raise AuthenticationError("go-jose/go-jose: error in cryptographic primitive") from e
        self._check_times(claims)
        accepted = self._audiences(claims, audiences)
        return Authenticated(self._user(claims, lookup), accepted)

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = self.clock()
        if "exp" in claims and now - _LEEWAY > claims["exp"]:
            raise AuthenticationError("service account token has expired")
        if "nbf" in claims and now + _LEEWAY < claims["nbf"]:
            raise AuthenticationError("service account token is not valid yet")
        if "iat" in claims and now + _LEEWAY < claims["iat"]:
            raise AuthenticationError("service account token is issued in the future")

    def _audiences(self, claims: dict[str, Any], requested: list[str] | None) -> list[str]:
        """Those of the token that were asked for (the API's when none were), as the authenticator intersects them."""
        token_audiences = claims.get("aud") or self.audiences
        if isinstance(token_audiences, str):
            token_audiences = [token_audiences]
        wanted = requested or self.audiences
        accepted = [a for a in token_audiences if a in wanted]
        if not accepted:
            raise AuthenticationError(
                f"token audiences {_go_quoted(token_audiences)} is invalid for the target audiences "
                f"{_go_quoted(wanted)}"
            )
        return accepted

    def _user(self, claims: dict[str, Any], lookup: Lookup) -> UserInfo:
        """The ServiceAccount's user, once it and the bound object exist with the uids the token names."""
        private = claims["kubernetes.io"]
        namespace, sa_ref = private["namespace"], private["serviceaccount"]
        sa = lookup("serviceaccounts", namespace, sa_ref["name"])
        if sa is None:
            raise AuthenticationError(f'serviceaccounts "{sa_ref["name"]}" not found')
        if sa["metadata"].get("uid") != sa_ref["uid"]:
            raise AuthenticationError(
                f"service account UID ({sa['metadata'].get('uid')}) does not match claim ({sa_ref['uid']})"
            )
        if sa["metadata"].get("deletionTimestamp"):
            raise AuthenticationError("service account token has been invalidated")
        extra = {CREDENTIAL_ID: [f"JTI={claims['jti']}"]} if claims.get("jti") else {}
        pod, secret, node = private.get("pod"), private.get("secret"), private.get("node")
        if pod is not None:
            _check_bound(lookup, "pod", namespace, pod)
            extra[POD_NAME], extra[POD_UID] = [pod["name"]], [pod["uid"]]
        if secret is not None:
            _check_bound(lookup, "secret", namespace, secret)
        if node is not None:
            if pod is None:  # a Pod's node is informational; a token bound to the Node needs it to exist
                _check_bound(lookup, "node", None, node)
            extra[NODE_NAME], extra[NODE_UID] = [node["name"]], [node["uid"]]
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED)
        return UserInfo(claims["sub"], sa_ref["uid"], groups, extra)


@dataclasses.dataclass
class AuthConfig:
    """Turns on authentication, RBAC authorization and ValidatingAdmissionPolicies (``KubeApiServer(auth=...)``)."""

    tokens: Mapping[str, UserInfo] = dataclasses.field(default_factory=dict)  # static tokens, with the file's
    token_file: pathlib.Path | None = None  # --token-auth-file's CSV
    admin_token: str | None = ADMIN_TOKEN  # a system:masters user's token (kubectl's, in write_kubeconfig's files)
    service_account_key_file: pathlib.Path | None = None  # PEM; made if missing, so tokens outlive restarts
    issuer: str = ISSUER
    audiences: tuple[str, ...] = (API_AUDIENCE,)
    clock: Callable[[], float] = time.time  # tests move time on to expire tokens
    # Validating admission plugins beyond kube-apiserver's defaults (--enable-admission-plugins), by name.
    admission_plugins: frozenset[str] = frozenset()

    def static_tokens(self) -> dict[str, UserInfo]:
        found = {self.admin_token: ADMIN} if self.admin_token else {}
        if self.token_file is not None:
            found.update(read_token_file(self.token_file))
        found.update(self.tokens)
        return found

    def authenticator(self, lookup: Lookup) -> Authenticator:
        key = load_or_create_key(self.service_account_key_file)
        tokens = ServiceAccountTokens(key, issuer=self.issuer, audiences=self.audiences, clock=self.clock)
        return Authenticator(self.static_tokens(), tokens, lookup)


class Authenticator:
    """Static tokens, then ServiceAccount tokens (kube-apiserver's union of token authenticators)."""

    def __init__(self, static: Mapping[str, UserInfo], tokens: ServiceAccountTokens, lookup: Lookup) -> None:
        self.static = {token: with_authenticated(user) for token, user in static.items()}
        self.tokens = tokens
        self.lookup = lookup

    def authenticate(self, token: str, audiences: list[str] | None = None) -> Authenticated | None:
        """The token's user (None: no authenticator knows it); AuthenticationError when it is refused.

        ``audiences``: those a TokenReview asks for (None: the API's). Static tokens are not audience
        aware: they are accepted for the API's audiences only (WrapAudienceAgnosticToken).
        """
        user = self.static.get(token)
        if user is not None:
            accepted = [a for a in self.tokens.audiences if not audiences or a in audiences]
            return Authenticated(user, accepted) if accepted else None
        return self.tokens.authenticate(token, audiences, self.lookup)

    def authenticate_header(self, authorization: str | None) -> UserInfo | None:
        """The user of a request's ``Authorization: Bearer`` header; None when it has no valid token."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            found = self.authenticate(token)
        except AuthenticationError:
            return None
        return found.user if found is not None else None
