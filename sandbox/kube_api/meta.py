"""ObjectMeta: what the server stamps on objects and what it refuses in them.

References: https://kubernetes.io/docs/concepts/overview/working-with-objects/names/ and
https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import random
import re
import uuid
from typing import Any

from rackmesh_sandbox.kube_api.fielderrors import FieldError, invalid, required

# The fields of ObjectMeta; anything else in `metadata` is unknown and pruned.
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
# Fields only the server sets; clients' values are replaced (create) or kept from the old object (update).
SYSTEM_FIELDS = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = rf"({_QUALIFIED_NAME})?"

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    f"validation is '{_DNS1123_SUBDOMAIN}')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    f"validation is '{_DNS1123_LABEL}')"
)
_QUALIFIED_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    f"'{_QUALIFIED_NAME}')"
)
_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
    f"regex used for validation is '{_LABEL_VALUE}')"
)
_ANNOTATIONS_LIMIT = 256 * 1024

# utilrand.String(): no vowels and no look-alikes, so generated names never spell words.
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    """An RFC 3339 timestamp with second precision in UTC, as metav1.Time serializes."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    return str(uuid.uuid4())


def generate_name(prefix: str) -> str:
    """SimpleNameGenerator: the prefix (cut to fit 63 chars) plus 5 random characters."""
    return prefix[: 63 - 5] + "".join(random.choices(_GENERATE_ALPHABET, k=5))


def is_subdomain(name: str) -> bool:
    return len(name) <= 253 and re.fullmatch(_DNS1123_SUBDOMAIN, name) is not None


def name_errors(name: str, field: str, *, dns_label: bool = False, path_segment: bool = False) -> list[FieldError]:
    """Name rules: DNS-1123 subdomains for most resources, DNS-1123 labels for namespaces, path segments
    (anything but ``.``, ``..``, ``/`` and ``%``: ValidateRBACName) for RBAC objects such as ``system:discovery``."""
    if path_segment:
        found = [invalid(field, name, f"may not be '{name}'")] if name in (".", "..") else []
        return found + [invalid(field, name, f"may not contain '{c}'") for c in "/%" if c in name]
    limit, pattern, message = (
        (63, _DNS1123_LABEL, LABEL_MSG) if dns_label else (253, _DNS1123_SUBDOMAIN, SUBDOMAIN_MSG)
    )
    errors = []
    if len(name) > limit:
        errors.append(invalid(field, name, f"must be no more than {limit} characters"))
    if not re.fullmatch(pattern, name):
        errors.append(invalid(field, name, message))
    return errors


def qualified_name_errors(key: str, field: str) -> list[FieldError]:
    """Keys of labels and annotations: ``[prefix/]name`` with a DNS subdomain prefix."""
    prefix, _, name = key.rpartition("/")
    errors = []
    if prefix and not is_subdomain(prefix):
        errors.append(invalid(field, key, f"prefix part {SUBDOMAIN_MSG}"))
    if not name:
        errors.append(invalid(field, key, "name part must be non-empty"))
    elif len(name) > 63:
        errors.append(invalid(field, key, "name part must be no more than 63 characters"))
    elif not re.fullmatch(_QUALIFIED_NAME, name):
        errors.append(invalid(field, key, _QUALIFIED_MSG))
    return errors


def validate_object_meta(
    meta: Any, *, namespaced: bool | None = None, dns_label: bool = False, path_segment: bool = False
) -> list[FieldError]:
    """What ValidateObjectMeta refuses, for the fields products actually write."""
    if not isinstance(meta, dict):
        return [invalid("metadata", meta, "must be an object")]
    errors: list[FieldError] = []
    name, generate = meta.get("name"), meta.get("generateName")
    if not name and not generate:
        errors.append(required("metadata.name", "name or generateName is required"))
    if isinstance(name, str) and name:
        errors += name_errors(name, "metadata.name", dns_label=dns_label, path_segment=path_segment)
    if isinstance(generate, str) and generate and not name:
        # A prefix is checked as if it were the name it becomes (the real server does the same).
        as_name = name_errors(generate + "x", "metadata.generateName", dns_label=dns_label, path_segment=path_segment)
        errors += [dataclasses.replace(e, field="metadata.generateName", value=generate) for e in as_name]
    if namespaced is False and meta.get("namespace"):
        errors.append(FieldError("forbidden", "metadata.namespace", "not allowed on this type"))
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        errors.append(invalid("metadata.labels", labels, "must be an object of strings"))
        labels = {}
    for key, value in labels.items():
        errors += qualified_name_errors(key, "metadata.labels")
        if not isinstance(value, str):
            errors.append(invalid(f"metadata.labels.{key}", value, "must be a string"))
        elif len(value) > 63:
            errors.append(invalid("metadata.labels", value, "must be no more than 63 characters"))
        elif not re.fullmatch(_LABEL_VALUE, value):
            errors.append(invalid("metadata.labels", value, _VALUE_MSG))
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        errors.append(invalid("metadata.annotations", annotations, "must be an object of strings"))
        annotations = {}
    for key, value in annotations.items():
        errors += qualified_name_errors(key.lower(), "metadata.annotations")
        if not isinstance(value, str):
            errors.append(invalid(f"metadata.annotations.{key}", value, "must be a string"))
    if len(json.dumps(annotations)) > _ANNOTATIONS_LIMIT:
        errors.append(
            FieldError("too_long", "metadata.annotations", f"must have at most {_ANNOTATIONS_LIMIT} bytes")
        )
    for index, ref in enumerate(meta.get("ownerReferences") or []):
        field = f"metadata.ownerReferences[{index}]"
        for key in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(ref, dict) or not ref.get(key):
                errors.append(
                    invalid(
                        f"{field}.{key}",
                        (ref or {}).get(key, "") if isinstance(ref, dict) else ref,
                        f"{key} must not be empty",
                    )
                )
    controllers = [
        ref for ref in meta.get("ownerReferences") or [] if isinstance(ref, dict) and ref.get("controller")
    ]
    if len(controllers) > 1:
        errors.append(
            invalid(
                "metadata.ownerReferences",
                meta["ownerReferences"],
                "Only one reference can have Controller set to true",
            )
        )
    return errors
