"""Protobuf request bodies on the wire: what typed clients send, and what the API answers to what they must not.

Docs: https://kubernetes.io/docs/reference/using-api/api-concepts/#protobuf-encoding (the ``k8s\\x00`` magic and
the ``runtime.Unknown`` envelope), https://kubernetes.io/docs/reference/using-api/api-concepts/#http-status-codes.
Bodies are encoded here by hand, field numbers as k8s.io/api's generated.proto gives them, so the decoder is
not checked against its own tables. ``test_kubectl_clients.py`` covers the bodies kubectl itself sends.

Case matrix:
- well-known types: a Lease's MicroTime and int32s, a Deployment's int-or-strings, a ResourceQuota's
  quantities, a Secret's bytes, zero pointers kept (replicas: 0) and zero values dropped (Go's omitempty).
- a DELETE's protobuf DeleteOptions are honoured (propagationPolicy Orphan keeps the dependent).
- refusals: not protobuf (400, the server's words), the magic alone (400), a corrupt envelope (400), no kind
  (400), a compressed envelope (415), a kind or a field the sandbox does not decode (415, naming it).
- an Accept without JSON is 406; one with JSON among others is served JSON; a body that is not UTF-8 is a
  400 (kmock alone answered 500), protobuf on PATCH is refused (4xx) and nothing crashes.
"""

from __future__ import annotations

from tests.kube_api.conftest import Client

PROTOBUF = "application/vnd.kubernetes.protobuf"


def varint(value: int) -> bytes:
    out = b""
    while True:
        low, value = value & 0x7F, value >> 7
        out += bytes([low | (0x80 if value else 0)])
        if not value:
            return out


def field(number: int, value: bytes | str | int) -> bytes:
    """One field: an int as a varint (wire type 0), bytes or a string length-delimited (wire type 2)."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes, **more: bytes) -> bytes:
    """``k8s\\x00`` + runtime.Unknown{typeMeta: 1 {apiVersion: 1, kind: 2}, raw: 2, contentEncoding: 3}."""
    type_meta = field(1, api_version) + field(2, kind)
    return b"k8s\x00" + field(1, type_meta) + field(2, raw) + b"".join(more.values())


def meta(name: str, *extra: bytes) -> bytes:
    """ObjectMeta{name: 1, ...}, with the zero values Go's encoder writes for its non-pointer fields."""
    return field(1, field(1, name) + field(2, "") + field(7, 0) + field(8, b"") + b"".join(extra))


async def post(client: Client, path: str, body: bytes, **headers: str) -> tuple[int, dict]:
    async with client.session.post(
        client.url + path, data=body, headers={"Content-Type": PROTOBUF, **headers}
    ) as response:
        return response.status, await response.json()


async def test_well_known_types(client: Client) -> None:
    """Times as RFC 3339 (MicroTime with microseconds), quantities and int-or-strings as their values, bytes as
    base64; a pointer's zero (replicas: 0) is kept, a value's zero (generateName: "") left out, as in JSON."""
    micro = field(1, 1767323045) + field(2, 123456789)  # 2026-01-02T03:04:05.123456789Z
    lease = meta("l1") + field(2, field(1, "agent-c-a-1") + field(2, 15) + field(4, micro) + field(5, 0))
    status, made = await post(client, "/apis/coordination.k8s.io/v1/namespaces/default/leases",
                              envelope("coordination.k8s.io/v1", "Lease", lease))
    assert status == 201, made
    assert made["spec"] == {
        "holderIdentity": "agent-c-a-1", "leaseDurationSeconds": 15,
        "renewTime": "2026-01-02T03:04:05.123456Z", "leaseTransitions": 0,
    }
    assert "generateName" not in made["metadata"] and "generation" not in made["metadata"]

    percent, one = field(1, 1) + field(3, "25%"), field(1, 0) + field(2, 1)  # IntOrString{type, intVal, strVal}
    rolling = field(1, "RollingUpdate") + field(2, field(1, percent) + field(2, one))
    template = field(1, field(11, field(1, "app") + field(2, "d"))) + field(2, field(2, field(1, "c") + field(2, "i")))
    spec = field(1, 0) + field(3, template) + field(4, rolling)
    status, made = await post(client, "/apis/apps/v1/namespaces/default/deployments",
                              envelope("apps/v1", "Deployment", meta("d1") + field(2, spec)))
    assert status == 201, made
    assert made["spec"]["replicas"] == 0
    assert made["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%",
                                                                                   "maxSurge": 1}}
    assert made["spec"]["template"]["spec"]["containers"] == [{"name": "c", "image": "i"}]

    hard = field(1, field(1, "cpu") + field(2, field(1, "1500m")))  # map entry {key: 1, value: 2 Quantity}
    status, made = await post(client, "/api/v1/namespaces/default/resourcequotas",
                              envelope("v1", "ResourceQuota", meta("q1") + field(2, hard)))
    assert (status, made["spec"]) == (201, {"hard": {"cpu": "1500m"}})

    data = field(2, field(1, "key") + field(2, b"\x00\xff"))
    status, made = await post(client, "/api/v1/namespaces/default/secrets",
                              envelope("v1", "Secret", meta("s1") + data + field(3, "Opaque")))
    assert (status, made["data"], made["type"]) == (201, {"key": "AP8="}, "Opaque")


async def test_delete_options_in_protobuf(client: Client) -> None:
    owner = (await client.create("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "owner"}}))
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    await client.create("/api/v1/namespaces/default/configmaps",
                        {"metadata": {"name": "dependent", "ownerReferences": [reference]}})
    options = envelope("v1", "DeleteOptions", field(4, "Orphan"))
    async with client.session.delete(client.url + "/api/v1/namespaces/default/configmaps/owner", data=options,
                                     headers={"Content-Type": PROTOBUF}) as response:
        assert response.status == 200
    assert (await client.get("/api/v1/namespaces/default/configmaps/owner")).status == 404
    kept = await client.get("/api/v1/namespaces/default/configmaps/dependent")
    assert kept.status == 200  # orphaned, not collected


async def test_refusals(client: Client) -> None:
    namespaces = "/api/v1/namespaces"
    namespace = meta("n1") + field(2, b"") + field(3, field(1, ""))
    cases = [
        (b"{}", 400, "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"),
        (b"k8s\x00", 400, "empty body"),
        (b"k8s\x00\xff\xff", 400, "the protobuf body is not a valid runtime.Unknown message"),
        (b"k8s\x00" + field(2, namespace), 400, "Object 'Kind' is missing in the protobuf envelope (typeMeta)"),
        (envelope("v1", "Namespace", namespace, encoding=field(3, "gzip")), 415,
         "the protobuf envelope's contentEncoding 'gzip' is not supported"),
        (envelope("networking.k8s.io/v1", "Ingress", meta("i")), 415,
         "Ingress in networking.k8s.io/v1 is not a kind the sandbox decodes from protobuf"),
        (envelope("v1", "Namespace", namespace + field(9, "x")), 415,
         "field 9 of core.v1.Namespace is not one the sandbox decodes from protobuf"),
        (envelope("v1", "Namespace", meta("n1", field(15, "x"))), 415,
         "metadata: field 15 of meta.v1.ObjectMeta is not one the sandbox decodes from protobuf"),
    ]
    for body, code, message in cases:
        status, answer = await post(client, namespaces, body)
        assert (status, answer["code"]) == (code, code), (body, answer)
        assert answer["message"].startswith(message), answer
        if code == 415:
            assert answer["reason"] == "UnsupportedMediaType"
            assert answer["message"].endswith("send the object as JSON (application/json), e.g. with kubectl apply -f")
    assert [n["metadata"]["name"] for n in (await client.get(namespaces)).body["items"]] == [
        "default", "kube-node-lease", "kube-public", "kube-system"
    ]  # nothing refused was stored


async def test_negotiation_and_bodies_that_are_not_text(client: Client) -> None:
    only_protobuf = await client.get("/api/v1/namespaces/default", headers={"Accept": PROTOBUF})
    assert only_protobuf.status == 406
    assert only_protobuf.body["message"] == "only the following media types are accepted: application/json"
    kubectl_accepts = await client.get("/api/v1/namespaces/default", headers={"Accept": f"{PROTOBUF},application/json"})
    assert (kubectl_accepts.status, kubectl_accepts.body["kind"]) == (200, "Namespace")
    assert (await client.get("/healthz", headers={"Accept": PROTOBUF})).status == 200  # not a resource path
    async with client.session.post(client.url + "/api/v1/namespaces", data=b"\xff\xfe\xfd",
                                   headers={"Content-Type": "application/json"}) as response:
        assert response.status == 400
        assert (await response.json())["message"].startswith("the request body is not valid JSON")
    async with client.session.patch(client.url + "/api/v1/namespaces/default", data=b"k8s\x00\xff",
                                    headers={"Content-Type": PROTOBUF}) as response:
        assert response.status in (400, 415)  # a patch is never protobuf (the server: 415, the sandbox: 400)
        assert response.content_type == "application/json"

