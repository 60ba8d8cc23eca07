"""Server-side apply's merge and field ownership, as sigs.k8s.io/structured-merge-diff computes them.

Pure functions over JSON-like values and their :class:`~.field_types.FieldType`:

- :func:`field_set` — the fields a value sets (an applied configuration's are what its manager owns);
- :func:`compare` — what changed between two values (removed, modified, added);
- :func:`merge` — an applied configuration merged into the live object (maps by key, map lists by
  their keys, sets by value, atomic values replaced);
- :func:`update` — ownership after a non-apply write: the writer takes every field it changed;
- :func:`apply` — the merged object and ownership after an apply: fields another manager owns with a
  different value are :class:`Conflicts` unless forced, fields the applier stopped sending and no one
  else owns are removed.

No library does this in Python (kmock has no apply; structured-merge-diff is Go), so this follows
that package's ``typed`` (merge.go, compare.go, tofieldset.go, remove.go) and ``merge/update.go``.
Docs: https://kubernetes.io/docs/reference/using-api/server-side-apply/
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Hashable
from typing import Any

from rackmesh_sandbox.kube_api.field_sets import (
    EMPTY,
    Element,
    FieldSet,
    Path,
    element_string,
    key_element,
    path_string,
    value_element,
)
from rackmesh_sandbox.kube_api.field_types import DEDUCED, FieldType


class _Absent:
    """A field that is not there (unlike ``None``, a field set to null)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
Ignore = Callable[[FieldSet], FieldSet]  # drops the fields a write may not own (reset fields)


class TypedError(ValueError):
    """A value that does not fit its type: a map list item without keys, duplicates, undeclared fields."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path_string(path)}: {message}" if path else message)


@dataclasses.dataclass(frozen=True)
class Owned:
    """A manager's fields (structured-merge-diff's VersionedSet)."""

    paths: FieldSet
    api_version: str
    applied: bool


Managers = dict[Hashable, Owned]


class Conflicts(Exception):
    """Fields an apply would change that other managers own: (manager, path) pairs."""

    def __init__(self, conflicts: list[tuple[Hashable, Path]]) -> None:
        super().__init__(f"{len(conflicts)} conflicts")
        self.conflicts = conflicts


@dataclasses.dataclass
class Comparison:
    removed: set[Path] = dataclasses.field(default_factory=set)
    modified: set[Path] = dataclasses.field(default_factory=set)
    added: set[Path] = dataclasses.field(default_factory=set)

    def filtered(self, ignore: Ignore | None) -> Comparison:
        if ignore is None:
            return self
        return Comparison(set(ignore(frozenset(self.removed))), set(ignore(frozenset(self.modified))),
                          set(ignore(frozenset(self.added))))


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    return "scalar"


def _same(lhs: Any, rhs: Any) -> bool:
    """Deep equality that does not take ``True`` for ``1``."""
    return lhs == rhs and isinstance(lhs, bool) == isinstance(rhs, bool)


def _element(t: FieldType, item: Any, path: Path, index: int) -> Element:
    """The path element of a list item: by its key fields (map lists) or its value (sets)."""
    if t.keys:
        if not isinstance(item, dict):
            what = "a null element" if item is None else "non-map elements"
            raise TypedError(path, f"element {index}: associative list with keys may not have {what}")
        fields = [(key, item[key]) for key in t.keys if key in item]
        fields += [(key, t.key_defaults[key]) for key in t.keys if key not in item and key in t.key_defaults]
        if not fields:
            listed = "[" + " ".join(f'"{key}"' for key in t.keys) + "]"
            raise TypedError(
                path,
                f"element {index}: associative list with keys has an element that omits all key fields "
                f"{listed} (and doesn't have default values for any key fields)",
            )
        return key_element(fields)
    if isinstance(item, dict):
        raise TypedError(path, f"element {index}: associative list without keys has an element that's a map type")
    if isinstance(item, list):
        raise TypedError(path, f"element {index}: not supported: associative list with lists as elements")
    if item is None:
        raise TypedError(path, f"element {index}: associative list without keys has an element that's an explicit null")
    return value_element(item)


def _elements(t: FieldType, items: list[Any], path: Path) -> list[Element]:
    return [_element(t, item, path, index) for index, item in enumerate(items)]


# -- the fields a value sets -----------------------------------------------------------------------


def field_set(value: Any, t: FieldType, *, strict: bool = False) -> FieldSet:
    """The fields ``value`` sets (ToFieldSet). ``strict``, for applied configurations, refuses
    undeclared fields and duplicate list items; otherwise duplicates are owned as a whole."""
    found: set[Path] = set()
    _collect(value, t, (), found, strict)
    return frozenset(found)


def _collect(value: Any, t: FieldType, path: Path, found: set[Path], strict: bool) -> None:
    if isinstance(value, dict):
        if t.map_atomic:
            found.add(path)
            return
        for key, child in value.items():
            child_type, named = t.child(key)
            child_path = (*path, key)
            if child_type is None:
                if strict:
                    raise TypedError(child_path, "field not declared in schema")
                child_type = DEDUCED
            _collect(child, child_type, child_path, found, strict)
            if child is None or child == {} or not named:
                found.add(child_path)
    elif isinstance(value, list):
        if t.list_type == "atomic":
            found.add(path)
            return
        elements = _elements(t, value, path)
        duplicates = {element for element, count in collections.Counter(elements).items() if count > 1}
        if duplicates and strict:
            first = next(element for element in elements if element in duplicates)
            raise TypedError(path, f"duplicate entries for key {element_string(first)}")
        found.update((*path, element) for element in duplicates)
        for element, item in zip(elements, value, strict=True):
            if element not in duplicates:
                item_path = (*path, element)
                _collect(item, t.item, item_path, found, strict)
                found.add(item_path)
    else:
        found.add(path)


def with_named_fields(paths: FieldSet, t: FieldType) -> FieldSet:
    """The set plus every named (struct) field on the way to its members (EnsureNamedFieldsAreMembers)."""
    out = set(paths)
    for path in paths:
        node: FieldType = t
        for depth, element in enumerate(path[:-1]):
            if isinstance(element, str):
                child, named = node.child(element)
                if named:
                    out.add(path[: depth + 1])
                node = child or DEDUCED
            else:
                node = node.item
    return frozenset(out)


# -- comparing -------------------------------------------------------------------------------------


def compare(lhs: Any, rhs: Any, t: FieldType) -> Comparison:
    """The fields ``rhs`` removed, modified and added relative to ``lhs``."""
    found = Comparison()
    _compare(lhs, rhs, t, (), found)
    return found


def _empty(value: Any) -> bool:
    return value is ABSENT or value is None or value == {} or value == []


def _compare(lhs: Any, rhs: Any, t: FieldType, path: Path, found: Comparison) -> None:
    if lhs is ABSENT or rhs is ABSENT:
        _every_path(rhs if lhs is ABSENT else lhs, t, path, found.added if lhs is ABSENT else found.removed)
        return
    if _same(lhs, rhs):
        return
    left = _kind(rhs) if lhs is None or lhs is ABSENT else _kind(lhs)  # null takes the other side's form
    right = left if rhs is None or rhs is ABSENT else _kind(rhs)
    if left != right:
        found.modified.add(path)  # a value that changed form: the old one's insides go, the new one's come
        _compare_inside(lhs, ABSENT, t, path, found)
        _compare_inside(ABSENT, rhs, t, path, found)
        return
    if not _compare_inside(lhs, rhs, t, path, found):
        _leaf(lhs, rhs, path, found)
    elif lhs is ABSENT:
        found.added.add(path)
    elif rhs is ABSENT:
        found.removed.add(path)


def _every_path(value: Any, t: FieldType, path: Path, out: set[Path]) -> None:
    """A value that came or went: it and everything in it (a shortcut of comparing it with nothing)."""
    out.add(path)
    if isinstance(value, dict) and value and not t.map_atomic:
        for key, child in value.items():
            child_type, _ = t.child(key)
            _every_path(child, child_type or DEDUCED, (*path, key), out)
    elif isinstance(value, list) and value and t.list_type != "atomic":
        elements = _elements(t, value, path)
        counts = collections.Counter(elements)
        for element, item in zip(elements, value, strict=True):
            if counts[element] > 1:
                out.add((*path, element))  # duplicates are one atomic value
            else:
                _every_path(item, t.item, (*path, element), out)


def _leaf(lhs: Any, rhs: Any, path: Path, found: Comparison) -> None:
    if lhs is ABSENT:
        found.added.add(path)
    elif rhs is ABSENT:
        found.removed.add(path)
    elif not _same(lhs, rhs):
        found.modified.add(path)


def _compare_inside(lhs: Any, rhs: Any, t: FieldType, path: Path, found: Comparison) -> bool:
    """Compare the items of two maps or lists; False when the pair is a leaf (scalars, atomic, empty)."""
    form = _kind(lhs if lhs is not ABSENT and lhs is not None else rhs)
    if form == "scalar" or (_empty(lhs) and _empty(rhs)):
        return False
    if form == "map":
        if t.map_atomic:
            return False
        left = lhs if isinstance(lhs, dict) else {}
        right = rhs if isinstance(rhs, dict) else {}
        for key in left.keys() | right.keys():
            child_type, _ = t.child(key)
            _compare(left.get(key, ABSENT), right.get(key, ABSENT), child_type or DEDUCED, (*path, key), found)
        return True
    if t.list_type == "atomic":
        return False
    _compare_items(lhs if isinstance(lhs, list) else [], rhs if isinstance(rhs, list) else [], t, path, found)
    return True


def _compare_items(lhs: list[Any], rhs: list[Any], t: FieldType, path: Path, found: Comparison) -> None:
    by_element: dict[Element, tuple[list[Any], list[Any]]] = {}
    for side, items in ((0, lhs), (1, rhs)):
        for element, item in zip(_elements(t, items, path), items, strict=True):
            by_element.setdefault(element, ([], []))[side].append(item)
    for element, (left, right) in by_element.items():
        item_path = (*path, element)
        if len(left) <= 1 and len(right) <= 1:
            _compare(left[0] if left else ABSENT, right[0] if right else ABSENT, t.item, item_path, found)
        elif len(left) >= 2 and len(right) >= 2:
            if not _same(left, right):
                found.modified.add(item_path)  # duplicates compare as one atomic value
        elif len(left) >= 2:
            if right:
                _compare(ABSENT, right[0], t.item, item_path, found)
            found.removed.add(item_path)
        else:
            if left:
                _compare(left[0], ABSENT, t.item, item_path, found)
            found.added.add(item_path)


# -- merging ---------------------------------------------------------------------------------------


def merge(lhs: Any, rhs: Any, t: FieldType) -> Any:
    """``rhs`` (an applied configuration) merged into ``lhs`` (the live object); ABSENT if neither is there."""
    return _merge(lhs, rhs, t, ())


def _merge(lhs: Any, rhs: Any, t: FieldType, path: Path) -> Any:
    if rhs is ABSENT:
        return lhs
    if lhs is ABSENT or _same(lhs, rhs):
        return rhs
    if isinstance(rhs, dict) and isinstance(lhs, dict):
        if t.map_atomic or (not lhs and not rhs):
            return rhs
        out = dict(lhs)
        for key, value in rhs.items():
            child_type, _ = t.child(key)
            merged = _merge(lhs.get(key, ABSENT), value, child_type or DEDUCED, (*path, key))
            if merged is not ABSENT:
                out[key] = merged
        return out
    if isinstance(rhs, list) and isinstance(lhs, list):
        if t.list_type == "atomic" or (not lhs and not rhs):
            return rhs
        return _merge_items(lhs, rhs, t, path)
    if rhs is None and isinstance(lhs, (dict, list)) and lhs:
        return lhs  # null merges into a map or list as nothing (it is walked as an empty one)
    return rhs


def _merge_items(lhs: list[Any], rhs: list[Any], t: FieldType, path: Path) -> Any:
    """Map lists and sets: the live items in their order, the applied ones merged in where they were
    or after the live items that came before them (mergingWalker.visitListItems)."""
    right = _elements(t, rhs, path)
    observed_right = dict(zip(right, rhs, strict=True))
    left = _elements(t, lhs, path)
    observed_left: dict[Element, Any] = {}
    for element, item in zip(left, lhs, strict=True):
        observed_left[element] = None if element in observed_left else item  # duplicates merge as null
    shared = [element for element in right if element in observed_left]
    next_shared = 0
    merged_right: set[Element] = set()
    out: list[Any] = []

    def take(element: Element, lhs_item: Any, rhs_item: Any) -> None:
        merged = _merge(lhs_item, rhs_item, t.item, (*path, element))
        if merged is not ABSENT:
            out.append(merged)

    def upcoming() -> Element | None:
        return shared[next_shared] if next_shared < len(shared) else None

    li = ri = 0
    while li < len(left) or ri < len(right):
        if li < len(left) and ri < len(right):
            element = left[li]
            if element == right[ri]:
                merged_right.add(element)
                take(element, observed_left[element], observed_right[element])
                li, ri = li + 1, ri + 1
                next_shared += 1
                continue
            if element in observed_right and upcoming() is not None and upcoming() != element:
                li += 1  # a shared item, but not the one due now
                continue
        if li < len(left):
            element = left[li]
            if element not in observed_right:
                take(element, lhs[li], ABSENT)
                li += 1
                continue
            if element in merged_right:
                li += 1
        if ri < len(right):
            element = right[ri]
            merged_right.add(element)
            take(element, observed_left.get(element, ABSENT), observed_right[element])
            ri += 1
            if upcoming() == element:
                next_shared += 1
    return out or ABSENT


# -- removing --------------------------------------------------------------------------------------

Trie = dict[Element, tuple[bool, "Trie"]]


def _trie(paths: FieldSet) -> Trie:
    root: dict[Element, list[Any]] = {}
    for path in paths:
        node = root
        for depth, element in enumerate(path):
            entry = node.get(element)
            if entry is None:
                entry = node[element] = [False, {}]
            if depth == len(path) - 1:
                entry[0] = True
            node = entry[1]
    return root  # type: ignore[return-value]


def remove_items(value: Any, t: FieldType, paths: FieldSet) -> Any:
    """``value`` without the fields in ``paths`` (a map or list emptied by it goes too)."""
    if not paths:
        return value
    return _remove(value, t, _trie(paths))


def _remove(value: Any, t: FieldType, trie: Trie) -> Any:
    if isinstance(value, dict) and not t.map_atomic:
        out = {}
        for key, child in value.items():
            entry = trie.get(key)
            if entry is None:
                out[key] = child
            elif not entry[0]:
                child_type, _ = t.child(key)
                kept = _remove(child, child_type or DEDUCED, entry[1])
                if kept is not ABSENT:
                    out[key] = kept
        return out or ABSENT
    if isinstance(value, list) and t.list_type != "atomic" and value:
        items = []
        for index, item in enumerate(value):
            entry = trie.get(_element(t, item, (), index))
            if entry is None:
                items.append(item)
            elif not entry[0]:
                kept = _remove(item, t.item, entry[1])
                if kept is not ABSENT:
                    items.append(kept)
        return items or ABSENT
    return value


# -- ownership -------------------------------------------------------------------------------------


def _take_over(
    live: Any, new: Any, t: FieldType, managers: Managers, writer: Hashable, force: bool, ignore: Ignore | None
) -> tuple[Managers, Comparison]:
    """Fields the write changed leave their other owners (or conflict, unless forced); removed fields
    leave everyone (Updater.update)."""
    changes = compare(live, new, t).filtered(ignore)
    changed = changes.modified | changes.added
    conflicts = {}
    for manager, owned in managers.items():
        if manager != writer:
            hit = owned.paths & changed
            if hit:
                conflicts[manager] = hit
    if conflicts and not force:
        raise Conflicts([(manager, path) for manager, paths in conflicts.items() for path in paths])
    result: Managers = {}
    for manager, owned in managers.items():
        kept = owned
        if manager != writer:
            lost = conflicts.get(manager, EMPTY) | (owned.paths & changes.removed)
            if lost:
                kept = Owned(owned.paths - lost, owned.api_version, owned.applied)
        if kept.paths:
            result[manager] = kept
    return result, changes


def update(
    live: Any,
    new: Any,
    t: FieldType,
    api_version: str,
    managers: Managers,
    manager: Hashable,
    ignore: Ignore | None = None,
) -> Managers:
    """Ownership after ``manager`` wrote ``new`` over ``live`` by a create, update or patch (Updater.Update)."""
    managers, changes = _take_over(live, new, t, managers, manager, True, ignore)
    previous = managers.get(manager)
    paths = ((previous.paths - changes.removed) if previous else EMPTY) | changes.modified | changes.added
    if paths:
        managers[manager] = Owned(frozenset(paths), api_version, False)
    else:
        managers.pop(manager, None)
    return managers


def apply(
    live: Any,
    config: Any,
    t: FieldType,
    api_version: str,
    managers: Managers,
    manager: Hashable,
    *,
    force: bool,
    ignore: Ignore | None = None,
) -> tuple[Any, Managers]:
    """The object after ``manager`` applied ``config`` over ``live`` (None if nothing changed) and the
    new ownership (Updater.Apply). Raises :class:`TypedError` for a configuration that does not fit,
    :class:`Conflicts` for fields others own with other values unless ``force``."""
    applied = field_set(config, t, strict=True)
    if ignore is not None:
        applied = ignore(applied)
    merged = merge(live, config, t)
    last = managers.get(manager)
    managers = {**managers, manager: Owned(applied, api_version, True)}
    if last is not None and last.paths:
        merged = _prune(merged, t, managers, last.paths)
    managers, _ = _take_over(live, merged, t, managers, manager, force, ignore)
    return (None if _same(live, merged) else merged), managers


def _prune(merged: Any, t: FieldType, managers: Managers, last: FieldSet) -> Any:
    """Remove what the applier applied last time, does not apply now, and no other manager owns."""
    last = with_named_fields(last, t)
    pruned = remove_items(merged, t, last)
    owned = with_named_fields(frozenset().union(*(owned.paths for owned in managers.values())), t)
    merged_set = with_named_fields(field_set(merged, t), t)
    pruned_set = with_named_fields(field_set(pruned, t), t)
    pruned = remove_items(merged, t, merged_set - (pruned_set | owned))  # add back what someone owns
    pruned_set = with_named_fields(field_set(pruned, t), t)
    return remove_items(merged, t, (merged_set - pruned_set) & last)  # and what the applier never had
