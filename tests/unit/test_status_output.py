"""How ``rackmesh status`` shows the mesh: a table per rack (its leaders, a row per member with free capacity
of allocatable and the reservations it holds), an agent without an answer as such, storage-only members
without capacity, then the requests with stage, coordinator, VMs placed of replicas, age and why a request
waits; and the same as JSON for scripts."""

from rackmesh.labels import Role
from rackmesh.quantities import Resources
from rackmesh.status_output import as_json, table
from rackmesh.status_view import AgentReport, Held, MeshStatus, NodeStatus, RackStatus, RequestStatus

NOW = 1_000_000.0
ALLOCATABLE = Resources.parse(32, "128Gi")
U1_LARGE = Resources.parse(2, "8Gi")


def report(vms: int = 0, held: list[Held] | None = None, gone: bool = False) -> AgentReport:
    return AgentReport(ALLOCATABLE, ALLOCATABLE - U1_LARGE * vms, held or [], gone)


def mesh() -> MeshStatus:
    compute = RackStatus("rack-a", {Role.COMPUTE: "c-a-1", Role.STORAGE: None}, [
        NodeStatus("c-a-1", "https://127.0.1.1:8470", [Role.COMPUTE], [Role.COMPUTE],
                   report(3, [Held("default/lob123", 2, 1, 27.5)])),
        NodeStatus("c-a-2", "https://127.0.1.2:8470", [Role.COMPUTE], [], None, "no answer within 5 s"),
        NodeStatus("c-a-3", "https://127.0.1.3:8470", [Role.COMPUTE], [], report(gone=True)),
        NodeStatus("s-a-1", "https://127.0.1.4:8470", [Role.STORAGE], [], report()),
    ])
    requests = [
        RequestStatus("uid-1", "default/lob123", "Deploying", "c-a-1", 50, 48, changed_at=NOW - 7),
        RequestStatus("uid-2", "team/big", "Waiting", "c-a-1", 500, 0, "InsufficientCapacity",
                      "rack-a could host 16", ["rack-b"], NOW - 300),
        RequestStatus("uid-3", "", "Unreadable", message="RequestRecord: neither JSON nor zlib data"),
    ]
    return MeshStatus("127.0.0.1:2181", [compute], requests)


def test_a_rack_shows_its_leaders_then_each_member_with_free_of_allocatable_and_what_it_holds():
    lines = table(mesh(), NOW).splitlines()
    assert lines[0] == "RACK rack-a   leaders: compute c-a-1, storage <none>"
    rows = {line.split()[0]: line for line in lines[2:6]}
    assert lines[1].split() == ["NODE", "ROLES", "LEADS", "FREE", "CPU", "FREE", "MEMORY", "RESERVATIONS"]
    assert rows["c-a-1"].split() == ["c-a-1", "compute", "compute", "26", "of", "32", "104Gi", "of", "128Gi",
                                     "default/lob123", "(2", "offered,", "1", "committed,", "27.5s", "left)"]
    assert rows["c-a-2"].split()[:3] == ["c-a-2", "compute", "-"]
    assert rows["c-a-2"].endswith("<no answer within 5 s>")
    assert rows["c-a-3"].endswith("Node gone: offers no room")
    assert rows["s-a-1"].split() == ["s-a-1", "storage", "-", "-", "-", "-"]
    # Columns line up: every member's free CPU starts where the header's does.
    column = lines[1].index("FREE CPU")
    assert rows["c-a-1"][column:].startswith("26 of 32")
    assert rows["c-a-3"][column:].startswith("32 of 32")


def test_requests_show_stage_coordinator_vms_age_and_why_one_waits():
    text = table(mesh(), NOW)
    requests = text[text.index("REQUESTS"):].splitlines()
    assert requests[0] == "REQUESTS   1 in flight, 3 recorded"
    assert requests[1].split() == ["REQUEST", "STAGE", "COORDINATOR", "VMS", "SINCE", "NOTE"]
    assert requests[2].split() == ["default/lob123", "Deploying", "c-a-1", "48/50", "7s"]
    assert requests[3].split()[:5] == ["team/big", "Waiting", "c-a-1", "0/500", "5m"]
    assert requests[3].endswith("InsufficientCapacity: rack-a could host 16; placed without rack-b")
    assert requests[4].split()[:5] == ["uid-3", "Unreadable", "-", "0/0", "-"]
    assert requests[4].endswith("RequestRecord: neither JSON nor zlib data")


def test_an_empty_mesh_says_so():
    assert table(MeshStatus("zk:2181", [], []), NOW).splitlines() == [
        "no rackmesh members in ZooKeeper at zk:2181", "", "no requests in ZooKeeper"]


def test_json_has_every_member_with_its_answer_or_its_problem():
    document = as_json(mesh())
    rack = document["racks"][0]
    assert rack["leaders"] == {"compute": "c-a-1", "storage": None}
    leader, silent = rack["members"][0], rack["members"][1]
    assert leader == {
        "node": "c-a-1", "endpoint": "https://127.0.1.1:8470", "roles": ["compute"], "leads": ["compute"],
        "answered": True, "allocatable": {"cpuMillis": 32000, "memoryBytes": 128 * 2**30},
        "free": {"cpuMillis": 26000, "memoryBytes": 104 * 2**30}, "gone": False,
        "reservations": [{"request": "default/lob123", "offered": 2, "committed": 1, "expiresInSeconds": 27.5}]}
    assert silent == {"node": "c-a-2", "endpoint": "https://127.0.1.2:8470", "roles": ["compute"], "leads": [],
                      "answered": False, "problem": "no answer within 5 s"}
    assert document["requests"][1] == {
        "request": "team/big", "uid": "uid-2", "stage": "Waiting", "coordinator": "c-a-1", "replicas": 500,
        "placed": 0, "reason": "InsufficientCapacity", "message": "rack-a could host 16", "unanswered": ["rack-b"],
        "changedAt": NOW - 300}
