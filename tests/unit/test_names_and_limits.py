"""Names checked by the Kubernetes API's rules, and the decoder's limits, before anything is used.

Case matrix:
- DNS-1123 labels and subdomains, label values, uids, image names, holder URLs: valid and invalid spellings,
  lengths at and past the limit, and a trailing newline (which Python's ``$`` would let through)
- every message that carries a name refuses a bad one, quoting it cut short
- JSON nested 32 levels is decoded, 33 is refused before the parser (brackets inside strings do not count); a
  body over 1 MiB is refused; NaN, Infinity and a 400-digit integer for a float field are refused
- KubeClient paths: an invalid namespace, name or subresource (``..``, ``/``, ``?``, empty) raises InvalidName
"""

import json
import re

import pytest

from rackmesh import messages
from rackmesh.kube_client import CLUSTER_INSTANCETYPES, NODES, VIRTUAL_MACHINES, InvalidName
from rackmesh.labels import is_dns_label, is_dns_subdomain, is_label_value, is_uid
from rackmesh.protocol import (
    Deployment,
    ImageHolder,
    LocateAsk,
    OfferAsk,
    Order,
    RequestKey,
    RequestRef,
    is_http_url,
    is_image_name,
)

REF = RequestRef("uid-1", "default", "lob123")
ORDER = Order(REF, 3, "u1.large", "lob123-rhel-6.0")


@pytest.mark.parametrize(("rule", "valid", "invalid"), [
    (is_dns_label, ["a", "default", "a-1", "a" * 63],
     ["", "A", "-a", "a-", "a.b", "a_b", "a" * 64, "a\n", "é", ".."]),
    (is_dns_subdomain, ["u1.large", "a", "a-b.c-d", ".".join(["a" * 63] * 3) + "." + "a" * 61],
     ["", "..", "a..b", ".a", "a.", "U1.large", "u1.large?watch=true", "a/b", "u1.large\n", "a" * 254]),
    (is_label_value, ["rack-a", "Rack_A.1", "a" * 63], ["", "-a", "a b", "a/b", "a" * 64, "a\n"]),
    (is_uid, ["uid-1", "3f1c2a4e-0b9d-4c1e-9a53-5d0e8f2b7c61", "u" * 128],
     ["", ".", "..", "a/b", "../x", "u" * 129, "\ud800", "a\n"]),
    (is_image_name, ["lob123-rhel-6.0", "a", "a..b", "a" * 63], ["", "..", ".img", "A", "a" * 64, "a\n", "a/b"]),
    (is_http_url, ["http://s-0:8470/images/i.img", "https://[::1]:1/x", "http://x"],
     ["", "file:///etc/passwd", "http://", "http://[::1/x", "http://x/a b", "http://x/\n", "http://x/é",
      "http://x/" + "a" * 2048]),
])
def test_name_rules(rule, valid, invalid):
    assert [value for value in valid if not rule(value)] == []
    assert [value for value in invalid if rule(value)] == []


@pytest.mark.parametrize(("build", "complaint"), [
    (lambda: RequestRef("../requests", "default", "x"), "uid '../requests' is not a uid"),
    (lambda: RequestRef("u", "Default", "x"), "namespace 'Default' is not a namespace name"),
    (lambda: RequestRef("u", "default", "x" * 300), "is not an object name"),
    (lambda: Order(REF, 1, "u1.large?watch=true", "lob123-rhel-6.0"), "instancetype 'u1.large?watch=true' is not"),
    (lambda: Order(REF, 1, "u1.large", "a" * 300), "is not an image name"),
    (lambda: Order(REF, 1, "u1.large", "lob", generation=-1), "generation must be within"),
    (lambda: Order(REF, 1, "u1.large", "lob", basis=2**31), "basis must be -1 or a znode version"),
    (lambda: LocateAsk("lob", 0, REF), "redundancy must be within 1..100"),
    (lambda: RequestKey(""), "uid '' is not a uid"),
    (lambda: ImageHolder("s/0", "r", "http://x"), "node 's/0' is not a node name"),
    (lambda: ImageHolder("s", "", "http://x"), "rack '' is not a rack"),
    (lambda: ImageHolder("s", "r", "ftp://x"), "url 'ftp://x' is not an http(s) URL"),
])
def test_messages_refuse_names_the_api_would_refuse(build, complaint):
    with pytest.raises(ValueError, match=re.escape(complaint)) as refused:
        build()
    assert len(str(refused.value)) < 250  # a refused value is quoted cut short


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


def test_nesting_is_limited_before_the_parser_sees_it():
    with pytest.raises(messages.MessageError, match="expected int"):  # 32 levels: parsed, then the type is wrong
        messages.decode_bytes(list[int], nested(messages.MAX_DEPTH))
    for depth in (messages.MAX_DEPTH + 1, 100_000):
        with pytest.raises(messages.MessageError, match="nested more than 32 levels deep"):
            messages.decode_bytes(list[int], nested(depth))
    unclosed = b'{"uid": ' + b"[" * 100_000
    with pytest.raises(messages.MessageError, match="nested more than 32 levels deep"):
        messages.decode_bytes(RequestKey, unclosed)
    # Brackets inside strings are text, escaped quotes included.
    assert messages.decode_bytes(RequestKey, json.dumps({"uid": "a"}).encode()) == RequestKey("a")
    with pytest.raises(messages.MessageError, match="is not a uid"):
        messages.decode_bytes(RequestKey, json.dumps({"uid": '\\"' + "[" * 100 + '"'}).encode())


def test_size_and_numbers_are_limited():
    with pytest.raises(messages.MessageError, match="more than 1048576"):
        messages.decode_bytes(RequestKey, b" " * (messages.MAX_MESSAGE_BYTES + 1))
    ask = messages.encode(OfferAsk(ORDER, 1, 30.0))
    for ttl in ("NaN", "Infinity", "-Infinity", "1" + "0" * 400):
        body = json.dumps({**ask, "ttlSeconds": 0}).replace('"ttlSeconds": 0', f'"ttlSeconds": {ttl}').encode()
        with pytest.raises(messages.MessageError, match=r"OfferAsk\.ttlSeconds: expected a finite number"):
            messages.decode_bytes(OfferAsk, body)


def test_unknown_fields_are_listed_cut_short():
    data = {**messages.encode(REF), **{f"extra-{index}" * 100: 1 for index in range(1000)}}
    with pytest.raises(messages.MessageError, match="and 995 more") as refused:
        messages.decode(RequestRef, data)
    assert len(str(refused.value)) < 250


def test_a_deployment_names_its_holders_by_the_rules():
    wire = messages.encode(Deployment(ORDER, [0], [ImageHolder("s-0", "r", "http://s-0/i.img")]))
    wire["holders"][0]["url"] = "http://s-0/i.img\r\nX-Injected: 1"
    with pytest.raises(messages.MessageError, match=r"Deployment.holders\[0\]: url"):
        messages.decode(Deployment, wire)


@pytest.mark.parametrize(("namespace", "name", "subresource"), [
    (None, "u1.large?watch=true", ""), (None, "../../api/v1/secrets", ""), (None, "..", ""), (None, "a/b", ""),
    (None, "", ""), ("default", "vm-0000", "status?x=1"), ("../kube-system", "vm-0000", ""), ("", "vm-0000", ""),
])
def test_kube_paths_refuse_invalid_segments(namespace, name, subresource):
    with pytest.raises(InvalidName, match="refusing to send"):
        VIRTUAL_MACHINES.path(namespace, name, subresource)


def test_kube_paths_of_valid_names():
    assert CLUSTER_INSTANCETYPES.path(name="u1.large") == \
        "/apis/instancetype.kubevirt.io/v1beta1/virtualmachineclusterinstancetypes/u1.large"
    assert NODES.path(name="c-0-0", subresource="status") == "/api/v1/nodes/c-0-0/status"
    assert VIRTUAL_MACHINES.path("default") == "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
