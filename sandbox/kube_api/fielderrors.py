"""Field-level validation errors, printed the way k8s.io/apimachinery's ``field.Error`` prints them.

The texts matter: kubectl shows them to users, and tests compare them with what a real
kube-apiserver answers (e.g. ``spec.image: Required value``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

# ``field.ErrorType`` → (StatusCause.type, the human label used in messages).
_TYPES: dict[str, tuple[str, str]] = {
    "required": ("FieldValueRequired", "Required value"),
    "invalid": ("FieldValueInvalid", "Invalid value"),
    "type": ("FieldValueTypeInvalid", "Invalid value"),
    "unsupported": ("FieldValueNotSupported", "Unsupported value"),
    "duplicate": ("FieldValueDuplicate", "Duplicate value"),
    "forbidden": ("FieldValueForbidden", "Forbidden"),
    "too_long": ("FieldValueTooLong", "Too long"),
    "too_many": ("FieldValueTooMany", "Too many"),
}

# These types never print the offending value (as in field.Error.ErrorBody()).
_VALUELESS = {"required", "forbidden", "too_long"}
_OMIT = object()


class GoValue(str):
    """A bad value that is already printed as Go prints it (e.g. a struct with ``%#v``)."""


def go_repr(value: Any) -> str:
    """Render a bad value as Go's ``%v``/``%q`` would for JSON-decoded data."""
    if isinstance(value, GoValue):
        return str(value)
    if value is None:
        return '"null"'  # field.Error prints a nil value as the string "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def number(value: float | int) -> str:
    """Format a schema bound like Go's ``%v`` of a float64 (1.0 → "1")."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclasses.dataclass(frozen=True)
class FieldError:
    """One field error: ``str(err)`` is ``"<field>: <body>"`` exactly as the API server says it."""

    kind: str  # a key of _TYPES
    field: str
    detail: str = ""
    value: Any = _OMIT

    @property
    def cause_type(self) -> str:
        return _TYPES[self.kind][0]

    def body(self) -> str:
        label = _TYPES[self.kind][1]
        text = label if self.kind in _VALUELESS or self.value is _OMIT else f"{label}: {go_repr(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def cause(self) -> dict[str, str]:
        return {"reason": self.cause_type, "message": self.body(), "field": self.field}

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("required", field, detail)


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError("invalid", field, detail, value)


def aggregate(errors: list[FieldError]) -> str:
    """Join errors as utilerrors.NewAggregate does: one plain, several in brackets, no duplicates."""
    messages = list(dict.fromkeys(str(error) for error in errors))
    return messages[0] if len(messages) == 1 else f"[{', '.join(messages)}]"
