"""The real ``kubectl`` (1.32) as users drive it imperatively, against the sandbox API with authentication on.

Docs: https://kubernetes.io/docs/reference/kubectl/generated/kubectl_create/ (typed clients: protobuf bodies),
https://kubernetes.io/docs/reference/kubectl/generated/kubectl_create/kubectl_create_token/,
https://kubernetes.io/docs/reference/kubectl/generated/kubectl_get/ (``--watch``, ``--output-watch-events``),
https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables (server-side columns,
as pkg/printers/internalversion prints them; kubectl shows priority-0 columns, ``-o wide`` all).

Case matrix:
- ``kubectl create namespace|configmap|secret|serviceaccount|deployment|job|cronjob|service|role|clusterrole|
  rolebinding|clusterrolebinding|priorityclass|quota|poddisruptionbudget`` and ``kubectl run`` store exactly the
  object kubectl prints with ``--dry-run=client -o json`` (the JSON of what it sent as protobuf), but for what
  the server sets; ``create ingress`` (not decoded) fails with a message that says so, storing nothing.
- ``kubectl create token`` prints a token of the asked audience and lifetime that a TokenReview accepts.
- ``kubectl get --watch --output-watch-events`` of a DeploymentRequest: ADDED, MODIFIED (kubectl scale), DELETED.
- ``-l`` and ``--field-selector``; NotFound, AlreadyExists and Invalid as kubectl prints them.
- tables: Events (LAST SEEN, TYPE, REASON, OBJECT, MESSAGE; ``-o wide`` SUBOBJECT, SOURCE, FIRST SEEN, COUNT,
  NAME; events.k8s.io/v1 alike), Pods (READY, STATUS, RESTARTS from container statuses; IP, NODE), ConfigMaps,
  Secrets and ServiceAccounts (counts), Nodes as the sandbox seeds them (``-o wide``: OS-IMAGE, KERNEL-VERSION,
  CONTAINER-RUNTIME), Leases (HOLDER), RoleBindings (ROLE; USERS, GROUPS, SERVICEACCOUNTS).
"""

from __future__ import annotations

import base64
import datetime
import itertools
import json
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from rackmesh.labels import Role
from rackmesh_sandbox import cluster_seed
from rackmesh_sandbox.topology import NodeSpec
from tests.kube_api.conftest import DR_CRD, KUBECTL, Cluster
from tests.support.waiting import eventually

pytestmark = pytest.mark.kubectl
SERVER_SET = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "namespace")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The API as a process with authentication on (as the sandbox runs it) and the admin's kubeconfig."""
    workdir = tmp_path_factory.mktemp("kubectl-clients")
    ready, kubeconfig = workdir / "api.json", workdir / "kubeconfig"
    argv = [sys.executable, "-m", "rackmesh_sandbox.kube_api", "--port", "0", "--no-kubevirt", "--auth",
            "--crd", str(DR_CRD), "--ready-file", str(ready), "--kubeconfig", str(kubeconfig)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        eventually(ready.exists, timeout=30, what="the API is ready")
        yield Cluster(json.loads(ready.read_text())["url"], kubeconfig, workdir / "cache", workdir)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def stored(cluster: Cluster, resource: str, name: str) -> dict[str, Any]:
    """An object as read back, without what the server sets on every object."""
    obj = json.loads(cluster.kubectl("get", resource, name, "-o", "json").stdout)
    obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k not in SERVER_SET}
    return obj


def without_nulls(value: Any) -> Any:
    """Go's JSON of a zero time is null; the stored object leaves it out."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return [without_nulls(v) for v in value] if isinstance(value, list) else value


CREATED = [
    (["namespace", "team-a"], "namespace", ("spec", "status")),  # the server adds finalizers and the phase
    (["configmap", "settings", "--from-literal=mode=fast", "--from-file=blob=BINARY"], "configmap", ()),
    (["secret", "generic", "login", "--from-literal=user=u", "--from-literal=password=p"], "secret", ()),
    (["secret", "docker-registry", "pull", "--docker-server=r.example", "--docker-username=u",
      "--docker-password=p"], "secret", ()),
    (["serviceaccount", "ci"], "serviceaccount", ()),
    (["deployment", "web", "--image=nginx", "--replicas=0", "--port=80", "--", "nginx", "-g", "daemon off;"],
     "deployment", ()),
    (["job", "once", "--image=busybox", "--", "echo", "hi"], "job", ()),
    (["cronjob", "nightly", "--image=busybox", "--schedule=0 3 * * *", "--restart=OnFailure"], "cronjob", ()),
    (["service", "nodeport", "web", "--tcp=80:8080"], "service", ()),
    (["role", "reader", "--verb=get,list", "--resource=pods,configmaps"], "role", ()),
    (["clusterrole", "node-reader", "--verb=get", "--resource=nodes"], "clusterrole", ()),
    (["clusterrole", "aggregated", "--aggregation-rule=rbac.example/aggregate=true"], "clusterrole", ()),
    (["rolebinding", "readers", "--role=reader", "--user=u", "--group=g", "--serviceaccount=default:ci"],
     "rolebinding", ()),
    (["clusterrolebinding", "node-readers", "--clusterrole=node-reader", "--group=g"], "clusterrolebinding", ()),
    (["priorityclass", "low", "--value=0", "--description=batch"], "priorityclass", ()),
    (["quota", "small", "--hard=pods=2,requests.cpu=1500m,limits.memory=1Gi"], "resourcequota", ()),
    (["poddisruptionbudget", "keep", "--selector=app=web", "--min-available=50%"], "poddisruptionbudget", ()),
]


@pytest.mark.parametrize(("args", "resource", "server_set"), CREATED, ids=["-".join(c[0][:2]) for c in CREATED])
def test_create_stores_what_kubectl_sent(
    cluster: Cluster, args: list[str], resource: str, server_set: tuple[str, ...]
) -> None:
    (cluster.workdir / "BINARY").write_bytes(b"\x00\xff\xfe")  # not UTF-8: a configmap's binaryData
    args = [a.replace("BINARY", str(cluster.workdir / "BINARY")) for a in args]
    sent = without_nulls(json.loads(cluster.kubectl("create", "--dry-run=client", "-o", "json", *args).stdout))
    sent["metadata"].pop("namespace", None)
    created = cluster.kubectl("create", *args)
    assert created.stdout.endswith(f'/{sent["metadata"]["name"]} created\n'), created.stdout
    found = stored(cluster, resource, sent["metadata"]["name"])
    for key in server_set:
        found.pop(key)
        sent.pop(key)
    assert found == sent


def test_run_stores_the_pod(cluster: Cluster) -> None:
    args = ["probe", "--image=busybox", "--labels=app=probe", "--env=A=1", "--port=8080", "--restart=Never",
            "--", "sleep", "60"]
    sent = without_nulls(json.loads(cluster.kubectl("run", "--dry-run=client", "-o", "json", *args).stdout))
    sent["metadata"].pop("namespace", None)
    assert cluster.kubectl("run", *args).stdout == "pod/probe created\n"
    assert stored(cluster, "pod", "probe") == sent


def test_a_kind_not_decoded_is_refused_saying_so(cluster: Cluster) -> None:
    refused = cluster.kubectl("create", "ingress", "edge", "--rule=web.example/=web:80", check=False)
    assert refused.returncode == 1
    assert "Ingress in networking.k8s.io/v1 is not a kind the sandbox decodes from protobuf" in refused.stderr
    assert "send the object as JSON (application/json)" in refused.stderr
    assert cluster.kubectl("get", "ingress", "-o", "name").stdout == ""


def test_create_token(cluster: Cluster) -> None:
    """The TokenRequest kubectl sends as protobuf: audience and duration as asked; a TokenReview accepts it."""
    cluster.kubectl("create", "serviceaccount", "deployer")
    token = cluster.kubectl("create", "token", "deployer", "--audience=ci", "--duration=10m").stdout.strip()
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert (claims["aud"], claims["exp"] - claims["iat"]) == (["ci"], 600)
    review = cluster.manifest("review.json", json.dumps({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token, "audiences": ["ci"]},
    }))
    # --validate=false: for a kind without PATCH kubectl validates against OpenAPI v2, which is not served.
    answer = json.loads(cluster.kubectl("create", "-f", review, "--validate=false", "-o", "json").stdout)
    assert answer["status"]["user"]["username"] == "system:serviceaccount:default:deployer"


def request_manifest(name: str, replicas: int = 2, labels: str = "{}") -> str:
    return f"""\
        apiVersion: rackmesh.io/v1alpha1
        kind: DeploymentRequest
        metadata: {{name: {name}, labels: {labels}}}
        spec: {{replicas: {replicas}, instancetype: u1.large, image: lob123-rhel-6.0}}
        """


def test_watch_a_request(cluster: Cluster) -> None:
    """kubectl lists, then watches from the list's resourceVersion: nothing is missed between the two."""
    cluster.kubectl("create", "-f", cluster.manifest("watched.yaml", request_manifest("watched")))
    argv = [KUBECTL, "--kubeconfig", str(cluster.kubeconfig), "--cache-dir", str(cluster.cache), "get", "dr",
            "watched", "--watch", "--output-watch-events"]
    watcher = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in watcher.stdout or ()], daemon=True).start()
    seen: list[list[str]] = []

    def events(count: int) -> bool:
        while not lines.empty():
            seen.append(lines.get().split())
        return len(seen) >= count + 1  # and the header

    try:
        eventually(lambda: events(1), timeout=30, what="the watch shows the request")
        cluster.kubectl("scale", "dr/watched", "--replicas=5")
        cluster.kubectl("delete", "dr", "watched")
        eventually(lambda: events(3), timeout=30, what="the watch shows the scale and the delete")
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
    assert seen[0][:3] == ["EVENT", "NAME", "REPLICAS"]
    assert [row[:3] for row in seen[1:]] == [["ADDED", "watched", "2"], ["MODIFIED", "watched", "5"],
                                            ["DELETED", "watched", "5"]]


def test_selectors_and_errors(cluster: Cluster) -> None:
    for name, labels in (("sel-a", '{team: "x"}'), ("sel-b", '{team: "y"}'), ("sel-c", "{}")):
        cluster.kubectl("create", "-f", cluster.manifest(f"{name}.yaml", request_manifest(name, labels=labels)))

    def names(*selector: str) -> list[str]:
        return cluster.kubectl("get", "dr", "-o", "name", *selector).stdout.split()

    assert names("-l", "team=x") == ["deploymentrequest.rackmesh.io/sel-a"]
    assert names("-l", "team notin (x),team") == ["deploymentrequest.rackmesh.io/sel-b"]
    assert names("--field-selector", "metadata.name=sel-c") == ["deploymentrequest.rackmesh.io/sel-c"]
    missing = cluster.kubectl("get", "dr", "nothing", check=False)
    assert missing.stderr == 'Error from server (NotFound): deploymentrequests.rackmesh.io "nothing" not found\n'
    again = cluster.kubectl("create", "-f", str(cluster.workdir / "sel-a.yaml"), check=False)
    assert again.stderr == (
        'Error from server (AlreadyExists): error when creating "'
        f'{cluster.workdir / "sel-a.yaml"}": deploymentrequests.rackmesh.io "sel-a" already exists\n'
    )
    invalid = cluster.kubectl("create", "-f", cluster.manifest("big.yaml", request_manifest("big", 10001)), check=False)
    assert 'The DeploymentRequest "big" is invalid: spec.replicas: Invalid value: 10001: spec.replicas in body ' \
           "should be less than or equal to 10000" in invalid.stderr


def table(text: str) -> list[dict[str, str]]:
    """kubectl's table by column: a header is words joined by single spaces, columns start where headers do."""
    header, *rows = text.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]
    names = [header[start:end].strip() for start, end in itertools.pairwise([*starts, len(header) + 1])]
    cuts = list(itertools.pairwise([*starts, 10_000]))
    return [dict(zip(names, (row[start:end].strip() for start, end in cuts), strict=True)) for row in rows]


def ago(**delta: float) -> str:
    return (datetime.datetime.now(datetime.UTC) - datetime.timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_events_table(cluster: Cluster) -> None:
    """Times two and five days ago print as 2d and 5d for an hour, whatever the machine's load."""
    cluster.kubectl("create", "namespace", "events")
    core = {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "lob123.1", "namespace": "events"},
        "involvedObject": {"apiVersion": "rackmesh.io/v1alpha1", "kind": "DeploymentRequest", "name": "lob123",
                           "namespace": "events", "fieldPath": "spec.replicas"},
        "reason": "InsufficientCapacity", "message": "  50 x u1.large do not fit  ", "type": "Warning",
        "source": {"component": "rackmesh-operator"}, "count": 3,
        "firstTimestamp": ago(days=5), "lastTimestamp": ago(days=2),
    }
    new = {
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "c-a-1.1", "namespace": "events"},
        "regarding": {"kind": "Node", "name": "c-a-1"}, "reason": "Joined", "note": "agent is up", "type": "Normal",
        "action": "Join", "eventTime": ago(days=2).replace("Z", ".000000Z"),
        "reportingController": "rackmesh.io/agent", "reportingInstance": "agent-c-a-1",
    }
    for index, event in enumerate((core, new)):
        cluster.kubectl("create", "-f", cluster.manifest(f"event-{index}.json", json.dumps(event)))
    listed = cluster.kubectl("get", "events", "-n", "events").stdout
    assert table(listed) == [{"LAST SEEN": "2d", "TYPE": "Warning", "REASON": "InsufficientCapacity",
                              "OBJECT": "deploymentrequest/lob123", "MESSAGE": "50 x u1.large do not fit"}]
    assert table(cluster.kubectl("get", "events", "-n", "events", "-o", "wide").stdout) == [{
        "LAST SEEN": "2d", "TYPE": "Warning", "REASON": "InsufficientCapacity", "OBJECT": "deploymentrequest/lob123",
        "SUBOBJECT": "spec.replicas", "SOURCE": "rackmesh-operator", "MESSAGE": "50 x u1.large do not fit",
        "FIRST SEEN": "5d", "COUNT": "3", "NAME": "lob123.1",
    }]
    assert table(cluster.kubectl("get", "events.events.k8s.io", "-n", "events", "-o", "wide").stdout) == [{
        "LAST SEEN": "2d", "TYPE": "Normal", "REASON": "Joined", "OBJECT": "node/c-a-1", "SUBOBJECT": "",
        "SOURCE": "rackmesh.io/agent, agent-c-a-1", "MESSAGE": "agent is up", "FIRST SEEN": "2d", "COUNT": "1",
        "NAME": "c-a-1.1",
    }]


def test_pods_table(cluster: Cluster) -> None:
    cluster.kubectl("create", "namespace", "pods")
    cluster.kubectl("run", "agent", "-n", "pods", "--image=rackmesh-agent", "--overrides",
                    json.dumps({"spec": {"nodeName": "c-a-1"}}))
    restarted = {"terminated": {"exitCode": 1, "finishedAt": ago(days=2)}}
    status = {"status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.7"}], "podIP": "10.0.0.7",
                         "containerStatuses": [{"name": "agent", "image": "rackmesh-agent", "imageID": "",
                                                "ready": True, "restartCount": 2, "state": {"running": {}},
                                                "lastState": restarted}]}}
    cluster.kubectl("patch", "pod", "agent", "-n", "pods", "--subresource=status", "--type=merge", "-p",
                    json.dumps(status))
    [row] = table(cluster.kubectl("get", "pods", "-n", "pods", "-o", "wide").stdout)
    assert row == {"NAME": "agent", "READY": "1/1", "STATUS": "Running", "RESTARTS": "2 (2d ago)", "AGE": row["AGE"],
                   "IP": "10.0.0.7", "NODE": "c-a-1", "NOMINATED NODE": "<none>", "READINESS GATES": "<none>"}
    waiting = {"status": {"containerStatuses": [{"name": "agent", "image": "rackmesh-agent", "imageID": "",
                                                 "ready": False, "restartCount": 3,
                                                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}
    cluster.kubectl("patch", "pod", "agent", "-n", "pods", "--subresource=status", "--type=merge", "-p",
                    json.dumps(waiting))
    [row] = table(cluster.kubectl("get", "pods", "-n", "pods").stdout)
    assert (row["READY"], row["STATUS"], row["RESTARTS"]) == ("0/1", "CrashLoopBackOff", "3")


def test_tables_of_configuration_and_identities(cluster: Cluster) -> None:
    cluster.kubectl("create", "namespace", "config")
    cluster.kubectl("create", "configmap", "two", "-n", "config", "--from-literal=a=1", "--from-literal=b=2")
    cluster.kubectl("create", "secret", "generic", "one", "-n", "config", "--type=Opaque", "--from-literal=a=1")
    cluster.kubectl("create", "serviceaccount", "agent", "-n", "config")
    cluster.kubectl("create", "rolebinding", "agents", "-n", "config", "--clusterrole=view", "--user=alice",
                    "--group=ops", "--serviceaccount=config:agent")
    [config] = table(cluster.kubectl("get", "cm", "-n", "config").stdout)
    assert (config["NAME"], config["DATA"]) == ("two", "2")
    [secret] = table(cluster.kubectl("get", "secrets", "-n", "config").stdout)
    assert (secret["NAME"], secret["TYPE"], secret["DATA"]) == ("one", "Opaque", "1")
    [account] = table(cluster.kubectl("get", "sa", "-n", "config").stdout)
    assert (account["NAME"], account["SECRETS"]) == ("agent", "0")
    [binding] = table(cluster.kubectl("get", "rolebindings", "-n", "config", "-o", "wide").stdout)
    assert {k: v for k, v in binding.items() if k != "AGE"} == {
        "NAME": "agents", "ROLE": "ClusterRole/view", "USERS": "alice", "GROUPS": "ops",
        "SERVICEACCOUNTS": "config/agent",
    }
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "leader", "namespace": "config"}, "spec": {"holderIdentity": "operator-1"}}
    cluster.kubectl("create", "-f", cluster.manifest("lease.json", json.dumps(lease)))
    [held] = table(cluster.kubectl("get", "leases", "-n", "config").stdout)
    assert (held["NAME"], held["HOLDER"]) == ("leader", "operator-1")


def test_nodes_as_seeded(cluster: Cluster) -> None:
    node = NodeSpec("s-b-1", "rack-b", (Role.STORAGE,), "16", "64Gi")
    cluster.kubectl("create", "-f", cluster.manifest("node.json", json.dumps(cluster_seed.node_object(node, "rack"))))
    cluster.kubectl("patch", "node", node.name, "--subresource=status", "--type=merge", "-p",
                    json.dumps(cluster_seed.node_status(node, "127.0.0.5")))
    [row] = [r for r in table(cluster.kubectl("get", "nodes", "-o", "wide").stdout) if r["NAME"] == node.name]
    info = cluster_seed.node_status(node)["status"]["nodeInfo"]
    assert {k: v for k, v in row.items() if k != "AGE"} == {
        "NAME": node.name, "STATUS": "Ready", "ROLES": "<none>", "VERSION": "v1.32.0-rackmesh-sandbox",
        "INTERNAL-IP": "127.0.0.5", "EXTERNAL-IP": "<none>", "OS-IMAGE": "rackmesh sandbox",
        "KERNEL-VERSION": info["kernelVersion"], "CONTAINER-RUNTIME": "rackmesh-sandbox://0.1.0",
    }
