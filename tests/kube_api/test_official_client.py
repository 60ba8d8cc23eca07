"""The official Python client (``kubernetes``) against the sandbox API, as the product's users and tools drive it.

The API runs in its own thread (the client is synchronous), with authentication on, as the sandbox runs it;
the client is configured from the admin's kubeconfig, as a user's script would be.

Docs: https://kubernetes.io/docs/reference/using-api/api-concepts/ (the API's verbs, watches, 410 Gone),
https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/ (error bodies),
https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors,
https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/,
https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/node-v1/ (NodeSystemInfo: all required).

Case matrix:
- what the sandbox seeds (Nodes, an agent's Pod, Namespaces) and the operator's Events (kopf's shape) read as
  typed models.
- ConfigMap CRUD: create, read, replace, patch, delete; a replace from a stale resourceVersion is 409 Conflict.
- DeploymentRequests through CustomObjectsApi: create, get, list, merge patch, replace, delete; status isolation.
- errors as ApiException with the Status body: 404 NotFound, 409 AlreadyExists, 422 Invalid with causes.
- list by label selector (equality, set-based, existence) and field selector (metadata.name, Events' fields).
- watch: ADDED, MODIFIED, DELETED in order; resuming from a resourceVersion replays only what came after it;
  a compacted resourceVersion ends the watch with 410 Gone (the client retries once, then raises).
- the scale subresource: get and patch_namespaced_custom_object_scale move spec.replicas.
- Events written with CoreV1Api and EventsV1Api, listed back; a TokenRequest with CoreV1Api.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from kubernetes import client, watch

from rackmesh.kube_client import Credentials, KubeClient
from rackmesh.labels import Role
from rackmesh_sandbox import cluster_seed
from rackmesh_sandbox.kube_api import KubeApiServer
from rackmesh_sandbox.kube_api.authn import AuthConfig
from rackmesh_sandbox.topology import NodeSpec
from tests.kube_api.conftest import DR_CRD, dr

GROUP, VERSION, PLURAL = "rackmesh.io", "v1alpha1", "deploymentrequests"


class ThreadedApi:
    """The sandbox API serving from its own event loop in a thread, until ``stop``."""

    def __init__(self, kubeconfig: pathlib.Path) -> None:
        self.kubeconfig = kubeconfig
        self.server: KubeApiServer | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(60), "the API did not start"

    async def _serve(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        async with KubeApiServer(crd_paths=[DR_CRD], auth=AuthConfig()) as server:
            self.server = server
            server.write_kubeconfig(self.kubeconfig)
            self._ready.set()
            await self._stopping.wait()

    def call(self, function: Any) -> Any:
        """Run ``function`` in the API's loop (for assertions and settings on the in-process server)."""
        assert self._loop is not None

        async def run() -> Any:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def stop(self) -> None:
        assert self._loop is not None and self._stopping is not None
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedApi]:
    served = ThreadedApi(tmp_path_factory.mktemp("official-client") / "kubeconfig")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def api_client(api: ThreadedApi) -> Iterator[client.ApiClient]:
    with kubernetes.config.new_client_from_config(config_file=str(api.kubeconfig)) as made:
        yield made


@pytest.fixture
def namespace(api_client: client.ApiClient) -> str:
    """A namespace of its own for each test (the server is shared by the module)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api_client).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def request(name: str, replicas: int = 3, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A valid DeploymentRequest for the namespace of the call (a body naming another is refused, 400)."""
    body = dr(name, replicas)
    body["metadata"] = {"name": name, "labels": labels or {}}
    return body


def status_of(error: client.ApiException) -> dict[str, Any]:
    return json.loads(error.body)


def test_what_the_sandbox_seeds_reads_as_typed_models(api: ThreadedApi, api_client: client.ApiClient) -> None:
    """The client validates required fields: a NodeSystemInfo lacking one failed with 7 validation errors."""
    core = client.CoreV1Api(api_client)
    node = NodeSpec("c-a-1", "rack-a", (Role.COMPUTE,), "32", "128Gi")
    core.create_node(cluster_seed.node_object(node, "topology.rackmesh.io/rack"))
    core.patch_node_status(node.name, cluster_seed.node_status(node, "127.0.0.1"))

    async def agent_pod() -> None:
        async with KubeClient(Credentials.from_kubeconfig(api.kubeconfig)) as kube:
            await cluster_seed.agent_pod(kube, ("default", "rackmesh-agent"), node.name, "127.0.0.1", "10.244.0.1")

    asyncio.run(agent_pod())
    read = core.read_node(node.name)
    info = read.status.node_info
    assert (info.kubelet_version, info.operating_system, info.architecture) == (
        "v1.32.0-rackmesh-sandbox",
        "linux",
        "amd64",
    )
    assert all([info.machine_id, info.system_uuid, info.boot_id, info.kernel_version, info.os_image])
    assert {c.type: c.status for c in read.status.conditions}["Ready"] == "True"
    assert read.status.allocatable == {"cpu": "32", "memory": "128Gi", "pods": "110"}
    assert [n.metadata.name for n in core.list_node().items] == [node.name]
    assert {n.metadata.name: n.status.phase for n in core.list_namespace().items}["default"] == "Active"
    pod = core.read_namespaced_pod(f"rackmesh-agent-{node.name}", "default")
    assert (pod.spec.node_name, pod.status.phase, pod.status.host_ip, pod.status.pod_ip) == (
        node.name, "Running", "127.0.0.1", "10.244.0.1")


def test_kopf_events_read_as_typed_models(api_client: client.ApiClient, namespace: str) -> None:
    """The operator's Events as kopf posts them (its body, its ISO timestamps) list as CoreV1Event."""
    core = client.CoreV1Api(api_client)
    now = "2026-01-02T03:04:05.678901+00:00"
    core.create_namespaced_event(
        namespace,
        {
            "metadata": {"namespace": namespace, "generateName": "kopf-event-"},
            "action": "Action?",
            "type": "Warning",
            "reason": "InsufficientCapacity",
            "message": "50 x u1.large do not fit",
            "reportingComponent": "kopf",
            "reportingInstance": "dev",
            "source": {"component": "kopf"},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DeploymentRequest", "name": "lob123",
                               "namespace": namespace, "uid": str(uuid.uuid4())},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": now,
        },
    )
    [event] = core.list_namespaced_event(namespace).items
    assert event.metadata.name.startswith("kopf-event-")
    assert (event.reason, event.type, event.involved_object.name) == ("InsufficientCapacity", "Warning", "lob123")
    assert event.last_timestamp.year == 2026


def test_config_map_crud(api_client: client.ApiClient, namespace: str) -> None:
    """PUT with a stale resourceVersion is refused (optimistic concurrency: 409 Conflict)."""
    core = client.CoreV1Api(api_client)
    made = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"a": "1"})
    )
    assert made.metadata.uid and made.metadata.resource_version
    read = core.read_namespaced_config_map("settings", namespace)
    read.data["b"] = "2"
    replaced = core.replace_namespaced_config_map("settings", namespace, read)
    assert replaced.data == {"a": "1", "b": "2"}
    assert int(replaced.metadata.resource_version) > int(made.metadata.resource_version)
    with pytest.raises(client.ApiException) as stale:
        core.replace_namespaced_config_map("settings", namespace, read)  # read's resourceVersion is now old
    assert (stale.value.status, status_of(stale.value)["reason"]) == (409, "Conflict")
    patched = core.patch_namespaced_config_map("settings", namespace, {"data": {"a": None, "c": "3"}})
    assert patched.data == {"b": "2", "c": "3"}
    deleted = core.delete_namespaced_config_map("settings", namespace)  # a Status: the client keeps it a dict
    assert (deleted["status"], deleted["details"]["uid"]) == ("Success", made.metadata.uid)
    with pytest.raises(client.ApiException) as gone:
        core.read_namespaced_config_map("settings", namespace)
    assert gone.value.status == 404


def test_deployment_request_crud(api_client: client.ApiClient, namespace: str) -> None:
    """Custom resources: generation moves with spec changes only; status is written only through /status."""
    custom = client.CustomObjectsApi(api_client)
    made = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, request("lob123", 3))
    assert made["metadata"]["generation"] == 1
    assert custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "lob123")["spec"]["replicas"] == 3
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert (listed["kind"], [i["metadata"]["name"] for i in listed["items"]]) == ("DeploymentRequestList", ["lob123"])
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "lob123", {"spec": {"replicas": 4}, "status": {"phase": "Ready"}}
    )
    assert (patched["spec"]["replicas"], patched["metadata"]["generation"]) == (4, 2)
    assert "status" not in patched  # the main resource ignores status
    status = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "lob123", {"status": {"phase": "Placing"}}
    )
    assert (status["status"]["phase"], status["metadata"]["generation"]) == ("Placing", 2)
    with pytest.raises(client.ApiException) as stale:  # the status write moved the resourceVersion on
        custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "lob123", patched)
    assert stale.value.status == 409
    status["spec"]["replicas"] = 5
    replaced = custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "lob123", status)
    assert (replaced["spec"]["replicas"], replaced["status"]["phase"]) == (5, "Placing")
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "lob123")
    assert custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"] == []


def test_errors_carry_the_status(api_client: client.ApiClient, namespace: str) -> None:
    """404 NotFound, 409 AlreadyExists and 422 Invalid answer a Status naming the object; Invalid lists causes."""
    custom = client.CustomObjectsApi(api_client)
    with pytest.raises(client.ApiException) as missing:
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "nothing")
    assert missing.value.status == 404
    assert status_of(missing.value)["reason"] == "NotFound"
    assert status_of(missing.value)["message"] == 'deploymentrequests.rackmesh.io "nothing" not found'
    assert status_of(missing.value)["details"] == {"name": "nothing", "group": GROUP, "kind": PLURAL}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, request("twice"))
    with pytest.raises(client.ApiException) as again:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, request("twice"))
    assert (again.value.status, status_of(again.value)["reason"]) == (409, "AlreadyExists")
    with pytest.raises(client.ApiException) as invalid:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, request("big", 10001))
    refused = status_of(invalid.value)
    assert (invalid.value.status, refused["reason"]) == (422, "Invalid")
    assert refused["details"]["kind"] == "DeploymentRequest"
    assert refused["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "message": "Invalid value: 10001: spec.replicas in body should be less "
         "than or equal to 10000", "field": "spec.replicas"}
    ]
    assert refused["message"].startswith('DeploymentRequest.rackmesh.io "big" is invalid: spec.replicas')


def test_list_by_label_and_field_selectors(api_client: client.ApiClient, namespace: str) -> None:
    custom = client.CustomObjectsApi(api_client)
    for name, team in (("a", "x"), ("b", "y"), ("c", None)):
        labels = {"team": team} if team else {}
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, request(name, labels=labels))

    def names(**selectors: str) -> list[str]:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **selectors)
        return sorted(item["metadata"]["name"] for item in listed["items"])

    assert names(label_selector="team=x") == ["a"]
    assert names(label_selector="team in (x,y)") == ["a", "b"]
    assert names(label_selector="!team") == ["c"]
    assert names(label_selector="team,team!=y") == ["a"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b", label_selector="team") == ["a"]
    with pytest.raises(client.ApiException) as unknown:
        names(field_selector="spec.replicas=3")  # not a selectable field of the CRD
    assert unknown.value.status == 400


def test_watch_events_in_order_and_resume(api_client: client.ApiClient, namespace: str) -> None:
    """A watch from a list's resourceVersion gets exactly the later changes (API concepts: semantics for watch)."""
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, request("before"))
    since = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["metadata"]["resourceVersion"]
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, request("w"))
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w", {"spec": {"replicas": 7}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
    seen = []
    stream = watch.Watch().stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
        resource_version=since, timeout_seconds=10,
    )
    for event in stream:
        seen.append((event["type"], event["object"]["metadata"]["name"], event["object"]["spec"]["replicas"]))
        if len(seen) == 3:
            break
    assert seen == [("ADDED", "w", 3), ("MODIFIED", "w", 7), ("DELETED", "w", 7)]


def test_watch_from_a_compacted_version_is_gone(api: ThreadedApi, api_client: client.ApiClient, namespace: str) -> None:
    """A resourceVersion older than the kept history: 410 Gone (API concepts: 410 Gone responses)."""
    custom = client.CustomObjectsApi(api_client)
    assert api.server is not None
    changes = api.server.emulator.store.changes
    kept = changes.capacity
    api.call(lambda: setattr(changes, "capacity", 4))
    try:
        oldest = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["metadata"]["resourceVersion"]
        for index in range(6):
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, request(f"n{index}"))
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
            resource_version=oldest, timeout_seconds=10,
        )
        with pytest.raises(client.ApiException) as gone:
            next(iter(stream))
    finally:
        api.call(lambda: setattr(changes, "capacity", kept))
    assert gone.value.status == 410
    assert gone.value.reason.startswith("Expired: too old resource version")


def test_scale_subresource(api_client: client.ApiClient, namespace: str) -> None:
    """autoscaling/v1 Scale of a DeploymentRequest: spec.replicas through the scale subresource."""
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, request("s", 2))
    scale = custom.get_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, "s")
    assert (scale["kind"], scale["apiVersion"], scale["spec"]["replicas"]) == ("Scale", "autoscaling/v1", 2)
    scaled = custom.patch_namespaced_custom_object_scale(
        GROUP, VERSION, namespace, PLURAL, "s", {"spec": {"replicas": 9}}
    )
    assert scaled["spec"]["replicas"] == 9
    after = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "s")
    assert (after["spec"]["replicas"], after["metadata"]["generation"]) == (9, 2)
    with pytest.raises(client.ApiException) as refused:
        custom.patch_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, "s", {"spec": {"replicas": -1}})
    assert refused.value.status == 422


def test_events_of_both_apis(api_client: client.ApiClient, namespace: str) -> None:
    """core/v1 and events.k8s.io/v1 Events are written and listed back, selected by their fields."""
    core, events = client.CoreV1Api(api_client), client.EventsV1Api(api_client)
    regarding = client.V1ObjectReference(kind="DeploymentRequest", name="lob123", namespace=namespace)
    core.create_namespaced_event(namespace, client.CoreV1Event(
        metadata=client.V1ObjectMeta(name="lob123.1"), involved_object=regarding, reason="Placing",
        message="placing 50 VMs", type="Normal", count=1, source=client.V1EventSource(component="rackmesh"),
    ))
    core.create_namespaced_event(namespace, client.CoreV1Event(
        metadata=client.V1ObjectMeta(name="other.1"), reason="Placing", type="Normal",
        involved_object=client.V1ObjectReference(kind="Node", name="c-a-1"),
    ))
    events.create_namespaced_event(namespace, client.EventsV1Event(
        metadata=client.V1ObjectMeta(name="lob123.2"), event_time="2026-01-02T03:04:05.000000Z",
        reason="Stalled", note="no capacity", type="Warning", action="Place",
        reporting_controller="rackmesh.io/operator", reporting_instance="operator-1", regarding=regarding,
    ))
    selected = core.list_namespaced_event(namespace, field_selector="involvedObject.name=lob123").items
    assert [(e.metadata.name, e.reason, e.source.component) for e in selected] == [("lob123.1", "Placing", "rackmesh")]
    [new] = events.list_namespaced_event(namespace, field_selector="regarding.kind=DeploymentRequest").items
    assert (new.note, new.type, new.event_time.year) == ("no capacity", "Warning", 2026)


def test_token_request(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="ci")))
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=["ci"],
                                                                                   expiration_seconds=600))
    made = core.create_namespaced_service_account_token("ci", namespace, request)
    assert made.status.token.count(".") == 2  # a JWT
    reviewed = client.AuthenticationV1Api(api_client).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=made.status.token, audiences=["ci"]))
    )
    assert reviewed.status.authenticated is True
    assert reviewed.status.user.username == f"system:serviceaccount:{namespace}:ci"
