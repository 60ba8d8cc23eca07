"""The resources the server serves: kmock's bundled built-ins plus custom resources from CRDs.

Docs: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
"""

from __future__ import annotations

import dataclasses
import functools
import re
import warnings
from typing import Any

import kmock

from rackmesh_sandbox.kube_api import cel, selectors
from rackmesh_sandbox.kube_api.fielderrors import FieldError, invalid, required
from rackmesh_sandbox.kube_api.schema import CrdSchema, pattern_errors

STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CRD_RESOURCE = ("apiextensions.k8s.io", "customresourcedefinitions")


@dataclasses.dataclass
class ResourceDef:
    """One group/version/resource, with what discovery, validation and printing need to know."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    verbs: tuple[str, ...] = STANDARD_VERBS
    shortnames: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    custom: bool = False  # a custom resource: generation, schema, no strategic merge patch
    storage_version: str = ""  # all served versions of a CRD share one storage
    schema: CrdSchema | None = None
    columns: tuple[dict[str, Any], ...] = ()  # additionalPrinterColumns
    selectable_fields: tuple[str, ...] = ()
    scale: dict[str, str] | None = None  # a CRD version's subresources.scale (the paths of its Scale)

    def __post_init__(self) -> None:
        self.singular = self.singular or self.kind.lower()
        self.storage_version = self.storage_version or self.version

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_api_version(self) -> str:
        return f"{self.group}/{self.storage_version}" if self.group else self.storage_version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def storage(self) -> kmock.resource:
        return kmock.resource(self.group, self.storage_version, self.plural)

    @property
    def tracks_generation(self) -> bool:
        return self.custom or (self.group, self.plural) == CRD_RESOURCE

    @property
    def field_selectors(self) -> tuple[str, ...]:
        extra = (
            self.selectable_fields
            if self.custom
            else selectors.BUILTIN_FIELDS.get((self.group, self.plural), ())
        )
        return ("metadata.name", "metadata.namespace", *extra)


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kube-aware version order: GA before beta before alpha, higher numbers first."""
    found = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if found is None:
        return (3, 0, 0)
    stability = {"alpha": 2, "beta": 1, None: 0}[found[2]]
    return (stability, -int(found[1]), -int(found[3] or 0))


def _per_version(spec: dict[str, Any], field: str, index: int, top: str) -> str:
    """Where the server reports a per-version field: at ``spec.<top>`` when all versions agree on it.

    The server validates its internal form of a CRD, in which a field that is identical in every
    version is moved up from ``spec.versions[*]`` (apiextensions v1 conversion).
    """
    versions = spec.get("versions") or []
    if all(v.get(field) == versions[0].get(field) for v in versions):
        return f"spec.{top}"
    return f"spec.versions[{index}].{field}"


def crd_errors(crd: dict[str, Any]) -> list[FieldError]:
    """The CRD rules the server checks that matter here: names, storage, scale paths, patterns, CEL rules."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    found = [required(f"spec.{field}") for field in ("group", "scope", "versions") if not spec.get(field)]
    found += [required(f"spec.names.{field}") for field in ("plural", "kind") if not names.get(field)]
    if spec.get("group") and names.get("plural"):
        expected = f"{names['plural']}.{spec['group']}"
        name = (crd.get("metadata") or {}).get("name")
        if name != expected:
            found.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    versions = spec.get("versions") or []
    storage = [v for v in versions if v.get("storage")]
    if versions and len(storage) != 1:
        found.append(
            invalid("spec.versions", len(storage), "must have exactly one version marked as storage version")
        )
    for index, version in enumerate(versions):
        scale = (version.get("subresources") or {}).get("scale")
        if isinstance(scale, dict):
            path = _per_version(spec, "subresources", index, "subresources")
            found += [e for e in _scale_errors(scale, f"{path}.scale") if e not in found]  # reported once
        openapi = (version.get("schema") or {}).get("openAPIV3Schema")
        if isinstance(openapi, dict):
            path = f"{_per_version(spec, 'schema', index, 'validation')}.openAPIV3Schema"
            refused = pattern_errors(openapi, path)
            # The server compiles CEL rules only in schemas without such (structural) errors.
            refused += cel.rule_errors(openapi, path, compile_rules=not refused)
            found += [e for e in refused if e not in found]
    return found


def _scale_errors(scale: dict[str, Any], path: str) -> list[FieldError]:
    found = []
    for field, under in (("specReplicasPath", ".spec"), ("statusReplicasPath", ".status")):
        value = scale.get(field)
        if not value:
            found.append(required(f"{path}.{field}"))
        elif not str(value).startswith(f"{under}."):
            found.append(invalid(f"{path}.{field}", value, f"should be a json path under {under}"))
    selector = scale.get("labelSelectorPath")
    if selector and not str(selector).startswith((".spec.", ".status.")):
        detail = "should be a json path under either .spec or .status"
        found.append(invalid(f"{path}.labelSelectorPath", selector, detail))
    return found


@functools.cache
def _bundled() -> tuple[ResourceDef, ...]:
    bundled = kmock.ResourcesArray()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # kmock 0.8 uses importlib.resources.read_binary
        bundled.load_bundled()
    found = []
    for res in bundled:
        info = bundled[res]
        assert res.group is not None and res.version is not None and res.plural is not None
        found.append(
            ResourceDef(
                group=res.group,
                version=res.version,
                plural=res.plural,
                kind=info.kind or res.plural,
                namespaced=bool(info.namespaced),
                singular=info.singular or "",
                verbs=tuple(sorted(info.verbs)),
                shortnames=tuple(sorted(info.shortnames)),
                categories=tuple(sorted(info.categories)),
                subresources=frozenset(info.subresources),
            )
        )
    return tuple(found)


class Registry:
    def __init__(self) -> None:
        self._defs: dict[tuple[str, str, str], ResourceDef] = {}
        self._crds: dict[str, list[ResourceDef]] = {}

    def load_bundled(self) -> None:
        """The built-in resources of a recent cluster, as kmock bundles them."""
        for rd in _bundled():
            self.add(dataclasses.replace(rd))

    def add(self, rd: ResourceDef) -> None:
        self._defs[rd.group, rd.version, rd.plural] = rd

    def add_crd(self, crd: dict[str, Any]) -> list[ResourceDef]:
        """Serve every served version of a CRD; replaces what an earlier version of it served."""
        self.remove_crd(crd["metadata"]["name"])
        spec = crd["spec"]
        names = spec["names"]
        versions = spec["versions"]
        storage = next(v["name"] for v in versions if v.get("storage"))
        added = []
        for version in versions:
            if not version.get("served", True):
                continue
            declared = version.get("subresources") or {}
            rd = ResourceDef(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", ""),
                shortnames=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=frozenset(declared),
                custom=True,
                storage_version=storage,
                schema=CrdSchema.from_crd(crd, version["name"]),
                columns=tuple(version.get("additionalPrinterColumns") or ()),
                selectable_fields=tuple(
                    f["jsonPath"].lstrip(".") for f in version.get("selectableFields") or ()
                ),
                scale=declared.get("scale"),
            )
            self.add(rd)
            added.append(rd)
        self._crds[crd["metadata"]["name"]] = added
        return added

    def remove_crd(self, name: str) -> list[ResourceDef]:
        removed = self._crds.pop(name, [])
        for rd in removed:
            self._defs.pop((rd.group, rd.version, rd.plural), None)
        return removed

    def get(self, group: str, version: str, plural: str) -> ResourceDef | None:
        return self._defs.get((group, version, plural))

    def all(self) -> list[ResourceDef]:
        return list(self._defs.values())

    def group_versions(self) -> dict[str, list[str]]:
        """Versions of each group, the preferred one first."""
        groups: dict[str, set[str]] = {}
        for group, version, _ in self._defs:
            groups.setdefault(group, set()).add(version)
        return {group: sorted(versions, key=_version_priority) for group, versions in groups.items()}

    def in_group_version(self, group: str, version: str) -> list[ResourceDef]:
        return [rd for (g, v, _), rd in self._defs.items() if (g, v) == (group, version)]
