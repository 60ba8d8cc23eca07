"""Authentication (opt-in: ``KubeApiServer(auth=AuthConfig(...))``): static tokens, ServiceAccount tokens,
TokenRequest and TokenReview, as kube-apiserver answers them.

Docs: https://kubernetes.io/docs/reference/access-authn-authz/authentication/,
https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-request-v1/

Case matrix:
- no token, an unknown token, a malformed header: 401 ``Unauthorized``; the admin token (the kubeconfig's
  default) is served as before; without ``auth`` any request is served (unchanged behaviour).
- TokenRequest: defaults (API audience, 3600 s), claims as Kubernetes (iss, sub, aud, exp, iat, nbf, jti,
  kubernetes.io with the bound Node or Pod and its node), expirationSeconds below 600 (422), missing
  ServiceAccount or bound object (404), unsupported kind (400), uid mismatch (409).
- TokenReview: the user (groups, extra with credential-id and node name/uid), audiences intersected,
  refusals with the server's error: expired (clock moved), bound Node deleted, ServiceAccount recreated,
  bad signature, audience not asked for; static tokens only for the API's audience.
- the process form: ``--token-file`` CSV users and kubectl with a token written by ``write_kubeconfig``,
  ``--service-account-key-file`` keeps tokens valid across a restart.
"""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest

from rackmesh_sandbox.kube_api import KubeApiServer, write_kubeconfig
from rackmesh_sandbox.kube_api.authn import ADMIN_TOKEN, API_AUDIENCE, AuthConfig, UserInfo
from tests.kube_api.conftest import KUBECTL, NODES, Client, Reply, node
from tests.support.waiting import eventually

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
SAS = "/api/v1/namespaces/{ns}/serviceaccounts"
ALICE = UserInfo("alice", "alice-uid", ("dev",))


class Clock:
    """A clock tests move on (tokens expire without waiting)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class TokenClient(Client):
    """A client sending ``Authorization: Bearer <token>`` (none when token is None)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str | None) -> None:
        super().__init__(session, url)
        self.token = token

    async def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Reply:
        headers = dict(kwargs.pop("headers", None) or {})
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return await super().request(method, path, body, headers=headers, **kwargs)


class Session:
    """An authenticating server and clients for it: ``admin`` and ``as_token(token)``."""

    def __init__(self, api: KubeApiServer, session: aiohttp.ClientSession, clock: Clock) -> None:
        self.api, self.session, self.clock = api, session, clock
        self.admin = TokenClient(session, api.url, ADMIN_TOKEN)

    def as_token(self, token: str | None) -> TokenClient:
        return TokenClient(self.session, self.api.url, token)

    async def service_account(self, namespace: str, name: str) -> dict[str, Any]:
        if (await self.admin.get(f"/api/v1/namespaces/{namespace}")).status == 404:
            await self.admin.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
        return await self.admin.create(SAS.format(ns=namespace), {"metadata": {"name": name}})

    async def token(self, namespace: str, name: str, **spec: Any) -> str:
        """A TokenRequest's token (spec: audiences, expirationSeconds, boundObjectRef)."""
        reply = await self.admin.post(f"{SAS.format(ns=namespace)}/{name}/token", {"spec": spec})
        assert reply.status == 201, reply
        return reply.body["status"]["token"]

    async def review(self, token: str, audiences: list[str] | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"token": token, **({"audiences": audiences} if audiences else {})}
        reply = await self.admin.post(TOKEN_REVIEWS, {"apiVersion": "authentication.k8s.io/v1", "spec": spec})
        assert reply.status == 201, reply
        return reply.body["status"]


@pytest.fixture
async def authed() -> AsyncIterator[Session]:
    clock = Clock()
    config = AuthConfig(tokens={"alice-token": ALICE}, clock=clock)
    async with KubeApiServer(auth=config) as api, https_session(api) as session:
        yield Session(api, session, clock)


def https_session(api: KubeApiServer) -> aiohttp.ClientSession:
    """A session trusting the server's CA (an authenticating server serves HTTPS)."""
    assert api.tls is not None and api.url.startswith("https://")
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=api.tls.client_context()))


def bound_to(obj: dict[str, Any]) -> dict[str, str]:
    return {"kind": obj["kind"], "apiVersion": "v1", "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"]}


UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}


@pytest.mark.parametrize("token", [None, "no-such-token", "", "eyJhbGciOiJIUzI1NiJ9.e30.x"])
async def test_requests_without_a_valid_token_are_unauthorized(authed: Session, token: str | None) -> None:
    for path in (NODES, "/api", "/healthz", "/version", "/metrics"):
        reply = await authed.as_token(token).get(path)
        assert (reply.status, reply.body) == (401, UNAUTHORIZED), path
    basic = await authed.as_token(None).get(NODES, headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert basic.status == 401


async def test_the_admin_token_is_served_as_before(authed: Session) -> None:
    await authed.admin.create(NODES, node("n1"))
    assert [n["metadata"]["name"] for n in (await authed.admin.get(NODES)).body["items"]] == ["n1"]


async def test_without_auth_any_request_is_served(client: Client) -> None:
    assert (await client.get(NODES)).status == 200
    assert (await client.get(NODES, headers={"Authorization": "Bearer nonsense"})).status == 200


async def test_static_token_review_adds_system_authenticated(authed: Session) -> None:
    status = await authed.review("alice-token")
    assert status == {
        "authenticated": True,
        "user": {"username": "alice", "uid": "alice-uid", "groups": ["dev", "system:authenticated"]},
        "audiences": [API_AUDIENCE],
    }
    # Static tokens are not audience-aware: accepted for the API's audience only.
    assert await authed.review("alice-token", ["vault"]) == {"user": {}}
    assert await authed.review("no-such-token") == {"user": {}}
    missing = await authed.admin.post(TOKEN_REVIEWS, {"spec": {}})
    assert (missing.status, missing.body["message"]) == (400, "token is required for TokenReview in authentication")


async def test_token_request_claims_and_review(authed: Session) -> None:
    sa = await authed.service_account("rackmesh-system", "rackmesh-agent")
    n1 = await authed.admin.create(NODES, node("node-1"))
    reply = await authed.admin.post(
        f"{SAS.format(ns='rackmesh-system')}/rackmesh-agent/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"boundObjectRef": bound_to(n1)}},
    )
    assert reply.status == 201, reply
    assert reply.body["kind"] == "TokenRequest"
    assert reply.body["spec"]["audiences"] == [API_AUDIENCE]
    assert reply.body["spec"]["expirationSeconds"] == 3600
    token = reply.body["status"]["token"]
    assert reply.body["status"]["expirationTimestamp"] == "2027-01-15T09:00:00Z"  # the clock + 3600 s
    claims = jwt.decode(token, options={"verify_signature": False})
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["sub"] == "system:serviceaccount:rackmesh-system:rackmesh-agent"
    assert claims["aud"] == [API_AUDIENCE]
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"] == int(authed.clock.now)
    assert claims["kubernetes.io"] == {
        "namespace": "rackmesh-system",
        "serviceaccount": {"name": "rackmesh-agent", "uid": sa["metadata"]["uid"]},
        "node": {"name": "node-1", "uid": n1["metadata"]["uid"]},
    }
    status = await authed.review(token)
    assert status == {
        "authenticated": True,
        "user": {
            "username": "system:serviceaccount:rackmesh-system:rackmesh-agent",
            "uid": sa["metadata"]["uid"],
            "groups": ["system:serviceaccounts", "system:serviceaccounts:rackmesh-system", "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/credential-id": [f"JTI={claims['jti']}"],
                "authentication.kubernetes.io/node-name": ["node-1"],
                "authentication.kubernetes.io/node-uid": [n1["metadata"]["uid"]],
            },
        },
        "audiences": [API_AUDIENCE],
    }
    # The token is good for requests (discovery is every authenticated user's).
    assert (await authed.as_token(token).get("/apis")).status == 200


async def test_pod_bound_token_names_the_pod_and_its_node(authed: Session) -> None:
    await authed.service_account("default", "runner")
    n1 = await authed.admin.create(NODES, node("node-1"))
    pod = await authed.admin.create(
        "/api/v1/namespaces/default/pods",
        {"metadata": {"name": "p1"}, "spec": {"serviceAccountName": "runner", "nodeName": "node-1", "containers": []}},
    )
    token = await authed.token("default", "runner", boundObjectRef=bound_to(pod))
    extra = (await authed.review(token))["user"]["extra"]
    assert extra["authentication.kubernetes.io/pod-name"] == ["p1"]
    assert extra["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]
    assert extra["authentication.kubernetes.io/node-name"] == ["node-1"]
    assert extra["authentication.kubernetes.io/node-uid"] == [n1["metadata"]["uid"]]
    await authed.admin.delete("/api/v1/namespaces/default/pods/p1")
    assert await authed.review(token) == {"user": {}, "error": 'pods "p1" not found'}


async def test_token_request_refusals(authed: Session) -> None:
    await authed.service_account("default", "runner")
    path = f"{SAS.format(ns='default')}/runner/token"
    short = await authed.admin.post(path, {"spec": {"expirationSeconds": 599}})
    assert (short.status, short.body["message"]) == (
        422,
        'TokenRequest.authentication.k8s.io "runner" is invalid: spec.expirationSeconds: Invalid value: 599: '
        "may not specify a duration less than 10 minutes",
    )
    missing = await authed.admin.post(f"{SAS.format(ns='default')}/nobody/token", {"spec": {}})
    assert (missing.status, missing.body["message"]) == (404, 'serviceaccounts "nobody" not found')
    ref = {"kind": "Node", "apiVersion": "v1", "name": "node-9"}
    no_node = await authed.admin.post(path, {"spec": {"boundObjectRef": ref}})
    assert (no_node.status, no_node.body["message"]) == (404, 'nodes "node-9" not found')
    config_map = {"kind": "ConfigMap", "apiVersion": "v1", "name": "x"}
    kind = await authed.admin.post(path, {"spec": {"boundObjectRef": config_map}})
    assert (kind.status, kind.body["message"]) == (400, "cannot bind token to object of type /v1, Kind=ConfigMap")
    n1 = await authed.admin.create(NODES, node("node-1"))
    stale = await authed.admin.post(path, {"spec": {"boundObjectRef": {**bound_to(n1), "uid": "0000"}}})
    assert stale.status == 409 and "does not match the UID in record" in stale.body["message"]
    assert (await authed.admin.get(path)).status == 405


async def test_tokens_are_refused_once_invalid(authed: Session) -> None:
    await authed.service_account("default", "runner")
    n1 = await authed.admin.create(NODES, node("node-1"))
    bound = await authed.token("default", "runner", boundObjectRef=bound_to(n1))
    plain = await authed.token("default", "runner", expirationSeconds=600)
    assert (await authed.as_token(plain).get("/api")).status == 200
    # Expired (past go-jose's minute of leeway).
    authed.clock.now += 600 + 61
    assert await authed.review(plain) == {"user": {}, "error": "service account token has expired"}
    assert (await authed.as_token(plain).get("/api")).status == 401
    # The bound Node is gone.
    await authed.admin.delete(f"{NODES}/node-1")
    assert await authed.review(bound) == {"user": {}, "error": 'nodes "node-1" not found'}
    assert (await authed.as_token(bound).get("/api")).status == 401
    # The ServiceAccount was recreated: another uid.
    fresh = await authed.token("default", "runner")
    await authed.admin.delete(f"{SAS.format(ns='default')}/runner")
    sa = await authed.service_account("default", "runner")
    status = await authed.review(fresh)
    assert status["error"].startswith(f"service account UID ({sa['metadata']['uid']}) does not match claim (")
    # A tampered signature.
    good = await authed.token("default", "runner")
    head, body, signature = good.split(".")
    forged = ".".join([head, body, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")])
    assert await authed.review(forged) == {"user": {}, "error": "go-jose/go-jose: error in cryptographic primitive"}


async def test_audiences_intersect(authed: Session) -> None:
    await authed.service_account("default", "runner")
    vault = await authed.token("default", "runner", audiences=["vault", "other"])
    status = await authed.review(vault, ["vault"])
    assert status["authenticated"] is True and status["audiences"] == ["vault"]
    refused = await authed.review(vault)
    assert refused == {
        "user": {},
        "error": 'token audiences ["vault" "other"] is invalid for the target audiences '
        '["https://kubernetes.default.svc.cluster.local"]',
    }
    assert (await authed.as_token(vault).get("/api")).status == 401  # not a token for this API


# -- the process form ------------------------------------------------------------------------------


def start(tmp: pathlib.Path, *flags: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """The API as a process; its URL and CA (from the ready file)."""
    ready = tmp / "api.json"
    ready.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "rackmesh_sandbox.kube_api", "--no-kubevirt", "--ready-file", str(ready), *flags]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    eventually(ready.exists, timeout=20, what="the API is ready")
    found = json.loads(ready.read_text())
    return proc, found["url"], found["ca"]


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


@pytest.fixture
def token_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "tokens.csv"
    path.write_text('alice-token,alice,alice-uid,"dev,ops"\nbob-token,bob,bob-uid\n')
    return path


def kubectl(kubeconfig: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(kubeconfig.parent / "cache"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_process_token_file_users_and_kubectl(tmp_path: pathlib.Path, token_file: pathlib.Path) -> None:
    proc, url, ca = start(tmp_path, "--token-file", str(token_file))
    try:
        admin = write_kubeconfig(tmp_path / "admin" / "kubeconfig", url, ca_pem=ca)
        assert kubectl(admin, "get", "namespaces").returncode == 0
        alice = write_kubeconfig(tmp_path / "alice" / "kubeconfig", url, token="alice-token", ca_pem=ca)
        whoami = kubectl(alice, "auth", "whoami", "-o", "json")
        denied = kubectl(alice, "get", "nodes")
        assert denied.returncode == 1
        assert (
            'Error from server (Forbidden): nodes is forbidden: User "alice" cannot list resource "nodes" in API group '
            '"" at the cluster scope' in denied.stderr
        )
        if whoami.returncode == 0:  # SelfSubjectReview is not emulated: kubectl says so, it is not required
            assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == "alice"
        nobody = write_kubeconfig(tmp_path / "nobody" / "kubeconfig", url, token="wrong", ca_pem=ca)
        refused = kubectl(nobody, "get", "nodes")
        assert "You must be logged in to the server (the server has asked for the client to provide credentials)" in (
            refused.stderr
        )
    finally:
        stop(proc)


def test_process_key_file_keeps_tokens_across_restarts(tmp_path: pathlib.Path) -> None:
    key = tmp_path / "sa.key"
    proc, url, ca = start(tmp_path, "--service-account-key-file", str(key))
    try:
        admin = write_kubeconfig(tmp_path / "admin" / "kubeconfig", url, ca_pem=ca)
        manifest = tmp_path / "sa.json"
        manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner"}}))
        assert kubectl(admin, "apply", "-f", str(manifest)).returncode == 0
        request = tmp_path / "token-request.json"
        request.write_text(json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}))
        path = "/api/v1/namespaces/default/serviceaccounts/runner/token"
        made = kubectl(admin, "create", "--raw", path, "-f", str(request))  # JSON (`create token` sends protobuf)
        assert made.returncode == 0, made.stderr
        token = json.loads(made.stdout)["status"]["token"]
        assert jwt.decode(token, options={"verify_signature": False})["sub"] == "system:serviceaccount:default:runner"
    finally:
        stop(proc)
    assert key.exists()
    # A restarted server signs with the same key, so a token it made still verifies (its objects are gone,
    # so it is refused for that: the refusal names the ServiceAccount, not the signature).
    proc, url, ca = start(tmp_path, "--service-account-key-file", str(key))
    try:
        admin = write_kubeconfig(tmp_path / "admin" / "kubeconfig", url, ca_pem=ca)
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        manifest = tmp_path / "review.json"
        manifest.write_text(json.dumps(review))
        done = kubectl(admin, "create", "--raw", "/apis/authentication.k8s.io/v1/tokenreviews", "-f", str(manifest))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"]["error"] == 'serviceaccounts "runner" not found'
    finally:
        stop(proc)
