"""``spec.template`` at ``kubectl apply``: KubeVirt's schema and rackmesh's rules, answered by the API server.

Case matrix:
- the example with a pod network, masquerade, cloud-init and an SSH key applies, and nothing of it is pruned;
- what rackmesh owns (pinning, instancetype, sizing, the root disk) is refused with a message saying so;
- what KubeVirt's schema does not know, or a VM KubeVirt would refuse (a disk without its volume, an
  interface without its network, one DataVolume shared by every VM, an SSH key propagated through a cloud-init
  volume the VM lacks), is refused and stores nothing;
- the template is immutable like image and instancetype: changed, added or removed, the apply fails and the
  stored request keeps its old one, while replicas still change.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.kube_api.conftest import REPO, Cluster
from tests.support.builders import RequestBuilder, make_request

pytestmark = pytest.mark.kubectl
EXAMPLE = REPO / "examples" / "lob123-ssh.yaml"
REQUESTS = "/apis/rackmesh.io/v1alpha1/namespaces/default/deploymentrequests"


def apply(cluster: Cluster, request: RequestBuilder, check: bool = False) -> Any:
    path = request.write(cluster.workdir / f"{request.obj()['metadata']['name']}.yaml")
    return cluster.kubectl("apply", "-f", str(path), check=check)


def stored(cluster: Cluster, name: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", "dr", name, "-o", "json").stdout)


def test_the_usable_example_applies_whole(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(EXAMPLE))
    wanted = next(doc for doc in yaml.safe_load_all(EXAMPLE.read_text()) if doc["kind"] == "DeploymentRequest")
    template = stored(cluster, "lob123-ssh")["spec"]["template"]
    assert template == wanted["spec"]["template"]
    instance = template["spec"]["template"]["spec"]
    assert instance["domain"]["devices"]["interfaces"][0]["masquerade"] == {}
    assert instance["accessCredentials"][0]["sshPublicKey"]["source"] == {"secret": {"secretName": "lob123-ssh-key"}}


@pytest.mark.parametrize(("request_builder", "message"), [
    (make_request("pinned").template_field("spec.template.spec.nodeSelector", {"kubernetes.io/hostname": "c-0-0"}),
     "spec.template.spec.template.spec.nodeSelector: Forbidden: rackmesh owns the pinning"),
    (make_request("affine").template_field("spec.template.spec.affinity", {"nodeAffinity": {}}),
     "spec.template.spec.template.spec.affinity: Forbidden: rackmesh owns the pinning"),
    (make_request("sized").template_field("spec.instancetype", {"name": "u1.nano"}),
     "spec.template.spec.instancetype: Forbidden: rackmesh owns the instancetype"),
    (make_request("cores").template_field("spec.template.spec.domain.cpu", {"cores": 4}),
     "spec.template.spec.template.spec.domain.cpu: Forbidden: rackmesh owns the sizing"),
    (make_request("root").disk("rootdisk", {"containerDisk": {"image": "quay.io/x/y"}}),
     "rackmesh owns the root disk (rootdisk): its source is spec.image"),
    (make_request("rootdv").extra_disk("rootdisk", "1Gi"),
     "spec.template.spec.dataVolumeTemplates[0].metadata.name: Forbidden: rackmesh owns the root disk"),
    (make_request("labelled").vm_labels(**{"rackmesh.io/request": "other"}),
     "labels under rackmesh.io/ are rackmesh's own"),
], ids=["nodeSelector", "affinity", "instancetype", "cpu", "rootdisk-volume", "rootdisk-dataVolume", "label"])
def test_what_rackmesh_owns_is_refused_saying_so(cluster: Cluster, request_builder: RequestBuilder,
                                                 message: str) -> None:
    done = apply(cluster, request_builder)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert cluster.request("GET", f"{REQUESTS}/{request_builder.obj()['metadata']['name']}")[0] == 404


@pytest.mark.parametrize(("request_builder", "message"), [
    (make_request("halted").template_field("spec.runStrategy", "Halted"),
     'unknown field "spec.template.spec.runStrategy"'),
    (make_request("typo").template_field("spec.template.spec.networks", [{"name": "default", "pood": {}}]),
     'unknown field "spec.template.spec.template.spec.networks[0].pood"'),
    (make_request("no-volume").template_field("spec.template.spec.domain.devices.disks",
                                              [{"name": "data", "disk": {}}]),
     "every disk in domain.devices.disks needs a volume of the same name"),
    (make_request("no-network").template_field("spec.template.spec.domain.devices.interfaces",
                                               [{"name": "default", "masquerade": {}}]),
     "every interface in domain.devices.interfaces needs a network of the same name"),
    (make_request("shared").disk("data", {"dataVolume": {"name": "one-for-all"}}),
     "a dataVolume volume must name one of spec.template.spec.dataVolumeTemplates"),
    (make_request("big").root_disk("lots"), "spec.template.rootDisk.size in body should match"),
    (make_request("keyless").ssh_key("key"),
     "an sshPublicKey with propagationMethod noCloud needs a cloudInitNoCloud volume to carry it"),
    (make_request("drive").cloud_init("#cloud-config\n").ssh_key("key", propagation="configDrive"),
     "an sshPublicKey with propagationMethod configDrive needs a cloudInitConfigDrive volume to carry it"),
], ids=["unknown-field", "unknown-network-field", "disk-without-volume", "interface-without-network",
        "shared-data-volume", "bad-size", "ssh-key-without-cloud-init", "config-drive-key-with-no-cloud"])
def test_a_vm_kubevirt_would_refuse_is_refused_at_apply(cluster: Cluster, request_builder: RequestBuilder,
                                                        message: str) -> None:
    done = apply(cluster, request_builder)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert cluster.request("GET", f"{REQUESTS}/{request_builder.obj()['metadata']['name']}")[0] == 404


def test_the_template_is_immutable_while_replicas_change(cluster: Cluster) -> None:
    apply(cluster, make_request("fixed").replicas(2).pod_network().cloud_init("#cloud-config\n"), check=True)
    kept = stored(cluster, "fixed")["spec"]["template"]
    for changed in (make_request("fixed").replicas(2).pod_network("bridge").cloud_init("#cloud-config\n"),
                    make_request("fixed").replicas(2)):
        done = apply(cluster, changed)
        assert done.returncode != 0 and "template is immutable" in done.stderr, done.stderr
    assert stored(cluster, "fixed")["spec"]["template"] == kept
    apply(cluster, make_request("fixed").replicas(5).pod_network().cloud_init("#cloud-config\n"), check=True)
    assert stored(cluster, "fixed")["spec"]["replicas"] == 5


def test_a_template_cannot_be_added_later(cluster: Cluster) -> None:
    apply(cluster, make_request("plain").replicas(1), check=True)
    done = apply(cluster, make_request("plain").replicas(1).pod_network())
    assert done.returncode != 0 and "template is immutable" in done.stderr, done.stderr
    assert "template" not in stored(cluster, "plain")["spec"]
