"""Server-side printing: ``meta.k8s.io/v1 Table`` answers for ``kubectl get``.

Docs: https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables
Custom resources print their CRD's ``additionalPrinterColumns`` (``Name`` first, then the columns;
``Age`` alone when none are declared); ``date`` columns and ``Age`` are rendered by the server as
human durations ("5m"), as apimachinery's ``ConvertToHumanReadableDateType`` does. The built-ins people
list (Nodes, Pods, Events of both APIs, Namespaces, ConfigMaps, Secrets, ServiceAccounts, Services, Leases,
Deployments, RoleBindings) print kube-apiserver's columns and cells (pkg/printers/internalversion); others
print Name and Age.
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


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("status") or {}


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("spec") or {}


def _creation_age(obj: dict[str, Any]) -> str:
    return age(obj["metadata"].get("creationTimestamp"))


def _node_status(obj: dict[str, Any]) -> str:
    conditions = _status(obj).get("conditions") or []
    ready = next((c.get("status") for c in conditions if c.get("type") == "Ready"), None)
    status = {"True": "Ready", "False": "NotReady"}.get(ready or "", "Unknown")
    return status + (",SchedulingDisabled" if _spec(obj).get("unschedulable") else "")


def _node_roles(obj: dict[str, Any]) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    roles = sorted(
        {k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")}
        | ({labels["kubernetes.io/role"]} if "kubernetes.io/role" in labels else set())
    )
    return ",".join(r for r in roles if r) or "<none>"


def _address(obj: dict[str, Any], kind: str) -> str:
    addresses = _status(obj).get("addresses") or []
    return next((a.get("address", "") for a in addresses if a.get("type") == kind), "<none>")


def _node_info(field: str) -> Any:
    return lambda o: (_status(o).get("nodeInfo") or {}).get(field, "")


def _restartable(container: dict[str, Any]) -> bool:
    """A sidecar: an init container with ``restartPolicy: Always``."""
    return container.get("restartPolicy") == "Always"


def _pod_state(obj: dict[str, Any]) -> tuple[int, int, str, str]:
    """Ready containers, containers, the STATUS cell and the RESTARTS cell, as kube's printPod works them out."""
    spec, status = _spec(obj), _status(obj)
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total = len(spec.get("containers") or []) + sum(_restartable(c) for c in init_specs.values())
    ready, restarts, sidecar_restarts, last_restart, sidecar_last_restart = 0, 0, 0, "", ""
    reason = status.get("reason") or status.get("phase") or ""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for index, container in enumerate(init_statuses):
        sidecar = _restartable(init_specs.get(container.get("name")) or {})
        finished = ((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt") or ""
        restarts += container.get("restartCount") or 0
        last_restart = max(last_restart, finished)
        if sidecar:
            sidecar_restarts += container.get("restartCount") or 0
            sidecar_last_restart = max(sidecar_last_restart, finished)
        state = container.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and terminated.get("exitCode", 0) == 0:
            continue
        if sidecar and container.get("started"):
            ready += bool(container.get("ready"))
            continue
        initializing = True
        if terminated is not None:
            reason = "Init:" + (terminated.get("reason") or _exit(terminated))
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        break
    if not initializing or _condition_true(status, "Initialized"):
        restarts, last_restart, running = sidecar_restarts, sidecar_last_restart, False
        for container in reversed(status.get("containerStatuses") or []):
            restarts += container.get("restartCount") or 0
            finished = ((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt") or ""
            last_restart = max(last_restart, finished)
            state = container.get("state") or {}
            terminated, waiting = state.get("terminated"), state.get("waiting")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None:
                reason = terminated.get("reason") or _exit(terminated)
            elif container.get("ready") and state.get("running") is not None:
                running, ready = True, ready + 1
        if reason == "Completed" and running:
            reason = "Running" if _condition_true(status, "Ready") else "NotReady"
    if obj["metadata"].get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif status.get("phase") not in ("Succeeded", "Failed"):
            reason = "Terminating"
    restart_cell = f"{restarts} ({age(last_restart)} ago)" if restarts and last_restart else str(restarts)
    return ready, total, reason, restart_cell


def _condition_true(status: dict[str, Any], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in status.get("conditions") or [])


def _exit(terminated: dict[str, Any]) -> str:
    signal = terminated.get("signal") or 0
    return f"Signal:{signal}" if signal else f"ExitCode:{terminated.get('exitCode', 0)}"


def _pod_readiness_gates(obj: dict[str, Any]) -> str:
    gates = _spec(obj).get("readinessGates") or []
    if not gates:
        return "<none>"
    conditions = {c.get("type"): c.get("status") for c in _status(obj).get("conditions") or []}
    return f"{sum(conditions.get(g.get('conditionType')) == 'True' for g in gates)}/{len(gates)}"


def _pod_ip(obj: dict[str, Any]) -> str:
    ips = _status(obj).get("podIPs") or []
    return (ips[0].get("ip") if ips else "") or "<none>"


def _event(obj: dict[str, Any]) -> dict[str, Any]:
    """An events.k8s.io/v1 Event in core/v1's field names (the server prints both kinds with one printer)."""
    if obj.get("apiVersion") != "events.k8s.io/v1":
        return obj
    return {
        **obj,
        "involvedObject": obj.get("regarding") or {},
        "message": obj.get("note", ""),
        "source": obj.get("deprecatedSource") or {},
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
        "lastTimestamp": obj.get("deprecatedLastTimestamp"),
        "count": obj.get("deprecatedCount", 0),
        "reportingComponent": obj.get("reportingController", ""),
    }


def _event_first_seen(obj: dict[str, Any]) -> str:
    event = _event(obj)
    return age(event.get("firstTimestamp") or event.get("eventTime"))


def _event_last_seen(obj: dict[str, Any]) -> str:
    event = _event(obj)
    if event.get("series"):
        return age(event["series"].get("lastObservedTime"))
    return age(event["lastTimestamp"]) if event.get("lastTimestamp") else _event_first_seen(obj)


def _event_count(obj: dict[str, Any]) -> int:
    event = _event(obj)
    if event.get("series"):
        return int(event["series"].get("count") or 0)
    return int(event.get("count") or 0) or 1  # singleton events of the new API carry no count


def _event_object(obj: dict[str, Any]) -> str:
    involved = _event(obj).get("involvedObject") or {}
    kind = str(involved.get("kind", "")).lower()
    return f"{kind}/{involved['name']}" if involved.get("name") else kind


def _event_source(obj: dict[str, Any]) -> str:
    event = _event(obj)
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    instance = source.get("host") or event.get("reportingInstance") or ""
    return f"{component}, {instance}" if instance else component


def _label_selector(selector: dict[str, Any] | None) -> str:
    """metav1.LabelSelectorAsSelector(...).String()."""
    selector = selector or {}
    terms = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key", ""), expression.get("operator"), expression.get("values") or []
        match operator:
            case "In" | "NotIn":
                terms.append(f"{key} {operator.lower()} ({','.join(sorted(values))})")
            case "Exists":
                terms.append(key)
            case _:
                terms.append(f"!{key}")
    return ",".join(sorted(terms))


def _containers(obj: dict[str, Any], field: str) -> str:
    containers = ((_spec(obj).get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(str(c.get(field, "")) for c in containers)


def _subjects(kind: str) -> Any:
    def cell(obj: dict[str, Any]) -> str:
        found = [s for s in obj.get("subjects") or [] if s.get("kind") == kind]
        if kind == "ServiceAccount":
            return ", ".join(f"{s.get('namespace', '')}/{s.get('name', '')}" for s in found)
        return ", ".join(str(s.get("name", "")) for s in found)

    return cell


def _service_external_ip(obj: dict[str, Any]) -> str:
    spec = _spec(obj)
    external = ",".join(spec.get("externalIPs") or [])
    match spec.get("type", "ClusterIP"):
        case "ClusterIP" | "NodePort":
            return external or "<none>"
        case "LoadBalancer":
            ingress = ((_status(obj).get("loadBalancer") or {}).get("ingress")) or []
            balanced = sorted({i.get("ip") or i.get("hostname") for i in ingress} - {None, ""})
            return ",".join([*balanced, *spec.get("externalIPs", [])]) or "<pending>"
        case "ExternalName":
            return str(spec.get("externalName", ""))
    return "<unknown>"


def _service_ports(obj: dict[str, Any]) -> str:
    ports = _spec(obj).get("ports") or []
    return ",".join(
        f"{p.get('port', 0)}:{p['nodePort']}/{p.get('protocol', '')}"
        if p.get("nodePort")
        else f"{p.get('port', 0)}/{p.get('protocol', '')}"
        for p in ports
    ) or "<none>"


def _string(name: str, priority: int = 0, cell_format: str = "") -> dict[str, Any]:
    return {"name": name, "type": "string", "format": cell_format, "description": "", "priority": priority}


_NAME_CELL = (_NAME, lambda o: o["metadata"].get("name"))
_AGE_CELL = (_string("Age"), _creation_age)
_EVENT_COLUMNS = [
    (_string("Last Seen"), _event_last_seen),
    (_string("Type"), lambda o: o.get("type", "")),
    (_string("Reason"), lambda o: o.get("reason", "")),
    (_string("Object"), _event_object),
    (_string("Subobject", 1), lambda o: (_event(o).get("involvedObject") or {}).get("fieldPath", "")),
    (_string("Source", 1), _event_source),
    (_string("Message"), lambda o: str(_event(o).get("message") or "").strip()),
    (_string("First Seen", 1), _event_first_seen),
    (_string("Count", 1), _event_count),
    (_string("Name", 1, "name"), lambda o: o["metadata"].get("name")),
]
_BINDING_COLUMNS = [
    _NAME_CELL,
    (_string("Role"), lambda o: "{kind}/{name}".format(**{"kind": "", "name": "", **(o.get("roleRef") or {})})),
    _AGE_CELL,
    (_string("Users", 1), _subjects("User")),
    (_string("Groups", 1), _subjects("Group")),
    (_string("ServiceAccounts", 1), _subjects("ServiceAccount")),
]

# The columns of kube-apiserver's printers (pkg/printers/internalversion/printers.go), with every column the
# server sends (kubectl hides priority 1 unless -o wide), for the built-ins people list; others get Name, Age.
_BUILTIN: dict[tuple[str, str], list[tuple[dict[str, Any], Any]]] = {
    ("", "nodes"): [
        _NAME_CELL,
        (_string("Status"), _node_status),
        (_string("Roles"), _node_roles),
        _AGE_CELL,
        (_string("Version"), _node_info("kubeletVersion")),
        (_string("Internal-IP", 1), lambda o: _address(o, "InternalIP")),
        (_string("External-IP", 1), lambda o: _address(o, "ExternalIP")),
        (_string("OS-Image", 1), _node_info("osImage")),
        (_string("Kernel-Version", 1), _node_info("kernelVersion")),
        (_string("Container-Runtime", 1), _node_info("containerRuntimeVersion")),
    ],
    ("", "namespaces"): [_NAME_CELL, (_string("Status"), lambda o: _status(o).get("phase", "")), _AGE_CELL],
    ("", "pods"): [
        _NAME_CELL,
        (_string("Ready"), lambda o: "{}/{}".format(*_pod_state(o)[:2])),
        (_string("Status"), lambda o: _pod_state(o)[2]),
        (_string("Restarts"), lambda o: _pod_state(o)[3]),
        _AGE_CELL,
        (_string("IP", 1), _pod_ip),
        (_string("Node", 1), lambda o: _spec(o).get("nodeName") or "<none>"),
        (_string("Nominated Node", 1), lambda o: _status(o).get("nominatedNodeName") or "<none>"),
        (_string("Readiness Gates", 1), _pod_readiness_gates),
    ],
    ("", "events"): _EVENT_COLUMNS,
    ("events.k8s.io", "events"): _EVENT_COLUMNS,
    ("", "configmaps"): [
        _NAME_CELL,
        (_string("Data"), lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
        _AGE_CELL,
    ],
    ("", "secrets"): [
        _NAME_CELL,
        (_string("Type"), lambda o: o.get("type", "")),
        (_string("Data"), lambda o: len(o.get("data") or {})),
        _AGE_CELL,
    ],
    ("", "serviceaccounts"): [_NAME_CELL, (_string("Secrets"), lambda o: len(o.get("secrets") or [])), _AGE_CELL],
    ("", "services"): [
        _NAME_CELL,
        (_string("Type"), lambda o: _spec(o).get("type", "")),
        (_string("Cluster-IP"), lambda o: _spec(o).get("clusterIP") or "<none>"),
        (_string("External-IP"), _service_external_ip),
        (_string("Port(s)"), _service_ports),
        _AGE_CELL,
        (_string("Selector", 1), lambda o: _label_selector({"matchLabels": _spec(o).get("selector")}) or "<none>"),
    ],
    ("coordination.k8s.io", "leases"): [
        _NAME_CELL,
        (_string("Holder"), lambda o: _spec(o).get("holderIdentity") or ""),
        _AGE_CELL,
    ],
    ("apps", "deployments"): [
        _NAME_CELL,
        (_string("Ready"), lambda o: f"{_status(o).get('readyReplicas', 0)}/{_spec(o).get('replicas', 0)}"),
        (_string("Up-to-date"), lambda o: _status(o).get("updatedReplicas", 0)),
        (_string("Available"), lambda o: _status(o).get("availableReplicas", 0)),
        _AGE_CELL,
        (_string("Containers", 1), lambda o: _containers(o, "name")),
        (_string("Images", 1), lambda o: _containers(o, "image")),
        (_string("Selector", 1), lambda o: _label_selector(_spec(o).get("selector"))),
    ],
    ("rbac.authorization.k8s.io", "rolebindings"): _BINDING_COLUMNS,
    ("rbac.authorization.k8s.io", "clusterrolebindings"): _BINDING_COLUMNS,
}


def columns(rd: ResourceDef) -> list[dict[str, Any]]:
    if (rd.group, rd.plural) in _BUILTIN:
        return [column for column, _ in _BUILTIN[rd.group, rd.plural]]
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
        cells = [obj["metadata"].get("name")]
        cells += [_cell(c, obj) for c in (rd.columns if rd.custom and rd.columns else [_AGE])]
    result: dict[str, Any] = {"cells": cells}
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
