"""Rendezvous (highest-random-weight) ranking: a stable, spread-out order of candidates per key.

Different keys rank the same candidates differently (so work spreads over them), the same key
always ranks them the same way (so a retry goes to the same first choice, then the next).
"""

import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def ranked(candidates: Iterable[T], key: str, name_of: Callable[[T], str]) -> list[T]:
    def weight(candidate: T) -> bytes:
        return hashlib.blake2b(f"{key}/{name_of(candidate)}".encode(), digest_size=8).digest()

    return sorted(candidates, key=weight, reverse=True)
