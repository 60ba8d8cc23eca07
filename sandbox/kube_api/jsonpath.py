"""The JSONPath subset of ``additionalPrinterColumns``: ``.a.b``, ``.a[0]``, ``.a[*].b``, ``.a['k.x']``,
and filters like ``.status.conditions[?(@.type=='Ready')].status``.

Docs: https://kubernetes.io/docs/reference/kubectl/jsonpath/
"""

from __future__ import annotations

import re
from typing import Any

_SEGMENT = re.compile(
    r"""\.(?P<name>[A-Za-z0-9_$-]+)"""
    r"""|\[(?P<index>-?\d+|\*)\]"""
    r"""|\[['"](?P<quoted>[^'"]+)['"]\]"""
    r"""|\[\?\(@\.(?P<field>[A-Za-z0-9_.-]+)\s*(?P<op>==|!=)\s*['"]?(?P<value>[^'")]*)['"]?\)\]"""
)


def find(obj: Any, path: str) -> list[Any]:
    """All values the path selects (empty when nothing matches or the path is unsupported)."""
    path = path.strip().removeprefix("{").removesuffix("}")
    values = [obj]
    position = 0
    while position < len(path):
        segment = _SEGMENT.match(path, position)
        if segment is None:
            return []
        position = segment.end()
        values = [found for value in values for found in _step(value, segment)]
    return values


def _step(value: Any, segment: re.Match[str]) -> list[Any]:
    if segment["name"] is not None or segment["quoted"] is not None:
        key = segment["name"] or segment["quoted"]
        return [value[key]] if isinstance(value, dict) and key in value else []
    if not isinstance(value, list):
        return []
    if segment["index"] == "*":
        return list(value)
    if segment["index"] is not None:
        index = int(segment["index"])
        return [value[index]] if -len(value) <= index < len(value) else []
    matches = []
    for item in value:
        found = find(item, "." + segment["field"])
        actual = "" if not found else str(found[0]).lower() if isinstance(found[0], bool) else str(found[0])
        if (actual == segment["value"]) == (segment["op"] == "=="):
            matches.append(item)
    return matches
