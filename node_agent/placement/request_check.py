"""An order is acted on only for a DeploymentRequest that exists as the order says: same namespace, name
and uid, not being deleted, the same image and instancetype, and every VM index within its replicas.

Anyone with an agent's certificate could forge an order; a forged one names no such request, or names one
with other contents. The check reads the agent's watch-fed cache of requests, never the API per VM.
"""

from typing import Any

from rackmesh.informer import Informer
from rackmesh.protocol import Order
from rackmesh_node_agent.http_api import Refusal

# How much of a call's time limit the cache gets to catch up with a request the operator saw first (a watch
# event lags by milliseconds): the refusal must reach the caller before it gives up on the call.
CATCH_UP_SHARE = 0.5


def mismatch(found: dict[str, Any] | None, order: Order, indices: list[int]) -> str | None:
    """Why ``order`` does not match the request ``found`` (None: it does)."""
    request = order.request
    if found is None:
        return f"no DeploymentRequest {request.namespace}/{request.name} exists"
    meta, spec = found.get("metadata", {}), found.get("spec", {})
    if meta.get("uid") != request.uid:
        return f"DeploymentRequest {request.namespace}/{request.name} has uid {meta.get('uid')}, not {request.uid}"
    if meta.get("deletionTimestamp"):
        return f"DeploymentRequest {request.namespace}/{request.name} is being deleted"
    if int(meta.get("generation", 1)) < order.generation:
        return f"the order is for generation {order.generation}, the request is at {meta.get('generation', 1)}"
    if (spec.get("image"), spec.get("instancetype")) != (order.image, order.instancetype):
        return (f"the request asks for image {spec.get('image')} on {spec.get('instancetype')}, the order for "
                f"{order.image} on {order.instancetype}")
    replicas = int(spec.get("replicas", 0))
    if any(index >= replicas for index in indices):
        return f"the order names VM index {max(indices)}; the request has {replicas} replicas"
    return None


async def require_request(requests: Informer, order: Order, indices: list[int],
                          call_timeout: float) -> dict[str, Any]:
    """The request ``order`` is for; refuse (403 UnknownRequest) an order that does not match it, after giving
    the cache a while to catch up with a request (or a change of one) the operator saw first."""
    request = order.request

    def matches() -> bool:
        return mismatch(requests.get(request.namespace, request.name), order, indices) is None

    if not await requests.wait_until(matches, call_timeout * CATCH_UP_SHARE):
        reason = mismatch(requests.get(request.namespace, request.name), order, indices)
        raise Refusal(403, "UnknownRequest", f"no VMs are written for this order: {reason}")
    found = requests.get(request.namespace, request.name)
    assert found is not None  # it matched just now, and only an await could change the cache
    return found
