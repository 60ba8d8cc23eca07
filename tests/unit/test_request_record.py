"""The request record fits a znode at the largest request, and reading it cannot be made to blow up.

Case matrix: a small record stays plain JSON; the largest request (10,000 VMs, one per node, each portion
with its holders) round-trips and stays well under ZooKeeper's 1 MB; data that would expand past the limit,
or is neither JSON nor zlib, is refused with a MessageError.
"""

import zlib

import pytest

from rackmesh import request_record
from rackmesh.messages import MessageError
from rackmesh.protocol import MAX_REPLICAS, ImageHolder, Order, RequestRef
from rackmesh.request_record import MAX_RECORD_BYTES, Portion, RequestRecord, Stage

ZNODE_LIMIT = 1024 * 1024


def record(portions: int, per_portion: int) -> RequestRecord:
    holders = [ImageHolder(f"s-{i}", f"rack-{i % 2}", f"http://127.0.4.{i}:34567/images/lob123-rhel-6.0.img")
               for i in range(4)]
    placed = [Portion(f"c-{n:05d}", f"rack-{n // 25:03d}", f"http://127.0.{1 + n // 254}.{1 + n % 254}:34567",
                      list(range(n * per_portion, (n + 1) * per_portion)), holders) for n in range(portions)]
    order = Order(RequestRef("0" * 36, "default", "big"), portions * per_portion, "u1.large", "lob123-rhel-6.0")
    return RequestRecord(order, "c-00000", Stage.SETTLED, placed)


def test_a_small_record_is_plain_json():
    small = record(3, 2)
    data = request_record.encode(small)
    assert data.startswith(b"{") and request_record.decode(data) == small


def test_the_largest_request_fits_a_znode():
    largest = record(MAX_REPLICAS, 1)
    data = request_record.encode(largest)
    assert len(data) < ZNODE_LIMIT / 2
    assert request_record.decode(data) == largest


def test_data_that_expands_too_far_or_is_not_a_record_is_refused():
    bomb = zlib.compress(b"{" + b" " * (MAX_RECORD_BYTES + 10))
    with pytest.raises(MessageError, match="expands past"):
        request_record.decode(bomb)
    with pytest.raises(MessageError, match="neither JSON nor zlib"):
        request_record.decode(b"\x00garbage")
