"""``GET /metrics``: ``apiserver_request_total`` as kube-apiserver counts requests.

Docs: https://kubernetes.io/docs/reference/instrumentation/metrics/ and k8s.io/apiserver's
RequestInfoFactory (how a path becomes group, version, resource, subresource).

Case matrix:
- labels from paths: core and group resources, namespaced, a namespace itself and its status,
  subresources, collections (LIST, DELETECOLLECTION), watches (query and /watch/ prefix), apply
  patches, and non-resource paths (method as verb, path as subresource).
- served: a LIST with a selector is LIST, a watch WATCH (counted when it ends; open ones in
  apiserver_longrunning_requests), a create POST 201, a 404 GET code 404, a kmock reaction's
  answer, the text format parsed by prometheus_client; /metrics itself is not counted.
- each server counts alone (its own registry); kubectl reads the process's metrics.
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rackmesh_sandbox.kube_api import KubeApiServer
from rackmesh_sandbox.kube_api.metrics import RequestLabels, request_labels
from tests.kube_api.conftest import DRS, NODES, Client, Cluster, dr, node
from tests.support.waiting import async_eventually

VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
DR_RESOURCE = ("rackmesh.io", "v1alpha1", "deploymentrequests")


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/nodes", {"labelSelector": "a=b"}, RequestLabels("LIST", "", "v1", "nodes")),
        ("GET", "/api/v1/nodes/n1", {}, RequestLabels("GET", "", "v1", "nodes")),
        ("GET", "/api/v1/nodes", {"watch": "true"}, RequestLabels("WATCH", "", "v1", "nodes")),
        ("GET", "/api/v1/nodes/n1", {"watch": "1"}, RequestLabels("WATCH", "", "v1", "nodes")),
        ("GET", "/api/v1/watch/nodes", {}, RequestLabels("WATCH", "", "v1", "nodes")),
        ("GET", "/api/v1/nodes", {"watch": "false"}, RequestLabels("LIST", "", "v1", "nodes")),
        ("POST", VMS, {}, RequestLabels("POST", "kubevirt.io", "v1", "virtualmachines")),
        ("PUT", f"{DRS}/x/status", {}, RequestLabels("PUT", *DR_RESOURCE, "status")),
        ("PATCH", f"{DRS}/x/scale", {}, RequestLabels("PATCH", *DR_RESOURCE, "scale")),
        ("DELETE", f"{DRS}/x", {}, RequestLabels("DELETE", *DR_RESOURCE)),
        ("DELETE", DRS, {}, RequestLabels("DELETECOLLECTION", *DR_RESOURCE)),
        ("GET", "/api/v1/namespaces", {}, RequestLabels("LIST", "", "v1", "namespaces")),
        ("GET", "/api/v1/namespaces/default", {}, RequestLabels("GET", "", "v1", "namespaces")),
        ("PUT", "/api/v1/namespaces/x/finalize", {}, RequestLabels("PUT", "", "v1", "namespaces", "finalize")),
        ("GET", "/healthz", {}, RequestLabels("GET", subresource="/healthz")),
        ("GET", "/apis/rackmesh.io/v1alpha1", {}, RequestLabels("GET", subresource="/apis/rackmesh.io/v1alpha1")),
        ("GET", "/", {}, RequestLabels("GET", subresource="/")),
    ],
)
def test_request_labels(method: str, path: str, query: dict[str, str], expected: RequestLabels) -> None:
    assert request_labels(method, path, query) == expected


def test_server_side_apply_is_apply() -> None:
    labels = request_labels("PATCH", f"{DRS}/x", {}, "application/apply-patch+yaml")
    assert labels.verb == "APPLY"


def samples(text: str) -> dict[tuple[tuple[str, str], ...], float]:
    """apiserver_request_total's samples by their sorted labels, parsed as Prometheus would."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "apiserver_request_total":
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def key(verb: str, resource: str, code: int, group: str = "", version: str = "v1", subresource: str = "") -> tuple:
    labels = {
        "verb": verb, "group": group, "version": version, "resource": resource,
        "subresource": subresource, "code": str(code),
    }
    return tuple(sorted(labels.items()))


async def test_requests_are_counted_as_kube_apiserver_counts_them(server: KubeApiServer, client: Client) -> None:
    assert (await client.get(NODES, params={"labelSelector": "rackmesh.io/role-compute=true"})).status == 200
    assert (await client.post(NODES, node("n1"))).status == 201
    assert (await client.get(f"{NODES}/missing")).status == 404
    assert (await client.get(NODES, params={"watch": "true", "timeoutSeconds": "1"})).status == 200
    assert (await client.get("/healthz")).status == 200

    reply = await client.get("/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    counted = samples(reply.body)
    assert counted[key("LIST", "nodes", 200)] == 1
    assert counted[key("POST", "nodes", 201)] == 1
    assert counted[key("GET", "nodes", 404)] == 1
    assert counted[key("WATCH", "nodes", 200)] == 1
    assert counted[key("GET", "", 200, version="", subresource="/healthz")] == 1
    assert not any(dict(labels)["subresource"] == "/metrics" for labels in counted)

    metrics = server.metrics  # the same counts, in process
    assert metrics.requests(verb="LIST", resource="nodes") == 1
    assert metrics.requests(resource="nodes", code=404) == 1
    assert metrics.requests(verb="WATCH") == 1
    assert metrics.requests() == sum(counted.values())


async def test_errors_and_reactions_are_counted(server: KubeApiServer, client: Client) -> None:
    bad = dr("bad")
    bad["spec"]["replicas"] = "three"
    assert (await client.post(DRS, bad)).status == 422
    assert (await client.put(f"{DRS}/absent", dr("absent"))).status == 404
    server.emulator["get /api/v1/nodes"] << 503
    assert (await client.get(NODES)).status == 503
    metrics = server.metrics
    assert metrics.requests(verb="POST", group="rackmesh.io", resource="deploymentrequests", code=422) == 1
    assert metrics.requests(verb="PUT", resource="deploymentrequests", code=404) == 1
    assert metrics.requests(verb="LIST", resource="nodes", code=503) == 1


async def test_open_watches_are_long_running_requests(server: KubeApiServer, client: Client) -> None:
    params = {"watch": "true", "timeoutSeconds": "1", "labelSelector": "team=a"}
    watching = asyncio.create_task(client.get(DRS, params=params))
    metrics = server.metrics

    async def open_watches() -> bool:
        return metrics.watches(verb="WATCH", resource="deploymentrequests") == 1

    await async_eventually(open_watches, what="the watch is open")
    assert metrics.requests(verb="WATCH") == 0  # counted when it ends, as kube-apiserver does
    text = (await client.get("/metrics")).body
    assert 'apiserver_longrunning_requests{group="rackmesh.io",resource="deploymentrequests"' in text
    assert (await watching).status == 200

    async def ended() -> bool:
        return metrics.requests(verb="WATCH", code=200) == 1 and metrics.watches() == 0

    await async_eventually(ended, what="the watch is counted and no longer open")


async def test_each_server_counts_its_own_requests(client: Client) -> None:
    async with KubeApiServer(kubevirt=False) as other:
        assert (await client.get(f"{NODES}/missing")).status == 404
        assert other.metrics.requests(code=404) == 0
        assert other.metrics.registry is not KubeApiServer(kubevirt=False).metrics.registry


def test_kubectl_reads_the_metrics(cluster: Cluster) -> None:
    cluster.kubectl("get", "nodes")
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    listed = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "apiserver_request_total" and sample.labels["resource"] == "nodes"
    ]
    assert any(s.labels["verb"] == "LIST" and s.labels["code"] == "200" and s.value >= 1 for s in listed)
