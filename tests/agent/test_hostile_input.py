"""Hostile and broken input to a live agent (real HTTP, real ZooKeeper): a 4xx with a JSON reason, never a
5xx, a hang or a crash; nothing user-supplied reaches an API path or a file path.

Case matrix:
- deeply nested JSON (100,000 levels, as a whole body and inside a field): 400 BadMessage "nested", the agent
  answers /healthz afterwards
- an instancetype with ``..``, ``?``, ``/``, a trailing newline, capitals or 254 characters, in an offer, a
  commit and an order: 400 BadMessage naming the field, at once, and the agent sent nothing to the API
- a 300-character image name: 400 BadMessage on every lookup route and in an order; 404 ImageNotFound on the
  open ``GET /images/<name>.img``, as is a path that tries to leave the directory; an open route's path
  spelling cannot reach a token-only route
- a request name longer than a label value (64..253): 422 InvalidName; a namespace, uid or holder that breaks
  the API's rules: 400 BadMessage
- ``Authorization`` without ``Bearer``, another scheme, another case, an extra space, a wrong or non-ASCII
  token: 401; ``Bearer <token>``: accepted
- a client that sends its headers byte by byte is disconnected after the header timeout without an answer; a
  body that does not arrive within the body timeout is a 408 RequestTimeout (run with short ServerLimits on a
  second site serving the same agent, through the same ``build_app``/``app_runner`` the agent uses)
- a body over 1 MiB, announced (Content-Length) or chunked: 413 RequestEntityTooLarge; a compressed body is taken
  as sent (a gzip bomb is 8 KB of not-JSON: 400 BadMessage; an encoding aiohttp cannot decode is no parser
  error); an unknown route 404 and a wrong method 405; all JSON
"""

import asyncio
import contextlib
import gzip
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp import web

from rackmesh import messages
from rackmesh.kube_client import KubeClient
from rackmesh.protocol import (
    IMAGE_FILES,
    IMAGE_LOCATIONS,
    NODE_COMMITS,
    NODE_IMAGES,
    NODE_OFFERS,
    NODE_RELEASES,
    ORDERS,
    RACK_IMAGES,
    RACK_OFFERS,
    Commit,
    OfferAsk,
    Order,
    RequestRef,
)
from rackmesh_node_agent.http_api import ServerLimits, app_runner, build_app
from rackmesh_node_agent.images import routes as image_routes
from rackmesh_node_agent.placement import routes as placement_routes
from rackmesh_sandbox.ports import free_port
from tests.agent.conftest import TOKEN, Mesh
from tests.support.builders import make_topology

pytestmark = pytest.mark.zookeeper
IMAGE = "lob123-rhel-6.0"
ORDER = Order(RequestRef("uid-hostile", "default", "hostile"), 2, "u1.small", IMAGE)
SHORT = ServerLimits(header_timeout=1.0, body_timeout=1.0, lingering_time=0.2)


def topology():
    return make_topology().compute_racks(1, nodes=1).storage_racks(1, nodes=1)


async def call(url: str | yarl.URL, body: Any = None, method: str = "POST",
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    """One request with the agent token (unless ``headers`` carry their own Authorization); the JSON answer."""
    sent = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", **(headers or {})}
    async with aiohttp.ClientSession() as session, session.request(method, url, data=body, headers=sent) as response:
        return response.status, await response.json()


def with_field(message: object, path: tuple[str, ...], value: object) -> bytes:
    """``message`` on the wire with one field (``path`` of camelCase keys) replaced by ``value``."""
    wire = messages.encode(message)
    inner = wire
    for key in path[:-1]:
        inner = inner[key]
    inner[path[-1]] = value
    return json.dumps(wire).encode()


async def assert_healthy(mesh: Mesh) -> None:
    for name in mesh.agents:
        status, payload = await call(mesh.endpoint(name) + "/healthz", method="GET")
        assert (status, payload["status"]) == (200, "ok"), name


async def test_deeply_nested_json_is_a_bad_message(mesh):
    mesh = await mesh(topology())
    compute = mesh.endpoint("c-0-0")
    deep = b"[" * 100_000 + b"]" * 100_000
    for url, body in ((compute + ORDERS, deep), (compute + NODE_OFFERS, deep),
                      (compute + NODE_RELEASES, b'{"uid": ' + deep + b"}"),
                      (mesh.endpoint("s-0-0") + NODE_IMAGES, b'{"image": ' + deep + b', "redundancy": 1}')):
        status, payload = await call(url, body)
        assert (status, payload["reason"]) == (400, "BadMessage"), url
        assert "nested more than 32 levels deep" in payload["message"]
    await assert_healthy(mesh)


@pytest.mark.parametrize("instancetype", [
    "u1.large?watch=true", "../../../api/v1/namespaces/kube-system/secrets/x", "..", "u1/large", "u1.large\n",
    "U1.Large", "u1..large", "a" * 254, "",
])
async def test_an_instancetype_that_is_not_a_name_never_reaches_the_api(mesh, monkeypatch, instancetype):
    mesh = await mesh(topology())
    sent: list[str] = []
    real_call = KubeClient._call

    async def spy(self, method, path, **kwargs):
        sent.append(path)
        return await real_call(self, method, path, **kwargs)

    monkeypatch.setattr(KubeClient, "_call", spy)
    compute = mesh.endpoint("c-0-0")
    for route, body in ((NODE_OFFERS, with_field(OfferAsk(ORDER, 1, 30.0), ("order", "instancetype"), instancetype)),
                        (RACK_OFFERS, with_field(OfferAsk(ORDER, 1, 30.0), ("order", "instancetype"), instancetype)),
                        (NODE_COMMITS, with_field(Commit(ORDER, [0]), ("order", "instancetype"), instancetype)),
                        (ORDERS, with_field(ORDER, ("instancetype",), instancetype))):
        started = time.monotonic()
        status, payload = await call(compute + route, body)
        assert (status, payload["reason"]) == (400, "BadMessage"), route
        assert "instancetype" in payload["message"]
        assert time.monotonic() - started < 1.0
    assert sent == []


async def test_a_300_character_image_name_is_refused_on_every_route(mesh):
    mesh = await mesh(topology())
    storage, long_name = mesh.endpoint("s-0-0"), "a" * 300
    for route in (NODE_IMAGES, RACK_IMAGES, IMAGE_LOCATIONS):
        status, payload = await call(storage + route, f'{{"image": "{long_name}", "redundancy": 1}}'.encode())
        assert (status, payload["reason"]) == (400, "BadMessage"), route
        assert "is not an image name" in payload["message"] and len(payload["message"]) < 300
    status, payload = await call(mesh.endpoint("c-0-0") + ORDERS, with_field(ORDER, ("image",), long_name))
    assert (status, payload["reason"]) == (400, "BadMessage")

    for name in (long_name + ".img", "a" * 64 + ".img", "..%2F..%2F..%2Fetc%2Fpasswd", "%2e%2e%2fx.img",
                 f"{IMAGE}.img%00", "%00.img", "lob123-rhel-6.0%0A.img"):
        status, payload = await call(yarl.URL(f"{storage}{IMAGE_FILES}/{name}", encoded=True), method="GET",
                                     headers={"Authorization": ""})
        assert (status, payload["reason"]) == (404, "ImageNotFound"), name
    # The image route is open; a path that starts like it but leads elsewhere is not.
    status, payload = await call(yarl.URL(f"{storage}{IMAGE_FILES}/../v1/view", encoded=True), method="GET",
                                 headers={"Authorization": ""})
    assert status in (401, 404) and payload["reason"] in ("Unauthorized", "NotFound")
    await assert_healthy(mesh)


async def test_request_names_namespaces_uids_and_holders_follow_the_api_rules(mesh):
    mesh = await mesh(topology())
    compute = mesh.endpoint("c-0-0")
    for name in ("r" * 64, "r" * 253):
        status, payload = await call(compute + ORDERS, with_field(ORDER, ("request", "name"), name))
        assert (status, payload["reason"]) == (422, "InvalidName")
        status, payload = await call(compute + NODE_OFFERS,
                                     with_field(OfferAsk(ORDER, 1, 30.0), ("order", "request", "name"), name))
        assert (status, payload["reason"]) == (422, "InvalidName")
    for path, value in ((("request", "name"), "r" * 254), (("request", "name"), "Hostile"),
                        (("request", "namespace"), "../kube-system"), (("request", "namespace"), "a" * 64),
                        (("request", "uid"), "../../requests"), (("request", "uid"), "u" * 129),
                        (("request", "uid"), "\ud800"), (("generation",), -1), (("basis",), 2**31)):
        status, payload = await call(compute + ORDERS, with_field(ORDER, path, value))
        assert (status, payload["reason"]) == (400, "BadMessage"), (path, value)
    holder = {"node": "s-0-0", "rack": "storage-0", "url": "http://127.0.1.2:1/images/lob123-rhel-6.0.img"}
    for field, value in (("node", "s/0"), ("rack", "storage 0"), ("url", "file:///etc/passwd"),
                         ("url", "http://"), ("url", "http://[::1/x"), ("url", "http://x/" + "a" * 2048)):
        body = {"order": messages.encode(ORDER), "indices": [0], "holders": [{**holder, field: value}]}
        status, payload = await call(compute + "/v1/node/deployments", json.dumps(body).encode())
        assert (status, payload["reason"]) == (400, "BadMessage"), (field, value)
        assert f"Deployment.holders[0]: {field}" in payload["message"]


async def test_only_the_bearer_scheme_with_the_exact_token_is_accepted(mesh):
    mesh = await mesh(topology())
    url, body = mesh.endpoint("c-0-0") + NODE_RELEASES, b'{"uid": "uid-auth"}'
    for authorization in (TOKEN, f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer  {TOKEN}",
                          f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer", "Bearer ", "",
                          f"Token {TOKEN}", f"Bearer {TOKEN[:-1]}é"):
        status, payload = await call(url, body, headers={"Authorization": authorization})
        assert (status, payload["reason"]) == (401, "Unauthorized"), authorization
    status, payload = await call(url, body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert (status, payload) == (200, {"status": "released"})


@contextlib.asynccontextmanager
async def short_limits_site(mesh: Mesh, node: str) -> AsyncIterator[tuple[str, int]]:
    """The node's agent served once more, with ``SHORT`` limits, on another port of its address."""
    agent = mesh.agent(node)
    runner = app_runner(build_app(agent, TOKEN, [*placement_routes.routes(), *image_routes.routes()], SHORT))
    await runner.setup()
    host = agent.settings.agent_bind
    port = free_port(host)
    await web.TCPSite(runner, host, port).start()
    try:
        yield host, port
    finally:
        await runner.cleanup()


async def dribble(writer: asyncio.StreamWriter, data: bytes, pause: float = 0.05) -> None:
    """Send ``data`` a byte at a time, until sent or the server hangs up."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(pause)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    received = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            received += chunk
    return received


async def test_headers_sent_byte_by_byte_are_cut_off(mesh):
    mesh = await mesh(topology())
    async with short_limits_site(mesh, "c-0-0") as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        started = time.monotonic()
        writer.write(f"POST {NODE_RELEASES} HTTP/1.1\r\nHost: agent\r\n".encode())
        sending = asyncio.create_task(dribble(writer, b"X-Slow: " + b"a" * 2000))
        received = await asyncio.wait_for(read_until_closed(reader), 5)
        elapsed = time.monotonic() - started
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
    assert received == b""  # no answer: the request never was one
    assert SHORT.header_timeout <= elapsed < SHORT.header_timeout + 1.5


async def test_a_body_slower_than_the_limit_is_a_408(mesh):
    mesh = await mesh(topology())
    async with short_limits_site(mesh, "c-0-0") as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        started = time.monotonic()
        writer.write(f"POST {NODE_RELEASES} HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer {TOKEN}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n".encode())
        sending = asyncio.create_task(dribble(writer, b'{"uid": "' + b"u" * 1990 + b'"}'))
        received = await asyncio.wait_for(read_until_closed(reader), 5)
        elapsed = time.monotonic() - started
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), received[:200]
    assert json.loads(body)["reason"] == "RequestTimeout"
    assert SHORT.body_timeout <= elapsed < SHORT.body_timeout + 1.5


async def test_oversize_and_compressed_bodies_unknown_routes_and_wrong_methods_answer_json(mesh):
    mesh = await mesh(topology())
    url = mesh.endpoint("c-0-0") + NODE_RELEASES
    oversize = b'{"uid": "' + b"u" * messages.MAX_MESSAGE_BYTES + b'"}'
    status, payload = await call(url, oversize)
    assert (status, payload["reason"]) == (413, "RequestEntityTooLarge")

    async def chunks():
        for start in range(0, len(oversize), 65536):
            yield oversize[start:start + 65536]

    status, payload = await call(url, chunks())
    assert (status, payload["reason"]) == (413, "RequestEntityTooLarge")
    # Bodies are taken as sent: a bomb stays its compressed 8 KB (not JSON), an encoding aiohttp cannot decode
    # (Brotli is not installed) is no parser-level refusal.
    bomb = gzip.compress(b'{"uid": "' + b"u" * (8 << 20) + b'"}')
    status, payload = await call(url, bomb, headers={"Content-Encoding": "gzip"})
    assert (status, payload["reason"]) == (400, "BadMessage")
    status, payload = await call(url, b'{"uid": "uid-1"}', headers={"Content-Encoding": "br"})
    assert (status, payload) == (200, {"status": "released"})
    status, payload = await call(mesh.endpoint("c-0-0") + "/v1/nothing-here", b"{}")
    assert (status, payload["reason"]) == (404, "NotFound")
    status, payload = await call(url, method="GET")
    assert (status, payload["reason"]) == (405, "MethodNotAllowed")
    await assert_healthy(mesh)
