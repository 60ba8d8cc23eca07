"""API discovery documents (/api, /apis, /apis/<group>, /api/v1, /apis/<group>/<version>).

Docs: https://kubernetes.io/docs/concepts/overview/kubernetes-api/#discovery-api
This is the unaggregated ("legacy") discovery; clients asking for aggregated discovery get it
as the fallback, which kubectl and kopf both handle.
"""

from __future__ import annotations

from typing import Any

from rackmesh_sandbox.kube_api.registry import Registry

# Which subresources discovery lists, and their verbs.
_SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "finalize": ["update"],
}

VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-rackmesh-sandbox",
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _group_version(group: str, version: str) -> dict[str, str]:
    return {"groupVersion": f"{group}/{version}", "version": version}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group(group: str, versions: list[str]) -> dict[str, Any]:
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [_group_version(group, v) for v in versions],
        "preferredVersion": _group_version(group, versions[0]),
    }


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = [api_group(g, vs) for g, vs in sorted(registry.group_versions().items()) if g]
    for group in groups:
        del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    defs = registry.in_group_version(group, version)
    if not defs:
        return None
    resources: list[dict[str, Any]] = []
    for rd in sorted(defs, key=lambda rd: rd.plural):
        entry: dict[str, Any] = {
            "name": rd.plural,
            "singularName": rd.singular,
            "namespaced": rd.namespaced,
            "kind": rd.kind,
            "verbs": list(rd.verbs),
        }
        if rd.shortnames:
            entry["shortNames"] = list(rd.shortnames)
        if rd.categories:
            entry["categories"] = list(rd.categories)
        resources.append(entry)
        for sub in sorted(rd.subresources & _SUBRESOURCE_VERBS.keys()):
            entry = {
                "name": f"{rd.plural}/{sub}",
                "singularName": "",
                "namespaced": rd.namespaced,
                "kind": rd.kind,
                "verbs": _SUBRESOURCE_VERBS[sub],
            }
            if sub == "scale":
                # Scale clients (kubectl scale, HPAs) read the subresource's kind from here.
                entry.update(group="autoscaling", version="v1", kind="Scale")
            resources.append(entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": rd.api_version,
        "resources": resources,
    }
