"""The sandbox topology file: valid files load; each kind of mistake is refused with a message naming it."""

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
    node = Topology.parse(make_topology().node("spare", "storage-0", [], images=["lob123-rhel-6.0"]).obj()).nodes[0]
    assert (node.roles, node.images) == ((), ("lob123-rhel-6.0",))


def test_storage_only_nodes_get_default_resources():
    node = Topology.parse(make_topology().storage_racks(1, nodes=1).obj()).nodes[0]
    assert (node.cpu, node.memory) == ("8", "32Gi")


@pytest.mark.parametrize(("document", "complaint"), [
    ({}, "non-empty list 'nodes'"),
    ({"nodes": []}, "non-empty list 'nodes'"),
    ({"nodes": ["c1"]}, "nodes[0]: expected a mapping"),
    ({"nodes": [{"name": "C_1", "rack": "r", "roles": ["compute"]}]}, "name 'C_1' must be a DNS label"),
    ({"nodes": [{"name": "c1", "rack": "", "roles": ["compute"]}]}, "rack '' must be a DNS label"),
    ({"nodes": [{"name": "c1", "rack": "r", "roles": ["gpu"]}]}, "roles must be a subset"),
    ({"nodes": [{"name": "c1", "rack": "r", "roles": "compute"}]}, "roles must be a subset"),
    ({"nodes": [{"name": "c1", "rack": "r", "roles": ["compute"], "cpu": "lots"}]}, "cpu 'lots' is not a positive"),
    ({"nodes": [{"name": "c1", "rack": "r", "roles": ["compute"], "memory": "0"}]}, "memory '0' is not a positive"),
    ({"nodes": [{"name": "c1", "rack": "r", "roles": ["compute"], "images": ["x"]}]}, "only storage nodes (or"),
    ({"nodes": [{"name": "c1", "rack": "r", "roles": ["storage"], "images": ["Bad Name"]}]}, "images must be"),
    ({"nodes": [{"name": "c1", "rack": "r", "roles": ["compute"], "gpus": 1}]}, "unknown fields ['gpus']"),
    ({"nodes": [{"name": "c1", "rack": "r", "roles": ["compute"]}] * 2}, "duplicate node names ['c1']"),
])
def test_mistakes_are_refused_with_a_message_naming_them(document, complaint):
    with pytest.raises(TopologyError) as raised:
        Topology.parse(document)
    assert complaint in str(raised.value)
