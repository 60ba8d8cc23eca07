"""Label and field selectors, as ``?labelSelector=`` and ``?fieldSelector=`` filter lists and watches.

Grammar and semantics from https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/
(equality-based ``a=b``, ``a==b``, ``a!=b``; set-based ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``;
requirements joined by commas mean AND) and
https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from typing import Any

Matcher = Callable[[dict[str, Any]], bool]


class SelectorError(ValueError):
    """A selector the server cannot parse or does not support (answered with 400 BadRequest)."""


_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_REQUIREMENTS = [
    (re.compile(rf"!\s*({_KEY})"), "!"),
    (re.compile(rf"({_KEY})\s*(==|=|!=)\s*({_VALUE})"), "eq"),
    (re.compile(rf"({_KEY})\s+(in|notin)\s*\(([^()]*)\)"), "set"),
    (re.compile(rf"({_KEY})\s*(<|>)\s*(-?\d+)"), "cmp"),
    (re.compile(rf"({_KEY})"), "exists"),
]


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "<", ">"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "exists":
                return present
            case "!":
                return not present
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values  # absent keys satisfy negations
            case _:
                try:
                    number = int(value) if value is not None else None
                except ValueError:
                    return False
                limit = int(self.values[0])
                return number is not None and (number < limit if self.op == "<" else number > limit)


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``(...)`` value sets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse a label selector; an empty selector selects everything."""
    requirements = []
    for raw in _split_top_level(text or ""):
        part = raw.strip()
        if not part:
            if text and text.strip():
                raise SelectorError(
                    f"unable to parse requirement: found '', expected: identifier in {text!r}"
                )
            continue
        for pattern, kind in _REQUIREMENTS:
            found = pattern.fullmatch(part)
            if found is None:
                continue
            if kind == "!":
                requirements.append(Requirement(found[1], "!"))
            elif kind == "exists":
                requirements.append(Requirement(found[1], "exists"))
            elif kind == "eq":
                requirements.append(Requirement(found[1], "!=" if found[2] == "!=" else "=", (found[3],)))
            elif kind == "set":
                values = tuple(v.strip() for v in found[3].split(","))
                if not all(re.fullmatch(_VALUE, v) for v in values):
                    raise SelectorError(f"unable to parse requirement: invalid values in {part!r}")
                requirements.append(Requirement(found[1], found[2], values))
            else:
                requirements.append(Requirement(found[1], found[2], (found[3],)))
            break
        else:
            raise SelectorError(f"unable to parse requirement: {part!r}")
    return requirements


def label_matcher(text: str | None) -> Matcher:
    requirements = parse_label_selector(text)

    def matches(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(requirement.matches(labels) for requirement in requirements)

    return matches


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def parse_field_selector(text: str | None) -> list[tuple[str, str, str]]:
    """``a=b,c!=d`` → [(field, op, value)]; ``\\,`` ``\\=`` ``\\\\`` escape as in fields.ParseSelector."""
    terms = []
    for part in re.split(r"(?<!\\),", text or ""):
        if not part.strip():
            continue
        found = re.fullmatch(r"\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*", part)
        if found is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        terms.append((found[1], "!=" if found[2] == "!=" else "=", _unescape(found[3])))
    return terms


def field_value(obj: dict[str, Any], path: str) -> str:
    """A field's value as field selectors compare it: a string, "" when absent."""
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):  # e.g. events' `source` means `source.component`
        value = value.get("component")
    return "" if value is None else str(value)


def field_matcher(text: str | None, supported: Iterable[str], *, custom: bool) -> Matcher:
    terms = parse_field_selector(text)
    allowed = set(supported)
    for field, _, _ in terms:
        if field not in allowed:
            if custom:
                listed = ", ".join(f'"{f}"' for f in sorted(allowed))
                raise SelectorError(f'"{field}" is not a known field selector: only {listed}')
            raise SelectorError(f"field label not supported: {field}")

    def matches(obj: dict[str, Any]) -> bool:
        return all((field_value(obj, field) == value) == (op == "=") for field, op, value in terms)

    return matches


@dataclasses.dataclass(frozen=True)
class IndexTerm:
    """One exact-match requirement every selected object meets, so watches can be indexed by it.

    ``kind`` "name" is ``metadata.name=<value>``; "label" is the label ``<key>=<value>``. An object
    the term does not admit cannot match the whole selector, so a watch need not be offered it.
    """

    kind: str  # "name" or "label"
    value: str
    key: str = ""

    def admits(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        if self.kind == "name":
            return field_value(obj, "metadata.name") == self.value
        labels = (obj.get("metadata") or {}).get("labels")
        return isinstance(labels, dict) and labels.get(self.key) == self.value


def index_term(label_selector: str | None, field_selector: str | None) -> IndexTerm | None:
    """The most selective exact-match term of (already validated) selectors: the name, else a label."""
    for field, op, value in parse_field_selector(field_selector):
        if field == "metadata.name" and op == "=":
            return IndexTerm("name", value)
    for requirement in parse_label_selector(label_selector):
        if requirement.op in ("=", "in") and len(requirement.values) == 1:
            return IndexTerm("label", requirement.values[0], requirement.key)
    return None


# Fields each built-in resource can be selected by (besides metadata.name and metadata.namespace).
BUILTIN_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "events"): (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    ("events.k8s.io", "events"): (
        "regarding.kind",
        "regarding.namespace",
        "regarding.name",
        "regarding.uid",
        "regarding.apiVersion",
        "regarding.resourceVersion",
        "regarding.fieldPath",
        "reason",
        "reportingController",
        "type",
    ),
    ("", "pods"): (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    ("", "nodes"): ("spec.unschedulable",),
    ("", "namespaces"): ("status.phase",),
    ("", "secrets"): ("type",),
}
