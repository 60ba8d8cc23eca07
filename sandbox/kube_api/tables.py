"""Server-side printing: ``meta.k8s.io/v1 Table`` answers for ``kubectl get``.

Docs: https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables
Custom resources print their CRD's ``additionalPrinterColumns`` (``Name`` first, then the columns;
``Age`` alone when none are declared); ``date`` columns and ``Age`` are rendered by the server as
human durations ("5m"), as apimachinery's ``ConvertToHumanReadableDateType`` does.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from rackmesh_sandbox.kube_api import jsonpath
from rackmesh_sandbox.kube_api.registry import ResourceDef

TABLE_ACCEPT = "as=Table"
_NAME = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "priority": 0,
    "description": "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
}
_AGE = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
    "description": "CreationTimestamp is a timestamp representing the server time when this object was "
    "created.",
}


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours = s // 60, s // 3600
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


def age(timestamp: Any) -> str:
    if not isinstance(timestamp, str) or not timestamp:
        return "<unknown>"
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    return human_duration((datetime.datetime.now(datetime.UTC) - then).total_seconds())


def _cell(column: dict[str, Any], obj: dict[str, Any]) -> Any:
    found = jsonpath.find(obj, column.get("jsonPath", ""))
    if not found or found[0] is None:
        return None
    value = found[0]
    match column.get("type"):
        case "date":
            return age(value)
        case "integer":
            return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        case "number":
            return value if isinstance(value, int | float) and not isinstance(value, bool) else None
        case "boolean":
            return value if isinstance(value, bool) else None
        case _:
            if isinstance(value, bool):
                return "true" if value else "false"
            return (
                value
                if isinstance(value, str)
                else json.dumps(value)
                if isinstance(value, dict | list)
                else str(value)
            )


def _node_status(obj: dict[str, Any]) -> str:
    conditions = (obj.get("status") or {}).get("conditions") or []
    ready = next((c.get("status") for c in conditions if c.get("type") == "Ready"), None)
    status = {"True": "Ready", "False": "NotReady"}.get(ready or "", "Unknown")
    return status + (",SchedulingDisabled" if (obj.get("spec") or {}).get("unschedulable") else "")


def _node_roles(obj: dict[str, Any]) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    roles = sorted(
        {k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")}
        | ({labels["kubernetes.io/role"]} if "kubernetes.io/role" in labels else set())
    )
    return ",".join(r for r in roles if r) or "<none>"


def _address(obj: dict[str, Any], kind: str) -> str:
    addresses = (obj.get("status") or {}).get("addresses") or []
    return next((a.get("address", "") for a in addresses if a.get("type") == kind), "<none>")


def _string(name: str, priority: int = 0) -> dict[str, Any]:
    return {"name": name, "type": "string", "format": "", "description": "", "priority": priority}


# Built-in printers for the kinds people list; other built-ins get Name and Age.
_BUILTIN: dict[tuple[str, str], list[tuple[dict[str, Any], Any]]] = {
    ("", "nodes"): [
        (_string("Status"), _node_status),
        (_string("Roles"), _node_roles),
        (_string("Age"), lambda o: age(o["metadata"].get("creationTimestamp"))),
        (
            _string("Version"),
            lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""),
        ),
        (_string("Internal-IP", 1), lambda o: _address(o, "InternalIP")),
        (_string("External-IP", 1), lambda o: _address(o, "ExternalIP")),
    ],
    ("", "namespaces"): [
        (_string("Status"), lambda o: (o.get("status") or {}).get("phase", "")),
        (_string("Age"), lambda o: age(o["metadata"].get("creationTimestamp"))),
    ],
}


def columns(rd: ResourceDef) -> list[dict[str, Any]]:
    if (rd.group, rd.plural) in _BUILTIN:
        return [_NAME] + [column for column, _ in _BUILTIN[rd.group, rd.plural]]
    declared = list(rd.columns) if rd.custom and rd.columns else [_AGE]
    return [_NAME] + [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in declared
    ]


def row(rd: ResourceDef, obj: dict[str, Any], include_object: str = "Metadata") -> dict[str, Any]:
    if (rd.group, rd.plural) in _BUILTIN:
        cells = [fn(obj) for _, fn in _BUILTIN[rd.group, rd.plural]]
    else:
        cells = [_cell(c, obj) for c in (rd.columns if rd.custom and rd.columns else [_AGE])]
    result: dict[str, Any] = {"cells": [obj["metadata"].get("name"), *cells]}
    if include_object == "Object":
        result["object"] = obj
    elif include_object != "None":
        result["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"],
        }
    return result


def table(
    rd: ResourceDef, objs: list[dict[str, Any]], resource_version: str, include_object: str = "Metadata"
) -> dict[str, Any]:
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns(rd),
        "rows": [row(rd, obj, include_object) for obj in objs],
    }
