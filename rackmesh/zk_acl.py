"""Who may touch rackmesh's znodes: the one ACL everything under the ZooKeeper root gets.

With mutual TLS, ZooKeeper's x509 provider names a session by its certificate's subject, and every agent
shares one subject, so the ACL is two entries: the agents and the operator, each with every permission
(the operator deletes the request records agents wrote). A client with any other certificate, even one
from rackmesh's CA (the ZooKeeper servers' own), may neither read nor write a node that carries it.
"""

from kazoo.security import ACL, make_acl

from rackmesh.identity.names import Identity, Role

SCHEME = "x509"


def rackmesh_acl() -> list[ACL]:
    """ALL for ``x509:CN=agent,OU=rackmesh`` and ``x509:CN=operator,OU=rackmesh``."""
    # An agent's subject leaves its node out (that is in the DNS name), so any node gives the same id.
    return [make_acl(SCHEME, identity.zookeeper_id, all=True)
            for identity in (Identity.agent("any"), Identity(Role.OPERATOR))]
