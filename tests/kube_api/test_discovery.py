"""Discovery, OpenAPI and server-side printing — what kubectl reads before it acts.

Docs: https://kubernetes.io/docs/concepts/overview/kubernetes-api/#discovery-api
https://kubernetes.io/docs/concepts/overview/kubernetes-api/#openapi-v3
https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables
https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#additional-printer-columns

Case matrix:
- /api, /apis, /apis/<group>, group-version resource lists: kinds, scope, verbs, short names,
  categories, the status subresource; KubeVirt/CDI resources; the preferred version first.
- /openapi/v3 lists group-versions; each declares ``fieldValidation`` on PATCH with the GVK
  (so kubectl validates server-side) and carries the CRD schemas; /openapi/v2 is a 404.
- Tables: Name plus ``additionalPrinterColumns`` (JSONPath incl. filters, priorities, typed cells,
  dates as ages), Name/Age when a CRD declares none, Nodes' Status/Roles/Age/Version; row objects
  as PartialObjectMetadata by default.
- CRDs created through the API are served at once, and stop being served when deleted; the served
  versions of a CRD share one storage (conversion strategy None: only apiVersion changes).
"""

from __future__ import annotations

from typing import Any

import yaml

from rackmesh_sandbox.kube_api import KubeApiServer
from rackmesh_sandbox.kube_api.tables import human_duration
from tests.kube_api.conftest import DR_CRD, DRS, NODES, Client, dr, node

TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}


async def test_core_and_groups(client: Client) -> None:
    assert (await client.get("/api")).body["versions"] == ["v1"]
    groups = {g["name"]: g for g in (await client.get("/apis")).body["groups"]}
    assert {
        "rackmesh.io",
        "kubevirt.io",
        "instancetype.kubevirt.io",
        "cdi.kubevirt.io",
        "apps",
        "events.k8s.io",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
    } <= set(groups)
    assert groups["autoscaling"]["preferredVersion"]["version"] == "v2"
    group = (await client.get("/apis/rackmesh.io")).body
    assert group["kind"] == "APIGroup"
    assert group["preferredVersion"] == {"groupVersion": "rackmesh.io/v1alpha1", "version": "v1alpha1"}
    assert (await client.get("/apis/example.com")).status == 404
    assert (await client.get("/version")).body["minor"] == "32"


def by_name(resource_list: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in resource_list["resources"]}


async def test_resource_lists(client: Client) -> None:
    ours = by_name((await client.get("/apis/rackmesh.io/v1alpha1")).body)
    assert ours["deploymentrequests"] == {
        "name": "deploymentrequests",
        "singularName": "deploymentrequest",
        "namespaced": True,
        "kind": "DeploymentRequest",
        "shortNames": ["dr"],
        "categories": ["rackmesh"],
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
    }
    assert ours["deploymentrequests/status"]["verbs"] == ["get", "patch", "update"]
    kubevirt = by_name((await client.get("/apis/kubevirt.io/v1")).body)
    assert kubevirt["virtualmachines"]["shortNames"] == ["vm", "vms"]
    assert kubevirt["virtualmachineinstances"]["shortNames"] == ["vmi", "vmis"]
    assert "virtualmachines/status" in kubevirt
    instancetypes = by_name((await client.get("/apis/instancetype.kubevirt.io/v1beta1")).body)
    assert instancetypes["virtualmachineclusterinstancetypes"]["namespaced"] is False
    assert "vmclusterinstancetype" in instancetypes["virtualmachineclusterinstancetypes"]["shortNames"]
    assert "virtualmachineclusterpreferences" in instancetypes
    assert by_name((await client.get("/apis/cdi.kubevirt.io/v1beta1")).body)["datavolumes"]["shortNames"] == [
        "dv",
        "dvs",
    ]
    core = by_name((await client.get("/api/v1")).body)
    assert core["nodes"]["namespaced"] is False
    assert core["events"]["kind"] == "Event"


async def test_openapi_v3(client: Client) -> None:
    root = (await client.get("/openapi/v3")).body
    url = root["paths"]["apis/rackmesh.io/v1alpha1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/rackmesh.io/v1alpha1?hash=")
    assert "api/v1" in root["paths"]
    document = (await client.get(url)).body
    patch = document["paths"]["/apis/rackmesh.io/v1alpha1/namespaces/{namespace}/deploymentrequests/{name}"][
        "patch"
    ]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "rackmesh.io",
        "version": "v1alpha1",
        "kind": "DeploymentRequest",
    }
    assert {"name": "fieldValidation", "in": "query"}.items() <= next(
        p for p in patch["parameters"] if p["name"] == "fieldValidation"
    ).items()
    schema = document["components"]["schemas"]["io.rackmesh.v1alpha1.DeploymentRequest"]
    assert schema["properties"]["spec"]["required"] == ["replicas", "instancetype", "image"]
    nodes = (await client.get("/openapi/v3/api/v1")).body["paths"]["/api/v1/nodes/{name}"]["patch"]
    assert nodes["x-kubernetes-group-version-kind"]["kind"] == "Node"
    reply = await client.get("/openapi/v2")
    assert reply.status == 404


async def test_table_for_a_custom_resource(client: Client) -> None:
    await client.create(DRS, dr())
    await client.patch(f"{DRS}/lob123/status", {"status": {"phase": "Placing", "readyReplicas": 0}})
    table = (await client.get(DRS, headers=TABLE)).body
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    columns = [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]]
    declared = yaml.safe_load(DR_CRD.read_text())["spec"]["versions"][0]["additionalPrinterColumns"]
    assert columns == [("Name", "string", 0)] + [(c["name"], c["type"], c.get("priority", 0)) for c in declared]
    [row] = table["rows"]
    cells = dict(zip([name for name, _, _ in columns], row["cells"], strict=True))
    assert {k: cells[k] for k in ("Name", "Replicas", "Ready", "Phase", "Instancetype", "Image")} == {
        "Name": "lob123",
        "Replicas": 3,
        "Ready": 0,
        "Phase": "Placing",
        "Instancetype": "u1.large",
        "Image": "lob123-rhel-6.0",
    }
    assert cells["Age"].endswith("s")  # "0s": an age, computed by the server
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == "lob123"
    single = (await client.get(f"{DRS}/lob123", headers=TABLE)).body
    assert single["rows"][0]["cells"][0] == "lob123"


async def test_table_with_jsonpath_filters_and_defaults(client: Client) -> None:
    vms = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
    await client.create(
        vms,
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": "v"},
            "spec": {"template": {"spec": {"domain": {"devices": {}}}}},
        },
    )
    await client.patch(
        f"{vms}/v/status",
        {
            "status": {
                "printableStatus": "Running",
                "conditions": [{"type": "Paused", "status": "False"}, {"type": "Ready", "status": "True"}],
            }
        },
    )
    table = (await client.get(vms, headers=TABLE)).body
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age", "Status", "Ready"]
    assert table["rows"][0]["cells"][2:] == ["Running", "True"]
    types = "/apis/instancetype.kubevirt.io/v1beta1/virtualmachineclusterinstancetypes"
    await client.create(
        types,
        {
            "apiVersion": "instancetype.kubevirt.io/v1beta1",
            "kind": "VirtualMachineClusterInstancetype",
            "metadata": {"name": "u1.large"},
            "spec": {"cpu": {"guest": 2}, "memory": {"guest": "8Gi"}},
        },
    )
    table = (await client.get(types, headers=TABLE)).body
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]


async def test_table_for_nodes(client: Client) -> None:
    await client.create(
        NODES, {**node("n1", {"node-role.kubernetes.io/worker": ""}), "spec": {"unschedulable": True}}
    )
    table = (await client.get(NODES, headers=TABLE)).body
    assert [c["name"] for c in table["columnDefinitions"]][:5] == [
        "Name",
        "Status",
        "Roles",
        "Age",
        "Version",
    ]
    assert table["rows"][0]["cells"][:3] == ["n1", "Ready,SchedulingDisabled", "worker"]


def test_human_durations() -> None:
    cases = {
        0: "0s",
        119: "119s",
        120: "2m",
        150: "2m30s",
        600: "10m",
        3 * 3600: "3h",
        3 * 3600 + 60: "3h1m",
        9 * 3600: "9h",
        50 * 3600: "2d2h",
        10 * 86400: "10d",
        800 * 86400: "2y70d",
        -5: "<invalid>",
    }
    assert {seconds: human_duration(seconds) for seconds in cases} == cases


async def test_crds_created_through_the_api(client: Client) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "shortNames": ["gd"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    created = await client.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert {c["type"] for c in created["status"]["conditions"] if c["status"] == "True"} == {
        "NamesAccepted",
        "Established",
    }
    assert by_name((await client.get("/apis/example.com/v1")).body)["gadgets"]["shortNames"] == ["gd"]
    gadget = {
        "apiVersion": "example.com/v1",
        "kind": "Gadget",
        "metadata": {"name": "g"},
        "spec": {"size": 0},
    }
    assert (await client.post("/apis/example.com/v1/gadgets", gadget)).status == 422
    gadget["spec"]["size"] = 2
    await client.create("/apis/example.com/v1/gadgets", gadget)
    await client.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.com")
    assert (await client.get("/apis/example.com/v1/gadgets")).status == 404
    assert "example.com" not in {g["name"] for g in (await client.get("/apis")).body["groups"]}


async def test_crd_versions_share_one_storage(server: KubeApiServer, client: Client) -> None:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    server.emulator.add_crd(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "gizmos.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
                "versions": [
                    {"name": "v1alpha1", "served": True, "storage": False, "schema": schema},
                    {"name": "v1", "served": True, "storage": True, "schema": schema},
                ],
            },
        }
    )
    assert (await client.get("/apis/example.com")).body["preferredVersion"]["version"] == "v1"
    old, new = (
        "/apis/example.com/v1alpha1/namespaces/default/gizmos",
        "/apis/example.com/v1/namespaces/default/gizmos",
    )
    await client.create(
        old, {"apiVersion": "example.com/v1alpha1", "kind": "Gizmo", "metadata": {"name": "g"}}
    )
    assert (await client.get(f"{new}/g")).body["apiVersion"] == "example.com/v1"
    patched = await client.patch(f"{old}/g", {"spec": {"x": 1}})
    assert patched.status == 200
    assert patched.body["apiVersion"] == "example.com/v1alpha1"
