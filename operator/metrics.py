"""The operator's metrics, in a registry of its own (``rackmesh/metrics.py`` has the shared parts and ``/metrics``).

    rackmesh_deployment_requests{phase}      gauge    the DeploymentRequests the operator watches, by phase
    rackmesh_zookeeper_session_state{state}  gauge    (shared)
    rackmesh_peer_calls_total{route, code}   counter  (shared) calls the operator made to agents

Requests by phase are counted at scrape time from the operator's watch-fed index of them.
"""

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rackmesh.metrics import PeerCalls, ZooKeeperSession
from rackmesh_operator.status import Phase


class _RequestPhases(Collector):
    def __init__(self, phases: Mapping[str, Collection[Any]]) -> None:
        self._phases = phases

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily("rackmesh_deployment_requests", "DeploymentRequests the operator watches, by "
                                                                  "status.phase (Pending until it has one).",
                                  labels=["phase"])
        for phase in Phase:
            gauge.add_metric([str(phase)], len(self._phases.get(str(phase), ())))
        yield gauge


class OperatorMetrics:
    """``phases``: phase -> the requests in it (the handlers' kopf index ``requests_by_phase``)."""

    def __init__(self, phases: Mapping[str, Collection[Any]]) -> None:
        self.registry = CollectorRegistry()
        self.zookeeper = ZooKeeperSession()
        self.registry.register(self.zookeeper)
        self.peer_calls = PeerCalls(self.registry)
        self.registry.register(_RequestPhases(phases))
