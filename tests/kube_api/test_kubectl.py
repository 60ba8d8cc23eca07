"""The real ``kubectl`` (1.32) against the API, as users will drive it.

Docs: https://kubernetes.io/docs/reference/kubectl/ (apply, get, describe, delete, label),
https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation (``--validate=strict``).

Case matrix:
- ``apply -f examples/lob123.yaml`` creates; a second apply is "unchanged".
- ``get dr`` prints NAME and the CRD's printer columns of priority 0; ``-o wide`` adds the others.
- ``apply`` of ``replicas`` above the maximum or of a spec without ``image`` fails with the schema's
  message on stderr and stores nothing; an unknown field fails too (kubectl asks for strict validation);
  so does an instancetype with a trailing newline (the pattern's ``$``, as Go's regexp reads it).
- ``describe dr`` prints the object and its Events.
- ``delete dr`` removes it, and waits while a finalizer holds it (watching by field selector).
- ``get nodes --show-labels`` and ``-l`` list Nodes; ``get vm`` lists VirtualMachines.
The server runs as a process (``python -m rackmesh_sandbox.kube_api``), kubectl with ``--kubeconfig``.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import re
import subprocess

import pytest
import yaml

from tests.kube_api.conftest import DR_CRD, KUBECTL, REPO, Cluster
from tests.support.waiting import eventually

pytestmark = pytest.mark.kubectl
EXAMPLE = REPO / "examples" / "lob123.yaml"


def dr_manifest(name: str, spec: str) -> str:
    return f"""\
        apiVersion: rackmesh.io/v1alpha1
        kind: DeploymentRequest
        metadata: {{name: {name}, namespace: default}}
        spec: {spec}
        """


def by_column(header: str, row: str) -> dict[str, str]:
    """A kubectl table row by column (cells may be blank, so columns are cut where headers start)."""
    starts = [m.start() for m in re.finditer(r"\S+", header)] + [len(row) + 1]
    return {
        header[start:end].strip(): row[start:end].strip() for start, end in itertools.pairwise(starts)
    }


def test_apply_and_get(cluster: Cluster) -> None:
    assert (
        cluster.kubectl("apply", "-f", str(EXAMPLE)).stdout
        == "deploymentrequest.rackmesh.io/lob123 created\n"
    )
    assert (
        cluster.kubectl("apply", "-f", str(EXAMPLE)).stdout
        == "deploymentrequest.rackmesh.io/lob123 unchanged\n"
    )
    declared = yaml.safe_load(DR_CRD.read_text())["spec"]["versions"][0]["additionalPrinterColumns"]
    header, row = cluster.kubectl("get", "dr").stdout.splitlines()
    assert header.split() == ["NAME"] + [c["name"].upper() for c in declared if not c.get("priority")]
    assert row.split()[:2] == ["lob123", "50"]
    header, row = cluster.kubectl("get", "deploymentrequests", "-o", "wide").stdout.splitlines()
    wide = [c["name"].upper() for c in declared if not c.get("priority")][:-1]  # AGE comes last
    wide += [c["name"].upper() for c in declared if c.get("priority")] + ["AGE"]
    assert header.split() == ["NAME", *wide]
    cells = by_column(header, row)
    assert (cells["NAME"], cells["REPLICAS"], cells["INSTANCETYPE"], cells["IMAGE"]) == (
        "lob123",
        "50",
        "u1.large",
        "lob123-rhel-6.0",
    )
    assert json.loads(cluster.kubectl("get", "dr", "lob123", "-o", "json").stdout)["spec"]["replicas"] == 50


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "{replicas: 10001, instancetype: u1.large, image: lob123-rhel-6.0}",
            "spec.replicas: Invalid value: 10001: spec.replicas in body should be less than or equal to 10000",
        ),
        ("{replicas: 5, instancetype: u1.large}", "spec.image: Required value"),
        ("{replicas: 5, instancetype: u1.large, image: x, colour: blue}", 'unknown field "spec.colour"'),
    ],
)
def test_apply_refuses_what_the_schema_refuses(cluster: Cluster, spec: str, message: str) -> None:
    path = cluster.manifest("bad.yaml", dr_manifest("refused", spec))
    done = cluster.kubectl("apply", "-f", path, check=False)
    assert done.returncode != 0
    assert message in done.stderr
    assert (
        cluster.request("GET", "/apis/rackmesh.io/v1alpha1/namespaces/default/deploymentrequests/refused")[0]
        == 404
    )


def test_apply_refuses_a_trailing_newline_before_a_patterns_dollar(cluster: Cluster) -> None:
    # Go's regexp (RE2) matches "$" only at the very end of the text; Python's re also before a final newline.
    spec = '{replicas: 2, instancetype: "u1.large\\n", image: lob123-rhel-6.0}'
    done = cluster.kubectl("apply", "-f", cluster.manifest("newline.yaml", dr_manifest("newline", spec)), check=False)
    assert done.returncode == 1
    assert done.stderr == (
        'The DeploymentRequest "newline" is invalid: spec.instancetype: Invalid value: "u1.large\\n": '
        "spec.instancetype in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'\n"
    )
    assert (
        cluster.request("GET", "/apis/rackmesh.io/v1alpha1/namespaces/default/deploymentrequests/newline")[0]
        == 404
    )


def test_apply_refuses_an_invalid_change(cluster: Cluster) -> None:
    path = cluster.manifest(
        "ok.yaml", dr_manifest("changing", "{replicas: 2, instancetype: u1.large, image: x}")
    )
    cluster.kubectl("apply", "-f", path)
    path = cluster.manifest(
        "bad.yaml", dr_manifest("changing", "{replicas: 10001, instancetype: u1.large, image: x}")
    )
    done = cluster.kubectl("apply", "-f", path, check=False)
    assert done.returncode != 0
    assert "spec.replicas in body should be less than or equal to 10000" in done.stderr
    assert json.loads(cluster.kubectl("get", "dr", "changing", "-o", "json").stdout)["spec"]["replicas"] == 2


def test_describe_shows_events(cluster: Cluster) -> None:
    path = cluster.manifest(
        "described.yaml",
        dr_manifest("described", "{replicas: 2, instancetype: u1.large, image: lob123-rhel-6.0}"),
    )
    cluster.kubectl("apply", "-f", path)
    obj = json.loads(cluster.kubectl("get", "dr", "described", "-o", "json").stdout)
    event = {
        "metadata": {"generateName": "described."},
        "type": "Normal",
        "reason": "Placing",
        "message": "asking 3 racks for offers",
        "count": 1,
        "firstTimestamp": obj["metadata"]["creationTimestamp"],
        "lastTimestamp": obj["metadata"]["creationTimestamp"],
        "source": {"component": "rackmesh-operator"},
        "involvedObject": {
            "apiVersion": "rackmesh.io/v1alpha1",
            "kind": "DeploymentRequest",
            "name": "described",
            "namespace": "default",
            "uid": obj["metadata"]["uid"],
        },
    }
    assert cluster.request("POST", "/api/v1/namespaces/default/events", event)[0] == 201
    text = cluster.kubectl("describe", "dr", "described").stdout
    assert "Name:         described" in text
    assert "Replicas:      2" in text
    assert "Placing" in text and "asking 3 racks for offers" in text and "rackmesh-operator" in text


def test_delete_waits_for_finalizers(cluster: Cluster) -> None:
    path = cluster.manifest(
        "held.yaml",
        """\
        apiVersion: rackmesh.io/v1alpha1
        kind: DeploymentRequest
        metadata: {name: held, namespace: default, finalizers: [rackmesh.io/cleanup]}
        spec: {replicas: 1, instancetype: u1.large, image: x}
        """,
    )
    cluster.kubectl("apply", "-f", path)
    argv = [
        KUBECTL,
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--cache-dir",
        str(cluster.cache),
        "delete",
        "dr",
        "held",
        "--timeout=20s",
    ]
    deleting = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        drs = "/apis/rackmesh.io/v1alpha1/namespaces/default/deploymentrequests"
        eventually(
            lambda: cluster.request("GET", f"{drs}/held")[1]["metadata"].get("deletionTimestamp"),
            timeout=10,
            what="deletion started",
        )
        assert deleting.poll() is None  # kubectl is still waiting for the object to go
        assert cluster.request("PATCH", f"{drs}/held", {"metadata": {"finalizers": None}})[0] == 200
        out, err = deleting.communicate(timeout=15)
        assert deleting.returncode == 0, err
        assert out == 'deploymentrequest.rackmesh.io "held" deleted\n'
    finally:
        if deleting.poll() is None:
            deleting.kill()


def test_delete(cluster: Cluster) -> None:
    path = cluster.manifest(
        "gone.yaml", dr_manifest("gone", "{replicas: 1, instancetype: u1.large, image: x}")
    )
    cluster.kubectl("apply", "-f", path)
    assert cluster.kubectl("delete", "dr", "gone").stdout == 'deploymentrequest.rackmesh.io "gone" deleted\n'
    done = cluster.kubectl("get", "dr", "gone", check=False)
    assert done.returncode != 0
    assert 'deploymentrequests.rackmesh.io "gone" not found' in done.stderr


def test_nodes(cluster: Cluster) -> None:
    path = cluster.manifest(
        "nodes.yaml",
        """\
        apiVersion: v1
        kind: Node
        metadata:
          name: c-a-1
          labels: {rackmesh.io/role-compute: "true", topology.rackmesh.io/rack: rack-a}
        status:
          allocatable: {cpu: "32", memory: 128Gi}
          conditions: [{type: Ready, status: "True"}]
          nodeInfo: {kubeletVersion: v1.32.0}
        ---
        apiVersion: v1
        kind: Node
        metadata:
          name: s-a-1
          labels: {rackmesh.io/role-storage: "true", topology.rackmesh.io/rack: rack-a}
        """,
    )
    cluster.kubectl("apply", "-f", path)
    lines = cluster.kubectl("get", "nodes", "--show-labels").stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "LABELS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["c-a-1"][1] == "Ready"
    assert rows["c-a-1"][-1] == "rackmesh.io/role-compute=true,topology.rackmesh.io/rack=rack-a"
    assert rows["s-a-1"][1] == "Unknown"
    selected = cluster.kubectl("get", "nodes", "-l", "rackmesh.io/role-storage=true", "-o", "name").stdout
    assert selected == "node/s-a-1\n"
    cluster.kubectl("label", "node", "c-a-1", "rackmesh.io/role-storage=true")
    selected = cluster.kubectl(
        "get", "nodes", "-l", "rackmesh.io/role-storage in (true)", "-o", "name"
    ).stdout
    assert selected == "node/c-a-1\nnode/s-a-1\n"


def test_virtual_machines(cluster: Cluster) -> None:
    assert cluster.kubectl("get", "vm").stderr == "No resources found in default namespace.\n"
    path = cluster.manifest(
        "vm.yaml",
        """\
        apiVersion: kubevirt.io/v1
        kind: VirtualMachine
        metadata: {name: lob123-0, namespace: default, labels: {rackmesh.io/request: lob123}}
        spec:
          runStrategy: Always
          instancetype: {kind: VirtualMachineClusterInstancetype, name: u1.large}
          template:
            spec:
              nodeSelector: {kubernetes.io/hostname: c-a-1}
              domain: {devices: {}}
        """,
    )
    cluster.kubectl("apply", "-f", path)
    header, row = cluster.kubectl("get", "vm").stdout.splitlines()
    assert header.split() == ["NAME", "AGE", "STATUS", "READY"]
    assert row.split()[0] == "lob123-0"
    assert (
        cluster.kubectl("get", "vm", "-l", "rackmesh.io/request=lob123", "-o", "name").stdout
        == "virtualmachine.kubevirt.io/lob123-0\n"
    )
    bad = cluster.manifest("bad-vm.yaml", path_text(path).replace("runStrategy: Always", "runStrategy: 7"))
    done = cluster.kubectl("apply", "-f", bad, check=False)
    assert done.returncode != 0
    assert "spec.runStrategy in body must be of type string" in done.stderr


def path_text(path: str) -> str:
    return pathlib.Path(path).read_text()
