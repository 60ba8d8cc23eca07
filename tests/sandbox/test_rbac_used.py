"""RBAC is exactly what the code calls: the verbs each component used on a recorded run of the sandbox
(the API's access record), compared with what `manifests/` grants it.

The run, on a sandbox of its own (so no other test's calls are in the record), covers a request's life:
created while imports are held and an image holder dies (the VMs' agents move their disks to the other copy),
scaled out and in, a VM deleted and healed, a node taken out of service (the operator deletes its VMs), the
request deleted. What the sandbox cannot exercise is listed
below with the reason; a grant nobody uses, or a listed exception that the run does use, fails the test.
"""

import json
from collections.abc import Iterator

import pytest

from rackmesh_sandbox.cdi_simulation import HOLD_LABEL
from rackmesh_sandbox.cluster_seed import manifest_security
from tests.manifests.support import grants
from tests.support.builders import make_request, make_topology
from tests.support.sandbox import Sandbox, start
from tests.support.waiting import eventually

AGENT, OPERATOR = "rackmesh-agent", "rackmesh-operator"
NOT_EXERCISED = {
    AGENT: {
        # node_agent/vms/writer.py: after a 409 on create, whether the VM of that name is ours.
        ("get", "kubevirt.io", "virtualmachines"),
    },
    OPERATOR: {
        # kopf peering: the sandbox runs one operator, standalone (SANDBOX_SETTINGS operator_peering "").
        ("list", "kopf.dev", "clusterkopfpeerings"), ("watch", "kopf.dev", "clusterkopfpeerings"),
        ("patch", "kopf.dev", "clusterkopfpeerings"),
        # operator/image_grants.py _put: restoring a namespace's image access that already exists (an operator
        # writes it once per namespace and process; the run does not restart the operator).
        ("patch", "", "configmaps"), ("patch", "", "secrets"),
    },
}


def granted(account: str) -> set[tuple[str, str, str]]:
    return {(verb, group, resource) for (group, resource, _), verbs in grants(tuple(manifest_security()), account)
            .items() for verb in verbs}


def used(sandbox, account: str) -> set[tuple[str, str, str]]:
    record = json.loads(sandbox.kubectl("get", "--raw", "/debug/rackmesh/access").stdout)
    return {tuple(entry) for entry in record.get(f"system:serviceaccount:rackmesh-system:{account}", [])}


def phase(sandbox, name: str) -> str | None:
    return json.loads(sandbox.kubectl("get", "dr", name, "-o", "json").stdout).get("status", {}).get("phase")


def vms(sandbox, name: str) -> list[dict]:
    return json.loads(sandbox.kubectl("get", "vm", "-l", f"rackmesh.io/request={name}", "-o", "json").stdout)["items"]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    running = start(tmp_path_factory.mktemp("rbac"),
                    make_topology().compute_racks(1, nodes=3).storage_racks(2, nodes=1).obj())
    yield running
    running.rackmesh("sandbox", "down", "--state-dir", str(running.state_dir))


def disks(sandbox, name: str) -> list[dict]:
    return json.loads(sandbox.kubectl("get", "dv", "-l", f"rackmesh.io/request={name}", "-o", "json").stdout)["items"]


def sources(sandbox, name: str) -> set[str]:
    return {vm["spec"]["dataVolumeTemplates"][0]["spec"]["source"]["http"]["url"] for vm in vms(sandbox, name)}


def test_each_component_uses_exactly_the_verbs_its_role_grants(sandbox, tmp_path):
    name = "rbac-run"
    # Imports held before they start, and a holder killed: the agents move the disks (VM patch, DataVolume delete).
    sandbox.kubectl("label", "namespace", "default", f"{HOLD_LABEL}=ImportScheduled")
    sandbox.kubectl("apply", "-f", str(make_request(name).replicas(3).instancetype("u1.small").write(tmp_path / "a")))
    eventually(lambda: len(disks(sandbox, name)) == 3 and all(
        (dv.get("status") or {}).get("phase") == "ImportScheduled" for dv in disks(sandbox, name)),
        timeout=30, what="3 root disks held")
    dead = f"{sandbox.state.agents['s-0-0']}/images/"
    assert any(url.startswith(dead) for url in sources(sandbox, name))
    sandbox.kill("agent-s-0-0")
    try:
        eventually(lambda: not any(url.startswith(dead) for url in sources(sandbox, name)), timeout=60,
                   what="every disk moved off s-0-0")
    finally:
        sandbox.restart("agent-s-0-0")
        sandbox.kubectl("label", "namespace", "default", f"{HOLD_LABEL}-")
    eventually(lambda: phase(sandbox, name) == "Ready", timeout=30, what="Ready at 3")
    sandbox.kubectl("patch", "dr", name, "--type=merge", "-p", '{"spec": {"replicas": 5}}')
    eventually(lambda: len(vms(sandbox, name)) == 5 and phase(sandbox, name) == "Ready", timeout=30, what="5")
    sandbox.kubectl("patch", "dr", name, "--type=merge", "-p", '{"spec": {"replicas": 2}}')
    eventually(lambda: len(vms(sandbox, name)) == 2 and phase(sandbox, name) == "Ready", timeout=30, what="2")
    first = vms(sandbox, name)[0]
    sandbox.kubectl("delete", "vm", first["metadata"]["name"], "--wait=false")
    eventually(lambda: {vm["metadata"]["uid"] for vm in vms(sandbox, name)} - {first["metadata"]["uid"]}
               and len(vms(sandbox, name)) == 2, timeout=30, what="the deleted VM back")
    node = vms(sandbox, name)[0]["metadata"]["labels"]["rackmesh.io/node"]
    taint = "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute"
    sandbox.kubectl("taint", "node", node, taint)
    try:
        eventually(lambda: all(vm["metadata"]["labels"]["rackmesh.io/node"] != node for vm in vms(sandbox, name))
                   and len(vms(sandbox, name)) == 2, timeout=30, what=f"the VMs of {node} re-placed")
    finally:
        sandbox.kubectl("taint", "node", node, f"{taint}-")
    sandbox.kubectl("delete", "dr", name)
    eventually(lambda: not vms(sandbox, name), timeout=30, what="the VMs gone with the request")

    for account in (AGENT, OPERATOR):
        recorded, allowed = used(sandbox, account), granted(account)
        assert recorded <= allowed, f"{account} used what it may not: {recorded - allowed}"
        assert allowed - recorded == NOT_EXERCISED[account], (
            f"{account}: granted but not used on the run: {sorted(allowed - recorded - NOT_EXERCISED[account])}; "
            f"listed as not exercised, but used: {sorted(NOT_EXERCISED[account] & recorded)}")
