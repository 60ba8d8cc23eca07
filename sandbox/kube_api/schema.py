"""Custom resources checked against their CRD's ``openAPIV3Schema`` as kube-apiserver does it.

The server, for every write of a custom resource: drops non-nullable ``null`` fields, prunes
fields the (structural) schema does not declare, applies ``default`` values, then validates and
answers 422 with messages like ``spec.replicas: Invalid value: 0: spec.replicas in body should
be greater than or equal to 1``. This module does the same, offline, for tests and manifests::

    from rackmesh_sandbox.kube_api.schema import CrdSchema, load_kubevirt_schemas
    schema = CrdSchema.from_crd(yaml.safe_load(open("crds/deploymentrequest.yaml")))
    assert schema.errors(obj) == []

Docs: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
(validation, defaulting, pruning, nullable, int-or-string). Messages follow kube-openapi's
validation errors as converted by apiextensions-apiserver. CEL rules (``x-kubernetes-validations``)
run after these checks, as on the server (see :mod:`.cel`).
"""

from __future__ import annotations

import calendar
import copy
import functools
import ipaddress
import json
from collections.abc import Callable
from typing import Any

from rackmesh_sandbox.kube_api import cel, goregexp
from rackmesh_sandbox.kube_api.fielderrors import FieldError, invalid, number, required
from rackmesh_sandbox.kube_api.kubevirt import kubevirt_crds
from rackmesh_sandbox.kube_api.meta import OBJECT_META_FIELDS, validate_object_meta

Schema = dict[str, Any]

# The patterns of kube-openapi's formats (strfmt, govalidator), matched as Go matches them.
_DATE = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_TIME = "^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$"  # upstream's "." is any character
_UUID = "(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$"
_BASE64 = "^(?:[A-Za-z0-9+\\/]{4})*(?:[A-Za-z0-9+\\/]{2}==|[A-Za-z0-9+\\/]{3}=|[A-Za-z0-9+\\/]{4})$"


def _is_date(text: str) -> bool:
    """strfmt.IsDate: Go's time.Parse("2006-01-02"), so ASCII digits and a day the month has."""
    if not goregexp.match_string(_DATE, text):
        return False
    year, month, day = (int(part) for part in text.split("-"))
    return 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]


def _is_date_time(text: str) -> bool:
    """strfmt.IsDateTime: a date, "t", then a time checked by pattern (in lower case) and by range."""
    # Upstream lower-cases the whole text; only the "T" it splits at and a "Z" zone can matter.
    parts = text.replace("T", "t").replace("Z", "z").split("t")
    if len(parts) < 2 or not _is_date(parts[0]):
        return False
    time = goregexp.search(_TIME, parts[1])
    return time is not None and time[1] <= "23" and time[2] <= "59" and time[3] <= "59"


def _parses(parser: Callable[[str], object]) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        try:
            parser(text)
        except ValueError:
            return False
        return True

    return check


# String formats the API server checks (others, like "password", are accepted as is).
_FORMATS: dict[str, Callable[[str], bool]] = {
    "date-time": _is_date_time,
    "datetime": _is_date_time,
    "date": _is_date,
    "uuid": lambda text: goregexp.match_string(_UUID, text),
    "byte": lambda text: goregexp.match_string(_BASE64, text),
    "ipv4": _parses(ipaddress.IPv4Address),
    "ipv6": _parses(ipaddress.IPv6Address),
    "cidr": _parses(lambda text: ipaddress.ip_network(text, strict=False)),
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _types(schema: Schema) -> list[str]:
    if schema.get("x-kubernetes-int-or-string"):
        return ["integer", "string"]
    return [schema["type"]] if schema.get("type") else []


class CrdSchema:
    """The validation schema of one version of a custom resource."""

    def __init__(self, openapi: Schema, *, kind: str, group: str, version: str | None = None) -> None:
        self.openapi = openapi
        self.kind = kind
        self.group = group
        self.version = version

    def __repr__(self) -> str:
        return f"CrdSchema({self.kind}.{self.group}/{self.version or '*'})"

    @classmethod
    def from_crd(cls, crd_doc: dict[str, Any], version: str | None = None) -> CrdSchema:
        """The schema of the given version, else of the storage version, of a CRD document."""
        spec = crd_doc["spec"]
        versions = spec.get("versions") or [{"name": spec.get("version"), "storage": True}]
        if version is not None:
            chosen = next((v for v in versions if v.get("name") == version), None)
            if chosen is None:
                raise ValueError(f"{crd_doc['metadata']['name']} has no version {version!r}")
        else:
            chosen = next((v for v in versions if v.get("storage")), versions[0])
        wrapper = chosen.get("schema") or spec.get("validation") or {}
        openapi = wrapper.get("openAPIV3Schema") or {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
        }
        return cls(openapi, kind=spec["names"]["kind"], group=spec["group"], version=chosen.get("name"))

    @classmethod
    def from_openapi(cls, openapi_v3_schema: dict[str, Any], kind: str, group: str) -> CrdSchema:
        """From an ``openAPIV3Schema`` (bare, or wrapped in a mapping under that key)."""
        openapi = openapi_v3_schema.get("openAPIV3Schema", openapi_v3_schema)
        return cls(openapi, kind=kind, group=group)

    # -- the stable, offline API ---------------------------------------------------------------

    def errors(self, obj: dict[str, Any], *, strict: bool = True) -> list[str]:
        """Why a real API server would refuse ``obj`` (``path: message`` items; empty when valid).

        With ``strict`` (the default, as ``kubectl apply`` does) unknown fields are errors too;
        without it they are silently pruned, as for clients that send no ``fieldValidation``.
        """
        obj = copy.deepcopy(obj)
        result = []
        if obj.get("kind") != self.kind:
            result.append(f"kind: Invalid value: {obj.get('kind')!r}: must be {self.kind}")
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        if group != self.group:
            result.append(
                f"apiVersion: Invalid value: {obj.get('apiVersion')!r}: must be in group {self.group}"
            )
        unknown = self.prune(obj)
        if strict:
            result += [f'{path}: unknown field "{path}"' for path in unknown]
        self.apply_defaults(obj)
        found = validate_object_meta(obj.get("metadata", {})) + self.validate(obj)
        found += self.validate_rules(found, obj)[0]
        return result + [str(error) for error in found]

    # -- the steps, in the order the server runs them ----------------------------------------

    def prune(self, obj: dict[str, Any]) -> list[str]:
        """Drop undeclared fields and non-nullable nulls in place; return the dropped paths."""
        unknown: list[str] = []
        _prune(obj, self.openapi, "", unknown, embedded=True)
        return unknown

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        """Fill absent fields that declare a ``default`` (in place)."""
        _default(obj, self.openapi, root=True)

    def validate(self, obj: Any) -> list[FieldError]:
        """Schema violations of an already pruned and defaulted object."""
        errors: list[FieldError] = []
        _validate(obj, self.openapi, "", errors)
        return errors

    @functools.cached_property
    def rules(self) -> cel.RuleValidator:
        """The schema's CEL rules, compiled once."""
        return cel.RuleValidator(self.openapi)

    def validate_rules(
        self, found: list[FieldError], obj: Any, old: Any = None, *, ratchet: bool = False
    ) -> tuple[list[FieldError], list[str]]:
        """CEL rule errors (and ratcheting warnings), given the errors ``found`` before them.

        As on the server, some schema errors (wrong types, missing required fields, ...) keep the
        rules from running; one error then says so.
        """
        if not self.rules:
            return [], []
        if cel.blocked(found):
            return [cel.BLOCKED], []
        return self.rules.validate(obj, old, ratchet=ratchet)


def _prune(value: Any, schema: Schema, path: str, unknown: list[str], *, embedded: bool = False) -> None:
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _prune(item, schema["items"], f"{path}[{index}]", unknown)
        return
    if not isinstance(value, dict) or schema.get("type") not in (None, "object"):
        return  # a type mismatch: left for the validator to report
    if schema.get("x-kubernetes-int-or-string"):
        return
    embedded = embedded or bool(schema.get("x-kubernetes-embedded-resource"))
    properties: dict[str, Schema] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    for key in list(value):
        child = _join(path, key)
        if embedded and key in ("apiVersion", "kind"):
            continue
        if embedded and key == "metadata" and isinstance(value[key], dict):
            for meta_key in [k for k in value[key] if k not in OBJECT_META_FIELDS]:
                del value[key][meta_key]
                unknown.append(_join(child, meta_key))
            continue
        sub = properties.get(key, additional if isinstance(additional, dict) else None)
        if sub is not None:
            if value[key] is None and not sub.get("nullable"):
                del value[key]  # null means "absent" unless the schema says nullable
            else:
                _prune(value[key], sub, child, unknown)
        elif not (preserve or additional is True):
            del value[key]
            unknown.append(child)


def _default(value: Any, schema: Schema, *, root: bool = False) -> None:
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default(item, schema["items"])
        return
    if not isinstance(value, dict) or schema.get("type") not in (None, "object"):
        return
    properties: dict[str, Schema] = schema.get("properties") or {}
    for key, sub in properties.items():
        if root and key == "metadata":
            continue
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            _default(value[key], sub)
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        for key in value.keys() - properties.keys():
            _default(value[key], additional)


def _validate(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> None:
    types = _types(schema)
    if value is None:
        if types and not schema.get("nullable"):
            errors.append(_type_error(path, types, "null"))
        return
    actual = _json_type(value)
    integral_float = actual == "number" and float(value).is_integer()
    if types and not (
        actual in types
        or (actual == "integer" and "number" in types)
        or (integral_float and "integer" in types)
    ):
        errors.append(_type_error(path, types, actual))
        return
    _validate_junctors(value, schema, path, errors)
    if actual == "string":
        _validate_string(value, schema, path, errors)
    elif actual in ("integer", "number"):
        _validate_number(value, schema, path, errors)
    elif actual == "array":
        _validate_array(value, schema, path, errors)
    if "enum" in schema and value not in schema["enum"]:
        # NotSupported quotes each allowed value; non-strings are JSON-encoded first.
        supported = ", ".join(json.dumps(v if isinstance(v, str) else json.dumps(v)) for v in schema["enum"])
        errors.append(FieldError("unsupported", path, f"supported values: {supported}", value))
    if actual == "object":
        _validate_object(value, schema, path, errors)


def _type_error(path: str, types: list[str], actual: str) -> FieldError:
    return FieldError("type", path, f'{path} in body must be of type {",".join(types)}: "{actual}"', actual)


def _validate_junctors(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> None:
    def passes(sub: Schema) -> bool:
        found: list[FieldError] = []
        _validate(value, sub, path, found)
        return not found

    for sub in schema.get("allOf") or []:
        _validate(value, sub, path, errors)
    if "anyOf" in schema and not any(passes(sub) for sub in schema["anyOf"]):
        errors.append(invalid(path, value, f"{path} in body must validate at least one schema (anyOf)"))
    if "oneOf" in schema and sum(passes(sub) for sub in schema["oneOf"]) != 1:
        errors.append(invalid(path, value, f"{path} in body must validate one and only one schema (oneOf)"))
    if "not" in schema and passes(schema["not"]):
        errors.append(invalid(path, value, f"{path} in body must not validate the schema (not)"))


def _validate_string(value: str, schema: Schema, path: str, errors: list[FieldError]) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(
            FieldError("too_long", path, f"may not be more than {schema['maxLength']} bytes", value)
        )
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(
            invalid(path, value, f"{path} in body should be at least {schema['minLength']} chars long")
        )
    pattern = schema.get("pattern")
    if pattern:
        try:
            matched = goregexp.match_string(pattern, value)
        except goregexp.RegexpError as e:  # schemas not checked as CRDs are (validate.Pattern words it so)
            pattern, matched = f"{pattern}, but pattern is invalid: {e}", False
        if not matched:
            errors.append(invalid(path, value, f"{path} in body should match '{pattern}'"))
    check = _FORMATS.get(schema.get("format", ""))
    if check is not None and not check(value):
        errors.append(
            FieldError("type", path, f'{path} in body must be of type {schema["format"]}: "{value}"', value)
        )


def _validate_number(value: float, schema: Schema, path: str, errors: list[FieldError]) -> None:
    if "maximum" in schema:
        bound = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= bound:
            errors.append(invalid(path, value, f"{path} in body should be less than {number(bound)}"))
        elif value > bound:
            errors.append(
                invalid(path, value, f"{path} in body should be less than or equal to {number(bound)}")
            )
    if "minimum" in schema:
        bound = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= bound:
            errors.append(invalid(path, value, f"{path} in body should be greater than {number(bound)}"))
        elif value < bound:
            errors.append(
                invalid(path, value, f"{path} in body should be greater than or equal to {number(bound)}")
            )
    factor = schema.get("multipleOf")
    if factor and (value / factor) != int(value / factor):
        errors.append(invalid(path, value, f"{path} in body should be a multiple of {number(factor)}"))


def _validate_array(value: list[Any], schema: Schema, path: str, errors: list[FieldError]) -> None:
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            _validate(item, items, f"{path}[{index}]", errors)
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(
            FieldError("too_many", path, f"must have at most {schema['maxItems']} items", len(value))
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(
            invalid(path, len(value), f"{path} in body should have at least {schema['minItems']} items")
        )
    list_type = schema.get("x-kubernetes-list-type")
    keys = schema.get("x-kubernetes-list-map-keys") or []
    seen: list[Any] = []
    for index, item in enumerate(value):
        identity = {k: item.get(k) for k in keys} if list_type == "map" and isinstance(item, dict) else item
        if list_type in ("set", "map") and identity in seen:
            errors.append(FieldError("duplicate", f"{path}[{index}]", value=identity))
        seen.append(identity)


def _validate_object(value: dict[str, Any], schema: Schema, path: str, errors: list[FieldError]) -> None:
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(
            FieldError("too_many", path, f"must have at most {schema['maxProperties']} items", len(value))
        )
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        detail = f"{path} in body should have at least {schema['minProperties']} properties"
        errors.append(invalid(path, len(value), detail))
    properties: dict[str, Schema] = schema.get("properties") or {}
    for key, sub in properties.items():
        if key in value and not (path == "" and key == "metadata"):
            _validate(value[key], sub, _join(path, key), errors)
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        for key in value.keys() - properties.keys():
            _validate(value[key], additional, _join(path, key), errors)
    for key in schema.get("required") or []:
        if key not in value:
            errors.append(required(_join(path, key)))


def pattern_errors(openapi: Schema, path: str) -> list[FieldError]:
    """Why the server refuses a CRD for its ``pattern``s: those Go's regexp does not compile.

    ``path`` names the version's openAPIV3Schema. As ValidateStructural reports them: at every
    node, junctors included, sorted by message.
    """
    found: list[FieldError] = []
    _bad_patterns(openapi, path, found)
    return sorted(found, key=str)


def _bad_patterns(schema: Any, path: str, found: list[FieldError]) -> None:
    if not isinstance(schema, dict):
        return
    pattern = schema.get("pattern")
    error = goregexp.compile_error(pattern) if isinstance(pattern, str) and pattern else None
    if error is not None:
        detail = f"must be a valid regular expression, but isn't: {error}"
        found.append(invalid(f"{path}.pattern", pattern, detail))
    for key, sub in (schema.get("properties") or {}).items():
        _bad_patterns(sub, f"{path}.properties[{key}]", found)
    for key in ("items", "additionalProperties", "not"):
        _bad_patterns(schema.get(key), f"{path}.{key}", found)
    for key in ("allOf", "anyOf", "oneOf"):
        for index, sub in enumerate(schema.get(key) or []):
            _bad_patterns(sub, f"{path}.{key}[{index}]", found)


def load_kubevirt_schemas() -> dict[str, CrdSchema]:
    """The vendored KubeVirt/CDI schemas, keyed by kind ("VirtualMachine", "DataVolume", ...)."""
    return {crd["spec"]["names"]["kind"]: CrdSchema.from_crd(crd) for crd in kubevirt_crds()}
