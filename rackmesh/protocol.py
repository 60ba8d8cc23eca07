"""The peer-to-peer protocol between the operator and the agents: routes and messages.

    operator     --Order-------------> coordinator            POST /v1/orders           202 OrderAccepted
    coordinator  --OfferAsk----------> compute rack leader    POST /v1/rack/offers      200 RackOffers
    rack leader  --OfferAsk----------> compute agent          POST /v1/node/offers      200 NodeOffer (reserved)
    coordinator  --Commit------------> compute agent          POST /v1/node/commits     200 CommitAnswer
    coordinator  --RequestKey--------> compute agent          POST /v1/node/releases    200 (reservation dropped)
    coordinator  --RequestKey--------> compute agent          POST /v1/node/deployments 202 (VMs being written)
    compute agent --LocateAsk--------> storage leader         POST /v1/images/locate    200 Holders | 409
    storage leader --LocateAsk-------> storage rack leader    POST /v1/rack/images      200 Holders (its rack)
    storage rack leader --LocateAsk--> storage agent          POST /v1/node/images      200 Holders (0 or 1)
    CDI / anyone                        storage agent          GET  /images/<image>.img  the image, with Range

Errors are JSON ``{reason, message}`` with a 4xx/5xx status (see ``node_agent/http_api.py``).
"""

import dataclasses
import re

ORDERS = "/v1/orders"
RACK_OFFERS = "/v1/rack/offers"
NODE_OFFERS = "/v1/node/offers"
NODE_COMMITS = "/v1/node/commits"
NODE_RELEASES = "/v1/node/releases"
NODE_DEPLOYMENTS = "/v1/node/deployments"
IMAGE_LOCATIONS = "/v1/images/locate"
RACK_IMAGES = "/v1/rack/images"
NODE_IMAGES = "/v1/node/images"
IMAGE_FILES = "/images"

IMAGE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
MAX_REPLICAS = 10000


def image_file_name(image: str) -> str:
    return f"{image}.img"


@dataclasses.dataclass(frozen=True)
class RequestRef:
    """Which DeploymentRequest; ``uid`` is the idempotency key of every step."""

    uid: str
    namespace: str
    name: str

    def __post_init__(self) -> None:
        if not (self.uid and self.namespace and self.name):
            raise ValueError("uid, namespace and name must not be empty")


@dataclasses.dataclass(frozen=True)
class Order:
    """What the operator hands the coordinator: the request as the user wrote it."""

    request: RequestRef
    replicas: int
    instancetype: str
    image: str

    def __post_init__(self) -> None:
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise ValueError(f"replicas must be within 1..{MAX_REPLICAS}")
        if not self.instancetype:
            raise ValueError("instancetype must not be empty")
        if not IMAGE_NAME.match(self.image):
            raise ValueError(f"image {self.image!r} is not an image name")


@dataclasses.dataclass(frozen=True)
class OrderAccepted:
    coordinator: str


@dataclasses.dataclass(frozen=True)
class OfferAsk:
    """How many VMs of the order can you host? What you offer stays reserved for ``ttl_seconds``."""

    order: Order
    ttl_seconds: float

    def __post_init__(self) -> None:
        if not 0 < self.ttl_seconds <= 3600:
            raise ValueError("ttlSeconds must be within (0, 3600]")


@dataclasses.dataclass(frozen=True)
class NodeOffer:
    node: str
    rack: str
    endpoint: str
    count: int


@dataclasses.dataclass(frozen=True)
class RackOffers:
    rack: str
    leader: str
    offers: list[NodeOffer]
    unanswered: list[str]  # members that did not answer in time (they reserved nothing we know of)


@dataclasses.dataclass(frozen=True)
class Commit:
    """Take VMs ``start .. start+count-1`` of the order, out of what you reserved."""

    order: Order
    start: int
    count: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.count < 1 or self.start + self.count > self.order.replicas:
            raise ValueError("start/count must select VMs within the order's replicas")


@dataclasses.dataclass(frozen=True)
class ImageHolder:
    node: str
    rack: str
    url: str


@dataclasses.dataclass(frozen=True)
class CommitAnswer:
    node: str
    holders: list[ImageHolder]
    image_lookup_seconds: float


@dataclasses.dataclass(frozen=True)
class RequestKey:
    uid: str


@dataclasses.dataclass(frozen=True)
class LocateAsk:
    image: str
    redundancy: int
    request_uid: str = ""  # only to follow one request across the logs

    def __post_init__(self) -> None:
        if not IMAGE_NAME.match(self.image):
            raise ValueError(f"image {self.image!r} is not an image name")
        if self.redundancy < 1:
            raise ValueError("redundancy must be at least 1")


@dataclasses.dataclass(frozen=True)
class Holders:
    image: str
    holders: list[ImageHolder]
