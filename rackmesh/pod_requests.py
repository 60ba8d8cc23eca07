"""What a Pod holds of its node, as the kube-scheduler counts it: its cpu and memory requests.

The rule is kube's ``PodRequests`` (k8s.io/component-helpers/resource/helpers.go, which the scheduler's
NodeResourcesFit plugin calls; formerly pkg/api/v1/resource ``PodRequests``, "resourcehelper"):

- the app containers' requests, summed, plus every restartable ("sidecar") init container's, which keep
  running beside them;
- or, if larger, what the init phase needs at its peak: each ordinary init container's requests plus the
  sidecars started before it (they run one at a time, so the largest counts);
- pod-level ``spec.resources.requests`` (PodLevelResources), where set, in place of the containers' sum;
- plus ``spec.overhead`` (a RuntimeClass's fixed cost per pod).

A container that sets limits but no requests requests its limits: the API server defaults them so on
create (pkg/apis/core/v1/defaults.go ``SetDefaults_Pod``), and an object read from a real cluster has them
written out. A terminal pod (``Succeeded``/``Failed``) holds nothing: the scheduler drops it from its
node's accounting.
"""

from typing import Any

from rackmesh.quantities import Resources

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def is_terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def pod_requests(pod: dict[str, Any]) -> Resources:
    """The cpu and memory the scheduler counts ``pod`` as using on its node."""
    spec = pod.get("spec") or {}
    total = sum((container_requests(c) for c in spec.get("containers") or []), Resources())
    sidecars, init_peak = Resources(), Resources()
    for container in spec.get("initContainers") or []:
        requests = container_requests(container)
        if container.get("restartPolicy") == "Always":
            total += requests
            sidecars += requests
            init_peak = largest(init_peak, sidecars)
        else:
            init_peak = largest(init_peak, requests + sidecars)
    total = largest(total, init_peak)
    pod_level = (spec.get("resources") or {}).get("requests") or {}
    if pod_level:  # each resource set at pod level replaces the containers' figure for it
        total = Resources(Resources.parse(pod_level["cpu"], 0).cpu_millis if "cpu" in pod_level else total.cpu_millis,
                          Resources.parse(0, pod_level["memory"]).memory_bytes if "memory" in pod_level
                          else total.memory_bytes)
    return total + _resources(spec.get("overhead") or {})


def container_requests(container: dict[str, Any]) -> Resources:
    """A container's requests, its limits standing in for those it does not set (the API's defaulting)."""
    resources = container.get("resources") or {}
    return _resources({**(resources.get("limits") or {}), **(resources.get("requests") or {})})


def largest(one: Resources, other: Resources) -> Resources:
    """Each dimension's larger value (the scheduler takes maxima per resource, not of a whole list)."""
    return Resources(max(one.cpu_millis, other.cpu_millis), max(one.memory_bytes, other.memory_bytes))


def _resources(listed: dict[str, Any]) -> Resources:
    return Resources.parse(listed.get("cpu", 0), listed.get("memory", 0))
