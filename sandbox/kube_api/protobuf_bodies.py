"""Protobuf request bodies (``application/vnd.kubernetes.protobuf``) read as the JSON objects they encode.

Docs: https://kubernetes.io/docs/reference/using-api/api-concepts/#protobuf-encoding
client-go's typed clients (kubectl's ``create namespace|configmap|secret|deployment|token...``, Go controllers)
send the magic ``k8s\\x00`` and a ``runtime.Unknown`` envelope: the object's apiVersion and kind, and its
protobuf encoding. Google's ``protobuf`` runtime parses the wire format with descriptors built from
:mod:`.protobuf_messages`; the result is written as Kubernetes' JSON encoding (numbers for int64, base64
bytes, RFC 3339 times, quantities and int-or-strings as their values), so the rest of the API sees the body a
JSON client would have sent. Bodies that are not protobuf are refused as the server refuses them (400); kinds
and fields this sandbox does not decode are refused (415) with a message naming them, never dropped.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import functools
import json
import re
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory, unknown_fields

from rackmesh_sandbox.kube_api import errors
from rackmesh_sandbox.kube_api.protobuf_messages import DELETE_OPTIONS, KINDS, PACKAGES

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
_PROTO_PACKAGE = "rackmesh.sandbox.k8s"
_FIELD = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _FIELD.TYPE_STRING,
    "bool": _FIELD.TYPE_BOOL,
    "int32": _FIELD.TYPE_INT32,
    "int64": _FIELD.TYPE_INT64,
    "bytes": _FIELD.TYPE_BYTES,
}
_LINE = re.compile(r"(\d+) (\w+) (\[\]|\{\})?([\w.]+)(!?)")
_ABSENT = object()  # a value Go's JSON encoder leaves out
# Messages whose JSON is a value of their own (metav1.Time's RFC 3339 string...), not an object of fields.
_WELL_KNOWN = ("meta.v1.Time", "meta.v1.MicroTime", "resource.Quantity", "intstr.IntOrString", "meta.v1.FieldsV1")


@dataclasses.dataclass(frozen=True)
class _Field:
    number: int
    name: str
    type: str  # a scalar's name or a message's qualified name ("core.v1.Pod")
    shape: str  # "", "[]" (repeated) or "{}" (map with string keys)
    keeps_zero: bool


def _fields(package: str, spec: str) -> list[_Field]:
    found = []
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        parsed = _LINE.fullmatch(" ".join(entry.split()))
        assert parsed is not None, f"{package}: bad field {entry!r}"
        number, name, shape, type_name, bang = parsed.groups()
        if type_name not in _SCALARS and "." not in type_name:
            type_name = f"{package}.{type_name}"
        found.append(_Field(int(number), name, type_name, shape or "", bool(bang)))
    return found


def _proto_name(qualified: str) -> str:
    return qualified.replace(".", "_")


@functools.cache
def _schema() -> dict[str, dict[int, _Field]]:
    """Every message's fields by number, by qualified name."""
    return {
        f"{package}.{name}": {field.number: field for field in _fields(package, spec)}
        for package, messages in PACKAGES.items()
        for name, spec in messages.items()
    }


@functools.cache
def _classes() -> dict[str, type[message.Message]]:
    """A message class per qualified name, from descriptors built out of the schema."""
    file = descriptor_pb2.FileDescriptorProto(name="rackmesh_sandbox/k8s.proto", package=_PROTO_PACKAGE)
    file.syntax = "proto2"  # as k8s.io's generated.proto: every field has presence
    for qualified, fields in _schema().items():
        described = file.message_type.add(name=_proto_name(qualified))
        for field in fields.values():
            added = described.field.add(name=field.name, number=field.number)
            added.label = _FIELD.LABEL_REPEATED if field.shape else _FIELD.LABEL_OPTIONAL
            if field.shape == "{}":
                entry = described.nested_type.add(name=f"{field.name[0].upper()}{field.name[1:]}Entry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=_FIELD.TYPE_STRING, label=_FIELD.LABEL_OPTIONAL)
                _set_type(entry.field.add(name="value", number=2, label=_FIELD.LABEL_OPTIONAL), field.type)
                added.type = _FIELD.TYPE_MESSAGE
                added.type_name = f".{_PROTO_PACKAGE}.{described.name}.{entry.name}"
            else:
                _set_type(added, field.type)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        qualified: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"{_PROTO_PACKAGE}.{_proto_name(qualified)}")
        )
        for qualified in _schema()
    }


def _set_type(field: descriptor_pb2.FieldDescriptorProto, type_name: str) -> None:
    if type_name in _SCALARS:
        field.type = _SCALARS[type_name]
    else:
        field.type = _FIELD.TYPE_MESSAGE
        field.type_name = f".{_PROTO_PACKAGE}.{_proto_name(type_name)}"


def decodable_kinds() -> list[str]:
    """``<apiVersion>/<kind>`` of every kind whose bodies are decoded (DeleteOptions too, in every version)."""
    return [f"{api_version}/{kind}" for api_version, (_, kinds) in KINDS.items() for kind in kinds]


def decode(body: bytes) -> dict[str, Any]:
    """The JSON object a protobuf body encodes; 400 for what is not a protobuf message, 415 for what is
    one that this sandbox does not decode."""
    if not body:
        raise errors.bad_request("empty data")
    if not body.startswith(MAGIC):
        expected = " ".join(str(byte) for byte in MAGIC)  # as Go prints a []byte
        raise errors.bad_request(
            f"provided data does not appear to be a protobuf message, expected prefix [{expected}]"
        )
    if body == MAGIC:
        raise errors.bad_request("empty body")
    envelope = _parse("runtime.Unknown", body[len(MAGIC):])
    api_version, kind = envelope.typeMeta.apiVersion, envelope.typeMeta.kind
    if not kind or not api_version:
        missing = "Kind" if not kind else "Version"
        raise errors.bad_request(f"Object '{missing}' is missing in the protobuf envelope (typeMeta)")
    if envelope.contentEncoding:
        raise _undecodable(f"the protobuf envelope's contentEncoding {envelope.contentEncoding!r} is not supported")
    package, kinds = KINDS.get(api_version, ("", ()))
    qualified = DELETE_OPTIONS if kind == "DeleteOptions" else f"{package}.{kind}" if kind in kinds else None
    if qualified is None:
        raise _undecodable(
            f"{kind} in {api_version} is not a kind the sandbox decodes from protobuf "
            f"(it decodes {', '.join(decodable_kinds())} and DeleteOptions)"
        )
    obj = _json_object(_parse(qualified, envelope.raw), qualified, "")
    return {"apiVersion": api_version, "kind": kind, **obj}


def _parse(qualified: str, data: bytes) -> message.Message:
    parsed = _classes()[qualified]()
    try:
        parsed.ParseFromString(data)
    except message.DecodeError:
        raise errors.bad_request(f"the protobuf body is not a valid {qualified} message") from None
    return parsed


def _undecodable(why: str) -> errors.ApiError:
    return errors.ApiError(
        415,
        "UnsupportedMediaType",
        f"{why}; send the object as JSON (application/json), e.g. with kubectl apply -f",
        {"causes": [{"reason": "UnsupportedMediaType", "message": CONTENT_TYPE}]},
    )


def _refuse_unknown(decoded: message.Message, qualified: str, path: str) -> None:
    unknown = unknown_fields.UnknownFieldSet(decoded)
    if len(unknown):
        numbers = ", ".join(str(field.field_number) for field in unknown)
        where = f"{path}: " if path else ""
        raise _undecodable(f"{where}field {numbers} of {qualified} is not one the sandbox decodes from protobuf")


def _json_object(decoded: message.Message, qualified: str, path: str) -> dict[str, Any]:
    _refuse_unknown(decoded, qualified, path)
    fields = _schema()[qualified]
    found: dict[str, Any] = {}
    for descriptor, value in decoded.ListFields():
        field = fields[descriptor.number]
        where = f"{path}.{field.name}" if path else field.name
        match field.shape:
            case "[]":
                converted: Any = [_json_value(field, item, f"{where}[{index}]") for index, item in enumerate(value)]
            case "{}":
                converted = {key: _json_value(field, item, f"{where}[{key}]") for key, item in value.items()}
                converted = {key: item for key, item in converted.items() if item is not _ABSENT}
            case _:
                converted = _json_value(field, value, where)
                if converted is _ABSENT or (not field.keeps_zero and field.type in _SCALARS and not value):
                    continue
        found[field.name] = converted
    return found


def _json_value(field: _Field, value: Any, path: str) -> Any:
    """A field's value as Kubernetes' JSON writes it (_ABSENT for a zero time, which Go writes as null)."""
    if field.type == "bytes":
        return base64.b64encode(value).decode()
    if field.type in _SCALARS:
        return value
    if field.type not in _WELL_KNOWN:
        return _json_object(value, field.type, path)
    _refuse_unknown(value, field.type, path)
    match field.type:
        case "meta.v1.Time" | "meta.v1.MicroTime":
            if not value.ListFields():  # Go writes a zero time as an empty message
                return _ABSENT
            moment = datetime.datetime.fromtimestamp(value.seconds, datetime.UTC)
            if field.type == "meta.v1.Time":  # whole seconds, as metav1.Time is in JSON
                return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
            return (moment + datetime.timedelta(microseconds=value.nanos // 1000)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        case "resource.Quantity":
            return value.string or "0"
        case "intstr.IntOrString":
            return value.strVal if value.type == 1 else value.intVal
        case _:  # meta.v1.FieldsV1: the managed fields' JSON
            try:
                return json.loads(value.Raw or b"{}")
            except ValueError:
                raise errors.bad_request(f"{path}: fieldsV1 is not JSON") from None
