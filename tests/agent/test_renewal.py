"""Certificates are short-lived and renewed without a restart.

Case matrix (real agents, mutual TLS): with 4-second certificates, every agent renews its own several
times while running, each new certificate names the same node, and a request placed after the first
certificates have expired goes through the handshake (new connections present the renewed certificates,
pooled ones keep working).
"""

import datetime

import pytest

from rackmesh.identity.names import Identity
from tests.agent.test_handshake import leader_of, settled_round, stored_order, topology, vms_of
from tests.support.waiting import async_eventually

pytestmark = pytest.mark.zookeeper
LIFETIME = 4.0


async def test_agents_renew_their_certificates_while_serving(mesh):
    mesh = await mesh(topology(), cert_lifetime=LIFETIME)
    first = {node: agent.credentials.cert for node, agent in mesh.agents.items()}
    first_expiry = max(cert.not_valid_after_utc for cert in first.values() if cert is not None)

    async def renewed_past_first_expiry() -> bool:
        now = datetime.datetime.now(datetime.UTC)
        return now > first_expiry and all(agent.credentials.renewals >= 2 for agent in mesh.agents.values())

    await async_eventually(renewed_past_first_expiry, timeout=6 * LIFETIME, interval=0.2,
                           what="every agent renewed twice, past the first certificates' expiry")
    for node, agent in mesh.agents.items():
        assert agent.credentials.cert is not None and agent.credentials.cert.serial_number != first[node].serial_number
        assert agent.credentials.identity == Identity.agent(node)
        assert agent.credentials.expires_at > datetime.datetime.now(datetime.UTC)

    web = await stored_order(mesh, "after-renewal", 4)
    record, _ = await settled_round(mesh, leader_of(mesh), web)
    assert sorted(record.indices()) == [0, 1, 2, 3]
    assert len(await vms_of(mesh, "after-renewal")) == 4
