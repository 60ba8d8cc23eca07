"""Ask several peers at once and keep who answered and who did not."""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from rackmesh.peer_client import PeerError
from rackmesh_node_agent.http_api import Refusal

T = TypeVar("T")


Failure = PeerError | Refusal


def describe(failures: dict[str, Failure]) -> dict[str, str]:
    return {name: f"{failure.reason}: {failure.message}" for name, failure in failures.items()}


async def gather(calls: dict[str, Awaitable[T]]) -> tuple[dict[str, T], dict[str, Failure]]:
    """Run ``calls`` (keyed by peer name) in parallel: the answers, and how each other peer failed.

    Only a peer's refusal or unreachability is collected; any other exception is a bug and propagates.
    """
    names = list(calls)
    results = await asyncio.gather(*calls.values(), return_exceptions=True)
    answers: dict[str, T] = {}
    failures: dict[str, Failure] = {}
    for name, result in zip(names, results, strict=True):
        if isinstance(result, PeerError | Refusal):
            failures[name] = result
        elif isinstance(result, BaseException):
            raise result
        else:
            answers[name] = result
    return answers, failures
