"""The agent's metrics, in a registry of its own (``rackmesh/metrics.py`` has the shared parts and ``/metrics``).

    rackmesh_handshake_duration_seconds      histogram  a coordinator's handshakes (offers asked until decided)
    rackmesh_image_lookup_duration_seconds   histogram  a coordinator's image lookups (storage leader asked)
    rackmesh_vm_write_duration_seconds       histogram  one VirtualMachine written (created, or found ours)
    rackmesh_vms_written_total               counter    VirtualMachines this agent created
    rackmesh_reservations                    gauge      requests this node holds room for
    rackmesh_reserved_vms                    gauge      VMs' room held (offered, or committed and not written)
    rackmesh_reserved_cpu_cores              gauge      the cpu of that room
    rackmesh_reserved_memory_bytes           gauge      the memory of that room
    rackmesh_rack_leader{role, rack}         gauge      1 while this agent leads its rack for the role
    rackmesh_zookeeper_session_state{state}  gauge      (shared)
    rackmesh_peer_calls_total{route, code}   counter    (shared) calls this agent made to others
    rackmesh_peer_calls_served_total{route, code}  counter  calls this agent's API answered

Reservations and leadership are read from the agent at scrape time.
"""

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rackmesh.metrics import DURATION_BUCKETS, PeerCalls, ZooKeeperSession

if TYPE_CHECKING:
    from rackmesh_node_agent.agent import Agent

UNMATCHED_ROUTE = "unmatched"  # the route label of a call no route took (404, 405)


class VmWrites:
    """What ``vms.writer`` counts: each write's duration, and the VMs it created (one that existed is not)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram("rackmesh_vm_write_duration_seconds",
                                 "One VirtualMachine written: created, or found to exist as this request's.",
                                 buckets=DURATION_BUCKETS, registry=registry)
        self.written = Counter("rackmesh_vms_written", "VirtualMachines this agent created.", registry=registry)


class _AgentState(Collector):
    """Reservations and leadership, as the agent holds them now."""

    def __init__(self, agent: "Agent") -> None:
        self._agent = agent

    def collect(self) -> Iterable[Metric]:
        yield from self._reservations()
        yield self._leadership()

    def _reservations(self) -> Iterable[Metric]:
        families = {
            "requests": GaugeMetricFamily("rackmesh_reservations", "Requests this node holds room for."),
            "vms": GaugeMetricFamily("rackmesh_reserved_vms", "VMs' room this node holds: offered, or committed "
                                                               "and not written yet."),
            "cpu": GaugeMetricFamily("rackmesh_reserved_cpu_cores", "The cpu of the room this node holds."),
            "memory": GaugeMetricFamily("rackmesh_reserved_memory_bytes", "The memory of the room this node holds."),
        }
        capacity = self._agent.capacity
        if capacity is None:
            requests = vms = cpu = memory = 0.0
        else:
            held = capacity.reservations.held(capacity.look()[1])
            requests, vms = held.requests, held.vms
            cpu, memory = held.resources.cpu_millis / 1000, held.resources.memory_bytes
        for name, value in (("requests", requests), ("vms", vms), ("cpu", cpu), ("memory", memory)):
            families[name].add_metric([], value)
        return families.values()

    def _leadership(self) -> Metric:
        gauge = GaugeMetricFamily("rackmesh_rack_leader", "1 while this agent leads its rack for the role (and the "
                                                          "ZooKeeper session is known alive), else 0.",
                                  labels=["role", "rack"])
        node = self._agent.identity
        if node is not None:
            for role in node.roles:
                gauge.add_metric([str(role), node.rack], float(self._agent.leads(role)))
        return gauge


class AgentMetrics:
    def __init__(self, agent: "Agent") -> None:
        self.registry = CollectorRegistry()
        self.zookeeper = ZooKeeperSession()
        self.registry.register(self.zookeeper)
        self.peer_calls = PeerCalls(self.registry)
        self._served = Counter("rackmesh_peer_calls_served", "Calls this agent's API answered, by route (as "
                               f"declared; {UNMATCHED_ROUTE}: none matched) and status code.", ["route", "code"],
                               registry=self.registry)
        self.handshake_seconds = Histogram("rackmesh_handshake_duration_seconds",
                                           "A coordinator's placement handshakes: offers asked of every rack "
                                           "leader until decided (or found short).",
                                           buckets=DURATION_BUCKETS, registry=self.registry)
        self.image_lookup_seconds = Histogram("rackmesh_image_lookup_duration_seconds",
                                              "A coordinator's image lookups: storage leaders asked until one "
                                              "answered with holders (or none could).",
                                              buckets=DURATION_BUCKETS, registry=self.registry)
        self.vm_writes = VmWrites(self.registry)
        self.registry.register(_AgentState(agent))

    def served(self, route: str | None, status: int) -> None:
        self._served.labels(route or UNMATCHED_ROUTE, str(status)).inc()
