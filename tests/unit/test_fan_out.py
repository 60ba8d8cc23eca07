"""A fan-out collects every way a peer can fail, so no single slow or broken peer ends the caller's work.

Case matrix: an answer; a refusal; a timeout (the call's own, or one from the Kubernetes client below it);
an unreachable peer (OSError); an API error below the call; a bug (it propagates).
"""

import pytest

from rackmesh.kube_client import KubeApiError
from rackmesh.peer_client import PeerError
from rackmesh_node_agent.membership.fan_out import gather


async def answers(value: str) -> str:
    return value


async def raises(error: BaseException) -> str:
    raise error


async def test_every_failure_of_a_peer_is_collected_with_a_reason():
    answered, failures = await gather({
        "a": answers("offer"),
        "refused": raises(PeerError("http://b", 409, "NotLeader", "not the leader")),
        "slow": raises(TimeoutError()),
        "gone": raises(ConnectionRefusedError(111, "refused")),
        "api": raises(KubeApiError(504, "Timeout", "the API server took too long")),
    })
    assert answered == {"a": "offer"}
    assert {name: failure.reason for name, failure in failures.items()} == {
        "refused": "NotLeader", "slow": "Timeout", "gone": "Unreachable", "api": "KubernetesApiError"}


async def test_a_bug_is_not_taken_for_a_peer_failure():
    with pytest.raises(KeyError):
        await gather({"a": answers("offer"), "bug": raises(KeyError("x"))})
