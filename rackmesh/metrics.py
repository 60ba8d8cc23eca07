"""Prometheus metrics: what every component's metrics share, the metrics both sides have, and ``/metrics``.

Each component has its own ``CollectorRegistry``, passed to what updates it: tests and the benchmark run many
agents in one process, and each agent's values are its own. Counters and histograms are updated where the
event happens; gauges of state a component keeps anyway (reservations, leadership, requests by phase, the
ZooKeeper session) are collected from that state at scrape time, so they cannot drift from it. No label
takes a request's uid or a VM's name: label values come from small fixed sets (routes, codes, phases, roles,
the agent's own rack).

``/metrics`` is served on its own port (``Settings.metrics_port``) over HTTPS with the component's own
certificate, to the scraper's certificate only (``SCRAPER``, from ``rackmesh ca issue-scraper``): 401 without
a client certificate, 403 for any other identity (docs/security.md).
"""

import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from rackmesh.identity.names import Identity, Role
from rackmesh.tls_site import TlsSite

logger = logging.getLogger(__name__)
SCRAPER = Identity(Role.METRICS)
PATH = "/metrics"
# From an API write (milliseconds) to a handshake over a thousand nodes (tens of seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UNREACHABLE = "unreachable"  # the code of a peer call that got no answer (refused, reset, timed out)
# A scrape is answered at once; a client still in the TLS handshake, or idle, after this is holding a connection.
HANDSHAKE_TIMEOUT = 20.0
KEEPALIVE_TIMEOUT = 20.0
SESSION_STATES = ("connected", "suspended", "lost")


class ZooKeeperSession(Collector):
    """``rackmesh_zookeeper_session_state{state}``: 1 for the state the component's session is in, 0 for the
    others (all 0 before it has one). ``record`` is kazoo's listener, called on its thread: it only swaps a
    string, which a scrape reads whole."""

    def __init__(self) -> None:
        self.state = ""

    def record(self, state: str) -> None:
        self.state = state.lower()  # kazoo's KazooState values: CONNECTED, SUSPENDED, LOST

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily("rackmesh_zookeeper_session_state",
                                  "1 for the state of this component's ZooKeeper session "
                                  "(connected, suspended, lost), 0 for the others.", labels=["state"])
        state = self.state
        for name in SESSION_STATES:
            gauge.add_metric([name], float(name == state))
        yield gauge


class PeerCalls:
    """``rackmesh_peer_calls_total{route, code}``: the calls this component made to agents, by route and the
    answer's status code (``unreachable``: no answer)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._total = Counter("rackmesh_peer_calls", "Calls made to agents, by route and the answer's status code "
                              f"({UNREACHABLE}: no answer).", ["route", "code"], registry=registry)

    def record(self, route: str, status: int | None) -> None:
        self._total.labels(route, str(status) if status else UNREACHABLE).inc()


def _error(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"reason": reason, "message": message}, status=status)


@web.middleware
async def _only_the_scraper(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Only the scraper reads; every answer but the metrics themselves is JSON ``{reason, message}``."""
    who = Identity.of_peer(request.transport.get_extra_info("peercert") if request.transport else None)
    if who is None:
        return _error(401, "Unauthenticated", "metrics need a client certificate from the rackmesh CA")
    if who != SCRAPER:
        return _error(403, "Forbidden", f"{who} may not read metrics: only the scraper ({SCRAPER}) may")
    try:
        return await handler(request)
    except web.HTTPException as exc:  # aiohttp's own: unknown path, wrong method
        return _error(exc.status, type(exc).__name__.removeprefix("HTTP"), exc.text or exc.reason)


class MetricsServer:
    """``GET /metrics`` of ``registry``, in Prometheus' text format (OpenMetrics when the scraper prefers it)."""

    def __init__(self, registry: CollectorRegistry, ssl_context: ssl.SSLContext) -> None:
        self.registry = registry
        self._ssl_context = ssl_context
        app = web.Application(middlewares=[_only_the_scraper])
        app.router.add_get(PATH, self._metrics)
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT)
        self.port = 0

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self.registry), headers={"Content-Type": content_type})

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0: one the kernel picks, then in ``port``)."""
        await self._runner.setup()
        site = TlsSite(self._runner, host, port, self._ssl_context, HANDSHAKE_TIMEOUT)
        await site.start()
        self.port = site.port
        logger.info("serving metrics", extra={"bind": host, "port": self.port})

    async def stop(self) -> None:
        await self._runner.cleanup()
