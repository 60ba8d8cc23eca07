"""The real ``kubectl`` (1.32) against CEL rules, the scale subresource and Node maintenance.

Docs: https://kubernetes.io/docs/reference/kubectl/generated/kubectl_scale/ (kubectl PATCHes the
``scale`` subresource with a merge patch; the subresource's kind comes from discovery),
https://kubernetes.io/docs/reference/kubectl/generated/kubectl_taint/,
https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules

Case matrix:
- DeploymentRequest (the product's CRD): changing the immutable instancetype with ``apply`` is
  refused with the rule's message (kubectl prints the server's text); other changes apply; create
  is not subject to the transition rule; a name over 63 characters is refused by the root rule.
- Widget (conftest's CRD, applied with kubectl): a messageExpression and a rule on list items refuse
  an object; ``kubectl scale`` below the schema's minimum is refused; a CRD whose rule does not
  compile is refused at ``apply``.
- ``kubectl scale dr/NAME --replicas=N`` changes spec.replicas and bumps generation; a scale the
  schema refuses fails with 422; ``get --subresource=scale -o json`` prints the Scale; a resource
  without the subresource answers NotFound.
- Nodes: ``patch --subresource=status`` of conditions (NotReady), ``taint`` out-of-service, ``delete``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.kube_api.conftest import DR_CRD, Cluster, widget_crd

pytestmark = pytest.mark.kubectl


def rule_message(*path: str) -> str:
    """The message of the first rule at a node of the DeploymentRequest schema."""
    node = yaml.safe_load(DR_CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for name in path:
        node = node["properties"][name]
    return node["x-kubernetes-validations"][0]["message"]


def apply(cluster: Cluster, name: str, doc: dict[str, Any], check: bool = True) -> Any:
    path = cluster.workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return cluster.kubectl("apply", "-f", str(path), check=check)


def request(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "rackmesh.io/v1alpha1",
        "kind": "DeploymentRequest",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 2, "instancetype": "u1.large", "image": "img", **spec},
    }


def get(cluster: Cluster, *args: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def test_immutable_field(cluster: Cluster) -> None:
    assert apply(cluster, "imm", request("imm")).stdout == "deploymentrequest.rackmesh.io/imm created\n"
    done = apply(cluster, "imm", request("imm", instancetype="u1.xlarge"), check=False)
    assert done.returncode == 1
    # kubectl rewrites a 422 with causes as "The <Kind> <name> is invalid: <causes>".
    message = rule_message("spec", "instancetype")
    assert (
        done.stderr
        == f'The DeploymentRequest "imm" is invalid: spec.instancetype: Invalid value: "string": {message}\n'
    )

    assert get(cluster, "dr", "imm")["spec"]["instancetype"] == "u1.large"
    done = apply(cluster, "imm", request("imm", replicas=4))
    assert done.stdout == "deploymentrequest.rackmesh.io/imm configured\n"


def test_root_rule_on_the_name(cluster: Cluster) -> None:
    name = "n" * 64
    done = apply(cluster, "long", request(name), check=False)
    assert done.returncode == 1
    assert (
        done.stderr == f'The DeploymentRequest "{name}" is invalid: <nil>: Invalid value: "object": {rule_message()}\n'
    )


def test_widget_rules(cluster: Cluster) -> None:
    apply(cluster, "crd", widget_crd())
    widget = {
        "apiVersion": "test.rackmesh.io/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default"},
        "spec": {"replicas": 9, "maxReplicas": 4, "flavor": "small"},
    }
    done = apply(cluster, "w", widget, check=False)
    assert done.stderr == 'The Widget "w" is invalid: spec.replicas: Invalid value: "object": 9 exceeds 4\n'
    widget["spec"] = {"replicas": 1, "flavor": "small", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}
    done = apply(cluster, "w", widget, check=False)
    assert 'spec.ports[0]: Invalid value: "object": ports must be unprivileged' in done.stderr
    widget["spec"]["ports"][0]["port"] = 5353
    assert apply(cluster, "w", widget).stdout == "widget.test.rackmesh.io/w created\n"
    done = cluster.kubectl("scale", "wd/w", "--replicas=0", check=False)  # below the schema's minimum
    assert done.stderr == (
        'The Widget "w" is invalid: spec.replicas: Invalid value: 0: spec.replicas in body should be greater than '
        "or equal to 1\n"
    )
    assert cluster.kubectl("scale", "wd/w", "--replicas=3").stdout == "widget.test.rackmesh.io/w scaled\n"


def test_a_crd_whose_rule_does_not_compile_is_refused(cluster: Cluster) -> None:
    crd = widget_crd()
    crd["metadata"]["name"] = "gadgets.test.rackmesh.io"
    crd["spec"]["names"] = {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"}
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"] = [
        {"rule": "self.spec.replica > 0"}
    ]
    done = apply(cluster, "gadgets", crd, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith(
        'The CustomResourceDefinition "gadgets.test.rackmesh.io" is invalid: '
        "spec.validation.openAPIV3Schema.x-kubernetes-validations[0].rule: Invalid value: "
        'apiextensions.ValidationRule{Rule:"self.spec.replica > 0", '
    )
    assert "compilation failed: ERROR: <input>:1:10: undefined field 'replica'" in done.stderr
    assert cluster.kubectl("get", "crd", "gadgets.test.rackmesh.io", check=False).returncode == 1


def test_kubectl_scale(cluster: Cluster) -> None:
    apply(cluster, "scaled", request("scaled"))
    done = cluster.kubectl("scale", "dr/scaled", "--replicas=7")
    assert done.stdout == "deploymentrequest.rackmesh.io/scaled scaled\n"
    obj = get(cluster, "dr", "scaled")
    assert (obj["spec"]["replicas"], obj["metadata"]["generation"]) == (7, 2)
    scale = get(cluster, "dr", "scaled", "--subresource=scale")
    assert (scale["kind"], scale["apiVersion"], scale["spec"]) == ("Scale", "autoscaling/v1", {"replicas": 7})
    assert scale["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    done = cluster.kubectl("scale", "dr/scaled", "--replicas=10001", check=False)
    assert done.returncode == 1
    assert done.stderr == (
        'The DeploymentRequest "scaled" is invalid: spec.replicas: Invalid value: 10001: '
        "spec.replicas in body should be less than or equal to 10000\n"
    )
    assert get(cluster, "dr", "scaled")["spec"]["replicas"] == 7


def test_scale_needs_the_subresource(cluster: Cluster) -> None:
    vm = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "unscalable", "namespace": "default"},
        "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}},
    }
    apply(cluster, "vm", vm)
    done = cluster.kubectl("get", "vm", "unscalable", "--subresource=scale", "-o", "json", check=False)
    assert done.returncode == 1
    assert done.stderr == 'Error from server (NotFound): virtualmachines.kubevirt.io "unscalable" not found\n'


def test_node_maintenance(cluster: Cluster) -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "c-b-1"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]},
    }
    apply(cluster, "node", node)
    not_ready = {"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "gone"}
    done = cluster.kubectl(
        "patch", "node", "c-b-1", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"conditions": [not_ready]}}),
    )  # fmt: skip
    assert done.stdout == "node/c-b-1 patched\n"
    assert get(cluster, "node", "c-b-1")["status"]["conditions"] == [not_ready]
    assert cluster.kubectl("get", "node", "c-b-1").stdout.splitlines()[1].split()[1] == "NotReady"
    done = cluster.kubectl("taint", "node", "c-b-1", "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute")
    assert done.stdout == "node/c-b-1 tainted\n"
    assert get(cluster, "node", "c-b-1")["spec"]["taints"] == [
        {"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}
    ]
    assert cluster.kubectl("delete", "node", "c-b-1").stdout == 'node "c-b-1" deleted\n'
    assert cluster.kubectl("get", "node", "c-b-1", check=False).returncode == 1
