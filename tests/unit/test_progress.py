"""What the operator reports, from what it observes.

Case matrix:
- placements: VMs grouped per node, with the rack the coordinator recorded, in (rack, node) order
- image copies: every holder given to the agents, with how many VMs import from it
- phase: Ready only when every VM exists and is ready, else Deploying
- conditions: Placed and Ready; a failure's reason on both; lastTransitionTime kept while unchanged
"""

from rackmesh.protocol import ImageHolder, Order, RequestRef
from rackmesh.request_record import Portion, RequestRecord, Stage
from rackmesh_operator import progress
from rackmesh_operator.progress import VmState
from rackmesh_operator.status import Phase

ORDER = Order(RequestRef("u-1", "default", "web"), 3, "u1.large", "lob123-rhel-6.0")
A, B = ImageHolder("s-0", "store-0", "http://s-0/i.img"), ImageHolder("s-1", "store-1", "http://s-1/i.img")
RECORD = RequestRecord(ORDER, "c-a", Stage.DEPLOYING, [Portion("c-b", "rack-b", "http://c-b", 0, 1, [A, B]),
                                                        Portion("c-a", "rack-a", "http://c-a", 1, 2, [B, A])])
VMS = [VmState("web-0000", "c-b", True, A.url), VmState("web-0001", "c-a", True, B.url),
       VmState("web-0002", "c-a", False, A.url)]


def test_placements_are_per_node_with_the_recorded_rack():
    assert progress.placements(VMS, RECORD) == [{"node": "c-a", "rack": "rack-a", "count": 2},
                                                {"node": "c-b", "rack": "rack-b", "count": 1}]
    assert progress.placements(VMS[:1], None) == [{"node": "c-b", "rack": "unknown", "count": 1}]


def test_image_copies_count_the_vms_importing_from_each_holder():
    assert progress.image_copies(VMS, RECORD) == [
        {"node": "s-0", "rack": "store-0", "url": A.url, "vms": 2},
        {"node": "s-1", "rack": "store-1", "url": B.url, "vms": 1},
    ]
    assert progress.image_copies(VMS, None) == []


def test_ready_only_when_every_vm_exists_and_is_ready():
    assert progress.deployed_phase(3, VMS) == Phase.DEPLOYING
    assert progress.deployed_phase(3, [VmState(v.name, v.node, True, v.source_url) for v in VMS]) == Phase.READY
    assert progress.deployed_phase(4, [VmState(v.name, v.node, True, v.source_url) for v in VMS]) == Phase.DEPLOYING


def test_conditions_carry_the_failure_and_keep_transition_times():
    failed = progress.conditions(Phase.FAILED, "InsufficientCapacity", "no room", 1, [])
    by_type = {c["type"]: c for c in failed}
    assert (by_type["Placed"]["status"], by_type["Placed"]["reason"]) == ("False", "InsufficientCapacity")
    assert (by_type["Ready"]["status"], by_type["Ready"]["message"]) == ("False", "no room")
    earlier = [{**c, "lastTransitionTime": "2020-01-01T00:00:00Z"} for c in failed]
    again = {c["type"]: c for c in progress.conditions(Phase.FAILED, "InsufficientCapacity", "x", 1, earlier)}
    assert again["Ready"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    ready = {c["type"]: c for c in progress.conditions(Phase.READY, "Ready", "3/3", 1, earlier)}
    assert ready["Ready"]["status"] == "True" and ready["Ready"]["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    assert ready["Placed"]["status"] == "True"
