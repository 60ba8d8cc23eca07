"""``GET /metrics``: request counts in Prometheus' text format, named and labelled as kube-apiserver's.

Docs: https://kubernetes.io/docs/reference/instrumentation/metrics/ (``apiserver_request_total``,
``apiserver_longrunning_requests``). Labels come from the request as k8s.io/apiserver's
``RequestInfoFactory`` reads a path (``/apis/<group>/<version>/namespaces/<ns>/<resource>/<name>/
<subresource>``) and the verb as its metrics report it: GET, LIST, WATCH, POST, PUT, PATCH (APPLY
for server-side apply), DELETE, DELETECOLLECTION. Requests outside the resource API (discovery,
OpenAPI, health) carry the HTTP method as verb and their path as ``subresource``, as kube-apiserver
records ``/healthz``. Only the labels kube-apiserver has and the tests need are kept (no ``scope``,
``component``, ``dry_run``).

Each :class:`ApiMetrics` has its own ``CollectorRegistry`` (several servers share a test process)
and keeps the counts in plain dicts, which both the exposition and :meth:`ApiMetrics.requests`
read, so in-process callers need not parse the text.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

__all__ = ["ApiMetrics", "RequestLabels", "request_labels"]

PATH = "/metrics"  # not counted itself, so scraping leaves the counts alone
LABELS = ("verb", "group", "version", "resource", "subresource")
_NAMESPACE_SUBRESOURCES = ("status", "finalize")  # /namespaces/<ns>/<these> are the namespace's own
_APPLY_PATCH = "application/apply-patch+yaml"
_METHOD_VERBS = {"POST": "POST", "GET": "GET", "HEAD": "GET", "PUT": "PUT", "PATCH": "PATCH", "DELETE": "DELETE"}


@dataclasses.dataclass(frozen=True)
class RequestLabels:
    """The labels a request is counted under (all but the response code)."""

    verb: str
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""

    def values(self) -> tuple[str, ...]:
        return (self.verb, self.group, self.version, self.resource, self.subresource)


def _is_watch(value: str | None) -> bool:
    """``?watch=`` as the emulator reads it (so the metric names what was served)."""
    return value in ("true", "1")


def request_labels(method: str, path: str, query: Mapping[str, str], content_type: str = "") -> RequestLabels:
    """What a request is counted as, from its method, path and query alone (as RequestInfoFactory does)."""
    method = method.upper()
    parts = [part for part in path.split("/") if part]
    non_resource = RequestLabels(method, subresource="/" + "/".join(parts))
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    rest = parts[1:]
    group = ""
    if parts[0] == "apis":
        if len(rest) < 3:
            return non_resource  # /apis/<group>/<version> is discovery
        group, rest = rest[0], rest[1:]
    version, rest = rest[0], rest[1:]
    watch_prefix = rest[0] == "watch" and len(rest) > 1  # the deprecated /watch/... paths
    if watch_prefix:
        rest = rest[1:]
    if rest[0] == "namespaces" and len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
        rest = rest[2:]  # /namespaces/<ns>/<resource>/...: the resource is what follows
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if watch_prefix or (method == "GET" and _is_watch(query.get("watch"))):
        verb = "WATCH"
    elif method == "GET" and not name:
        verb = "LIST"
    elif method == "DELETE" and not name:
        verb = "DELETECOLLECTION"
    elif method == "PATCH" and content_type.split(";")[0].strip() == _APPLY_PATCH:
        verb = "APPLY"
    else:
        verb = _METHOD_VERBS.get(method, method)
    return RequestLabels(verb, group, version, resource, subresource)


class _Collector(Collector):
    def __init__(self, metrics: ApiMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        total = CounterMetricFamily(
            "apiserver_request_total",
            "Counter of apiserver requests broken out for each verb, API group, version, resource, "
            "subresource and HTTP response code.",
            labels=[*LABELS, "code"],
        )
        for (labels, code), count in list(self._metrics.counts.items()):
            total.add_metric([*labels.values(), str(code)], count)
        yield total
        running = GaugeMetricFamily(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests (watches) broken out by verb, API group, "
            "version, resource and subresource.",
            labels=list(LABELS),
        )
        for labels, count in list(self._metrics.longrunning.items()):
            running.add_metric(list(labels.values()), count)
        yield running


class ApiMetrics:
    """The API server's request metrics: counted by the emulator, exposed at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.counts: collections.Counter[tuple[RequestLabels, int]] = collections.Counter()
        self.longrunning: collections.Counter[RequestLabels] = collections.Counter()
        self.registry.register(_Collector(self))

    def record(self, labels: RequestLabels, code: int) -> None:
        """Count one answered request (when it is done: a watch when its stream ends, as kube does)."""
        self.counts[(labels, code)] += 1

    @contextlib.contextmanager
    def running(self, labels: RequestLabels) -> Iterator[None]:
        """Hold a long-running request (a watch) in ``apiserver_longrunning_requests`` while it lasts."""
        self.longrunning[labels] += 1
        try:
            yield
        finally:
            self.longrunning[labels] -= 1
            if not self.longrunning[labels]:
                del self.longrunning[labels]

    def requests(self, **match: str | int) -> int:
        """How many answered requests have all the given labels, e.g. ``requests(verb="LIST",
        resource="nodes", code=200)``; no labels: all requests."""
        unknown = set(match) - {*LABELS, "code"}
        if unknown:
            raise TypeError(f"unknown labels: {sorted(unknown)}")
        code = match.pop("code", None)
        found = 0
        for (labels, answered), count in self.counts.items():
            if code is not None and int(code) != answered:
                continue
            if all(getattr(labels, key) == value for key, value in match.items()):
                found += count
        return found

    def watches(self, **match: str) -> int:
        """How many watches (of the given labels) are open now."""
        return sum(
            count
            for labels, count in self.longrunning.items()
            if all(getattr(labels, key) == value for key, value in match.items())
        )

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The body and content type a scrape with this ``Accept`` header gets: Prometheus' text format
        0.0.4 by default (as kube-apiserver serves), OpenMetrics when the scraper prefers it."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
