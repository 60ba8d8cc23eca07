"""The ServiceMonitors (manifests/monitoring) scrape what the workloads serve, the way the components require.

Case matrix:
  - the build uses only fields of the Prometheus Operator's monitoring.coreos.com/v1 ServiceMonitor API (its CRD
    cannot be had offline, so the fields used are checked against that API's names, strictly: a misspelt or
    unknown field fails), in rackmesh-system;
  - each ServiceMonitor selects exactly one Service of each workload build, in its namespace, whose port of the
    endpoint's name targets the selected pods' container port ``metrics``, which is the port the container's
    settings (RACKMESH_METRICS_PORT) serve on;
  - HTTPS on rackmesh.metrics.PATH; the CA from the ConfigMap rackmesh-ca, the client certificate and key from
    the Secret rackmesh-metrics-scraper (both of which hack/install.sh makes); the operator's server name is
    its identity's (its certificate names no address), the agents' is their pod IP (which their certificates
    name);
  - and the field check bites: a misspelt field fails it.
"""

import copy
from typing import Any

import pytest

from rackmesh.config import Settings
from rackmesh.identity.names import Identity, Role
from rackmesh.metrics import PATH
from tests.manifests.support import (
    MONITORING_BUILD,
    NAMESPACE,
    WORKLOAD_BUILDS,
    Doc,
    build,
    containers,
    label_selector_matches,
    workloads,
)
from tests.manifests.test_properties import configured_env

pytestmark = [pytest.mark.kubectl]
SCRAPER_SECRET = "rackmesh-metrics-scraper"
CA_CONFIGMAP = "rackmesh-ca"

# The fields of monitoring.coreos.com/v1 ServiceMonitor this build may use, as the Prometheus Operator's API
# reference names them (a nested dict: a field's own fields; None: a value of any shape, e.g. a label selector
# or a list of strings).
SELECTOR = {"matchLabels": None, "matchExpressions": None}
SECRET_OR_CONFIGMAP = {"secret": {"name": None, "key": None, "optional": None},
                       "configMap": {"name": None, "key": None, "optional": None}}
RELABELING = {"sourceLabels": None, "separator": None, "targetLabel": None, "regex": None, "modulus": None,
              "replacement": None, "action": None}
SERVICE_MONITOR_API: dict[str, Any] = {
    "apiVersion": None, "kind": None,
    "metadata": {"name": None, "namespace": None, "labels": None, "annotations": None},
    "spec": {
        "selector": SELECTOR, "namespaceSelector": {"any": None, "matchNames": None}, "jobLabel": None,
        "targetLabels": None, "podTargetLabels": None, "sampleLimit": None,
        "endpoints": [{
            "port": None, "targetPort": None, "path": None, "scheme": None, "params": None, "interval": None,
            "scrapeTimeout": None, "honorLabels": None, "honorTimestamps": None, "followRedirects": None,
            "enableHttp2": None, "filterRunning": None, "relabelings": [RELABELING],
            "metricRelabelings": [RELABELING],
            "tlsConfig": {"ca": SECRET_OR_CONFIGMAP, "cert": SECRET_OR_CONFIGMAP,
                          "keySecret": {"name": None, "key": None, "optional": None}, "serverName": None,
                          "insecureSkipVerify": None, "minVersion": None, "maxVersion": None},
        }],
    },
}


def unknown_fields(value: Any, api: Any, path: str = "") -> list[str]:
    if api is None:
        return []
    if isinstance(api, list):
        return [error for index, item in enumerate(value) for error in unknown_fields(item, api[0], f"{path}[{index}]")]
    return [error for key, item in value.items()
            for error in ([f"{path}.{key}"] if key not in api else unknown_fields(item, api[key], f"{path}.{key}"))]


def service_monitors() -> list[Doc]:
    return [doc for doc in build(MONITORING_BUILD) if doc["kind"] == "ServiceMonitor"]


def test_the_monitors_use_only_the_service_monitor_api() -> None:
    monitors = service_monitors()
    assert {doc["metadata"]["name"] for doc in monitors} == {"rackmesh-agent", "rackmesh-operator"}
    assert {doc["apiVersion"] for doc in build(MONITORING_BUILD)} == {"monitoring.coreos.com/v1"}
    for doc in monitors:
        assert unknown_fields(doc, SERVICE_MONITOR_API) == [], doc["metadata"]["name"]
        assert doc["metadata"]["namespace"] == NAMESPACE


def test_the_field_check_bites() -> None:
    broken = copy.deepcopy(service_monitors()[0])
    broken["spec"]["endpoints"][0]["tlsConfig"]["keySecrets"] = broken["spec"]["endpoints"][0]["tlsConfig"].pop(
        "keySecret")
    assert unknown_fields(broken, SERVICE_MONITOR_API) == [".spec.endpoints[0].tlsConfig.keySecrets"]


@pytest.mark.parametrize("directory", WORKLOAD_BUILDS)
@pytest.mark.parametrize(("monitor", "workload"), [("rackmesh-agent", "rackmesh-agent"),
                                                   ("rackmesh-operator", "rackmesh-operator")])
def test_each_monitor_scrapes_the_metrics_port_its_pods_serve(directory: str, monitor: str, workload: str) -> None:
    docs = build(directory)
    doc = next(doc for doc in service_monitors() if doc["metadata"]["name"] == monitor)
    spec = doc["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selected = [service for service in docs if service["kind"] == "Service"
                and service["metadata"]["namespace"] == NAMESPACE
                and label_selector_matches(spec["selector"], service["metadata"].get("labels", {}))]
    assert len(selected) == 1, [service["metadata"]["name"] for service in selected]
    (endpoint,) = spec["endpoints"]
    (port,) = [port for port in selected[0]["spec"]["ports"] if port["name"] == endpoint["port"]]
    pods = next(w for w in workloads(docs) if w["metadata"]["name"] == workload)
    assert label_selector_matches({"matchLabels": selected[0]["spec"]["selector"]},
                                  pods["spec"]["template"]["metadata"]["labels"])
    (main,) = [c for c in containers(pods, init=False)]
    (served,) = [p for p in main["ports"] if p["name"] == port["targetPort"]]
    settings = Settings.from_env({key: value for key, value in configured_env(docs, main).items()
                                  if key.startswith("RACKMESH_")})
    assert served["name"] == "metrics" and served["containerPort"] == settings.metrics_port == port["port"]


@pytest.mark.parametrize(("monitor", "server_name"), [("rackmesh-agent", None),
                                                      ("rackmesh-operator", Identity(Role.OPERATOR).dns_name)])
def test_the_scrape_is_https_with_the_scrapers_certificate(monitor: str, server_name: str | None) -> None:
    doc = next(doc for doc in service_monitors() if doc["metadata"]["name"] == monitor)
    (endpoint,) = doc["spec"]["endpoints"]
    assert (endpoint["scheme"], endpoint["path"]) == ("https", PATH)
    tls = endpoint["tlsConfig"]
    assert tls["ca"] == {"configMap": {"name": CA_CONFIGMAP, "key": "ca.crt"}}
    assert tls["cert"] == {"secret": {"name": SCRAPER_SECRET, "key": "tls.crt"}}
    assert tls["keySecret"] == {"name": SCRAPER_SECRET, "key": "tls.key"}
    assert tls.get("serverName") == server_name
    assert not tls.get("insecureSkipVerify")
