"""How server-side apply sees a resource's fields: structs, maps (granular or atomic), lists (atomic,
sets, or maps keyed by some of their items' fields).

Custom resources take it from their CRD schema, as the server does: ``properties`` are declared
fields, ``additionalProperties`` (or ``x-kubernetes-preserve-unknown-fields``) the type of other keys,
``x-kubernetes-map-type: atomic``, ``x-kubernetes-list-type`` (``atomic``, the default; ``set``;
``map`` with ``x-kubernetes-list-map-keys``). ``metadata`` is ObjectMeta everywhere.

Built-in kinds have no schema in the sandbox, so their types come from field names: lists named as in
the strategic merge patch's merge keys (:data:`patches.MERGE_KEYS`: ``containers`` by ``name``, ...)
are keyed by them, ``finalizers`` is a set, ``selector`` and ``nodeSelector`` are atomic, other lists
atomic, other keys declared fields. Docs:
https://kubernetes.io/docs/reference/using-api/server-side-apply/#merge-strategy
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

from rackmesh_sandbox.kube_api import patches
from rackmesh_sandbox.kube_api.schema import CrdSchema


@dataclasses.dataclass(eq=False)
class FieldType:
    """One node of the type tree; a value is walked as a map, a list or a scalar by what it is."""

    fields: dict[str, FieldType] = dataclasses.field(default_factory=dict)  # declared (struct) fields
    elements: FieldType | None = None  # the type of other keys; None: other keys are not declared
    declared_elements: bool = False  # other keys count as named fields (built-ins, lacking a schema)
    map_atomic: bool = False
    items: FieldType | None = None
    list_type: str = "atomic"  # atomic, set or map
    keys: tuple[str, ...] = ()  # a map list's key fields
    key_defaults: dict[str, Any] = dataclasses.field(default_factory=dict)  # key fields' schema defaults

    def child(self, name: str) -> tuple[FieldType | None, bool]:
        """The type of a map's key (None: not declared in the schema) and whether it is a named field."""
        declared = self.fields.get(name)
        if declared is not None:
            return declared, True
        return self.elements, self.declared_elements

    @property
    def item(self) -> FieldType:
        return self.items if self.items is not None else DEDUCED


# Untyped values (preserve-unknown-fields): granular maps of untyped values, atomic lists.
DEDUCED = FieldType()
DEDUCED.elements = DEDUCED
DEDUCED.items = DEDUCED

_SCALAR_MAP = FieldType(elements=DEDUCED)
_OWNER_REFERENCE = FieldType(elements=DEDUCED, declared_elements=True)
OBJECT_META = FieldType(
    fields={
        "labels": _SCALAR_MAP,
        "annotations": _SCALAR_MAP,
        "finalizers": FieldType(items=DEDUCED, list_type="set"),
        "ownerReferences": FieldType(items=_OWNER_REFERENCE, list_type="map", keys=("uid",)),
        "managedFields": FieldType(items=DEDUCED),
    },
    elements=DEDUCED,
    declared_elements=True,
)

# Built-ins: ``ports`` is keyed by whichever of these an item has (a container's or a Service's ports).
_BUILTIN_KEYS: dict[str, tuple[str, ...]] = {
    **{name: (key,) for name, key in patches.MERGE_KEYS.items() if name not in ("images", "ownerReferences")},
    "ports": ("containerPort", "port", "protocol"),
}
BUILTIN = FieldType(declared_elements=True, items=None)
BUILTIN.elements = BUILTIN
BUILTIN.fields = {
    "metadata": OBJECT_META,
    "selector": FieldType(map_atomic=True, elements=DEDUCED),
    "nodeSelector": FieldType(map_atomic=True, elements=DEDUCED),
    **{name: FieldType(items=DEDUCED, list_type="set") for name in patches.MERGED_SCALAR_LISTS},
    **{name: FieldType(items=BUILTIN, list_type="map", keys=keys) for name, keys in _BUILTIN_KEYS.items()},
}


def from_openapi(schema: dict[str, Any], *, root: bool = False) -> FieldType:
    """The type of a (structural) CRD schema node."""
    if not isinstance(schema, dict) or (
        schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties") and "items" not in schema
    ):
        return DEDUCED
    node = FieldType(map_atomic=schema.get("x-kubernetes-map-type") == "atomic")
    node.fields = {name: from_openapi(sub) for name, sub in (schema.get("properties") or {}).items()}
    if root or schema.get("x-kubernetes-embedded-resource"):
        node.fields.update({"apiVersion": FieldType(), "kind": FieldType(), "metadata": OBJECT_META})
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        node.elements = from_openapi(additional)
    elif additional is True or schema.get("x-kubernetes-preserve-unknown-fields"):
        node.elements = DEDUCED
    if schema.get("type") == "array" or "items" in schema:
        node.items = from_openapi(schema.get("items") or {})
        node.list_type = schema.get("x-kubernetes-list-type") or "atomic"
        node.keys = tuple(schema.get("x-kubernetes-list-map-keys") or ())
        item_properties = (schema.get("items") or {}).get("properties") or {}
        node.key_defaults = {
            key: item_properties[key]["default"] for key in node.keys if "default" in item_properties.get(key, {})
        }
    return node


_CRD_TYPES: weakref.WeakKeyDictionary[CrdSchema, FieldType] = weakref.WeakKeyDictionary()


def of_schema(schema: CrdSchema | None) -> FieldType:
    """A resource's type: its CRD schema's (built once per schema), else the built-ins' by field name."""
    if schema is None:
        return BUILTIN
    found = _CRD_TYPES.get(schema)
    if found is None:
        found = _CRD_TYPES[schema] = from_openapi(schema.openapi, root=True)
    return found
