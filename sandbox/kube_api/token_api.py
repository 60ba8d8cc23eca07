"""The token endpoints: TokenRequest (``serviceaccounts/<name>/token``) and TokenReview.

Followed: kubernetes ``pkg/registry/core/serviceaccount/storage/token.go`` (binding, uid checks),
``pkg/apis/authentication/validation`` (expirationSeconds bounds), ``pkg/registry/authentication/tokenreview``.
Docs: https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-request-v1/,
https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-review-v1/
"""

from __future__ import annotations

import datetime
from typing import Any

from rackmesh_sandbox.kube_api import errors
from rackmesh_sandbox.kube_api.authn import AuthenticationError, Authenticator
from rackmesh_sandbox.kube_api.fielderrors import invalid

API_VERSION = "authentication.k8s.io/v1"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600  # "may not specify a duration less than 10 minutes"
MAX_EXPIRATION = 1 << 32
_BOUND_KINDS = {"Pod": "pods", "Node": "nodes", "Secret": "secrets"}


def _timestamp(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON object")
    return body


def token_request(authn: Authenticator, namespace: str, name: str, body: Any) -> dict[str, Any]:
    """Mint a token for ServiceAccount ``namespace/name``; the TokenRequest with its status."""
    request = _body(body)
    spec = dict(request.get("spec") or {})
    expiration = spec.get("expirationSeconds", DEFAULT_EXPIRATION)
    if not isinstance(expiration, int) or expiration < MIN_EXPIRATION or expiration > MAX_EXPIRATION:
        detail = (
            "may not specify a duration less than 10 minutes"
            if isinstance(expiration, int) and expiration < MIN_EXPIRATION
            else "may not specify a duration larger than 2^32 seconds"
        )
        raise errors.invalid(
            "authentication.k8s.io", "TokenRequest", name, [invalid("spec.expirationSeconds", expiration, detail)]
        )
    sa = authn.lookup("serviceaccounts", namespace, name)
    if sa is None:
        raise errors.not_found("", "serviceaccounts", name)
    bound = node = None
    ref = spec.get("boundObjectRef")
    if ref:
        kind, api_version = ref.get("kind", ""), ref.get("apiVersion", "")
        plural = _BOUND_KINDS.get(kind) if api_version in ("v1", "") else None
        if plural is None:
            group, _, version = api_version.rpartition("/")
            raise errors.bad_request(f"cannot bind token to object of type {group}/{version}, Kind={kind}")
        found = authn.lookup(plural, None if kind == "Node" else namespace, ref.get("name", ""))
        if found is None:
            raise errors.not_found("", plural, ref.get("name", ""))
        if kind == "Pod" and (found.get("spec") or {}).get("serviceAccountName", "default") != name:
            running = (found.get("spec") or {}).get("serviceAccountName", "default")
            raise errors.bad_request(
                f'cannot bind token for serviceaccount "{name}" to pod running with serviceaccount "{running}"'
            )
        uid = found["metadata"]["uid"]
        if ref.get("uid") and ref["uid"] != uid:
            why = (
                f"the UID in the bound object reference ({ref['uid']}) does not match the UID in record ({uid}). "
                "The object might have been deleted and then recreated"
            )
            raise errors.conflict("", kind, ref.get("name", ""), why)
        bound = (kind, found)
        node_name = (found.get("spec") or {}).get("nodeName") if kind == "Pod" else None
        node = authn.lookup("nodes", None, node_name) if node_name else None  # a Pod-bound token names its node
    audiences = spec.get("audiences") or list(authn.tokens.audiences)
    token, expiry = authn.tokens.issue(sa, audiences, expiration, bound, node)
    spec.update(audiences=audiences, expirationSeconds=expiration, boundObjectRef=ref or None)
    return {
        "kind": "TokenRequest",
        "apiVersion": API_VERSION,
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": _timestamp(expiry)},
    }


def token_review(authn: Authenticator, body: Any) -> dict[str, Any]:
    """Authenticate ``spec.token`` for ``spec.audiences`` (the API's when empty); the TokenReview with its status."""
    review = _body(body)
    spec = review.get("spec") or {}
    token = spec.get("token") or ""
    if not token:
        raise errors.bad_request("token is required for TokenReview in authentication")
    status: dict[str, Any] = {"user": {}}
    try:
        found = authn.authenticate(token, list(spec.get("audiences") or []) or None)
    except AuthenticationError as e:
        found, status["error"] = None, str(e)
    if found is not None:
        status.update(authenticated=True, user=found.user.to_json(), audiences=found.audiences)
    return {
        "kind": "TokenReview",
        "apiVersion": API_VERSION,
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": status,
    }
