"""API errors as ``Status`` objects, worded as k8s.io/apimachinery/pkg/api/errors words them.

Docs: https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/ and
https://kubernetes.io/docs/reference/using-api/api-concepts/#http-status-codes
"""

from __future__ import annotations

from typing import Any

from rackmesh_sandbox.kube_api.fielderrors import FieldError, aggregate


class ApiError(Exception):
    """An error answered to the client as a ``Status`` with an HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(group: str, resource: str, name: str) -> dict[str, Any]:
    details = {"name": name, "kind": resource}
    return {**details, "group": group} if group else details


def group_resource(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(group: str, resource: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{group_resource(group, resource)} "{name}" not found',
        _details(group, resource, name),
    )


def already_exists(group: str, resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{group_resource(group, resource)} "{name}" already exists',
        _details(group, resource, name),
    )


def conflict(group: str, resource: str, name: str, why: str) -> ApiError:
    message = f'Operation cannot be fulfilled on {group_resource(group, resource)} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(group, resource, name))


def forbidden(group: str, resource: str, name: str, why: str) -> ApiError:
    """apierrors.NewForbidden (the name is left out when the request has none, e.g. on create)."""
    qualified = group_resource(group, resource)
    message = f'{qualified} "{name}" is forbidden: {why}' if name else f"{qualified} is forbidden: {why}"
    details: dict[str, Any] = {"name": name, "kind": resource} if name else {"kind": resource}
    if group:
        details["group"] = group
    return ApiError(403, "Forbidden", message, details)


def unauthorized() -> ApiError:
    """What a request without a valid token gets (the authentication filter's answer)."""
    return ApiError(401, "Unauthorized", "Unauthorized")


MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(group: str, kind: str, name: str, errors: list[FieldError]) -> ApiError:
    qualified = f"{kind}.{group}" if group else kind
    details: dict[str, Any] = {"name": name, "kind": kind, "causes": [e.cause() for e in errors]}
    if group:
        details["group"] = group
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {aggregate(errors)}', details)


def internal(message: str) -> ApiError:
    """apierrors.NewInternalError."""
    return ApiError(500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    message = (
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}"
    )
    return ApiError(
        415,
        "UnsupportedMediaType",
        message,
        {"causes": [{"reason": "UnsupportedMediaType", "message": content_type}]},
    )


def not_acceptable(accepted: list[str]) -> ApiError:
    """What a request gets whose Accept header names no media type the server writes."""
    return ApiError(406, "NotAcceptable", f"only the following media types are accepted: {', '.join(accepted)}")


def expired(requested: int, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")


def resource_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})
