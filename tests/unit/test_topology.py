"""The sandbox topology file: valid files load; each kind of mistake is refused with a message naming it.

Resources: a compute node and a node without a role yet (it may be labelled compute) must state cpu and
memory, or the file is refused naming the file, the node and the field; only a storage-only node may leave
them out.
"""

from pathlib import Path

import pytest

from rackmesh.labels import Role
from rackmesh_sandbox.topology import Topology, TopologyError
from tests.support.builders import make_topology


def test_racks_group_nodes_by_role():
    topology = Topology.parse(make_topology().compute_racks(2, nodes=3).storage_racks(1, nodes=2).obj())
    assert {rack: len(nodes) for rack, nodes in topology.racks(Role.COMPUTE).items()} == {
        "compute-0": 3, "compute-1": 3}
    assert list(topology.racks(Role.STORAGE)) == ["storage-0"]
    assert topology.racks(Role.STORAGE)["storage-0"][0].images == ("lob123-rhel-6.0",)


def test_a_node_without_roles_is_in_the_cluster_and_may_hold_images():
    node = Topology.parse(make_topology().node("spare", "storage-0", [], cpu=8, memory="32Gi",
                                               images=["lob123-rhel-6.0"]).obj()).nodes[0]
    assert (node.roles, node.images, node.cpu, node.memory) == ((), ("lob123-rhel-6.0",), "8", "32Gi")


def test_storage_only_nodes_may_leave_resources_out():
    node = Topology.parse(make_topology().storage_racks(1, nodes=1).obj()).nodes[0]
    assert (node.cpu, node.memory) == ("8", "32Gi")


@pytest.mark.parametrize(("roles", "stated", "complaint"), [
    (["compute"], {}, "nodes[0] (c-a-1): cpu and memory are missing"),
    (["compute"], {"cpu": 32}, "nodes[0] (c-a-1): memory is missing"),
    (["compute", "storage"], {"memory": "128Gi"}, "nodes[0] (c-a-1): cpu is missing"),
    ([], {"cpu": 32}, "nodes[0] (c-a-1): memory is missing"),
])
def test_a_node_that_may_host_vms_must_state_its_cpu_and_memory(tmp_path: Path, roles, stated, complaint):
    topology = make_topology().node("c-a-1", "rack-a", roles, **stated).write(tmp_path / "topology.yaml")
    with pytest.raises(TopologyError) as raised:
        Topology.load(topology)
    assert str(raised.value).startswith(f"{topology}: {complaint}; a compute node")
    assert "must state its cpu and memory" in str(raised.value)


C1 = {"name": "c1", "rack": "r", "roles": ["compute"], "cpu": 32, "memory": "128Gi"}


@pytest.mark.parametrize(("document", "complaint"), [
    ({}, "non-empty list 'nodes'"),
    ({"nodes": []}, "non-empty list 'nodes'"),
    ({"nodes": ["c1"]}, "nodes[0]: expected a mapping"),
    ({"nodes": [{**C1, "name": "C_1"}]}, "name 'C_1' must be a DNS label"),
    ({"nodes": [{**C1, "rack": ""}]}, "rack '' must be a DNS label"),
    ({"nodes": [{**C1, "roles": ["gpu"]}]}, "roles must be a subset"),
    ({"nodes": [{**C1, "roles": "compute"}]}, "roles must be a subset"),
    ({"nodes": [{**C1, "cpu": "lots"}]}, "cpu 'lots' is not a positive"),
    ({"nodes": [{**C1, "memory": "0"}]}, "memory '0' is not a positive"),
    ({"nodes": [{**C1, "images": ["x"]}]}, "only storage nodes (or"),
    ({"nodes": [{"name": "c1", "rack": "r", "roles": ["storage"], "images": ["Bad Name"]}]}, "images must be"),
    ({"nodes": [{**C1, "gpus": 1}]}, "unknown fields ['gpus']"),
    ({"nodes": [C1] * 2}, "duplicate node names ['c1']"),
])
def test_mistakes_are_refused_with_a_message_naming_them(document, complaint):
    with pytest.raises(TopologyError) as raised:
        Topology.parse(document)
    assert complaint in str(raised.value)
