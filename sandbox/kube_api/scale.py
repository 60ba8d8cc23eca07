"""The scale subresource of custom resources: an ``autoscaling/v1`` ``Scale`` over paths of the object.

A CRD version declaring ``subresources.scale`` serves ``.../<plural>/<name>/scale`` (get, update,
patch). Its ``spec.replicas`` reads and writes the object at ``specReplicasPath``; ``status.replicas``
and ``status.selector`` read ``statusReplicasPath`` and ``labelSelectorPath``. Writing a Scale is an
update of the object (validated, generation bumped, watched as MODIFIED). Every write of such an object
also checks that the paths hold what a Scale can carry.

Followed: apiextensions-apiserver v0.32 ``pkg/registry/customresource/{etcd,validator}.go``.
Docs: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#scale-subresource
"""

from __future__ import annotations

from typing import Any

from rackmesh_sandbox.kube_api import errors
from rackmesh_sandbox.kube_api.fielderrors import FieldError, invalid

API_VERSION = "autoscaling/v1"
UNSET = -(2**31)  # what the server puts in an old Scale whose object has no spec replicas
_MAX_INT32 = 2**31 - 1
# The Scale's printer columns (getScaleColumnsForVersion); Age is the Scale's own.
COLUMNS = (
    {"name": "Desired", "type": "integer", "description": "Number of desired replicas", "jsonPath": ".spec.replicas"},
    {
        "name": "Available",
        "type": "integer",
        "description": "Number of actual replicas",
        "jsonPath": ".status.replicas",
    },
    {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
        "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
    },
)
_GO_TYPES = {
    bool: "bool",
    int: "int64",
    float: "float64",
    str: "string",
    dict: "map[string]interface {}",
    list: "[]interface {}",
    type(None): "<nil>",
}


class AccessError(ValueError):
    """A path that does not hold what the Scale needs (unstructured.NestedInt64's error)."""


def _go(value: Any) -> str:
    return "<nil>" if value is None else ("true" if value else "false") if isinstance(value, bool) else str(value)


def _nested(obj: dict[str, Any], path: str, expected: type) -> tuple[Any, bool]:
    """The value at a ``.a.b`` path and whether it is there (unstructured.NestedInt64/NestedString)."""
    fields = path.lstrip(".").split(".")
    value: Any = obj
    for depth, field in enumerate(fields):
        if not isinstance(value, dict):
            where = "." + ".".join(fields[:depth])
            raise AccessError(
                f"{where} accessor error: {_go(value)} is of the type {_GO_TYPES.get(type(value), 'unknown')}, "
                "expected map[string]interface{}"
            )
        if field not in value:
            return None, False
        value = value[field]
    if not isinstance(value, expected) or isinstance(value, bool):
        wanted = "int64" if expected is int else "string"
        raise AccessError(
            f".{'.'.join(fields)} accessor error: {_go(value)} is of the type "
            f"{_GO_TYPES.get(type(value), 'unknown')}, expected {wanted}"
        )
    return value, True


def _int32(value: int) -> int:
    """Go's int32() conversion (wraps around)."""
    return (value + 2**31) % 2**32 - 2**31


def scale_of(paths: dict[str, str], obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The object's Scale, and whether its spec replicas are set (raises AccessError)."""
    spec_replicas, found = _nested(obj, paths["specReplicasPath"], int)
    status_replicas, _ = _nested(obj, paths["statusReplicasPath"], int)
    selector = _nested(obj, paths["labelSelectorPath"], str)[0] if paths.get("labelSelectorPath") else None
    md = obj.get("metadata") or {}
    metadata = {
        key: md[key] for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if md.get(key)
    }
    replicas = _int32(spec_replicas or 0)
    status: dict[str, Any] = {"replicas": _int32(status_replicas or 0)}
    if selector:
        status["selector"] = selector
    # Go omits a zero spec.replicas (omitempty) but always writes status.replicas.
    scale = {
        "kind": "Scale",
        "apiVersion": API_VERSION,
        "metadata": metadata,
        "spec": {"replicas": replicas} if replicas else {},
        "status": status,
    }
    return scale, found


def requested_replicas(scale: Any, name: str) -> tuple[int, str | None]:
    """The replicas and resourceVersion a client's Scale asks for (400 when it is not a Scale)."""
    if not isinstance(scale, dict):
        raise errors.bad_request("the request body must be a JSON object")
    if scale.get("apiVersion") not in (None, API_VERSION):
        raise errors.bad_request(
            f"the API version in the data ({scale['apiVersion']}) does not match the expected API version "
            f"({API_VERSION})"
        )
    if scale.get("kind") not in (None, "Scale"):
        raise errors.bad_request(f"the kind in the data ({scale['kind']}) does not match the expected kind (Scale)")
    md = scale.get("metadata") or {}
    if md.get("name", name) != name:
        raise errors.bad_request(f"the name of the object ({md['name']}) does not match the name on the URL ({name})")
    replicas = (scale.get("spec") or {}).get("replicas", 0)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or _int32(replicas) != replicas:
        raise errors.bad_request(
            f"json: cannot unmarshal {type(replicas).__name__} into Go struct field ScaleSpec.spec.replicas of "
            "type int32"
        )
    return replicas, md.get("resourceVersion") or None


def set_replicas(paths: dict[str, str], obj: dict[str, Any], replicas: int) -> None:
    """Write the spec replicas into the object, creating the path as needed (SetNestedField)."""
    *parents, last = paths["specReplicasPath"].lstrip(".").split(".")
    node = obj
    for field in parents:
        if not isinstance(node.get(field), dict):
            node[field] = {}
        node = node[field]
    node[last] = replicas


def validate(paths: dict[str, str], obj: dict[str, Any], *, status_only: bool = False) -> list[FieldError]:
    """What the server checks on every write of an object with a Scale (ValidateScaleSpec/Status)."""
    found = []
    checked = ["statusReplicasPath"] if status_only else ["specReplicasPath", "statusReplicasPath"]
    for key in checked:
        path = paths[key]  # the server names the error by the path as written, leading dot included
        try:
            replicas, _ = _nested(obj, path, int)
        except AccessError as e:
            found.append(invalid(path, 0, str(e)))
            continue
        if replicas is not None and replicas < 0:
            found.append(invalid(path, replicas, "should be a non-negative integer"))
        elif replicas is not None and replicas > _MAX_INT32:
            found.append(invalid(path, replicas, f"should be less than or equal to {_MAX_INT32}"))
    if paths.get("labelSelectorPath"):
        try:
            _nested(obj, paths["labelSelectorPath"], str)
        except AccessError as e:
            found.append(invalid(paths["labelSelectorPath"], "", str(e)))
    return found
