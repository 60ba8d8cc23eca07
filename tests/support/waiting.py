"""Wait on conditions with deadlines (never on fixed sleeps alone)."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
# What a check may raise while the condition is not true yet.
NOT_YET: tuple[type[Exception], ...] = (AssertionError, OSError, LookupError)


def eventually(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.05,
               what: str = "condition", retry_on: tuple[type[Exception], ...] = NOT_YET) -> T:
    """Call ``check`` until it returns something truthy without raising; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            last: object = f"last result {result!r}"
        except retry_on as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not true within {timeout} s: {last}")
        time.sleep(interval)


async def async_eventually(check: Callable[[], Awaitable[T]], timeout: float = 20.0, interval: float = 0.05,
                           what: str = "condition", retry_on: tuple[type[Exception], ...] = NOT_YET) -> T:
    """The asyncio twin of ``eventually``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = await check()
            if result:
                return result
            last: object = f"last result {result!r}"
        except retry_on as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not true within {timeout} s: {last}")
        await asyncio.sleep(interval)
