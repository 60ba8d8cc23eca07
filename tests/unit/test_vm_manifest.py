"""The VirtualMachine an agent writes (BRIEF §2: label, pinning, sizing, disk).

Case matrix:
- names: 4-digit zero padding (sorts in index order), index bounds, deterministic
- long or non-label request names (> 58 chars, dots, upper case): shortened with a hash, ≤ 63 chars,
  a DNS-1123 label, unique per request name and index
- metadata: request and node labels (also on the template), namespace, controller ownerReference,
  image-sources annotation with the primary first
- pinning by nodeSelector on kubernetes.io/hostname; sizing by cluster instancetype, no cpu/memory
- disk: one DataVolume template with the primary's HTTP URL and the disk size, referenced by the volume,
  labelled with the VM's request and node (KubeVirt copies them to the DataVolume)
- primary holder round robin over holders; no holders is an error
- every generated VM (and its DataVolume template as a DataVolume) passes KubeVirt's/CDI's real schema
"""

import copy
import hashlib
import json
import re
from typing import Any

import pytest

from rackmesh.labels import HOSTNAME_LABEL, NODE_LABEL, REQUEST_LABEL
from rackmesh.protocol import MAX_REPLICAS, ImageHolder, Order, RequestRef
from rackmesh.vm_names import MAX_NAME, vm_index, vm_name
from rackmesh_node_agent.vms.manifest import IMAGE_SOURCES_ANNOTATION, image_sources, virtual_machine
from rackmesh_sandbox.kube_api.schema import load_kubevirt_schemas
from tests.support.builders import RequestBuilder, make_request

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SCHEMAS = load_kubevirt_schemas()


def order(name: str = "lob123", namespace: str = "team-a", replicas: int = 50) -> Order:
    return Order(RequestRef(f"uid-{name}", namespace, name), replicas, "u1.large", "lob123-rhel-6.0")


def holders(count: int) -> list[ImageHolder]:
    return [ImageHolder(f"s-{n}", f"rack-{n}", f"https://127.0.1.{n + 1}:9000/images/lob123-rhel-6.0.img",
                        hashlib.sha256(str(n).encode()).hexdigest())
            for n in range(count)]


def test_names_are_zero_padded_to_sort_in_index_order():
    names = [vm_name("lob123", index) for index in (0, 9, 10, 99, 100, 9999)]
    assert names == ["lob123-0000", "lob123-0009", "lob123-0010", "lob123-0099", "lob123-0100", "lob123-9999"]
    assert names == sorted(names)


@pytest.mark.parametrize("index", [-1, MAX_REPLICAS])
def test_indices_outside_the_replica_range_are_refused(index):
    with pytest.raises(ValueError, match="index"):
        vm_name("lob123", index)


@pytest.mark.parametrize("request_name", [
    "a" * 58,  # the longest name kept as it is
    "a" * 59,
    "b" * 253,
    "lob.123",
    "Web.Tier-1",
    "x" * 57 + ".y",
    "...",
])
def test_every_name_is_a_dns_label_of_at_most_63_chars(request_name):
    for index in (0, MAX_REPLICAS - 1):
        name = vm_name(request_name, index)
        assert len(name) <= MAX_NAME and DNS_LABEL.match(name), name
        assert name.endswith(f"-{index:04d}")
        assert vm_name(request_name, index) == name  # deterministic
        assert vm_index(request_name, name) == index


@pytest.mark.parametrize(("request_name", "name"), [
    ("lob123", "lob123-12"),  # not four digits
    ("lob123", "lob1234-0001"),  # another request's name
    ("lob123", "lob123-000a"),
    ("lob123", "lob123"),
])
def test_names_that_are_not_the_requests_vm_names_have_no_index(request_name, name):
    assert vm_index(request_name, name) is None


def test_names_that_fit_are_kept_and_others_shortened_with_a_hash():
    assert vm_name("a" * 58, 1) == "a" * 58 + "-0001"
    shortened = vm_name("a" * 59, 1)
    assert len(shortened) == MAX_NAME and shortened.startswith("a" * 40)
    assert re.fullmatch(r"a+-[0-9a-f]{8}-0001", shortened)


def test_shortened_names_stay_unique():
    similar = ["a" * 70, "a" * 71, "a" * 70 + "b", "lob.123", "lob-123", "LOB.123"]
    names = {vm_name(name, 7) for name in similar}
    assert len(names) == len(similar)


def test_labels_namespace_and_owner():
    vm = virtual_machine(order(), "c-a-1", 3, holders(2), "10Gi")
    metadata = vm["metadata"]
    assert (vm["apiVersion"], vm["kind"]) == ("kubevirt.io/v1", "VirtualMachine")
    assert metadata["name"] == "lob123-0003"
    assert metadata["namespace"] == "team-a"
    labels = {REQUEST_LABEL: "lob123", NODE_LABEL: "c-a-1"}
    assert metadata["labels"] == labels
    assert vm["spec"]["template"]["metadata"]["labels"] == labels
    assert metadata["ownerReferences"] == [{
        "apiVersion": "rackmesh.io/v1alpha1", "kind": "DeploymentRequest", "name": "lob123", "uid": "uid-lob123",
        "controller": True, "blockOwnerDeletion": True,
    }]


def test_pinned_to_the_node_and_sized_by_the_instancetype_only():
    spec = virtual_machine(order(), "c-b-2", 0, holders(1), "10Gi")["spec"]
    assert spec["runStrategy"] == "Always"
    assert spec["template"]["spec"]["nodeSelector"] == {HOSTNAME_LABEL: "c-b-2"}
    assert spec["instancetype"] == {"kind": "VirtualMachineClusterInstancetype", "name": "u1.large"}
    domain = spec["template"]["spec"]["domain"]
    assert not {"cpu", "memory", "resources"} & set(domain)


def test_root_disk_imports_from_the_primary_holder():
    vm = virtual_machine(order(), "c-a-1", 4, holders(3), "20Gi")
    spec = vm["spec"]
    [template] = spec["dataVolumeTemplates"]
    assert template["metadata"]["name"] == "lob123-0004-rootdisk"
    # KubeVirt copies these to the DataVolume: the node's agent watches its root disks by them.
    assert template["metadata"]["labels"] == {"rackmesh.io/request": "lob123", "rackmesh.io/node": "c-a-1"}
    primary = holders(3)[1]  # 4 % 3 == 1
    assert template["spec"]["source"] == {"http": {  # the CA CDI's importer trusts, and its credential
        "url": primary.url, "certConfigMap": "rackmesh-ca", "secretRef": "rackmesh-image-access"}}
    assert vm["metadata"]["annotations"]["rackmesh.io/image-sha256"] == primary.sha256
    assert template["spec"]["storage"] == {"resources": {"requests": {"storage": "20Gi"}}}
    vmi = spec["template"]["spec"]
    assert vmi["volumes"] == [{"name": "rootdisk", "dataVolume": {"name": "lob123-0004-rootdisk"}}]
    assert vmi["domain"]["devices"]["disks"] == [{"name": "rootdisk", "disk": {"bus": "virtio"}}]


def test_primary_holders_go_round_robin_and_the_annotation_lists_all_primary_first():
    copies = holders(3)
    urls = [holder.url for holder in copies]
    primaries = [image_sources(copies, index)[0] for index in range(6)]
    assert primaries == urls + urls
    for index in range(6):
        sources = json.loads(virtual_machine(order(), "n", index, copies, "1Gi")["metadata"]["annotations"]
                             [IMAGE_SOURCES_ANNOTATION])
        assert sources[0] == primaries[index] and sorted(sources) == sorted(urls)


def test_a_vm_needs_a_holder():
    with pytest.raises(ValueError, match="holder"):
        virtual_machine(order(), "n", 0, [], "10Gi")


@pytest.mark.parametrize(("request_name", "index", "copies"), [
    ("lob123", 0, 1), ("lob123", 49, 2), ("web.tier", 7, 3), ("c" * 63, 9999, 2),
])
def test_generated_vms_pass_kubevirt_schemas(request_name, index, copies):
    vm = virtual_machine(order(request_name, replicas=MAX_REPLICAS), "c-a-1", index, holders(copies), "10Gi")
    assert SCHEMAS["VirtualMachine"].errors(vm) == []
    data_volume = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
                   **vm["spec"]["dataVolumeTemplates"][0]}
    assert SCHEMAS["DataVolume"].errors(data_volume) == []


# --- spec.template ------------------------------------------------------------------------------------


def template(request: RequestBuilder) -> dict[str, Any]:
    return request.obj()["spec"]["template"]


def usable() -> RequestBuilder:
    return (make_request("lob123").vm_labels(app="web").pod_network().cloud_init("#cloud-config\nuser: rhel\n")
            .ssh_key("lob123-ssh-key").preference("rhel.9").root_disk("20Gi", "fast").extra_disk("data", "5Gi"))


def test_the_template_reaches_the_vm_as_kubevirt_users_write_it():
    vm = virtual_machine(order(), "c-a-1", 3, holders(2), "10Gi", template(usable()))
    spec, vmi = vm["spec"], vm["spec"]["template"]["spec"]
    assert vm["metadata"]["labels"] == {"app": "web", REQUEST_LABEL: "lob123", NODE_LABEL: "c-a-1"}
    assert spec["preference"] == {"kind": "VirtualMachineClusterPreference", "name": "rhel.9"}
    assert vmi["networks"] == [{"name": "default", "pod": {}}]
    assert vmi["domain"]["devices"]["interfaces"] == [{"name": "default", "masquerade": {}}]
    assert vmi["accessCredentials"] == [{"sshPublicKey": {
        "source": {"secret": {"secretName": "lob123-ssh-key"}}, "propagationMethod": {"noCloud": {}}}}]
    assert {"name": "cloudinit", "cloudInitNoCloud": {"userData": "#cloud-config\nuser: rhel\n"}} in vmi["volumes"]


def test_rackmesh_keeps_the_root_disk_first_and_sizes_it_as_the_template_says():
    vm = virtual_machine(order(), "c-a-1", 3, holders(2), "10Gi", template(usable()))
    root = vm["spec"]["dataVolumeTemplates"][0]
    assert root["metadata"]["name"] == "lob123-0003-rootdisk"
    assert root["spec"]["storage"] == {"resources": {"requests": {"storage": "20Gi"}}, "storageClassName": "fast"}
    assert root["spec"]["source"]["http"]["url"] == holders(2)[1].url
    vmi = vm["spec"]["template"]["spec"]
    assert [disk["name"] for disk in vmi["domain"]["devices"]["disks"]] == ["rootdisk", "cloudinit", "data"]
    assert vmi["volumes"][0] == {"name": "rootdisk", "dataVolume": {"name": "lob123-0003-rootdisk"}}


def test_each_vm_gets_its_own_extra_disks():
    first, second = (virtual_machine(order(), "c-a-1", index, holders(1), "10Gi", template(usable()))
                     for index in (0, 1))
    for vm, name in ((first, "lob123-0000-data"), (second, "lob123-0001-data")):
        extra = vm["spec"]["dataVolumeTemplates"][1]
        assert extra["metadata"]["name"] == name
        assert extra["spec"]["source"] == {"blank": {}}
        assert {"name": "data", "dataVolume": {"name": name}} in vm["spec"]["template"]["spec"]["volumes"]


def test_rackmesh_sets_its_own_parts_over_the_template():
    vm = virtual_machine(order(), "c-b-2", 0, holders(1), "10Gi", template(usable().vm_labels(tier="front")))
    spec = vm["spec"]
    assert spec["template"]["spec"]["nodeSelector"] == {HOSTNAME_LABEL: "c-b-2"}
    assert spec["instancetype"] == {"kind": "VirtualMachineClusterInstancetype", "name": "u1.large"}
    assert spec["runStrategy"] == "Always"
    assert spec["template"]["metadata"]["labels"] == {REQUEST_LABEL: "lob123", NODE_LABEL: "c-b-2"}
    assert vm["metadata"]["labels"]["tier"] == "front"


def test_the_template_given_is_not_changed():
    given = template(usable())
    kept = copy.deepcopy(given)
    virtual_machine(order(), "c-a-1", 0, holders(1), "10Gi", given)
    assert given == kept


@pytest.mark.parametrize("request_builder", [
    usable(),
    make_request("lob123").cloud_init(secret="lob123-user-data").pod_network("bridge"),
    make_request("lob123").root_disk(storage_class="local"),
], ids=["usable", "user-data-secret", "storage-class-only"])
def test_vms_from_templates_pass_kubevirt_schemas(request_builder):
    vm = virtual_machine(order(), "c-a-1", 7, holders(2), "10Gi", template(request_builder))
    assert SCHEMAS["VirtualMachine"].errors(vm) == []
    for disk in vm["spec"]["dataVolumeTemplates"]:
        assert SCHEMAS["DataVolume"].errors({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
                                             **disk}) == []
