"""``/metrics`` (rackmesh/metrics.py ``MetricsServer``), served over real TLS on loopback with a component's
certificate, as the agents and the operator serve it.

Case matrix:
  - the scraper's certificate (``rackmesh ca issue-scraper``'s identity): 200, Prometheus' text format 0.0.4 with
    the registry's metrics; OpenMetrics when the scraper asks for it (as Prometheus does);
  - no client certificate: 401 Unauthenticated; an agent's or the operator's certificate: 403 Forbidden naming
    who may read; a certificate of another CA: the TLS handshake fails;
  - another path or method, as the scraper: a JSON 404 / 405;
  - port 0: the kernel picks one and the server says which.
"""

import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from rackmesh.identity.authority import CertificateAuthority
from rackmesh.identity.credentials import Credentials
from rackmesh.identity.names import Identity, Role
from rackmesh.metrics import SCRAPER, MetricsServer
from tests.support.pki import Pki

HOST = "127.0.0.1"
SERVER = Identity.agent("c-0-0")


@pytest.fixture
async def served(pki: Pki) -> AsyncIterator[MetricsServer]:
    registry = CollectorRegistry()
    Counter("rackmesh_test_events", "Events counted for the test.", registry=registry).inc(3)
    server = MetricsServer(registry, pki.credentials(SERVER).server_context())
    await server.start(HOST, 0)
    yield server
    await server.stop()


async def get(server: MetricsServer, context: ssl.SSLContext, path: str = "/metrics", method: str = "GET",
              accept: str = "") -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.request(
            method, f"https://{HOST}:{server.port}{path}", ssl=context, server_hostname=SERVER.dns_name,
            headers={"Accept": accept} if accept else {}) as response:
        return response.status, response.headers["Content-Type"], await response.text()


def anonymous(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=pki.ca.cert_pem.decode())


async def test_the_scraper_reads_the_metrics_in_prometheus_text_format(served: MetricsServer, pki: Pki) -> None:
    assert served.port > 0
    status, content_type, text = await get(served, pki.credentials(SCRAPER).client_context())
    assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
    samples = {sample.name: sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples}
    assert samples["rackmesh_test_events_total"] == 3


async def test_openmetrics_when_the_scraper_prefers_it(served: MetricsServer, pki: Pki) -> None:
    status, content_type, text = await get(served, pki.credentials(SCRAPER).client_context(),
                                           accept="application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")


async def test_no_client_certificate_is_401(served: MetricsServer, pki: Pki) -> None:
    status, content_type, text = await get(served, anonymous(pki))
    assert (status, content_type) == (401, "application/json; charset=utf-8")
    assert '"reason": "Unauthenticated"' in text and "rackmesh_test_events" not in text


@pytest.mark.parametrize("caller", [Identity.agent("c-0-1"), Identity(Role.OPERATOR)], ids=str)
async def test_any_other_identity_is_403(served: MetricsServer, pki: Pki, caller: Identity) -> None:
    status, _, text = await get(served, pki.credentials(caller).client_context())
    assert status == 403
    assert f"{caller} may not read metrics: only the scraper (metrics.rackmesh) may" in text


async def test_a_certificate_of_another_ca_fails_the_handshake(served: MetricsServer, pki: Pki,
                                                               tmp_path: Path) -> None:
    stranger = Credentials.issued(CertificateAuthority.create(), SCRAPER, tmp_path / "stranger",
                                  datetime.timedelta(hours=1), [])
    context = stranger.client_context()
    context.load_verify_locations(cadata=pki.ca.cert_pem.decode())  # it trusts the server: only its own cert is off
    with pytest.raises(aiohttp.ClientError):
        await get(served, context)


@pytest.mark.parametrize(("method", "path", "status", "reason"), [
    ("GET", "/v1/view", 404, "NotFound"), ("POST", "/metrics", 405, "MethodNotAllowed")])
async def test_other_paths_and_methods_get_a_json_answer(served: MetricsServer, pki: Pki, method: str, path: str,
                                                         status: int, reason: str) -> None:
    answered, content_type, text = await get(served, pki.credentials(SCRAPER).client_context(), path, method)
    assert (answered, content_type) == (status, "application/json; charset=utf-8")
    assert f'"reason": "{reason}"' in text
