"""What the operator reports, from what it observes (kstatus conventions).

Case matrix:
- placements: VMs grouped per node, with the node's rack, in (rack, node) order
- image copies: every holder given to the agents, with how many VMs import from it
- Ready only when exactly spec.replicas VMs exist and all are ready; fewer (healing), more (scaling in)
  or not ready (deploying) is Reconciling
- a round in flight: Placing or Deploying, Reconciling with what it does (placing, scaling, healing)
- a spec the coordinator has not taken yet: Reconciling/Scaling, and the generation is not observed
- a waiting round, or an operator-side blocker: Pending, Stalled with the reason; a final one: Failed
- VMs on NotReady nodes are named in Ready's message
- conditions keep lastTransitionTime while their status does not change
"""

import dataclasses

from rackmesh.protocol import ImageHolder, Order, RequestRef
from rackmesh.request_record import Portion, RequestRecord, Stage
from rackmesh_operator import progress
from rackmesh_operator.progress import Blocker, VmState
from rackmesh_operator.status import Phase

ORDER = Order(RequestRef("u-1", "default", "web"), 3, "u1.large", "lob123-rhel-6.0", generation=1)
A, B = ImageHolder("s-0", "store-0", "http://s-0/i.img"), ImageHolder("s-1", "store-1", "http://s-1/i.img")
RECORD = RequestRecord(ORDER, "c-a", Stage.SETTLED, [Portion("c-b", "rack-b", "http://c-b", [0], [A, B]),
                                                     Portion("c-a", "rack-a", "http://c-a", [1, 2], [B, A])])
VMS = [VmState("web-0000", 0, "c-b", True, A.url, "v0"), VmState("web-0001", 1, "c-a", True, B.url, "v1"),
       VmState("web-0002", 2, "c-a", True, A.url, "v2")]


def assess(vms=VMS, record=RECORD, replicas=3, generation=1, **kwargs):
    return progress.assess(replicas, generation, vms, record, **kwargs)


def test_placements_are_per_node_with_the_nodes_rack():
    assert progress.placements(VMS, {"c-a": "rack-a", "c-b": "rack-b"}) == [
        {"node": "c-a", "rack": "rack-a", "count": 2}, {"node": "c-b", "rack": "rack-b", "count": 1}]
    assert progress.placements(VMS[:1], {}) == [{"node": "c-b", "rack": "unknown", "count": 1}]


def test_image_copies_count_the_vms_importing_from_each_holder():
    copies = progress.image_copies(VMS, RECORD)
    assert copies == [{"node": "s-0", "rack": "store-0", "url": A.url, "vms": 2},
                      {"node": "s-1", "rack": "store-1", "url": B.url, "vms": 1}]
    assert progress.image_copies(VMS, None) == []


def test_ready_only_with_exactly_the_replicas_all_ready():
    verdict = assess()
    assert (verdict.phase, verdict.ready, verdict.reconciling, verdict.stalled) == (
        Phase.READY, ("Ready", "3/3 VMs ready"), None, None)
    not_ready = [dataclasses.replace(VMS[0], ready=False), *VMS[1:]]
    assert assess(not_ready).reconciling == ("Deploying", "1 VM not ready yet")
    assert assess(VMS[:2]).reconciling == ("Healing", "1 VM missing; re-placing under the same names")
    assert assess(VMS, replicas=2).reconciling == ("Scaling", "1 VM more than requested; removing")
    for verdict in (assess(not_ready), assess(VMS[:2]), assess(VMS, replicas=2)):
        assert verdict.phase == Phase.DEPLOYING and verdict.stalled is None


def test_a_round_in_flight_says_what_it_does():
    placing = dataclasses.replace(RECORD, stage=Stage.PLACING, portions=[])
    assert assess([], placing).phase == Phase.PLACING
    assert assess([], placing).reconciling == ("Placing", "placing 3 x u1.large from image lob123-rhel-6.0")
    scaling = dataclasses.replace(RECORD, stage=Stage.DEPLOYING, order=dataclasses.replace(ORDER, replicas=5),
                                  placing=[Portion("c-c", "rack-c", "http://c-c", [3, 4])])
    verdict = assess(VMS, scaling, replicas=5)
    assert verdict.phase == Phase.DEPLOYING
    assert verdict.reconciling == ("Scaling", "scaling from 3 to 5 VMs: placing 2 more on 1 node")
    healing = dataclasses.replace(RECORD, stage=Stage.COMMITTED, order=dataclasses.replace(ORDER, lost=[1]),
                                  portions=[RECORD.portions[0]])
    assert assess(VMS[::2], healing).reconciling == ("Healing", "re-placing 1 lost VM")


def test_a_spec_not_taken_yet_is_reconciling_and_not_observed():
    verdict = assess(generation=2, replicas=5)
    assert (verdict.phase, verdict.observed) == (Phase.PLACING, False)
    assert verdict.reconciling == ("Scaling", "scaling from 3 to 5 VMs")
    assert assess(record=None).observed is False


def test_waiting_rounds_and_blockers_are_stalled_with_their_reason():
    waiting = dataclasses.replace(RECORD, stage=Stage.WAITING, reason="InsufficientCapacity", message="no room")
    verdict = assess([], waiting)
    assert (verdict.phase, verdict.stalled, verdict.reconciling, verdict.observed) == (
        Phase.PENDING, ("InsufficientCapacity", "no room"), None, True)
    assert verdict.ready == ("InsufficientCapacity", "0/3 VMs ready")
    blocked = assess([], None, blocker=Blocker("UnknownInstancetype", "no such instancetype"))
    assert (blocked.phase, blocked.stalled) == (Phase.PENDING, ("UnknownInstancetype", "no such instancetype"))
    final = assess([], None, blocker=Blocker("InvalidName", "too long", final=True))
    assert (final.phase, final.stalled[0]) == (Phase.FAILED, "InvalidName")


def test_vms_on_not_ready_nodes_are_named_in_the_ready_message():
    verdict = assess(unready_nodes={"c-a": 2})
    assert "VMs on NotReady nodes (2 on c-a) are left in place" in verdict.ready[1]


def test_conditions_are_kstatus_and_keep_transition_times():
    waiting = dataclasses.replace(RECORD, stage=Stage.WAITING, reason="InsufficientCapacity", message="no room")
    first = progress.conditions(assess([], waiting), 1, [])
    by_type = {c["type"]: c for c in first}
    assert [c["type"] for c in first] == ["Ready", "Reconciling", "Stalled"]
    assert (by_type["Stalled"]["status"], by_type["Stalled"]["reason"]) == ("True", "InsufficientCapacity")
    assert (by_type["Ready"]["status"], by_type["Reconciling"]["status"]) == ("False", "False")
    for entry in first:
        entry["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    again = {c["type"]: c for c in progress.conditions(assess(), 2, first)}
    assert again["Ready"]["status"] == "True" and again["Ready"]["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    assert again["Reconciling"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"  # False before and after
    assert all(c["observedGeneration"] == 2 for c in again.values())
