"""Typed JSON messages: dataclasses <-> camelCase JSON, with validation that names the bad field.

Every peer-to-peer message and every record kept in ZooKeeper goes through ``encode``/``decode``,
so a malformed message is refused with a clear reason instead of failing deep in a handler.
"""

import dataclasses
import functools
import json
import math
import re
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")

# The largest real message (an order or deployment naming all 10,000 VM indices, a request record) is about
# 60 KB and nests 5 levels; these bounds leave room for that and refuse anything built to exhaust the decoder.
MAX_MESSAGE_BYTES = 1024 * 1024
MAX_DEPTH = 32
SHOWN = 80  # characters of a refused value quoted back in an error message
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


class MessageError(ValueError):
    """A message does not match its schema; the text says which field and why."""


@functools.cache
def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    wire: str
    required: bool


@functools.cache
def _fields(kind: type) -> tuple[_Field, ...]:
    """A dataclass's fields with their wire names, worked out once per class (messages are decoded by the
    thousand in a handshake)."""
    return tuple(_Field(field.name, camel(field.name), field.default is dataclasses.MISSING
                        and field.default_factory is dataclasses.MISSING) for field in dataclasses.fields(kind))


@functools.cache
def _wire_names(kind: type) -> frozenset[str]:
    return frozenset(field.wire for field in _fields(kind))


def encode(message: Any) -> Any:
    """A dataclass (possibly nested, in lists or dicts) as plain JSON-ready data with camelCase keys."""
    if dataclasses.is_dataclass(message) and not isinstance(message, type):
        return {field.wire: encode(getattr(message, field.name)) for field in _fields(type(message))}
    if isinstance(message, list | tuple):
        return [encode(item) for item in message]
    if isinstance(message, dict):
        return {key: encode(value) for key, value in message.items()}
    return message


def encode_bytes(message: Any) -> bytes:
    return json.dumps(encode(message), sort_keys=True).encode()


def shown(value: Any) -> str:
    """``repr(value)``, cut to a length fit for an error message (a refused value may be a megabyte)."""
    text = repr(value)
    return text if len(text) <= SHOWN else text[:SHOWN] + f"... ({len(text)} characters)"


def decode(kind: type[T], data: Any, where: str = "") -> T:
    """Build ``kind`` from JSON data, checking every field's type; raises ``MessageError``."""
    return typing.cast(T, _decode(kind, data, where or kind.__name__))


def decode_bytes(kind: type[T], raw: bytes, limit: int = MAX_MESSAGE_BYTES) -> T:
    """Parse and decode ``raw``; too large or too deeply nested is refused before the JSON parser sees it."""
    if len(raw) > limit:
        raise MessageError(f"{kind.__name__}: {len(raw)} bytes, more than {limit}")
    if _nesting(raw) > MAX_DEPTH:
        # json.loads recurses once per level: nested deep enough, it raises RecursionError instead of an answer.
        raise MessageError(f"{kind.__name__}: nested more than {MAX_DEPTH} levels deep")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise MessageError(f"{kind.__name__}: not JSON ({exc})") from None
    return decode(kind, data)


def _nesting(raw: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets inside strings do not count); scanning
    stops once past ``MAX_DEPTH``. Malformed text may count deeper than it is: the parser refuses it anyway."""
    depth = deepest = 0
    for bracket in _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        depth += 1 if bracket in b"[{" else -1
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
    return deepest


@functools.cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def _decode(kind: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if data is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]
        return _decode(inner, data, where)
    if origin is list:
        (item,) = typing.get_args(kind)
        if not isinstance(data, list):
            raise MessageError(f"{where}: expected a list")
        if item in (int, str) and all(type(value) is item for value in data):  # VM indices, names: the bulk
            return list(data)
        return [_decode(item, value, f"{where}[{index}]") for index, value in enumerate(data)]
    if origin is dict:
        _, value_kind = typing.get_args(kind)
        if not isinstance(data, dict):
            raise MessageError(f"{where}: expected an object")
        return {str(key): _decode(value_kind, value, f"{where}.{key}") for key, value in data.items()}
    if dataclasses.is_dataclass(kind):
        return _decode_dataclass(kind, data, where)
    return _decode_scalar(kind, data, where)


def _decode_dataclass(kind: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise MessageError(f"{where}: expected an object")
    hints = _hints(kind)
    fields = _fields(kind)
    if not data.keys() <= _wire_names(kind):
        unknown = sorted(set(data) - _wire_names(kind))
        raise MessageError(f"{where}: unknown fields {shown(unknown[:5])}"
                           + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
    values = {}
    for field in fields:
        if field.wire in data:
            values[field.name] = _decode(hints[field.name], data[field.wire], f"{where}.{field.wire}")
        elif field.required:
            raise MessageError(f"{where}.{field.wire}: required")
    try:
        return kind(**values)
    except ValueError as exc:  # a dataclass's own checks (__post_init__)
        raise MessageError(f"{where}: {exc}") from None


def _decode_scalar(kind: Any, data: Any, where: str) -> Any:
    if kind is float and isinstance(data, int | float) and not isinstance(data, bool):
        try:
            number = float(data)
        except OverflowError:  # an integer with hundreds of digits
            number = math.inf
        if not math.isfinite(number):  # Python's json accepts NaN and Infinity
            raise MessageError(f"{where}: expected a finite number, got {shown(data)}")
        return number
    if kind is int and isinstance(data, bool):
        raise MessageError(f"{where}: expected an integer, got a boolean")
    if isinstance(kind, type) and issubclass(kind, str) and kind is not str:  # StrEnum
        try:
            return kind(data)
        except ValueError:
            raise MessageError(f"{where}: {shown(data)} is not one of {[str(v) for v in kind]}") from None
    if not isinstance(data, kind):
        raise MessageError(f"{where}: expected {kind.__name__}, got {type(data).__name__}")
    return data
