"""Kubernetes resource quantities (``500m``, ``8Gi``) as integers, for capacity arithmetic."""

import dataclasses
import re

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": 10**-9, "u": 10**-6, "m": 10**-3, "": 1, "k": 10**3, "M": 10**6, "G": 10**9,
            "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[a-zA-Z]{0,2})$")


def parse_quantity(value: str | int | float) -> float:
    """A quantity in base units (cores, bytes)."""
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.match(value.strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    number, suffix = match.groups()
    if suffix in _BINARY:
        return float(number) * _BINARY[suffix]
    if suffix in _DECIMAL:
        return float(number) * _DECIMAL[suffix]
    if suffix[:1] in "eE":
        return float(number + suffix)
    raise ValueError(f"unknown quantity suffix in {value!r}")


@dataclasses.dataclass(frozen=True, order=True)
class Resources:
    """CPU in millicores and memory in bytes: integers, so sums never drift."""

    cpu_millis: int = 0
    memory_bytes: int = 0

    @classmethod
    def parse(cls, cpu: str | int | float, memory: str | int | float) -> "Resources":
        return cls(round(parse_quantity(cpu) * 1000), round(parse_quantity(memory)))

    def __add__(self, other: "Resources") -> "Resources":
        return Resources(self.cpu_millis + other.cpu_millis, self.memory_bytes + other.memory_bytes)

    def __sub__(self, other: "Resources") -> "Resources":
        return Resources(self.cpu_millis - other.cpu_millis, self.memory_bytes - other.memory_bytes)

    def __mul__(self, count: int) -> "Resources":
        return Resources(self.cpu_millis * count, self.memory_bytes * count)

    def fits_times(self, unit: "Resources") -> int:
        """How many ``unit``s fit in these resources (0 when any dimension is exhausted)."""
        counts = [have // need for have, need in
                  ((self.cpu_millis, unit.cpu_millis), (self.memory_bytes, unit.memory_bytes)) if need > 0]
        return max(0, min(counts)) if counts else 0

    def to_json(self) -> dict[str, int]:
        return {"cpuMillis": self.cpu_millis, "memoryBytes": self.memory_bytes}
