"""No ZooKeeper record outlives its request.

Case matrix: a record whose DeploymentRequest does not exist (as a coordinator still in a round may write
after the request's finalizer ran) is deleted by the operator's sweep (two sweeps of 2 s on the sandbox);
the record of a request that exists is kept.
"""

import json

from rackmesh import messages
from rackmesh.protocol import Order, RequestRef
from rackmesh.request_record import RequestRecord, Stage
from rackmesh.zk_layout import ZkLayout
from rackmesh_sandbox.lifecycle import SANDBOX_SETTINGS
from tests.support.builders import make_request
from tests.support.waiting import eventually


def test_a_record_whose_request_is_gone_is_swept(sandbox, tmp_path):
    sandbox.kubectl("apply", "-f", str(make_request("swept-neighbour").write(tmp_path / "dr.yaml")))
    live = json.loads(sandbox.kubectl("get", "dr", "swept-neighbour", "-o", "json").stdout)["metadata"]["uid"]
    layout = ZkLayout()
    orphan = RequestRecord(Order(RequestRef("no-such-request", "default", "ghost"), 1, "u1.small",
                                 "lob123-rhel-6.0"), "c-0-0", Stage.PLACING)
    try:
        with sandbox.zookeeper() as client:
            client.create(layout.request("no-such-request"), messages.encode_bytes(orphan), makepath=True)
            eventually(lambda: client.exists(layout.request(live)), what="the live request's record")
            eventually(lambda: not client.exists(layout.request("no-such-request")),
                       timeout=4 * SANDBOX_SETTINGS["record_sweep_interval"] + 5, what="the orphan record swept")
            assert client.exists(layout.request(live))
    finally:
        sandbox.kubectl("delete", "dr", "swept-neighbour", "--ignore-not-found")
