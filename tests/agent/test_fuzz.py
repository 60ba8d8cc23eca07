"""Property-based fuzzing of every route of live agents (real HTTP, real ZooKeeper, the sandbox API).

Hypothesis generates batches of 25 requests, each to one agent of the mesh; a batch goes out concurrently.
Most requests are protocol messages built from the protocol's dataclasses, field by field: plausible values
(real instancetypes, images, nodes, so deep code paths run: offers reserve, commits look images up,
deployments write VMs), or one hostile value somewhere (huge, odd or unicode strings, ``..``, ``?``, ``/``,
negative and huge numbers, NaN, nesting 100,000 levels deep, a value of the wrong type), or a field missing or
unknown. The rest is garbage: raw bodies (broken JSON, bytes, UTF-16, a gzip bomb), wrong tokens, content
types, encodings and headers, wrong methods and paths, hostile image file names, and batches of raw bytes on
a socket.

Property: every answer is a 2xx, or a 4xx with a JSON ``{reason, message}``, within ``PER_REQUEST`` seconds;
never a 5xx. Raw bytes get no 5xx either (what aiohttp's HTTP parser refuses it answers itself: a plain-text
400, before any route), and the connection ends once the input does. Afterwards every agent still runs and
answers /healthz. The run sends 10,250 requests (``RACKMESH_FUZZ_EXAMPLES`` batches of 25 for longer runs) and
prints the count, the time taken and the answers by status and reason.
"""

import asyncio
import collections
import copy
import dataclasses
import gzip
import json
import operator
import os
import re
import time
import typing
import urllib.parse
from typing import Any

import aiohttp
import pytest
import yarl
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rackmesh.labels import Role
from rackmesh.messages import camel
from rackmesh.protocol import (
    IMAGE_FILES,
    IMAGE_LOCATIONS,
    NODE_COMMITS,
    NODE_DEPLOYMENTS,
    NODE_IMAGES,
    NODE_OFFERS,
    NODE_PINGS,
    NODE_RELEASES,
    NODE_REMOVALS,
    ORDERS,
    RACK_IMAGES,
    RACK_OFFERS,
    RACK_PINGS,
    RACK_RELEASES,
    Commit,
    Deployment,
    LocateAsk,
    OfferAsk,
    Order,
    Ping,
    RackRelease,
    Removal,
    RequestKey,
    RequestRef,
)
from rackmesh_node_agent.http_api import IMAGE_FILE_ROUTE, build_app
from rackmesh_node_agent.images import routes as image_routes
from rackmesh_node_agent.placement import routes as placement_routes
from tests.agent.conftest import TOKEN, Mesh
from tests.support.builders import make_topology

pytestmark = pytest.mark.zookeeper

BATCH = 25  # requests sent concurrently per example
RAW_WAIT = 0.3  # raw bytes get this long to draw an answer before the input ends
EXAMPLES = int(os.environ.get("RACKMESH_FUZZ_EXAMPLES", "410"))  # 410 batches: 10,250 requests; more for longer runs
# The slowest routes (a commit: its image lookup; a deployment) wait a few call timeouts (2 s in the mesh).
PER_REQUEST = 15.0

MESSAGES: dict[str, type] = {
    ORDERS: Order, RACK_OFFERS: OfferAsk, NODE_OFFERS: OfferAsk, NODE_COMMITS: Commit, NODE_RELEASES: RequestKey,
    NODE_DEPLOYMENTS: Deployment, NODE_REMOVALS: Removal, IMAGE_LOCATIONS: LocateAsk, RACK_IMAGES: LocateAsk,
    NODE_IMAGES: LocateAsk, RACK_PINGS: Ping, NODE_PINGS: Ping,
    RACK_RELEASES: RackRelease,
}
KINDS = sorted(set(MESSAGES.values()), key=lambda kind: kind.__name__)
STORAGE_ROUTES = {IMAGE_LOCATIONS, RACK_IMAGES, NODE_IMAGES}
GETS = ["/healthz", "/v1/view", IMAGE_FILE_ROUTE]
IMAGE = "lob123-rhel-6.0"
UIDS = ["uid-fuzz-0", "uid-fuzz-1", "uid-fuzz-2"]  # few, so valid orders coalesce into few rounds
# A request's uid and name go together, as on an API server (two uids under one name would contend for VMs).
REQUESTS = [{"uid": uid, "namespace": "default", "name": uid.removeprefix("uid-")} for uid in UIDS]
# Plausible values per wire field name; a field missing here fails the test, so new fields get fuzzed too.
PLAUSIBLE_STRINGS: dict[str, list[str]] = {
    "uid": UIDS, "instancetype": ["u1.small", "u1.nope"],
    "image": [IMAGE, "missing-image"], "node": ["c-0-0", "s-0-0"], "rack": ["compute-0", "storage-0"],
    "url": [f"http://127.0.1.3:1{IMAGE_FILES}/{IMAGE}.img"], "requestUid": ["", *UIDS], "keep": ["c-0-0", "c-0-1"],
}
PLAUSIBLE_INTS: dict[str, st.SearchStrategy[int]] = {
    "replicas": st.integers(0, 4), "wanted": st.integers(1, 4), "generation": st.integers(0, 3),
    "basis": st.integers(-1, 3), "redundancy": st.integers(1, 3), "indices": st.integers(0, 12),
    "lost": st.integers(0, 12),
}
HOSTILE_STRINGS = [
    "", ".", "..", "../..", "../../api/v1/namespaces/kube-system/secrets/x", "u1.small?watch=true", "u1.small\n",
    " u1.small", "U1.SMALL", "u1/small", "%2e%2e", "%2F", "\x00", "\ud800", "é", "名前", "\u202e", "-a", "a-", "a..b",
    "a" * 64, "a" * 254, "a" * 300, "{}", "null", "\\", '"', "http://", "file:///etc/passwd", "http://[::1/x",
]
HOSTILE_NUMBERS = [-1, -(2**63), 2**31, 2**63, 10**30, -(10**30), 10**400, 1e308, -0.0, 0.5, True]


class Choices:
    """Values picked by index, with a short repr: Hypothesis spells out strategies in its reports (and in
    warnings), and with repeated strategies and long values spelled out that text grows to gigabytes."""

    def __init__(self, values: list[Any]) -> None:
        self.values = values

    def __getitem__(self, index: int) -> Any:
        return self.values[index]

    def __repr__(self) -> str:
        return f"<{len(self.values)} choices>"


def weighted(*choices: tuple[st.SearchStrategy[Any], int]) -> st.SearchStrategy[Any]:
    """One of the strategies, each as often as its weight says."""
    pool = Choices([strategy for strategy, weight in choices for _ in range(weight)])
    return st.integers(0, len(pool.values) - 1).flatmap(pool.__getitem__)


def pick(values: list[Any]) -> st.SearchStrategy[Any]:
    """Like ``st.sampled_from``."""
    return st.integers(0, len(values) - 1).map(Choices(values).__getitem__)


JSON_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
# A placeholder replaced after json.dumps by brackets nested that deep (Hypothesis need not build the list).
DEEP = st.one_of(st.integers(33, 200), st.just(100_000)).map(lambda depth: f"@@deep:{depth}@@")
DEEP_MARK = re.compile(rb'"@@deep:(\d+)@@"')
HOSTILE_STRING = weighted((pick(HOSTILE_STRINGS), 3), (st.text(max_size=20), 1),
                          (st.builds(operator.mul, st.characters(), st.integers(60, 3000)), 1))
HOSTILE_NUMBER = st.one_of(st.integers(), st.floats(), pick(HOSTILE_NUMBERS))


def plausible(name: str, hint: Any) -> st.SearchStrategy[Any]:
    """A value the agents would take for the wire field ``name`` of type ``hint``."""
    if hint is RequestRef:
        return pick(REQUESTS)
    if dataclasses.is_dataclass(hint):
        return wire(hint)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return st.lists(plausible(name, item), min_size=1 if dataclasses.is_dataclass(item) else 0, max_size=3)
    if hint is str:
        return st.sampled_from(PLAUSIBLE_STRINGS[name])
    if hint is int:
        return PLAUSIBLE_INTS[name]
    if hint is float:
        return st.sampled_from([0.5, 1.0, 2.5])
    raise TypeError(f"no strategy for {name}: {hint}")


def wire(kind: type) -> st.SearchStrategy[dict[str, Any]]:
    """``kind`` as JSON-ready data with plausible values, built from its dataclass fields."""
    hints = typing.get_type_hints(kind)
    return st.fixed_dictionaries({camel(field.name): plausible(camel(field.name), hints[field.name])
                                  for field in dataclasses.fields(kind)})


FieldPath = tuple[str | int, ...]


def leaves(kind: type, prefix: FieldPath = ()) -> list[tuple[FieldPath, Any]]:
    """Every place in a ``kind`` message a hostile value can go: each field, nested objects, a list's first item."""
    hints = typing.get_type_hints(kind)
    found: list[tuple[FieldPath, Any]] = []
    for field in dataclasses.fields(kind):
        path, hint = (*prefix, camel(field.name)), hints[field.name]
        found.append((path, hint))
        if dataclasses.is_dataclass(hint):
            found += leaves(hint, path)
        elif typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            found += leaves(item, (*path, 0)) if dataclasses.is_dataclass(item) else [((*path, 0), item)]
    return found


def hostile(hint: Any) -> st.SearchStrategy[Any]:
    specific = [HOSTILE_STRING] if hint is str else [HOSTILE_NUMBER] if hint in (int, float) else []
    return weighted(*[(strategy, 4) for strategy in specific], (JSON_JUNK, 1), (DEEP, 1))


def replaced(data: dict[str, Any], path: FieldPath, value: Any) -> dict[str, Any]:
    """``data`` with ``value`` at ``path`` (an empty list gets it as its item)."""
    data = copy.deepcopy(data)
    inner: Any = data
    for key in path[:-1]:
        inner = inner[key]
    if isinstance(path[-1], int) and not inner:
        inner.append(value)
    else:
        inner[path[-1]] = value
    return data


def drop_one(data: dict[str, Any], which: int) -> dict[str, Any]:
    keys = sorted(data)
    return {key: value for key, value in data.items() if key != keys[which % len(keys)]}


def message(kind: type) -> st.SearchStrategy[Any]:
    """A ``kind`` message: plausible, or with one hostile value somewhere in it, or with a field missing, an
    unknown field, or not an object at all. One bad thing at a time, so each check gets its turn."""
    base = wire(kind)
    one_hostile = st.one_of(*[st.builds(replaced, base, st.just(path), hostile(hint)) for path, hint in leaves(kind)])
    return weighted(
        (base, 3), (one_hostile, 6),
        (st.builds(drop_one, base, st.integers(0, 20)), 1),
        (st.builds(lambda data, key, value: {**data, key: value}, base, st.text(max_size=8), JSON_JUNK), 1),
        (JSON_JUNK, 1),
    )


def to_body(data: Any) -> bytes:
    raw = json.dumps(data).encode()  # NaN and Infinity too: Python's json reads them back
    return DEEP_MARK.sub(lambda mark: b"[" * int(mark[1]) + b"]" * int(mark[1]), raw)


MESSAGE_BODIES = {kind: message(kind).map(to_body) for kind in KINDS}
ANY_BODY = st.one_of(*MESSAGE_BODIES.values())
GZIP_BOMB = gzip.compress(b"0" * (8 << 20))  # 8 KB that would inflate to 8 MiB
RAW_BODIES = st.one_of(
    st.binary(max_size=200),
    pick([b"", b"{", b"}", b"null", b"[]", b'{"uid": 1', b"\xff\xfe{\x00}\x00", b"\xef\xbb\xbf{}",
          b'{"replicas": 1' + b"0" * 5000 + b"}", json.dumps({"uid": "uid-fuzz-0"}).encode("utf-16"), GZIP_BOMB]),
    st.builds(lambda body, cut: body[:cut], ANY_BODY, st.integers(0, 400)),
)
GOOD_HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
AUTHORIZATION = pick([
    f"Bearer {TOKEN}", None, TOKEN, f"bearer {TOKEN}", f"Basic {TOKEN}", "Bearer wrong", "Bearer ", f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}é", "Bearer " + "x" * 4000])
CONTENT_HEADERS = st.fixed_dictionaries({
    "Content-Type": st.sampled_from(["application/json", "text/plain", "", "application/x-www-form-urlencoded",
                                     "multipart/form-data; boundary=x", "application/json; charset=utf-16"]),
}, optional={"Content-Encoding": st.sampled_from(["gzip", "deflate", "br", "x-garbage"]),
             "Expect": st.just("100-continue")})
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
EXTRA_HEADERS = st.dictionaries(
    st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=12).map(
        "X-".__add__), HEADER_TEXT, max_size=2)
ODD_HEADERS = st.builds(lambda authorization, content, extra: {
    **extra, **content, **({"Authorization": authorization} if authorization is not None else {})},
    AUTHORIZATION, CONTENT_HEADERS, EXTRA_HEADERS)
HEADERS = weighted((st.just(GOOD_HEADERS), 8), (ODD_HEADERS, 2))
IMAGE_FILE_NAMES = st.one_of(
    pick([f"{IMAGE}.img", IMAGE, ".img", "..img", "a" * 300 + ".img", "a" * 64 + ".img"]),
    HOSTILE_STRING.map(lambda name: name + ".img"), HOSTILE_STRING,
).map(lambda name: urllib.parse.quote(name, safe="", errors="surrogatepass")[:4000])  # 8 KB lines: raw probes


@dataclasses.dataclass(frozen=True)
class Probe:
    """One request to one agent; ``raw`` requests are bytes written to a socket as they are."""

    node: str
    method: str
    path: str  # percent-encoded
    headers: dict[str, str]
    body: bytes | None
    raw: bool = False

    @property
    def route(self) -> str:
        """The route this probe is for (a raw probe's is "raw")."""
        if self.raw:
            return "raw"
        path = self.path.partition("?")[0]
        return IMAGE_FILE_ROUTE if path.startswith(IMAGE_FILES + "/") else path

    def __str__(self) -> str:
        headers, body = repr(self.headers)[:300], repr(self.body)[:300]
        return f"{self.method} {self.path[:200]} to {self.node} headers={headers} body={body}"


def batches(mesh: Mesh) -> st.SearchStrategy[list[Probe]]:
    """Batches of requests of every kind; a message goes mostly to an agent of the role its route serves (the
    others refuse it before reading it)."""
    every = st.sampled_from(sorted(mesh.agents))
    of_role = {role: st.sampled_from(sorted(name for name, agent in mesh.agents.items() if agent.has_role(role)))
               for role in Role}

    def to_route(path: str) -> st.SearchStrategy[Probe]:
        role = Role.STORAGE if path in STORAGE_ROUTES else Role.COMPUTE
        node = weighted((of_role[role], 9), (every, 1))
        body = weighted((MESSAGE_BODIES[MESSAGES[path]], 9), (ANY_BODY, 1))  # sometimes another route's message
        return st.builds(Probe, node, st.just("POST"), st.just(path), HEADERS, body)

    messages_to_routes = st.one_of(*[to_route(path) for path in sorted(MESSAGES)])
    raw_bodies = st.builds(Probe, every, st.just("POST"), st.sampled_from(sorted(MESSAGES)), HEADERS, RAW_BODIES)
    gets = st.builds(
        Probe, every, st.just("GET"),
        st.one_of(st.sampled_from(["/healthz", "/v1/view"]),
                  IMAGE_FILE_NAMES.map(lambda name: f"{IMAGE_FILES}/{name}")),
        weighted((st.just({"Authorization": f"Bearer {TOKEN}"}), 3), (ODD_HEADERS, 1)), st.none())
    wrong_ways = st.builds(
        Probe, every, st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "POST", "HEAD"]),
        st.builds(operator.add, st.sampled_from([*MESSAGES, "/healthz", "/v1/view", "/images", "/", "/v2/x"]),
                  st.sampled_from(["", "/", "/x", "?watch=true", "/..", "%2F..", "//", "/%00"])),
        HEADERS, st.one_of(st.none(), RAW_BODIES))
    raw_bytes = st.builds(
        Probe, every, st.just("RAW"), st.just(""), st.just({}),
        st.one_of(st.binary(max_size=300), st.builds(
            lambda method, path, lines, body: method + b" " + path + b" HTTP/1.1\r\n" + b"".join(
                line + b"\r\n" for line in lines) + b"\r\n" + body,
            st.sampled_from([b"POST", b"GET", b"P\x00ST", b"\xff"]),
            st.one_of(st.sampled_from([path.encode() for path in MESSAGES]), st.binary(max_size=40)),
            st.lists(st.one_of(st.binary(max_size=60), pick([
                b"Content-Length: -1", b"Transfer-Encoding: chunked", b"X: " + b"a" * 9000,
                f"Authorization: Bearer {TOKEN}".encode()])), max_size=4),
            st.binary(max_size=100))),
        st.just(True))
    http = weighted((messages_to_routes, 14), (raw_bodies, 2), (gets, 3), (wrong_ways, 1))
    # Raw bytes come in batches of their own: they may wait RAW_WAIT for an answer, the others need not.
    return weighted((st.lists(http, min_size=BATCH, max_size=BATCH), 29),
                    (st.lists(raw_bytes, min_size=BATCH, max_size=BATCH), 1))


class Fuzzer:
    """Sends probes on the test's event loop and checks each answer."""

    def __init__(self, mesh: Mesh, session: aiohttp.ClientSession) -> None:
        self.mesh, self.session = mesh, session
        self.sent = 0
        self.answers: collections.Counter[tuple[str, int, str]] = collections.Counter()

    async def send_batch(self, batch: list[Probe]) -> None:
        await asyncio.gather(*(self.send(probe) for probe in batch))

    async def send(self, probe: Probe) -> None:
        self.sent += 1
        try:
            async with asyncio.timeout(PER_REQUEST):
                status, reason = await (self._raw(probe) if probe.raw else self._http(probe))
        except TimeoutError:
            raise AssertionError(f"no answer within {PER_REQUEST} s: {probe}") from None
        self.answers[(probe.route, status, reason)] += 1

    async def _http(self, probe: Probe) -> tuple[int, str]:
        url = yarl.URL(self.mesh.endpoint(probe.node) + probe.path, encoded=True)
        async with self.session.request(probe.method, url, headers=probe.headers, data=probe.body,
                                        skip_auto_headers=["Content-Type"]) as response:
            body = await response.read()
        assert response.status < 500, f"{response.status} {body[:300]!r}: {probe}"
        if response.status < 400:
            return response.status, ""
        if probe.method == "HEAD":  # an answer to HEAD has no body to carry the reason
            return response.status, ""
        assert response.content_type == "application/json", f"{response.status} {body[:300]!r}: {probe}"
        payload = json.loads(body)
        assert isinstance(payload.get("reason"), str) and re.fullmatch(r"[A-Z][A-Za-z]*", payload["reason"]), probe
        assert isinstance(payload.get("message"), str), probe
        return response.status, payload["reason"]

    async def _raw(self, probe: Probe) -> tuple[int, str]:
        """Raw bytes: whatever answer comes must not be a 5xx, and once the input ends, so must the connection.
        (What the HTTP parser refuses gets aiohttp's own plain-text 400: no route sees it.)"""
        host, port = self.mesh.endpoint(probe.node).removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        received = b""
        try:
            writer.write(probe.body or b"")
            try:
                async with asyncio.timeout(RAW_WAIT):
                    received = await reader.read(65536)
            except TimeoutError:  # it waits for the rest of a request: there is none
                writer.write_eof()
                received = await reader.read(65536)
        except ConnectionError:
            pass
        finally:
            writer.close()
        status_line = received.partition(b"\r\n")[0]
        if not status_line:
            return 0, "NoAnswer"
        match = re.fullmatch(rb"HTTP/1\.[01] (\d{3}) .*", status_line)
        assert match is not None and int(match[1]) < 500, f"{received[:300]!r}: {probe}"
        return int(match[1]), "Raw"


def fuzzed_routes() -> set[tuple[str, str]]:
    return {("POST", path) for path in MESSAGES} | {("GET", path) for path in GETS}


def test_the_fuzzer_covers_every_route():
    app = build_app(typing.cast(Any, None), TOKEN, [*placement_routes.routes(), *image_routes.routes()])
    served = {(route.method, route.resource.canonical) for route in app.router.routes()
              if route.method != "HEAD" and route.resource is not None}
    assert served == fuzzed_routes()


# The agents' own code uses the random module (retry jitter) on the event loop while Hypothesis generates in its
# thread; Hypothesis notices the global state change, but no strategy uses it.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
async def test_fuzzed_requests_to_every_route_get_a_2xx_or_a_4xx_with_a_reason(mesh):
    topology = make_topology().compute_racks(2, nodes=1, cpu=8, memory="32Gi").storage_racks(1, nodes=2)
    mesh = await mesh(topology)
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=BATCH * 2)) as session:
        fuzzer = Fuzzer(mesh, session)

        # No shrinking: each try is a live exchange, and the failed assertion already names the request.
        @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(batches(mesh))
        def fuzz(batch: list[Probe]) -> None:
            asyncio.run_coroutine_threadsafe(fuzzer.send_batch(batch), loop).result(PER_REQUEST + 5)

        await asyncio.to_thread(fuzz)
        elapsed = time.monotonic() - started
        for node, task in mesh.tasks.items():
            assert not task.done(), f"agent {node} stopped"
            async with session.get(mesh.endpoint(node) + "/healthz") as response:
                assert response.status == 200, node
    by_status: collections.Counter[str] = collections.Counter()
    by_route: collections.Counter[str] = collections.Counter()
    for (route, status, reason), count in fuzzer.answers.items():
        by_status[f"{status} {reason}".strip()] += count
        by_route[route] += count
    print(f"\nfuzzer: {fuzzer.sent} requests in {elapsed:.1f} s\n  answers: {dict(by_status.most_common())}\n"
          f"  routes: {dict(by_route.most_common(len(fuzzed_routes()) + 1))}")
    assert fuzzer.sent >= BATCH * EXAMPLES
    assert all(by_route[path] >= 50 for _, path in fuzzed_routes())  # every route had its share (about 150+)
