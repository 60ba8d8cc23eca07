"""The three PATCH flavours of the Kubernetes API.

- JSON merge patch, RFC 7386 (``application/merge-patch+json``).
- JSON patch, RFC 6902 (``application/json-patch+json``).
- Strategic merge patch (``application/strategic-merge-patch+json``), built-in kinds only: a merge
  patch in which lists of objects with a known merge key are merged item by item, plus the
  ``$patch``, ``$setElementOrder`` and ``$deleteFromPrimitiveList`` directives kubectl sends.
- Server-side apply (``application/apply-patch+yaml``): its body is decoded here; the merge is
  :mod:`.server_side_apply`'s.

Docs: https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from rackmesh_sandbox.kube_api import errors

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# Merge keys of lists in built-in kinds (from the `patchMergeKey` tags of k8s.io/api).
MERGE_KEYS: dict[str, str] = {
    "conditions": "type",
    "addresses": "type",
    "taints": "key",
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "env": "name",
    "ports": "containerPort",
    "ownerReferences": "uid",
    "images": "names",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "volumeDevices": "devicePath",
}
# Lists of scalars that strategic merge patches merge as sets instead of replacing.
MERGED_SCALAR_LISTS = frozenset({"finalizers"})


class PatchError(ValueError):
    """A patch that cannot be applied (answered with 422, or 400 when it is not even JSON)."""


class _ApplyLoader(yaml.SafeLoader):
    """YAML as sigs.k8s.io/yaml reads it into JSON: timestamps stay strings."""


_ApplyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_apply_patch(body: bytes) -> Any:
    """An apply body: YAML or JSON (kubectl sends JSON); 400 ``error decoding YAML`` otherwise."""
    try:
        return json.loads(body or b"{}")
    except ValueError:
        pass
    try:
        return yaml.load(body.decode("utf-8"), Loader=_ApplyLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise errors.bad_request(f"error decoding YAML: {e}") from None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, everything else replaces.

    The result shares with ``target`` what the patch leaves alone (only patched maps are copied).
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _resolve(doc: Any, pointer: str) -> tuple[Any, str]:
    """Return (container, last token) of a JSON pointer."""
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer {pointer!r}")
    tokens = [_unescape(t) for t in pointer[1:].split("/")]
    container = doc
    for token in tokens[:-1]:
        try:
            container = container[int(token)] if isinstance(container, list) else container[token]
        except (KeyError, IndexError, ValueError, TypeError):
            raise PatchError(f"doc is missing path: {pointer!r}") from None
    return container, tokens[-1]


def _get(doc: Any, pointer: str) -> Any:
    if pointer == "":
        return doc
    container, token = _resolve(doc, pointer)
    try:
        return container[int(token)] if isinstance(container, list) else container[token]
    except (KeyError, IndexError, ValueError, TypeError):
        raise PatchError(f"doc is missing path: {pointer!r}") from None


def _remove(doc: Any, pointer: str) -> Any:
    container, token = _resolve(doc, pointer)
    try:
        return container.pop(int(token)) if isinstance(container, list) else container.pop(token)
    except (KeyError, IndexError, ValueError, TypeError):
        raise PatchError(f"unable to remove nonexistent key: {pointer!r}") from None


def _add(doc: Any, pointer: str, value: Any, *, replace: bool = False) -> Any:
    if pointer == "":
        return value
    container, token = _resolve(doc, pointer)
    if isinstance(container, list):
        index = len(container) if token == "-" else int(token) if token.isdigit() else -1
        if not 0 <= index <= len(container) - (1 if replace else 0):
            raise PatchError(f"index out of range in {pointer!r}")
        if replace:
            container[index] = value
        else:
            container.insert(index, value)
    elif isinstance(container, dict):
        if replace and token not in container:
            raise PatchError(f"replace operation does not apply: doc is missing key: {pointer!r}")
        container[token] = value
    else:
        raise PatchError(f"doc is missing path: {pointer!r}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902: add, remove, replace, move, copy, test — applied in order, all or nothing."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    # Not copy.deepcopy, which keeps fieldsV1 tries shared (field_sets.FieldsV1): an operation may write into one,
    # and would change every object holding it.
    doc = json.loads(json.dumps(target))
    for op in operations:
        if not isinstance(op, dict) or "path" not in op:
            raise PatchError(f"invalid operation {op!r}")
        kind, path = op.get("op"), op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"missing value in {kind} operation")
        match kind:
            case "add":
                doc = _add(doc, path, copy.deepcopy(op["value"]))
            case "remove":
                _remove(doc, path)
            case "replace":
                doc = _add(doc, path, copy.deepcopy(op["value"]), replace=True)
            case "move":
                doc = _add(doc, path, _remove(doc, op["from"]))
            case "copy":
                doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
            case "test":
                if _get(doc, path) != op["value"]:
                    raise PatchError(f"testing value {path} failed")
            case _:
                raise PatchError(f"Unexpected kind: {kind}")
    return doc


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic merge patch for built-in kinds (the directives kubectl and kopf produce)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$patch", "$retainKeys"):
            continue  # ordering hints and key retention: not needed for our purposes
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [item for item in result.get(name) or [] if item not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, MERGE_KEYS[key])
        elif isinstance(value, list) and key in MERGED_SCALAR_LISTS:
            result[key] = list(dict.fromkeys([*(result.get(key) or []), *value]))
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _merge_list(current: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    merged = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            return copy.deepcopy(patch)  # not a keyed list after all: replace, as for atomic lists
        index = next(
            (
                i
                for i, old in enumerate(merged)
                if isinstance(old, dict) and old.get(merge_key) == item[merge_key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                merged.pop(index)
        elif index is None:
            merged.append(strategic_merge_patch({}, item))
        else:
            merged[index] = strategic_merge_patch(merged[index], item)
    return merged
