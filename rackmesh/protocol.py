"""The peer-to-peer protocol between the operator and the agents: routes and messages.

    operator     --Order-------------> coordinator            POST /v1/orders           202 OrderAccepted
    coordinator  --OfferAsk----------> compute rack leader    POST /v1/rack/offers      200 RackOffers
    rack leader  --OfferAsk----------> compute agent          POST /v1/node/offers      200 NodeOffer (reserved)
    coordinator  --Commit------------> compute agent          POST /v1/node/commits     200 CommitAnswer
    coordinator  --RackRelease-------> compute rack leader    POST /v1/rack/releases    200 RackReleased (unused offers)
    rack leader, coordinator --RequestKey--> compute agent    POST /v1/node/releases    200 (reservation dropped)
    coordinator  --Deployment--------> compute agent          POST /v1/node/deployments 200|202 Deployed
    coordinator, operator --Removal--> compute agent          POST /v1/node/removals    200 Removed (its own VMs only)
    coordinator  --LocateAsk---------> storage leader         POST /v1/images/locate    200 Holders | 409
    storage leader --LocateAsk-------> storage rack leader    POST /v1/rack/images      200 Holders (its rack)
    storage rack leader --LocateAsk--> storage agent          POST /v1/node/images      200 Holders (0 or 1)
    CDI / anyone                        storage agent          GET  /images/<image>.img  the image, with Range
    any agent    --Ping--------------> compute rack leader    POST /v1/rack/pings       200 RackPongs (reachability)
    rack leader  --Ping--------------> compute agent          POST /v1/node/pings       200 Pong
    agent, operator -----------------> any agent              GET  /v1/view             200 its capacity, leadership

Errors are JSON ``{reason, message}`` with a 4xx/5xx status (see ``node_agent/http_api.py``).

Every name a message carries is checked here, by the Kubernetes API's own rules, before any agent uses it:
names end up in API paths, ZooKeeper paths and file names.
"""

import dataclasses
import re
import urllib.parse

from rackmesh.labels import MAX_UID, is_dns_label, is_dns_subdomain, is_label_value, is_uid
from rackmesh.messages import shown

ORDERS = "/v1/orders"
RACK_OFFERS = "/v1/rack/offers"
NODE_OFFERS = "/v1/node/offers"
NODE_COMMITS = "/v1/node/commits"
NODE_RELEASES = "/v1/node/releases"
NODE_DEPLOYMENTS = "/v1/node/deployments"
NODE_REMOVALS = "/v1/node/removals"
IMAGE_LOCATIONS = "/v1/images/locate"
RACK_IMAGES = "/v1/rack/images"
NODE_IMAGES = "/v1/node/images"
RACK_PINGS = "/v1/rack/pings"
RACK_RELEASES = "/v1/rack/releases"
NODE_PINGS = "/v1/node/pings"
IMAGE_FILES = "/images"
IMAGE_FILE_ROUTE = IMAGE_FILES + "/{file}"  # GET <image>.img
VIEW = "/v1/view"

SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
IMAGE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\Z")  # the CRD's pattern for spec.image
MAX_IMAGE_NAME = 63  # the CRD's maxLength for spec.image
MAX_REPLICAS = 10000
MAX_REDUNDANCY = 100  # copies of one image a request may ask for
MAX_URL = 2048  # the CRD's maxLength for a holder's URL in status.imageCopies
MAX_GENERATION = 2**63 - 1  # metadata.generation is an int64
MAX_ZNODE_VERSION = 2**31 - 1  # a znode's version is an int32


def image_file_name(image: str) -> str:
    return f"{image}.img"


def is_image_name(value: str) -> bool:
    """An image name as the CRD allows it in ``spec.image``."""
    return len(value) <= MAX_IMAGE_NAME and IMAGE_NAME.match(value) is not None


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL of printable ASCII with a host, as a VM's disk source needs."""
    if len(value) > MAX_URL or not value.isascii() or not value.isprintable() or " " in value:
        return False
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def require(valid: bool, field: str, value: str, rule: str) -> None:
    """Raise the ``ValueError`` a message's ``__post_init__`` uses to refuse ``value`` of ``field``."""
    if not valid:
        raise ValueError(f"{field} {shown(value)} is not {rule}")


@dataclasses.dataclass(frozen=True)
class RequestRef:
    """Which DeploymentRequest; ``uid`` is the idempotency key of every step."""

    uid: str
    namespace: str
    name: str

    def __post_init__(self) -> None:
        require(is_uid(self.uid), "uid", self.uid, f"a uid (at most {MAX_UID} of A-Za-z0-9-_., alphanumeric at both "
                                                   "ends)")
        require(is_dns_label(self.namespace), "namespace", self.namespace, "a namespace name (a DNS-1123 label)")
        require(is_dns_subdomain(self.name), "name", self.name, "an object name (a DNS-1123 subdomain)")


def check_indices(indices: list[int]) -> None:
    if any(not 0 <= index < MAX_REPLICAS for index in indices) or len(set(indices)) != len(indices):
        raise ValueError(f"VM indices must be distinct and within 0..{MAX_REPLICAS - 1}")


@dataclasses.dataclass(frozen=True)
class Order:
    """What the operator hands the coordinator: the spec to converge to, and what it saw go missing.

    ``generation`` is the DeploymentRequest's ``metadata.generation`` this spec comes from. ``lost`` are
    VM indices the operator confirmed gone (deleted, or on a node that is gone); they count only if
    the request's record still has version ``basis``, the one the operator looked at, so a stale
    observation never re-places a VM twice.
    """

    request: RequestRef
    replicas: int
    instancetype: str
    image: str
    generation: int = 0
    lost: list[int] = dataclasses.field(default_factory=list)
    basis: int = -1

    def __post_init__(self) -> None:
        if not 0 <= self.replicas <= MAX_REPLICAS:
            raise ValueError(f"replicas must be within 0..{MAX_REPLICAS}")
        require(is_dns_subdomain(self.instancetype), "instancetype", self.instancetype,
                "an instancetype name (a DNS-1123 subdomain)")
        require(is_image_name(self.image), "image", self.image, f"an image name (the CRD's pattern, at most "
                                                                f"{MAX_IMAGE_NAME} characters)")
        if not 0 <= self.generation <= MAX_GENERATION:
            raise ValueError(f"generation must be within 0..{MAX_GENERATION}")
        if not -1 <= self.basis <= MAX_ZNODE_VERSION:
            raise ValueError(f"basis must be -1 or a znode version within 0..{MAX_ZNODE_VERSION}")
        check_indices(self.lost)


@dataclasses.dataclass(frozen=True)
class OrderAccepted:
    coordinator: str


@dataclasses.dataclass(frozen=True)
class NodeOffer:
    """``count`` VMs reserved for the asker; ``held`` more would fit but are held by other requests' offers
    (in flight: they are released or committed within moments), so a shortage there is worth a retry."""

    node: str
    rack: str
    endpoint: str
    count: int
    held: int = 0


@dataclasses.dataclass(frozen=True)
class RackOffers:
    rack: str
    leader: str
    offers: list[NodeOffer]
    unanswered: list[str]  # members that did not answer in time (they reserved nothing we know of)


@dataclasses.dataclass(frozen=True)
class RackRelease:
    """Release the request's offers on every member of the rack but ``keep`` (the nodes chosen): the rack
    leader's connections to its members are pooled, a coordinator's to a thousand agents would be new."""

    uid: str
    keep: list[str]

    def __post_init__(self) -> None:
        require(is_uid(self.uid), "uid", self.uid, "a uid")
        for node in self.keep:
            require(is_dns_subdomain(node), "keep", node, "a node name (a DNS-1123 subdomain)")


@dataclasses.dataclass(frozen=True)
class RackReleased:
    rack: str
    released: list[str]
    unanswered: list[str]


@dataclasses.dataclass(frozen=True)
class OfferAsk:
    """How many more VMs of the order can you host? What you offer stays reserved for ``ttl_seconds``."""

    order: Order
    wanted: int
    ttl_seconds: float

    def __post_init__(self) -> None:
        if not 1 <= self.wanted <= MAX_REPLICAS:
            raise ValueError(f"wanted must be within 1..{MAX_REPLICAS}")
        if not 0 < self.ttl_seconds <= 3600:
            raise ValueError("ttlSeconds must be within (0, 3600]")


@dataclasses.dataclass(frozen=True)
class Commit:
    """Take the VMs ``indices`` of the order, out of what you reserved."""

    order: Order
    indices: list[int]

    def __post_init__(self) -> None:
        if not self.indices:
            raise ValueError("a commit names at least one VM index")
        check_indices(self.indices)


@dataclasses.dataclass(frozen=True)
class ImageHolder:
    node: str
    rack: str
    url: str
    sha256: str = ""  # of the holder's copy, lowercase hex; the importer checks the file against it

    def __post_init__(self) -> None:
        require(is_dns_subdomain(self.node), "node", self.node, "a node name (a DNS-1123 subdomain)")
        require(is_label_value(self.rack), "rack", self.rack, "a rack (a label value)")
        require(is_http_url(self.url), "url", self.url, f"an http(s) URL of at most {MAX_URL} characters")
        require(self.sha256 == "" or SHA256.match(self.sha256) is not None, "sha256", self.sha256,
                "a sha256 (64 lowercase hex digits)")


@dataclasses.dataclass(frozen=True)
class CommitAnswer:
    node: str


@dataclasses.dataclass(frozen=True)
class RequestKey:
    uid: str

    def __post_init__(self) -> None:
        require(is_uid(self.uid), "uid", self.uid, "a uid")


@dataclasses.dataclass(frozen=True)
class Deployment:
    """Write VMs ``indices`` of the order, with disks from ``holders`` (what you committed to)."""

    order: Order
    indices: list[int]
    holders: list[ImageHolder]

    def __post_init__(self) -> None:
        if not self.indices or not self.holders:
            raise ValueError("a deployment names at least one VM index and one image holder")
        check_indices(self.indices)


@dataclasses.dataclass(frozen=True)
class Deployed:
    """``done``: every VM of the deployment exists (200); else the agent goes on writing (202), ask again."""

    node: str
    written: int
    done: bool


@dataclasses.dataclass(frozen=True)
class Removal:
    """Delete VMs ``indices`` of the request, those of them that are on your node."""

    request: RequestRef
    indices: list[int]

    def __post_init__(self) -> None:
        check_indices(self.indices)


@dataclasses.dataclass(frozen=True)
class Removed:
    node: str
    deleted: list[int]  # of the indices asked, those this node deleted (the others were not here)


@dataclasses.dataclass(frozen=True)
class LocateAsk:
    image: str
    redundancy: int
    request: RequestRef  # whose lookup it is, for the storage agents' logs

    def __post_init__(self) -> None:
        require(is_image_name(self.image), "image", self.image, f"an image name (the CRD's pattern, at most "
                                                                f"{MAX_IMAGE_NAME} characters)")
        if not 1 <= self.redundancy <= MAX_REDUNDANCY:
            raise ValueError(f"redundancy must be within 1..{MAX_REDUNDANCY}")


@dataclasses.dataclass(frozen=True)
class Holders:
    image: str
    holders: list[ImageHolder]


@dataclasses.dataclass(frozen=True)
class Ping:
    """An empty round over the placement tree: who can be reached, and how fast."""


@dataclasses.dataclass(frozen=True)
class Pong:
    node: str


@dataclasses.dataclass(frozen=True)
class RackPongs:
    rack: str
    leader: str
    answered: list[str]
    unanswered: list[str]
