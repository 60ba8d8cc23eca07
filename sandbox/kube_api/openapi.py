"""The OpenAPI v3 documents kubectl reads (``/openapi/v3`` and ``/openapi/v3/<group-version>``).

Why kubectl needs them: with ``--validate=strict`` (its default) ``kubectl apply/create`` asks the
OpenAPI v3 document of the object's group-version whether the PATCH operation of that kind accepts
the ``fieldValidation`` query parameter. If it does, kubectl leaves validation to the server (sending
``fieldValidation=Strict``) instead of validating client-side against OpenAPI schemas. Components carry
the CRD schemas so ``kubectl explain`` works. The OpenAPI v2 document is not served (404): kubectl
1.32 only falls back to it when v3 is missing.

Docs: https://kubernetes.io/docs/concepts/overview/kubernetes-api/#openapi-v3
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rackmesh_sandbox.kube_api.registry import Registry, ResourceDef

_QUERY = ("dryRun", "fieldManager", "fieldValidation", "pretty")


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _schema_name(rd: ResourceDef) -> str:
    # Kubernetes names definitions by the reversed group: io.rackmesh.v1alpha1.DeploymentRequest.
    reversed_group = ".".join(reversed(rd.group.split("."))) if rd.group else "io.k8s.api.core"
    return f"{reversed_group}.{rd.version}.{rd.kind}"


def _patch_operation(rd: ResourceDef) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{_schema_name(rd)}"} if rd.schema else {"type": "object"}
    # No strategic-merge content type is advertised, so kubectl computes strategic patches for
    # built-ins from its compiled-in types and merge patches for custom resources (as on real servers).
    content_types = [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ]
    return {
        "operationId": f"patch{rd.kind}",
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": rd.group, "version": rd.version, "kind": rd.kind},
        "parameters": [
            {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for name in _QUERY
        ],
        "requestBody": {
            "content": {c: {"schema": {"type": "object"}} for c in content_types},
            "required": True,
        },
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}},
    }


def group_version_document(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    defs = registry.in_group_version(group, version)
    if not defs:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rd in defs:
        prefix = f"/{_gv_path(group, version)}" + ("/namespaces/{namespace}" if rd.namespaced else "")
        gvk = {"group": rd.group, "version": rd.version, "kind": rd.kind}
        if "patch" in rd.verbs:
            paths[f"{prefix}/{rd.plural}/{{name}}"] = {"patch": _patch_operation(rd)}
        if rd.schema is not None:
            schemas[_schema_name(rd)] = {**rd.schema.openapi, "x-kubernetes-group-version-kind": [gvk]}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def digest(document: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest().upper()


def root_document(registry: Registry) -> dict[str, Any]:
    """Where each group-version document is; the hash lets clients cache them."""
    paths = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            document = group_version_document(registry, group, version)
            if document is not None:
                path = _gv_path(group, version)
                paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest(document)}"}
    return {"paths": paths}
