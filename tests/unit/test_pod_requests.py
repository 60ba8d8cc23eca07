"""What a pod holds of its node, by kube's PodRequests rule (k8s.io/component-helpers/resource/helpers.go).

Case matrix: app containers summed; an init container that needs more than the app containers sets the
figure per resource (cpu from one, memory from the other); restartable sidecar init containers count beside
the app containers and below each later init container; spec.overhead added; limits stand in for requests a
container does not set; pod-level requests replace the containers' figure for the resources they set; a pod
without requests holds nothing; Succeeded and Failed pods are terminal, Pending and Running are not.
"""

import pytest

from rackmesh.pod_requests import is_terminal, pod_requests
from rackmesh.quantities import Resources

GI = 2**30


def container(name: str, cpu: str | None = None, memory: str | None = None, limits: dict | None = None,
              restart: str | None = None) -> dict:
    requests = {key: value for key, value in (("cpu", cpu), ("memory", memory)) if value is not None}
    resources = {"requests": requests, **({"limits": limits} if limits else {})}
    return {"name": name, "resources": resources, **({"restartPolicy": restart} if restart else {})}


def pod(containers: list[dict], init: list[dict] | None = None, **spec: object) -> dict:
    return {"spec": {"containers": containers, "initContainers": init or [], **spec}}


def test_app_containers_are_summed():
    assert pod_requests(pod([container("a", "500m", "1Gi"), container("b", "250m", "512Mi")])) == Resources(
        750, GI + GI // 2)


def test_the_largest_init_container_sets_each_resource_it_exceeds():
    init = [container("migrate", "2", "256Mi"), container("warm", "100m", "4Gi")]
    assert pod_requests(pod([container("app", "500m", "1Gi")], init)) == Resources(2000, 4 * GI)


def test_sidecars_run_beside_the_app_and_below_later_init_containers():
    init = [container("proxy", "100m", "128Mi", restart="Always"), container("setup", "1", "1Gi")]
    # app + sidecar = 600m, 1Gi+128Mi; the setup step runs beside the sidecar: 1100m, 1Gi+128Mi
    assert pod_requests(pod([container("app", "500m", "1Gi")], init)) == Resources(1100, GI + 128 * 2**20)


def test_overhead_is_added():
    assert pod_requests(pod([container("app", "1", "1Gi")], overhead={"cpu": "250m", "memory": "160Mi"})) == (
        Resources(1250, GI + 160 * 2**20))


def test_limits_stand_in_for_requests_not_set():
    only_limits = container("app", limits={"cpu": "2", "memory": "2Gi"})
    both = container("side", "100m", limits={"cpu": "1", "memory": "1Gi"})
    assert pod_requests(pod([only_limits, both])) == Resources(2100, 3 * GI)


def test_pod_level_requests_replace_the_containers_figure_for_what_they_set():
    assert pod_requests(pod([container("app", "1", "1Gi")], resources={"requests": {"memory": "3Gi"}})) == (
        Resources(1000, 3 * GI))


def test_a_pod_without_requests_holds_nothing():
    assert pod_requests(pod([{"name": "app", "image": "x"}])) == Resources()
    assert pod_requests({"metadata": {"name": "bare"}}) == Resources()


@pytest.mark.parametrize(("phase", "terminal"), [
    ("Succeeded", True), ("Failed", True), ("Running", False), ("Pending", False), (None, False)])
def test_terminal_pods(phase, terminal):
    assert is_terminal({"status": {"phase": phase}} if phase else {}) is terminal
