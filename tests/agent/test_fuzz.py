"""Property-based fuzzing of every route of live agents (real HTTPS with mutual TLS, real ZooKeeper, the
sandbox API).

Hypothesis generates batches of 25 requests, each to one agent of the mesh; a batch goes out concurrently.
Most requests are protocol messages built from the protocol's dataclasses, field by field: plausible values
(real instancetypes, images, nodes, the DeploymentRequests that exist, so deep code paths run: offers
reserve, commits look images up, deployments write VMs), or one hostile value somewhere (huge, odd or unicode
strings, ``..``, ``?``, ``/``, negative and huge numbers, NaN, nesting 100,000 levels deep, a value of the
wrong type), or a field missing or unknown. Each goes with a client certificate: mostly the caller the
protocol has for the route (the operator for orders, a compute leader, the node's rack leader, an agent), so
the body gets read, else any other: no certificate, a rackmesh certificate of another identity, or one from
another CA (refused at the handshake: no HTTP answer at all). The rest is garbage: raw bodies (broken JSON,
bytes, UTF-16, a gzip bomb), content types, encodings and headers (stale ``Authorization`` tokens among
them), wrong methods and paths, hostile image file names, and batches of raw bytes, inside TLS or as
plaintext to the TLS port.

Property: every answer is a 2xx, or a 4xx with a JSON ``{reason, message}``, within ``PER_REQUEST`` seconds;
never a 5xx. Raw bytes inside TLS get no 5xx either (what aiohttp's HTTP parser refuses it answers itself: a
plain-text 400, before any route), and once the client closes (TLS has no half-close: its close_notify) the
agent ends the connection too; plaintext gets no HTTP answer and the connection ends once the input does.
Afterwards every agent still runs and answers /healthz. The run sends 10,250 requests
(``RACKMESH_FUZZ_EXAMPLES`` batches of 25 for longer runs) and prints the count, the time taken and the
answers by status and reason.

Without TLS (an app served in-process) no route but the open ones gets past authentication.
"""

import asyncio
import collections
import contextlib
import copy
import dataclasses
import gzip
import hashlib
import json
import operator
import os
import re
import ssl
import time
import typing
import urllib.parse
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest
import yarl
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rackmesh import request_record
from rackmesh.identity.names import Identity
from rackmesh.identity.names import Role as IdentityRole
from rackmesh.kube_client import DEPLOYMENT_REQUESTS
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
    is_uid,
)
from rackmesh_node_agent.http_api import IMAGE_FILE_ROUTE, OPEN_ROUTES, build_app
from rackmesh_node_agent.images import routes as image_routes
from rackmesh_node_agent.metrics import AgentMetrics
from rackmesh_node_agent.placement import routes as placement_routes
from rackmesh_sandbox.images import image_content
from tests.agent.conftest import Mesh
from tests.support.agent_tls import Callers, agent_name
from tests.support.builders import make_request, make_topology

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
# Who the protocol has call each route (``node_agent/authorization.py``; the others are refused): orders the
# operator, rack offers a compute leader, and these the coordinator recorded for the request, the node's rack
# leader, any agent.
COORDINATOR_ROUTES = {NODE_COMMITS, NODE_DEPLOYMENTS, NODE_RELEASES, NODE_REMOVALS, RACK_RELEASES}
RACK_LEADER_ROUTES = {NODE_OFFERS, NODE_PINGS}
AGENT_ROUTES = {RACK_PINGS, *STORAGE_ROUTES}
GETS = ["/healthz", "/v1/view", IMAGE_FILE_ROUTE]
IMAGE = "lob123-rhel-6.0"


@dataclasses.dataclass(frozen=True)
class Request:
    """A DeploymentRequest as messages name it (``RequestRef`` on the wire), and the spec its orders carry."""

    ref: dict[str, str]
    instancetype: str
    image: str


# Few requests, so valid orders coalesce into few rounds. They exist as DeploymentRequests (agents write VMs for
# no other; the API gives them their uids, so the messages are built once they exist: ``Vocabulary``), and a
# plausible order carries its request's spec: one of them has an unknown instancetype, one a missing image.
REQUEST_SPECS = {"fuzz-0": ("u1.small", IMAGE), "fuzz-1": ("u1.nope", IMAGE), "fuzz-2": ("u1.small", "missing-image")}
REPLICAS, GENERATION = 13, 3  # above every plausible VM index, and every plausible order's generation
# A request that does not exist: what a forged order names (refused only after a wait for the cache: rarer).
FORGED = Request({"uid": "uid-fuzz-forged", "namespace": "default", "name": "fuzz-forged"}, "u1.small", IMAGE)
# Plausible values per wire field name (the uids are the requests'); a field missing here fails the test, so new
# fields get fuzzed too.
PLAUSIBLE_STRINGS: dict[str, list[str]] = {
    "instancetype": ["u1.small", "u1.nope"],
    "image": [IMAGE, "missing-image"], "node": ["c-0-0", "s-0-0"], "rack": ["compute-0", "storage-0"],
    "url": [f"https://127.0.1.3:1{IMAGE_FILES}/{IMAGE}.img"], "keep": ["c-0-0", "c-0-1"],
    "sha256": ["", hashlib.sha256(image_content(IMAGE)).hexdigest()],
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


class Vocabulary:
    """Message strategies whose plausible values name ``requests``, the DeploymentRequests that exist (and now
    and then ``FORGED``)."""

    def __init__(self, requests: list[Request]) -> None:
        uids = [request.ref["uid"] for request in [*requests, FORGED]]
        self.strings = {**PLAUSIBLE_STRINGS, "uid": uids}
        self.requests = weighted((pick(requests), 7), (st.just(FORGED), 1))
        self.orders = weighted((st.one_of(*map(self.order, requests)), 7), (self.order(FORGED), 1))
        self.bodies = {kind: self.message(kind).map(to_body) for kind in KINDS}
        self.any_body = st.one_of(*self.bodies.values())

    def order(self, request: Request) -> st.SearchStrategy[dict[str, Any]]:
        return self.wire(Order, {"request": request.ref, "instancetype": request.instancetype,
                                 "image": request.image})

    def plausible(self, name: str, hint: Any) -> st.SearchStrategy[Any]:
        """A value the agents would take for the wire field ``name`` of type ``hint``."""
        if hint is RequestRef:
            return self.requests.map(lambda request: request.ref)
        if hint is Order:
            return self.orders
        if dataclasses.is_dataclass(hint):
            return self.wire(typing.cast(type, hint))
        if typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            return st.lists(self.plausible(name, item), min_size=1 if dataclasses.is_dataclass(item) else 0,
                            max_size=3)
        if hint is str:
            return st.sampled_from(self.strings[name])
        if hint is int:
            return PLAUSIBLE_INTS[name]
        if hint is float:
            return st.sampled_from([0.5, 1.0, 2.5])
        raise TypeError(f"no strategy for {name}: {hint}")

    def wire(self, kind: type, fixed: dict[str, Any] | None = None) -> st.SearchStrategy[dict[str, Any]]:
        """``kind`` as JSON-ready data with plausible values (``fixed`` ones for the wire fields it names),
        built from its dataclass fields."""
        hints, fixed = typing.get_type_hints(kind), fixed or {}
        return st.fixed_dictionaries({
            camel(field.name): st.just(fixed[camel(field.name)]) if camel(field.name) in fixed
            else self.plausible(camel(field.name), hints[field.name]) for field in dataclasses.fields(kind)})

    def message(self, kind: type) -> st.SearchStrategy[Any]:
        """A ``kind`` message: plausible, or with one hostile value somewhere in it, or with a field missing, an
        unknown field, or not an object at all. One bad thing at a time, so each check gets its turn."""
        base = self.orders if kind is Order else self.wire(kind)
        one_hostile = st.one_of(*[st.builds(replaced, base, st.just(path), hostile(hint))
                                  for path, hint in leaves(kind)])
        return weighted(
            (base, 3), (one_hostile, 6),
            (st.builds(drop_one, base, st.integers(0, 20)), 1),
            (st.builds(lambda data, key, value: {**data, key: value}, base, st.text(max_size=8), JSON_JUNK), 1),
            (JSON_JUNK, 1),
        )


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


def to_body(data: Any) -> bytes:
    raw = json.dumps(data).encode()  # NaN and Infinity too: Python's json reads them back
    return DEEP_MARK.sub(lambda mark: b"[" * int(mark[1]) + b"]" * int(mark[1]), raw)


GZIP_BOMB = gzip.compress(b"0" * (8 << 20))  # 8 KB that would inflate to 8 MiB


def raw_bodies(vocabulary: Vocabulary) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        pick([b"", b"{", b"}", b"null", b"[]", b'{"uid": 1', b"\xff\xfe{\x00}\x00", b"\xef\xbb\xbf{}",
              b'{"replicas": 1' + b"0" * 5000 + b"}", json.dumps({"uid": "uid-fuzz-0"}).encode("utf-16"),
              GZIP_BOMB]),
        st.builds(lambda body, cut: body[:cut], vocabulary.any_body, st.integers(0, 400)),
    )


GOOD_HEADERS = {"Content-Type": "application/json"}
# A token means nothing to an agent now; clients from before may still send one.
AUTHORIZATION = pick([None, "Bearer stale-token", "bearer x", "Basic eDp4", "Bearer ", "Bearer " + "x" * 4000])
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

OPERATOR = Identity(IdentityRole.OPERATOR)
OUTSIDER = Identity(IdentityRole.ZOOKEEPER)  # from the rackmesh CA, but no agent route's caller
STRANGER: Literal["stranger"] = "stranger"  # a certificate from another CA
# The coordinator ZooKeeper records for the request the message names, looked up as the probe goes out (with
# no record: a compute leader, which the agent refuses as it would any caller then).
COORDINATOR: Literal["coordinator"] = "coordinator"
Caller = Identity | Literal["stranger", "coordinator"] | None  # None: no client certificate


def uid_named(body: bytes | None) -> str | None:
    """The request uid a message names (``order.request.uid``, ``request.uid`` or ``uid``), if it is one."""
    try:
        data = json.loads(body or b"")
    except (ValueError, RecursionError):
        return None
    for path in (("order", "request", "uid"), ("request", "uid"), ("uid",)):
        value = data
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and is_uid(value):
            return value
    return None


@dataclasses.dataclass(frozen=True)
class Probe:
    """One request to one agent, over TLS presenting ``caller``'s certificate; ``raw`` requests are bytes
    written to a TLS connection as they are, or (``plaintext``) to the TLS port without TLS."""

    node: str
    method: str
    path: str  # percent-encoded
    headers: dict[str, str]
    body: bytes | None
    caller: Caller = None
    raw: bool = False
    plaintext: bool = False

    @property
    def route(self) -> str:
        """The route this probe is for (a raw probe's is "raw", or "plaintext")."""
        if self.raw:
            return "plaintext" if self.plaintext else "raw"
        path = self.path.partition("?")[0]
        return IMAGE_FILE_ROUTE if path.startswith(IMAGE_FILES + "/") else path

    def __str__(self) -> str:
        headers, body = repr(self.headers)[:300], repr(self.body)[:300]
        return f"{self.method} {self.path[:200]} to {self.node} as {self.caller} headers={headers} body={body}"


def batches(mesh: Mesh, vocabulary: Vocabulary) -> st.SearchStrategy[list[Probe]]:
    """Batches of requests of every kind; a message goes mostly to an agent of the role its route serves (the
    others refuse it before reading it), mostly from the caller the protocol has for it (likewise)."""
    every = st.sampled_from(sorted(mesh.agents))
    agents = [Identity.agent(name) for name in sorted(mesh.agents)]
    # Coordinators are compute leaders; which one a request's record names depends on where its orders went.
    compute_leaders = [Identity.agent(name) for name, agent in sorted(mesh.agents.items())
                       if agent.leads(Role.COMPUTE)]
    rack_leader = {agent.node.rack: Identity.agent(name) for name, agent in mesh.agents.items()
                   if agent.leads(Role.COMPUTE)}
    any_caller = pick([None, STRANGER, OPERATOR, OUTSIDER, *agents, *compute_leaders])

    def protocol_caller(path: str, node: str) -> st.SearchStrategy[Caller]:
        if path == ORDERS:
            return st.just(OPERATOR)
        if path in RACK_LEADER_ROUTES and mesh.agent(node).node.rack in rack_leader:
            return st.just(rack_leader[mesh.agent(node).node.rack])
        if path == NODE_REMOVALS:
            return pick([OPERATOR, COORDINATOR])
        if path in COORDINATOR_ROUTES:
            return st.just(COORDINATOR)
        if path in AGENT_ROUTES:
            return pick(agents)
        return pick(compute_leaders)  # rack offers

    def caller_of(path: str, node: str) -> st.SearchStrategy[Caller]:
        return weighted((protocol_caller(path, node), 8), (any_caller, 2))

    def sent_to(node: str, path: str, body: st.SearchStrategy[bytes]) -> st.SearchStrategy[Probe]:
        return st.builds(Probe, st.just(node), st.just("POST"), st.just(path), HEADERS, body, caller_of(path, node))

    def to_route(path: str) -> st.SearchStrategy[Probe]:
        role = Role.STORAGE if path in STORAGE_ROUTES else Role.COMPUTE
        body = weighted((vocabulary.bodies[MESSAGES[path]], 9), (vocabulary.any_body, 1))  # sometimes another's
        probes = {name: sent_to(name, path, body) for name in sorted(mesh.agents)}
        of_its_role = st.one_of(*[probe for name, probe in probes.items() if mesh.agent(name).has_role(role)])
        return weighted((of_its_role, 9), (st.one_of(*probes.values()), 1))

    raw = raw_bodies(vocabulary)
    messages_to_routes = st.one_of(*[to_route(path) for path in sorted(MESSAGES)])
    raw_bodies_to_routes = st.one_of(*[sent_to(name, path, raw) for path in sorted(MESSAGES)
                                       for name in sorted(mesh.agents)])
    gets = st.builds(
        Probe, every, st.just("GET"),
        st.one_of(st.sampled_from(["/healthz", "/v1/view"]),
                  IMAGE_FILE_NAMES.map(lambda name: f"{IMAGE_FILES}/{name}")),
        weighted((st.just({}), 3), (ODD_HEADERS, 1)), st.none(), weighted((st.none(), 2), (any_caller, 2)))
    wrong_ways = st.builds(
        Probe, every, st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "POST", "HEAD"]),
        st.builds(operator.add, st.sampled_from([*MESSAGES, "/healthz", "/v1/view", "/images", "/", "/v2/x"]),
                  st.sampled_from(["", "/", "/x", "?watch=true", "/..", "%2F..", "//", "/%00"])),
        HEADERS, st.one_of(st.none(), raw), weighted((pick(agents), 1), (any_caller, 1)))
    raw_bytes = st.builds(
        Probe, every, st.just("RAW"), st.just(""), st.just({}),
        st.one_of(st.binary(max_size=300), st.builds(
            lambda method, path, lines, body: method + b" " + path + b" HTTP/1.1\r\n" + b"".join(
                line + b"\r\n" for line in lines) + b"\r\n" + body,
            st.sampled_from([b"POST", b"GET", b"P\x00ST", b"\xff"]),
            st.one_of(st.sampled_from([path.encode() for path in MESSAGES]), st.binary(max_size=40)),
            st.lists(st.one_of(st.binary(max_size=60), pick([
                b"Content-Length: -1", b"Transfer-Encoding: chunked", b"X: " + b"a" * 9000,
                b"Content-Type: application/json"])), max_size=4),
            st.binary(max_size=100))),
        weighted((pick([OPERATOR, *compute_leaders]), 2), (st.none(), 1)), st.just(True),
        weighted((st.just(False), 3), (st.just(True), 1)))
    http = weighted((messages_to_routes, 14), (raw_bodies_to_routes, 2), (gets, 3), (wrong_ways, 1))
    # Raw bytes come in batches of their own: they may wait RAW_WAIT for an answer, the others need not.
    return weighted((st.lists(http, min_size=BATCH, max_size=BATCH), 29),
                    (st.lists(raw_bytes, min_size=BATCH, max_size=BATCH), 1))


class Fuzzer:
    """Sends probes on the test's event loop and checks each answer."""

    def __init__(self, mesh: Mesh, session: aiohttp.ClientSession, stranger: ssl.SSLContext) -> None:
        self.mesh, self.session = mesh, session
        self.callers, self.stranger = Callers(mesh.pki), stranger
        self.some_leader = Identity.agent(next(name for name, agent in sorted(mesh.agents.items())
                                               if agent.leads(Role.COMPUTE)))
        self.sent = 0
        self.answers: collections.Counter[tuple[str, int, str]] = collections.Counter()

    async def context(self, probe: Probe) -> ssl.SSLContext:
        """The TLS context presenting the probe's caller's certificate (the coordinator's: as recorded now)."""
        if probe.caller == STRANGER:
            return self.stranger
        if probe.caller == COORDINATOR:
            uid = uid_named(probe.body)
            found = await request_record.read(self.mesh.zk, self.mesh.layout, uid) if uid else None
            return self.callers.context(Identity.agent(found[0].coordinator) if found else self.some_leader)
        return self.callers.context(typing.cast(Identity | None, probe.caller))

    async def send_batch(self, batch: list[Probe]) -> None:
        await asyncio.gather(*(self.send(probe) for probe in batch))

    async def send(self, probe: Probe) -> None:
        self.sent += 1
        try:
            async with asyncio.timeout(PER_REQUEST):
                if probe.raw:
                    status, reason = await (self._plaintext(probe) if probe.plaintext else self._raw(probe))
                else:
                    status, reason = await self._http(probe)
        except TimeoutError:
            raise AssertionError(f"no answer within {PER_REQUEST} s: {probe}") from None
        self.answers[(probe.route, status, reason)] += 1

    async def _http(self, probe: Probe) -> tuple[int, str]:
        url = yarl.URL(self.mesh.endpoint(probe.node) + probe.path, encoded=True)
        try:
            async with self.session.request(probe.method, url, headers=probe.headers, data=probe.body,
                                            skip_auto_headers=["Content-Type"], ssl=await self.context(probe),
                                            server_hostname=agent_name(probe.node)) as response:
                body = await response.read()
        except aiohttp.ClientError:
            if probe.caller != STRANGER:
                raise
            return 0, "HandshakeRefused"  # the server's check of the client's certificate ended the connection
        assert probe.caller != STRANGER, f"another CA's certificate got {response.status}: {probe}"
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

    def _address(self, probe: Probe) -> tuple[str, int]:
        host, port = self.mesh.endpoint(probe.node).removeprefix("https://").rsplit(":", 1)
        return host, int(port)

    async def _raw(self, probe: Probe) -> tuple[int, str]:
        """Raw bytes inside TLS: whatever answer comes must not be a 5xx. (What the HTTP parser refuses gets
        aiohttp's own plain-text 400: no route sees it.) TLS has no half-close, so once ``RAW_WAIT`` passes
        without an answer the client closes (close_notify), and the agent must end the connection too."""
        reader, writer = await asyncio.open_connection(*self._address(probe), ssl=await self.context(probe),
                                                       server_hostname=agent_name(probe.node))
        received = b""
        try:
            writer.write(probe.body or b"")
            with contextlib.suppress(TimeoutError):  # it waits for the rest of a request: there is none
                async with asyncio.timeout(RAW_WAIT):
                    received = await reader.read(65536)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()  # the agent answered the close_notify, or hung up
        status_line = received.partition(b"\r\n")[0]
        if not status_line:
            return 0, "NoAnswer"
        match = re.fullmatch(rb"HTTP/1\.[01] (\d{3}) .*", status_line)
        assert match is not None and int(match[1]) < 500, f"{received[:300]!r}: {probe}"
        return int(match[1]), "Raw"

    async def _plaintext(self, probe: Probe) -> tuple[int, str]:
        """Bytes without TLS to the TLS port: never an HTTP answer, and once the input ends, so must the
        connection."""
        reader, writer = await asyncio.open_connection(*self._address(probe))
        received = b""
        try:
            writer.write(probe.body or b"")
            try:
                async with asyncio.timeout(RAW_WAIT):
                    received = await reader.read()
            except TimeoutError:  # a partial TLS record: the handshake waits for the rest; there is none
                writer.write_eof()
                received = await reader.read()
        except ConnectionError:
            pass
        finally:
            writer.close()
        assert not received.startswith(b"HTTP/"), f"{received[:300]!r}: {probe}"
        return 0, "NotTls"


def fuzzed_routes() -> set[tuple[str, str]]:
    return {("POST", path) for path in MESSAGES} | {("GET", path) for path in GETS}


class NoAgent:
    """Only what the app asks of an agent before a handler runs: where it counts its answers."""

    def __init__(self) -> None:
        self.metrics = AgentMetrics(typing.cast(Any, self))


def in_process_app() -> Any:
    # No agent: only what the app answers before a handler runs is asked of it.
    return build_app(typing.cast(Any, NoAgent()), [*placement_routes.routes(), *image_routes.routes()])


def test_the_fuzzer_covers_every_route():
    served = {(route.method, route.resource.canonical) for route in in_process_app().router.routes()
              if route.method != "HEAD" and route.resource is not None}
    assert served == fuzzed_routes()


async def test_without_tls_no_route_but_the_open_ones_gets_past_authentication():
    """Served without TLS (no peer certificate to read), every route but ``/healthz`` and the image files is a
    401 before its handler runs; the live mesh below asks the same over TLS."""
    async with TestClient(TestServer(in_process_app())) as client:
        for method, path in sorted(fuzzed_routes()):
            if path in OPEN_ROUTES:
                continue
            async with client.request(method, path, data=b"{}") as response:
                assert response.status == 401, path
                assert (await response.json())["reason"] == "Unauthenticated", path
    assert {path for _, path in fuzzed_routes()} - OPEN_ROUTES == {*MESSAGES, "/v1/view"}


async def create_requests(mesh: Mesh) -> list[Request]:
    """The DeploymentRequests the fuzzed messages are for, at ``REPLICAS`` and ``GENERATION``."""
    requests = []
    for name, (instancetype, image) in REQUEST_SPECS.items():
        created = await mesh.kube.create(DEPLOYMENT_REQUESTS, make_request(name).replicas(REPLICAS - GENERATION + 1)
                                         .instancetype(instancetype).image(image).obj(), "default")
        for replicas in range(REPLICAS - GENERATION + 2, REPLICAS + 1):  # each change of the spec: a generation
            created = await mesh.kube.patch(DEPLOYMENT_REQUESTS, name, {"spec": {"replicas": replicas}}, "default")
        assert (created["metadata"]["generation"], created["spec"]["replicas"]) == (GENERATION, REPLICAS)
        requests.append(Request({"uid": created["metadata"]["uid"], "namespace": "default", "name": name},
                                instancetype, image))
    return requests


# The agents' own code uses the random module (retry jitter) on the event loop while Hypothesis generates in its
# thread; Hypothesis notices the global state change, but no strategy uses it.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
async def test_fuzzed_requests_to_every_route_get_a_2xx_or_a_4xx_with_a_reason(mesh, tmp_path: Path):
    topology = make_topology().compute_racks(2, nodes=1, cpu=8, memory="32Gi").storage_racks(1, nodes=2)
    mesh = await mesh(topology)
    vocabulary = Vocabulary(await create_requests(mesh))
    stranger = Callers(mesh.pki).stranger(tmp_path / "stranger", OPERATOR)
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=BATCH * 2)) as session:
        fuzzer = Fuzzer(mesh, session, stranger)

        # No shrinking: each try is a live exchange, and the failed assertion already names the request.
        @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(batches(mesh, vocabulary))
        def fuzz(batch: list[Probe]) -> None:
            asyncio.run_coroutine_threadsafe(fuzzer.send_batch(batch), loop).result(PER_REQUEST + 5)

        await asyncio.to_thread(fuzz)
        elapsed = time.monotonic() - started
        for node, task in mesh.tasks.items():
            assert not task.done(), f"agent {node} stopped"
            async with session.get(mesh.endpoint(node) + "/healthz", ssl=Callers(mesh.pki).context(None),
                                   server_hostname=agent_name(node)) as response:
                assert response.status == 200, node
    by_status: collections.Counter[str] = collections.Counter()
    by_route: collections.Counter[str] = collections.Counter()
    for (route, status, reason), count in fuzzer.answers.items():
        by_status[f"{status} {reason}".strip()] += count
        by_route[route] += count
    print(f"\nfuzzer: {fuzzer.sent} requests in {elapsed:.1f} s\n  answers: {dict(by_status.most_common())}\n"
          f"  routes: {dict(by_route.most_common(len(fuzzed_routes()) + 2))}")
    assert fuzzer.sent >= BATCH * EXAMPLES
    assert all(by_route[path] >= 50 for _, path in fuzzed_routes())  # every route had its share (about 150+)
