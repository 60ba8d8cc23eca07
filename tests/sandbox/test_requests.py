"""DeploymentRequests through real kubectl against the sandbox, with the real operator running.

Case matrix:
- a valid request is stored, listed by `kubectl get dr` with the printer columns, driven by the operator
  to Ready (conditions, Events shown by `kubectl describe`), and `kubectl delete` removes it
- replicas below 0 or above the bound, a missing image, a bad name: refused at apply time with the
  schema's message, and nothing is stored
"""

import json

import pytest

from tests.support.builders import make_request
from tests.support.waiting import eventually


def test_valid_request_is_listed_taken_in_charge_and_deleted(sandbox, tmp_path):
    manifest = make_request("web").replicas(3).instancetype("u1.small").write(tmp_path / "web.yaml")
    assert "deploymentrequest.rackmesh.io/web created" in sandbox.kubectl("apply", "-f", str(manifest)).stdout

    def ready():
        request = json.loads(sandbox.kubectl("get", "dr", "web", "-o", "json").stdout)
        return request if request.get("status", {}).get("phase") == "Ready" else None

    request = eventually(ready, what="phase Ready set by the operator")
    conditions = {c["type"]: c for c in request["status"]["conditions"]}
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("True", "Ready")
    assert (conditions["Reconciling"]["status"], conditions["Stalled"]["status"]) == ("False", "False")
    assert request["status"]["observedGeneration"] == request["metadata"]["generation"] == 1

    table = sandbox.kubectl("get", "dr").stdout.splitlines()
    assert table[0].split() == ["NAME", "REPLICAS", "READY", "PHASE", "AGE"]
    assert table[1].split()[:4] == ["web", "3", "3", "Ready"]
    wide = sandbox.kubectl("get", "dr", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "REPLICAS", "READY", "PHASE", "REASON", "INSTANCETYPE", "IMAGE", "COORDINATOR",
                               "AGE"]

    described = eventually(lambda: (d := sandbox.kubectl("describe", "dr", "web").stdout) and "Events:" in d
                           and "Waiting to place 3 x u1.small" in d and "3/3 VMs ready" in d and d)
    assert "Placements:" in described and "Image Copies:" in described

    sandbox.kubectl("delete", "dr", "web")
    gone = sandbox.kubectl("get", "dr", "web", check=False)
    assert gone.returncode != 0
    assert 'deploymentrequests.rackmesh.io "web" not found' in gone.stderr


@pytest.mark.parametrize(("request_builder", "message"), [
    (make_request("negative").replicas(-1), "spec.replicas: Invalid value: -1: spec.replicas in body should be "
                                            "greater than or equal to 0"),
    (make_request("huge").replicas(10001), "spec.replicas in body should be less than or equal to 10000"),
    (make_request("noimage").without("image"), "spec.image: Required value"),
    (make_request("badimage").image("Not_An_Image"), "spec.image in body should match"),
])
def test_schema_breaking_requests_are_refused_at_apply_time(sandbox, tmp_path, request_builder, message):
    name = request_builder.obj()["metadata"]["name"]
    result = sandbox.kubectl("apply", "-f", str(request_builder.write(tmp_path / "dr.yaml")), check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert sandbox.kubectl("get", "dr", name, check=False).returncode != 0
