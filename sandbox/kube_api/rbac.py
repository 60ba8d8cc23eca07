"""RBAC authorization of requests, as kube-apiserver's RBAC authorizer decides it.

A request's attributes are read from its method, path and query as k8s.io/apiserver's
``RequestInfoFactory`` reads them; the Roles, ClusterRoles and their bindings are those stored in the
API. Members of ``system:masters`` are always allowed (the server's privileged group); the bootstrap
ClusterRoles and bindings a cluster starts with (``cluster-admin``, ``system:discovery``,
``system:public-info-viewer``, ``system:basic-user``) are created with the server.

Followed: ``plugin/pkg/auth/authorizer/rbac/rbac.go`` (which bindings apply, subjects),
``pkg/apis/rbac/v1/evaluation_helpers.go`` (rule matching), apiserver's
``endpoints/handlers/responsewriters/errors.go`` (the refusal's text).
Docs: https://kubernetes.io/docs/reference/access-authn-authz/rbac/
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rackmesh_sandbox.kube_api import errors
from rackmesh_sandbox.kube_api.authn import SA_PREFIX, UserInfo

GROUP = "rbac.authorization.k8s.io"
MASTERS = "system:masters"
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}

# Lists stored objects: (resource plural, namespace or None for all/cluster-scoped) -> objects.
Lister = Callable[[str, str | None], list[dict[str, Any]]]
# Reads a stored object: (resource plural, namespace or None, name) -> object or None.
Getter = Callable[[str, str | None, str], dict[str, Any] | None]


@dataclasses.dataclass(frozen=True)
class Attributes:
    """What a request asks to do (authorizer.Attributes)."""

    verb: str
    path: str
    resource_request: bool
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def qualified_resource(self) -> str:
        """``resource/subresource``, as rules and the access record name it."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def _field_selector_name(selector: str) -> str:
    """The name a ``metadata.name=x`` term requires (RequiresExactMatch), "" if there is none."""
    for term in selector.split(","):
        for operator in ("==", "="):
            key, found, value = term.partition(operator)
            if found and key.strip() == "metadata.name" and "!" not in key:
                return value.strip()
    return ""


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> Attributes:
    """A request's attributes as RequestInfoFactory derives them."""
    method = method.upper()
    parts = [part for part in path.strip("/").split("/") if part]
    non_resource = Attributes(method.lower(), path, False)
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    rest, group = parts[1:], ""
    if parts[0] == "apis":
        if len(rest) < 3:
            return non_resource
        group, rest = rest[0], rest[1:]
    version, rest = rest[0], rest[1:]
    if rest[0] in ("watch", "proxy") and len(rest) >= 2:
        verb, rest = rest[0], rest[1:]
    else:
        verb = _METHOD_VERBS.get(method, "")
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]  # a Namespace's own paths are in it too
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 and verb != "proxy" else ""
    if not name and verb == "get":
        watch = query.get("watch")
        # Any value of watch but false and 0 (the empty one too) means a watch.
        verb = "list" if watch is None or watch.lower() in ("false", "0") else "watch"
        name = _field_selector_name(query.get("fieldSelector", ""))
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(verb, path, True, group, version, resource, subresource, namespace, name)


# -- rules -----------------------------------------------------------------------------------------


def _has(values: Iterable[str] | None, wanted: str) -> bool:
    values = list(values or ())
    return "*" in values or wanted in values


def _resource_matches(rule_resources: Iterable[str] | None, attrs: Attributes) -> bool:
    combined = attrs.qualified_resource
    for resource in rule_resources or ():
        if resource in ("*", combined):
            return True
        if attrs.subresource and resource == f"*/{attrs.subresource}":
            return True
    return False


def _non_resource_matches(urls: Iterable[str] | None, path: str) -> bool:
    return any(url in ("*", path) or (url.endswith("*") and path.startswith(url[:-1])) for url in urls or ())


def rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    """Whether one PolicyRule allows the request (RuleAllows)."""
    if not _has(rule.get("verbs"), attrs.verb):
        return False
    if not attrs.resource_request:
        return _non_resource_matches(rule.get("nonResourceURLs"), attrs.path)
    names = rule.get("resourceNames") or []
    return (
        _has(rule.get("apiGroups"), attrs.api_group)
        and _resource_matches(rule.get("resources"), attrs)
        and (not names or attrs.name in names)
    )


def _applies_to(subject: dict[str, Any], user: UserInfo, binding_namespace: str) -> bool:
    """Whether a binding's subject is this user (appliesToUser)."""
    match subject.get("kind"):
        case "User":
            return subject.get("name") == user.username
        case "Group":
            return subject.get("name") in user.groups
        case "ServiceAccount":
            namespace = subject.get("namespace") or binding_namespace
            return f"{SA_PREFIX}{namespace}:{subject.get('name')}" == user.username
    return False


class Authorizer:
    """Decides requests with the RBAC objects the API stores."""

    def __init__(self, list_objects: Lister, get_object: Getter) -> None:
        self.list = list_objects
        self.get = get_object

    def authorize(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason): the reason names roles that bindings of the user refer to but are missing."""
        if MASTERS in user.groups:
            return True, ""
        missing: list[str] = []
        bindings = [(b, "") for b in self.list("clusterrolebindings", None)]
        if attrs.namespace:
            bindings += [(b, attrs.namespace) for b in self.list("rolebindings", attrs.namespace)]
        for binding, namespace in bindings:
            if not any(_applies_to(s, user, namespace) for s in binding.get("subjects") or []):
                continue
            rules = self._rules(binding.get("roleRef") or {}, namespace, missing)
            if any(rule_allows(rule, attrs) for rule in rules):
                return True, ""
        if not missing:
            return False, ""
        return False, "RBAC: " + (missing[0] if len(missing) == 1 else f"[{', '.join(missing)}]")

    def _rules(self, ref: dict[str, Any], namespace: str, missing: list[str]) -> list[dict[str, Any]]:
        kind, name = ref.get("kind"), ref.get("name", "")
        if kind == "ClusterRole":
            role = self.get("clusterroles", None, name)
        elif kind == "Role" and namespace:
            role = self.get("roles", namespace, name)
        else:
            return []
        if role is None:
            missing.append(f'{kind.lower()}.{GROUP} "{name}" not found')
            return []
        return list(role.get("rules") or [])


def forbidden(user: UserInfo, attrs: Attributes, reason: str) -> errors.ApiError:
    """The 403 a refused request gets (responsewriters.Forbidden)."""
    who = f'User "{user.username}"'
    if not attrs.resource_request:
        message = f'{who} cannot {attrs.verb} path "{attrs.path}"'
    elif attrs.namespace:
        message = (
            f'{who} cannot {attrs.verb} resource "{attrs.qualified_resource}" in API group "{attrs.api_group}" '
            f'in the namespace "{attrs.namespace}"'
        )
    else:
        message = (
            f'{who} cannot {attrs.verb} resource "{attrs.qualified_resource}" in API group "{attrs.api_group}" '
            "at the cluster scope"
        )
    if reason:
        message = f"{message}: {reason}"
    if not attrs.resource_request:
        return errors.ApiError(403, "Forbidden", f"forbidden: {message}", {})
    return errors.forbidden(attrs.api_group, attrs.resource, attrs.name, message)


# -- the bootstrap policy --------------------------------------------------------------------------

_DISCOVERY_URLS = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
                   "/version", "/version/"]
_PUBLIC_INFO_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]


def _bootstrap_metadata(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    }


def _bootstrap_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole", "metadata": _bootstrap_metadata(name), "rules": rules}


def _bootstrap_binding(name: str, groups: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _bootstrap_metadata(name),
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": GROUP, "kind": "Group", "name": group} for group in groups],
    }


def bootstrap_policy() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ClusterRoles and ClusterRoleBindings of a new cluster that matter here (bootstrappolicy)."""
    roles = [
        _bootstrap_role(
            "cluster-admin",
            [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        ),
        _bootstrap_role("system:discovery", [{"nonResourceURLs": _DISCOVERY_URLS, "verbs": ["get"]}]),
        _bootstrap_role("system:public-info-viewer", [{"nonResourceURLs": _PUBLIC_INFO_URLS, "verbs": ["get"]}]),
        _bootstrap_role(
            "system:basic-user",
            [
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    "verbs": ["create"],
                },
                {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
            ],
        ),
    ]
    bindings = [
        _bootstrap_binding("cluster-admin", [MASTERS]),
        _bootstrap_binding("system:discovery", ["system:authenticated"]),
        _bootstrap_binding("system:public-info-viewer", ["system:authenticated", "system:unauthenticated"]),
        _bootstrap_binding("system:basic-user", ["system:authenticated"]),
    ]
    return roles, bindings
