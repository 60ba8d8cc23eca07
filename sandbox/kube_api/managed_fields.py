"""``metadata.managedFields``: who owns which fields of an object, kept on every write as
kube-apiserver's field manager keeps it (k8s.io/apimachinery ``util/managedfields/internal``).

- Every write is recorded: applies as ``operation: Apply`` entries, creates, updates and non-apply
  patches as ``operation: Update`` entries of their ``fieldManager`` (else the User-Agent's program,
  else ``unknown``); writes through ``/status`` or ``/scale`` carry ``subresource``. A manager is
  identified by name, operation, subresource and (for updates) apiVersion: one entry each.
- An Update takes the fields it changed from their other owners; an apply that would change fields
  others own fails with 409 naming them, unless forced (then they lose them).
- Entries are kept as the server keeps them: ``time`` when the manager changed something, sorted,
  the metadata the server sets left out, at most 10 Update entries (the oldest merged into
  ``ancient-changes``), reset by writing ``managedFields: []`` or ``[{}]``; an object without any gets
  its fields owned by ``before-first-apply`` on its first apply; ``kubectl``'s apply takes over what
  its client-side apply annotation says it applied, and keeps that annotation current.

Docs: https://kubernetes.io/docs/reference/using-api/server-side-apply/
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

from rackmesh_sandbox.kube_api import errors, meta
from rackmesh_sandbox.kube_api import server_side_apply as ssa
from rackmesh_sandbox.kube_api.field_sets import (
    FieldsError,
    FieldSet,
    Path,
    canonical,
    from_fields_v1,
    iteration_order,
    path_string,
    to_fields_v1,
)
from rackmesh_sandbox.kube_api.field_types import BUILTIN, FieldType, of_schema
from rackmesh_sandbox.kube_api.fielderrors import FieldError, invalid
from rackmesh_sandbox.kube_api.registry import ResourceDef

MAX_UPDATE_MANAGERS = 10  # DefaultMaxUpdateManagers
MAX_MANAGER_LENGTH = 128  # FieldManagerMaxLength
ANCIENT_CHANGES = "ancient-changes"
BEFORE_FIRST_APPLY = "before-first-apply"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_KUBECTL = "kubectl"  # the one manager whose apply upgrades from client-side apply
_ANNOTATIONS_LIMIT = 256 * 1024
# Metadata the server sets: never owned by the writer (stripMetaManager).
_STRIPPED = frozenset(
    [("apiVersion",), ("kind",), ("metadata",)]
    + [
        ("metadata", field)
        for field in ("name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
                      "managedFields", "resourceVersion")
    ]
)


@dataclasses.dataclass(frozen=True)
class Manager:
    """A manager's identity (BuildManagerIdentifier): appliers are one whatever version they apply."""

    name: str
    operation: str  # Apply or Update
    api_version: str = ""  # an updater's only
    subresource: str = ""

    def identifier(self) -> str:
        fields = {"manager": self.name, "operation": self.operation}
        if self.api_version:
            fields["apiVersion"] = self.api_version
        if self.subresource:
            fields["subresource"] = self.subresource
        return json.dumps(fields, separators=(",", ":"))

    def printed(self) -> str:
        """As conflicts name it: ``"kubectl" with subresource "scale" using apps/v1``."""
        text = json.dumps(self.name, ensure_ascii=False)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        return f"{text} using {self.api_version}" if self.operation == "Update" else text


@dataclasses.dataclass
class Managed:
    """Decoded entries: each manager's fields and time, and the entry it came from (reused unchanged)."""

    owned: dict[Manager, ssa.Owned] = dataclasses.field(default_factory=dict)
    times: dict[Manager, str | None] = dataclasses.field(default_factory=dict)
    entries: dict[Manager, tuple[dict[str, Any], ssa.Owned]] = dataclasses.field(default_factory=dict)


def decode(entries: Any) -> Managed:
    """DecodeManagedFields; FieldsError for entries the server would not have written."""
    managed = Managed()
    for index, entry in enumerate(entries or []):
        if not isinstance(entry, dict):
            raise FieldsError(f"managed fields entry {index} is not an object")
        operation, api_version = entry.get("operation"), entry.get("apiVersion")
        if operation not in ("Apply", "Update"):
            raise FieldsError("operation must be `Apply` or `Update`")
        if not isinstance(api_version, str) or not api_version:
            raise FieldsError("apiVersion must not be empty")
        if entry.get("fieldsType") != "FieldsV1":
            raise FieldsError(f"invalid fieldsType {entry.get('fieldsType')!r} in managed fields entry {index}")
        manager = Manager(
            str(entry.get("manager") or ""),
            operation,
            api_version if operation == "Update" else "",
            str(entry.get("subresource") or ""),
        )
        owned = ssa.Owned(from_fields_v1(entry.get("fieldsV1") or {}), api_version, operation == "Apply")
        managed.owned[manager] = owned
        managed.times[manager] = entry.get("time")
        managed.entries[manager] = (entry, owned)
    return managed


def encode(managed: Managed) -> list[dict[str, Any]] | None:
    """The entries, sorted as the server sorts them (operation, time, manager, apiVersion, subresource)."""
    entries = []
    for manager, owned in managed.owned.items():
        time = managed.times.get(manager)
        previous, decoded = managed.entries.get(manager, (None, None))
        if previous is not None and decoded is owned and previous.get("time") == time:
            entries.append(previous)  # unchanged: the very entry it was
            continue
        entry: dict[str, Any] = {
            "manager": manager.name,
            "operation": "Apply" if owned.applied else "Update",
            "apiVersion": owned.api_version,
        }
        if time is not None:
            entry["time"] = time
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = to_fields_v1(owned.paths)
        if manager.subresource:
            entry["subresource"] = manager.subresource
        entries.append(entry)
    entries.sort(
        key=lambda e: (e["operation"], e.get("time") or "", e["manager"], e["apiVersion"], e.get("subresource", ""))
    )
    return entries or None


def _is_reset(sent: Any) -> bool:
    """``managedFields: []`` or ``[{}]`` asks the server to drop them (isResetManagedFields)."""
    return isinstance(sent, list) and (not sent or sent == [{}])


def _cap(managed: Managed) -> None:
    """Merge the oldest Update entries into ``ancient-changes`` until at most 10 remain (capManagersManager)."""
    updaters = [manager for manager, owned in managed.owned.items() if not owned.applied]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return
    updaters.sort(key=lambda manager: (managed.times.get(manager) or "", manager.identifier()))
    first_of_version: dict[str, Manager] = {}
    remaining = len(updaters)
    for manager in updaters:
        if remaining <= MAX_UPDATE_MANAGERS:
            break
        owned = managed.owned[manager]
        version = owned.api_version
        if version not in first_of_version:
            first_of_version[version] = manager
            continue
        bucket = Manager(ANCIENT_CHANGES, "Update", version)
        if bucket not in managed.owned:
            managed.owned[bucket] = managed.owned.pop(first_of_version[version])
        managed.owned[bucket] = ssa.Owned(owned.paths | managed.owned[bucket].paths, version, False)
        del managed.owned[manager]
        managed.times[bucket] = managed.times.get(manager)
        remaining -= 1


# -- naming the writer -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def user_agent_manager(user_agent: str) -> str:
    """prefixFromUserAgent: the User-Agent up to its first ``/``, printable characters, at most 128 bytes."""
    name = ""
    for char in user_agent.split("/")[0]:
        if not char.isprintable():
            continue
        if len((name + char).encode()) > MAX_MANAGER_LENGTH:
            break
        name += char
    return name


def field_manager_errors(field_manager: str) -> list[FieldError]:
    """ValidateFieldManager: at most 128 bytes, printable characters only."""
    found = []
    if len(field_manager.encode()) > MAX_MANAGER_LENGTH:
        found.append(FieldError("too_long", "fieldManager", f"may not be more than {MAX_MANAGER_LENGTH} bytes"))
    position = 0
    for char in field_manager:
        if not char.isprintable():
            detail = f"invalid character U+{ord(char):04X} (at position {position})"
            found.append(invalid("fieldManager", field_manager, detail))
        position += len(char.encode())
    return found


def conflict_error(conflicts: list[tuple[Any, Path]]) -> errors.ApiError:
    """409 Conflict as NewConflictError words it, one cause per field naming its manager."""
    ordered = sorted(conflicts, key=lambda c: (c[0].identifier(), iteration_order(c[1])))
    causes = [
        {"reason": "FieldManagerConflict", "message": f"conflict with {manager.printed()}", "field": path_string(path)}
        for manager, path in ordered
    ]
    if len(ordered) == 1:
        manager, path = ordered[0]
        message = f"Apply failed with 1 conflict: conflict with {manager.printed()}: {path_string(path)}"
    else:
        lines = []
        for manager, path in ordered:
            heading = f"conflicts with {manager.printed()}:"
            if heading not in lines:
                lines.append(heading)
            lines.append(f"- {path_string(path)}")
        message = f"Apply failed with {len(ordered)} conflicts: " + "\n".join(lines)
    return errors.ApiError(409, "Conflict", message, {"causes": causes})


# -- the field manager of one resource -------------------------------------------------------------


def _bare(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without its managedFields (they are never fields anyone owns)."""
    md = obj.get("metadata")
    if not isinstance(md, dict) or "managedFields" not in md:
        return obj
    return {**obj, "metadata": {k: v for k, v in md.items() if k != "managedFields"}}


def _gvk(api_version: str, kind: str) -> str:
    """GroupVersionKind.String(): ``apps/v1, Kind=Deployment``, ``/v1, Kind=Node``."""
    group, _, version = api_version.rpartition("/")
    if "/" in group:
        group = version = ""  # not a group/version at all
    return f"{group}/{version}, Kind={kind}"


@dataclasses.dataclass(frozen=True)
class FieldManager:
    """Keeps managedFields for writes to one resource (and subresource) in one API version."""

    types: FieldType
    api_version: str
    kind: str
    subresource: str = ""
    status_apart: bool = False  # the resource has a status subresource (main writes do not own status)

    @classmethod
    def of(cls, rd: ResourceDef, subresource: str | None) -> FieldManager:
        return cls(of_schema(rd.schema), rd.api_version, rd.kind, subresource or "", rd.has_status)

    def _ignored(self, paths: FieldSet) -> FieldSet:
        """Fields a write through this endpoint cannot set (the strategies' reset fields)."""
        if self.subresource == "status":
            return frozenset(path for path in paths if path[0] == "status")
        return frozenset(path for path in paths if path[0] != "status")

    @property
    def _ignore(self) -> ssa.Ignore | None:
        return self._ignored if self.subresource == "status" or (self.status_apart and not self.subresource) else None

    def empty_object(self, new: dict[str, Any]) -> dict[str, Any]:
        """What a create compares with: a new empty object (built-ins' spec and status exist, empty)."""
        empty: dict[str, Any] = {"apiVersion": new.get("apiVersion", self.api_version), "kind": self.kind}
        if self.types is BUILTIN:
            empty.update({part: {} for part in ("metadata", "spec", "status") if isinstance(new.get(part), dict)})
        return empty

    def _record(self, managed: Managed, live: Any, new: Any, manager: Manager, *, creating: bool = False) -> None:
        """What an Update by ``manager`` does to the entries (managedFieldsUpdater over stripMeta).

        Only a create needs the reset fields filtered out: an update's are isolated before it is recorded.
        """
        current = Manager("", "current-operation")
        ignore = self._ignore if creating else None
        owned = ssa.update(live, new, self.types, self.api_version, managed.owned, current, ignore)
        taken = owned.pop(current, None)
        managed.owned = owned
        paths = taken.paths - _STRIPPED if taken is not None else frozenset()
        if paths:
            previous = owned.get(manager)
            owned[manager] = ssa.Owned(paths | previous.paths if previous else paths, self.api_version, False)
            managed.times[manager] = meta.now()

    def created(self, obj: dict[str, Any], sent: Any, name: str) -> list[dict[str, Any]] | None:
        """The entries of a new object: its creator's fields, compared with an empty object."""
        return self.updated(self.empty_object(obj), obj, sent, name, creating=True)

    def updated(
        self, live: dict[str, Any], new: dict[str, Any], sent: Any, name: str, *, creating: bool = False
    ) -> list[dict[str, Any]] | None:
        """The entries after a create, update or non-apply patch wrote ``new`` over ``live``.

        ``sent`` are the managedFields the write carried: they replace the live ones when they decode
        (a reset empties them), except through subresources. If the object does not fit its type, the
        live entries stay, as the server keeps them (UpdateNoErrors).
        """
        live_entries = (live.get("metadata") or {}).get("managedFields")
        try:
            managed = self._base(live_entries, sent)
            writer = Manager(name or "unknown", "Update", self.api_version, self.subresource)
            self._record(managed, _bare(live), _bare(new), writer, creating=creating)
        except (ssa.TypedError, FieldsError):
            return live_entries
        _cap(managed)
        return encode(managed)

    def _base(self, live_entries: Any, sent: Any) -> Managed:
        if not self.subresource:
            if _is_reset(sent):
                return Managed()
            try:
                managed = decode(sent)
            except FieldsError:
                managed = Managed()
            if managed.owned:
                return managed
        try:
            return decode(live_entries)
        except FieldsError:
            return Managed()

    def applied(
        self, live: dict[str, Any], config: Any, name: str, force: bool, namespace: str | None
    ) -> dict[str, Any]:
        """The object after ``name`` applied ``config`` over ``live`` (managedFields set; the live object
        itself when nothing changed). Raises ApiError: 400 for a configuration that does not fit, 409 for
        conflicts."""
        if not isinstance(config, dict):
            raise errors.bad_request("error decoding YAML: the applied configuration must be an object")
        sent = _gvk(str(config.get("apiVersion") or ""), str(config.get("kind") or ""))
        if sent != _gvk(self.api_version, self.kind):
            raise errors.bad_request(f"invalid object type: {sent}")
        config_md = config.get("metadata")
        if isinstance(config_md, dict) and config_md.get("managedFields") is not None:
            raise errors.bad_request("metadata.managedFields must be nil")
        try:
            ssa.field_set(config, self.types, strict=True)
        except ssa.TypedError as e:
            where = self._gvknn(config, namespace)
            raise errors.bad_request(f"failed to create typed patch object ({where}): {e}") from None
        manager = Manager(name, "Apply", "", self.subresource)
        try:
            result = self._apply(live, config, manager, force)
        except ssa.Conflicts as refused:
            allowed = self._from_last_applied(_bare(live)) if name == _KUBECTL else None
            remaining = [c for c in refused.conflicts if allowed is None or c[1] not in allowed]
            if remaining:
                raise conflict_error(remaining) from None
            result = self._apply(live, config, manager, True)  # client-side apply's fields become kubectl's
        except ssa.TypedError as e:
            raise errors.internal(f"failed to create typed live object ({self._gvknn(live, namespace)}): {e}") from None
        except FieldsError as e:
            raise errors.internal(f"failed to decode managed fields: {e}") from None
        annotations = (result.get("metadata") or {}).get("annotations") or {}
        if name == _KUBECTL and LAST_APPLIED in annotations:
            self._keep_last_applied(result, config)
        return result

    def _gvknn(self, obj: dict[str, Any], namespace: str | None) -> str:
        md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        gvk = _gvk(str(obj.get("apiVersion") or ""), str(obj.get("kind") or ""))
        return f"{md.get('namespace') or namespace or ''}/{md.get('name') or ''}; {gvk}"

    def _apply(self, live: dict[str, Any], config: dict[str, Any], manager: Manager, force: bool) -> dict[str, Any]:
        managed = decode((live.get("metadata") or {}).get("managedFields"))
        bare = _bare(live)
        if not managed.owned:  # fields set before any manager was recorded are before-first-apply's
            first = Manager(BEFORE_FIRST_APPLY, "Update", self.api_version, self.subresource)
            self._record(managed, self.empty_object(bare), bare, first, creating=True)
        new, owned = ssa.apply(bare, config, self.types, self.api_version, managed.owned, manager,
                               force=force, ignore=self._ignore)
        mine = owned.get(manager)
        if mine is not None:
            kept = mine.paths - _STRIPPED
            if kept:
                owned[manager] = ssa.Owned(kept, mine.api_version, True)
            else:
                del owned[manager]
        managed.owned = owned
        if new is not None:
            managed.times[manager] = meta.now()
        result = dict(new if new is not None else bare)
        result["metadata"] = dict(result.get("metadata") or {})
        _cap(managed)
        entries = encode(managed)
        if entries:
            result["metadata"]["managedFields"] = entries
        return result

    def _from_last_applied(self, live: dict[str, Any]) -> FieldSet | None:
        """Fields the client-side apply annotation set and the object still has (allowedConflictsFromLastApplied)."""
        text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
        if not text:
            return None
        try:
            last = json.loads(text)
            if not isinstance(last, dict) or last.get("apiVersion") != self.api_version:
                return None
            paths = ssa.field_set(last, self.types, strict=True)
            changes = ssa.compare(last, live, self.types)
        except (ValueError, ssa.TypedError):
            return None
        return paths - changes.modified - changes.added - changes.removed

    @staticmethod
    def _keep_last_applied(result: dict[str, Any], config: dict[str, Any]) -> None:
        """kubectl's apply rewrites its client-side apply annotation to what it applied (lastAppliedUpdater)."""
        md = result["metadata"]
        applied = dict(config)
        applied_md = dict(applied.get("metadata") or {})
        kept = {k: v for k, v in (applied_md.get("annotations") or {}).items() if k != LAST_APPLIED}
        applied_md.pop("annotations", None)
        if kept:
            applied_md["annotations"] = kept
        applied["metadata"] = applied_md
        annotations = {**(md.get("annotations") or {}), LAST_APPLIED: canonical(applied) + "\n"}
        if len(json.dumps(annotations)) > _ANNOTATIONS_LIMIT:
            del annotations[LAST_APPLIED]
        md["annotations"] = annotations
