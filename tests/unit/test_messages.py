"""Typed messages: what a peer may send, and the answer to what it may not.

Case matrix:
- round trip: nested dataclasses, lists, camelCase on the wire, defaults
- refused with the field's path: missing field, unknown field, wrong type, bool for int, bad enum,
  a message's own rule (replicas out of range, bad image name, repeated or out-of-range VM indices), not JSON
"""

import json

import pytest

from rackmesh import messages
from rackmesh.protocol import Commit, ImageHolder, LocateAsk, OfferAsk, Order, RequestRef
from rackmesh.request_record import Portion, RequestRecord, Stage

ORDER = Order(RequestRef("u-1", "default", "lob123"), 50, "u1.large", "lob123-rhel-6.0")


def test_round_trip_keeps_nested_messages_and_uses_camel_case():
    record = RequestRecord(ORDER, "c-0-0", Stage.DEPLOYING, [Portion("c-0-0", "r0", "http://x", [0, 1, 2, 3, 4],
                                                                      [ImageHolder("s", "r9", "http://s/i")])],
                           timings={"handshake": 0.1})
    wire = messages.encode(record)
    assert wire["portions"][0]["holders"][0]["url"] == "http://s/i"
    assert "timings" in wire and wire["stage"] == "Deploying"
    assert messages.decode_bytes(RequestRecord, messages.encode_bytes(record)) == record
    assert messages.encode(OfferAsk(ORDER, 5, 30.0))["ttlSeconds"] == 30.0
    assert messages.decode(Order, {**messages.encode(ORDER), "lost": [3]}).lost == [3]
    assert messages.decode(Order, {key: value for key, value in messages.encode(ORDER).items()
                                   if key not in ("generation", "lost", "basis")}).basis == -1
    assert messages.decode(LocateAsk, {"image": "lob123-rhel-6.0", "redundancy": 2,
                                       "request": messages.encode(ORDER.request)}).request == ORDER.request


@pytest.mark.parametrize(("kind", "data", "complaint"), [
    (Order, {"request": {"uid": "u", "namespace": "d", "name": "n"}, "replicas": 1, "instancetype": "x"},
     "Order.image: required"),
    (Order, {**messages.encode(ORDER), "extra": 1}, "Order: unknown fields ['extra']"),
    (Order, {**messages.encode(ORDER), "replicas": "50"}, "Order.replicas: expected int, got str"),
    (Order, {**messages.encode(ORDER), "replicas": True}, "Order.replicas: expected an integer, got a boolean"),
    (Order, {**messages.encode(ORDER), "replicas": -1}, "replicas must be within 0..10000"),
    (Order, {**messages.encode(ORDER), "lost": [3, 3]}, "VM indices must be distinct"),
    (Order, {**messages.encode(ORDER), "image": "Bad_Image"}, "is not an image name"),
    (Order, {**messages.encode(ORDER), "request": []}, "Order.request: expected an object"),
    (Commit, {"order": messages.encode(ORDER), "indices": [45, 10000]}, "VM indices must be distinct and within"),
    (Commit, {"order": messages.encode(ORDER), "indices": []}, "a commit names at least one VM index"),
    (RequestRecord, {**messages.encode(RequestRecord(ORDER, "c", Stage.PLACING)), "stage": "Lost"},
     "RequestRecord.stage: 'Lost' is not one of"),
])
def test_malformed_messages_are_refused_naming_the_field(kind, data, complaint):
    with pytest.raises(messages.MessageError, match=None) as refused:
        messages.decode(kind, data)
    assert complaint in str(refused.value)


def test_not_json_is_refused():
    with pytest.raises(messages.MessageError, match="not JSON"):
        messages.decode_bytes(Order, b"{nope")
    assert messages.decode_bytes(Order, json.dumps(messages.encode(ORDER)).encode()) == ORDER
