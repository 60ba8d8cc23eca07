"""Sets of field paths, as structured-merge-diff's ``fieldpath`` keeps them, and their ``FieldsV1`` form.

A path is a tuple of elements: a field name (``str``), a list item by its key fields
(``("k", ((name, json), ...))``, names sorted), a set item by its value (``("v", json)``), or an
index (``("i", n)``, never produced here: lists without keys are atomic). A set of paths is a plain
``frozenset``; the paths in it are its members, so a map that has owned children is not itself
owned unless its own path is in the set.

``FieldsV1`` is the trie ``managedFields[].fieldsV1`` holds: ``f:<name>``, ``k:<json of the key
fields>``, ``v:<json of the value>``, ``i:<index>``; ``"."`` marks a path that is a member and has
children. Docs: https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/object-meta/
(managedFields) and sigs.k8s.io/structured-merge-diff ``fieldpath/serialize.go``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

Element = str | tuple[str, Any]
Path = tuple[Element, ...]
FieldSet = frozenset[Path]

EMPTY: FieldSet = frozenset()
_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class FieldsError(ValueError):
    """A ``fieldsV1`` that does not decode (a client wrote managedFields by hand)."""


class FieldsV1(dict[str, Any]):
    """An encoded trie: a JSON object that is never changed once built, so copies share it (every
    write and read deep-copies objects, and these tries are half of a small object), and it keeps
    the set it encodes (the next write decodes it for free)."""

    def __init__(self, trie: dict[str, Any], paths: FieldSet) -> None:
        super().__init__(trie)
        self.paths = paths

    def __copy__(self) -> FieldsV1:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FieldsV1:
        return self


def canonical(value: Any) -> str:
    """JSON as Go's encoder writes it: compact, keys sorted, HTML characters escaped."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).translate(_GO_ESCAPES)


def key_element(fields: Iterable[tuple[str, Any]]) -> Element:
    """The element of a list item identified by these key fields (name, value)."""
    return ("k", tuple(sorted((name, canonical(value)) for name, value in fields)))


def value_element(value: Any) -> Element:
    """The element of a set item (a scalar)."""
    return ("v", canonical(value))


# -- FieldsV1 --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _encode_element(element: Element) -> str:
    if isinstance(element, str):
        return "f:" + element
    kind, body = element
    if kind == "k":
        return "k:{" + ",".join(f"{canonical(name)}:{text}" for name, text in body) + "}"
    return f"{kind}:{body}"


@functools.lru_cache(maxsize=1024)
def to_fields_v1(paths: FieldSet) -> FieldsV1:
    """Encode a set of paths as the ``fieldsV1`` trie (keys in the server's order: ``.``, fields, keys, values).

    Tries are immutable, so equal sets share one: objects written by the same code own the same fields.
    """
    root: dict[str, Any] = {}
    members: set[int] = set()  # the nodes of member paths, by identity
    # Sorted, a path comes before the paths under it, so "." goes in before a member's first child.
    for encoded in sorted(tuple(map(_encode_element, path)) for path in paths):
        node = root
        for key in encoded:
            child = node.get(key)
            if child is None:
                if not node and id(node) in members:
                    node["."] = {}  # a member that also has children says so
                child = node[key] = {}
            node = child
        members.add(id(node))
    return FieldsV1(root, paths)


def _decode_element(text: str) -> Element:
    kind, sep, body = text.partition(":")
    if not sep:
        raise FieldsError(f"unexpected key in fieldsV1: {text!r}")
    try:
        match kind:
            case "f":
                return body
            case "k":
                fields = json.loads(body)
                if not isinstance(fields, dict):
                    raise FieldsError(f"the keys of a list item must be an object: {text!r}")
                return key_element(fields.items())
            case "v":
                return value_element(json.loads(body))
            case "i":
                return ("i", int(body))
    except ValueError as e:
        raise FieldsError(f"unparsable element {text!r} in fieldsV1: {e}") from None
    raise FieldsError(f"unknown element type {kind!r} in fieldsV1")


def from_fields_v1(fields: Any) -> FieldSet:
    """Decode a ``fieldsV1`` trie into the set of paths it holds."""
    if isinstance(fields, FieldsV1):
        return fields.paths
    if not isinstance(fields, dict):
        raise FieldsError("fieldsV1 must be an object")
    found: set[Path] = set()
    _decode_into(fields, (), found)
    return frozenset(found)


def _decode_into(node: dict[str, Any], prefix: Path, found: set[Path]) -> None:
    for text, child in node.items():
        if not isinstance(child, dict):
            raise FieldsError(f"fieldsV1 entries must be objects, {text!r} is not")
        if text == ".":
            if prefix:
                found.add(prefix)
            continue
        path = (*prefix, _decode_element(text))
        if child:
            _decode_into(child, path, found)
        else:
            found.add(path)


# -- printing and ordering -------------------------------------------------------------------------


def _go_string(value: Any) -> str:
    """value.ToString: strings quoted, numbers and booleans bare, as in ``[name="nginx"]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(_go_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={_go_string(v)}" for k, v in sorted(value.items())) + "}"
    return "null" if value is None else str(value)


def element_string(element: Element) -> str:
    if isinstance(element, str):
        return "." + element
    kind, body = element
    if kind == "k":
        return "[" + ",".join(f"{name}={_go_string(json.loads(text))}" for name, text in body) + "]"
    if kind == "v":
        return f"[={_go_string(json.loads(body))}]"
    return f"[{body}]"


def path_string(path: Path) -> str:
    """A path as the server prints it in conflicts: ``.spec.containers[name="nginx"].image``."""
    return "".join(element_string(element) for element in path)


def _element_rank(element: Element) -> tuple[int, Any]:
    if isinstance(element, str):
        return (0, element)
    return ({"k": 1, "v": 2, "i": 3}[element[0]], element[1])


def iteration_order(path: Path) -> tuple[tuple[int, tuple[int, Any]], ...]:
    """Sort key for ``Set.Iterate``'s order: at each level the members there before deeper paths."""
    last = len(path) - 1
    return tuple((0 if i == last else 1, _element_rank(element)) for i, element in enumerate(path))
