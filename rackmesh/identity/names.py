"""Who a certificate names: the identities of rackmesh's components, as subject and DNS name.

Every agent's certificate carries the same subject (``CN=agent,OU=rackmesh``) and its node in the DNS name
``<node>.agent.rackmesh``: ZooKeeper's x509 authentication ACLs a subject, so one subject per role keeps
its ACLs short, while the HTTP peers check the DNS name, which names the node (Kafka names its brokers to
ZooKeeper the same way).
"""

import dataclasses
import enum
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

ORGANIZATIONAL_UNIT = "rackmesh"
DNS_SUFFIX = ".rackmesh"


class Role(enum.StrEnum):
    AGENT = "agent"
    OPERATOR = "operator"
    ZOOKEEPER = "zookeeper"
    METRICS = "metrics"  # the scraper (Prometheus): it may read every component's /metrics, nothing else


@dataclasses.dataclass(frozen=True)
class Identity:
    role: Role
    node: str = ""  # agents only: the Node the certificate speaks for

    def __post_init__(self) -> None:
        if (self.role is Role.AGENT) != bool(self.node):
            raise ValueError(f"an identity names a node exactly when it is an agent's: {self!r}")

    @classmethod
    def agent(cls, node: str) -> "Identity":
        return cls(Role.AGENT, node)

    @property
    def dns_name(self) -> str:
        """What TLS clients verify the peer against: ``<node>.agent.rackmesh``, ``operator.rackmesh``."""
        return f"{self.node}.{self.role}{DNS_SUFFIX}" if self.node else f"{self.role}{DNS_SUFFIX}"

    @property
    def subject(self) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ORGANIZATIONAL_UNIT),
                          x509.NameAttribute(NameOID.COMMON_NAME, str(self.role))])

    @property
    def zookeeper_id(self) -> str:
        """The id ZooKeeper's x509 provider gives a client with this certificate (the subject, RFC 4514)."""
        return self.subject.rfc4514_string()

    def __str__(self) -> str:
        return self.dns_name

    @classmethod
    def from_dns_name(cls, name: str) -> "Identity | None":
        """The identity a certificate's DNS name stands for; None for a name that is not rackmesh's."""
        if not name.endswith(DNS_SUFFIX):
            return None
        node, _, role = name.removesuffix(DNS_SUFFIX).rpartition(".")
        try:
            return cls(Role(role), node)
        except ValueError:
            return None

    @classmethod
    def of_dns_names(cls, names: Iterable[str]) -> "Identity | None":
        """The identity a certificate with these DNS names stands for: its one rackmesh name, else None."""
        identities = {identity for identity in map(cls.from_dns_name, names) if identity is not None}
        return identities.pop() if len(identities) == 1 else None

    @classmethod
    def of_peer(cls, peercert: dict[str, Any] | None) -> "Identity | None":
        """The identity in a verified peer certificate (``SSLSocket.getpeercert()``)."""
        return cls.of_dns_names(value for kind, value in (peercert or {}).get("subjectAltName", ()) if kind == "DNS")
