"""Ask several peers at once and keep who answered and who did not."""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from rackmesh.kube_client import KubeApiError
from rackmesh.peer_client import PeerError
from rackmesh_node_agent.http_api import Refusal
from rackmesh_node_agent.service_time import waiting_for_peers

T = TypeVar("T")


Failure = PeerError | Refusal


def describe(failures: dict[str, Failure]) -> dict[str, str]:
    return {name: f"{failure.reason}: {failure.message}" for name, failure in failures.items()}


def as_failure(error: BaseException) -> Failure | None:
    """How a call that raised ``error`` failed, or None for an error that is a bug (it propagates).

    A timeout, an unreachable peer or an API error anywhere below the call is the peer's failure: it is
    collected like a refusal, and never ends the caller's work.
    """
    match error:
        case PeerError() | Refusal():
            return error
        case TimeoutError():
            return Refusal(504, "Timeout", f"no answer in time ({type(error).__name__})")
        case KubeApiError():
            return Refusal(502, "KubernetesApiError", str(error))
        case OSError():
            return Refusal(503, "Unreachable", f"{type(error).__name__}: {error}")
    return None


async def gather(calls: dict[str, Awaitable[T]]) -> tuple[dict[str, T], dict[str, Failure]]:
    """Run ``calls`` (keyed by peer name) in parallel: the answers, and how each other peer failed."""
    names = list(calls)
    async with waiting_for_peers():
        results = await asyncio.gather(*calls.values(), return_exceptions=True)
    answers: dict[str, T] = {}
    failures: dict[str, Failure] = {}
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            failure = as_failure(result)
            if failure is None:
                raise result
            failures[name] = failure
        else:
            answers[name] = result
    return answers, failures
