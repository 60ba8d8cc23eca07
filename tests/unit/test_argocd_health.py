"""The Argo CD health check (manifests/argocd/health.lua) over hand-written DeploymentRequests.

Case matrix:
- generation not observed: no status, no observedGeneration, observedGeneration behind (even with a
  Ready=True left from the old spec), a condition stale while the status is current -> Progressing
- phase Failed: the Stalled reason, else the Ready reason, else "Failed" -> Degraded
- Stalled=True for each waiting reason -> Degraded "<reason>: <message>"; Stalled=False does not degrade
- Ready=True -> Healthy with its message, or the counts when the message is empty
- otherwise Progressing: the Reconciling message, else the Ready message, else counts, else generic
- numbers that arrive as strings (a json.Number) still compare
- the helper runs the script in Argo CD's sandbox (no string library), so it catches what Argo CD would
- kustomize: `kubectl kustomize manifests/argocd` is one argocd-cm whose value is health.lua, byte for byte
- property (with hypothesis): any partial status gives Healthy, Progressing or Degraded and a message
"""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from lupa.lua51 import LuaError

from tests.support import argocd
from tests.support.argocd import HEALTH_LUA, argocd_health

REPO = Path(__file__).resolve().parents[2]
KEY = "resource.customizations.health.rackmesh.io_DeploymentRequest"


def cond(type_: str, status: str, reason: str, message: str, generation: int = 2) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": "2026-01-01T00:00:00Z"}


def request(status: dict[str, Any] | None, generation: int = 2, replicas: int = 50) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "rackmesh.io/v1alpha1", "kind": "DeploymentRequest",
        "metadata": {"name": "lob123", "namespace": "default", "generation": generation},
        "spec": {"replicas": replicas, "instancetype": "u1.large", "image": "lob123-rhel-6.0"},
    }
    if status is not None:
        obj["status"] = status
    return obj


def status(phase: str, *conditions: dict[str, Any], observed: int | None = 2, ready: int = 0,
           replicas: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"phase": phase, "replicas": replicas, "readyReplicas": ready,
                            "conditions": list(conditions)}
    if observed is not None:
        body["observedGeneration"] = observed
    return body


READY = cond("Ready", "True", "Ready", "50/50 VMs ready")
NOT_RECONCILING = cond("Reconciling", "False", "Ready", "50/50 VMs ready")
NOT_STALLED = cond("Stalled", "False", "Ready", "")

# --- generation not observed yet ---------------------------------------------------------------------


def test_no_status_waits_for_the_operator():
    assert argocd_health(request(None)) == ("Progressing", "Waiting for the operator to observe generation 2")


def test_empty_status_waits_for_the_operator():
    assert argocd_health(request({})) == ("Progressing", "Waiting for the operator to observe generation 2")


def test_missing_observed_generation_waits_for_the_operator():
    obj = request(status("Ready", READY, observed=None, ready=50, replicas=50))
    assert argocd_health(obj) == ("Progressing", "Waiting for the operator to observe generation 2")


def test_a_ready_status_of_the_previous_spec_is_not_healthy():
    """Scaled 50 -> 60: generation 3, but the status still describes generation 2 (all 50 ready)."""
    obj = request(status("Ready", READY, NOT_RECONCILING, ready=50, replicas=50), generation=3, replicas=60)
    assert argocd_health(obj) == ("Progressing", "Waiting for the operator to observe generation 3")


def test_a_stale_ready_condition_is_ignored():
    """The status says generation 3, but the Ready=True condition still dates from generation 2."""
    obj = request(status("Deploying", READY, observed=3, ready=50, replicas=50), generation=3, replicas=60)
    assert argocd_health(obj) == ("Progressing", "50/60 VMs ready")


def test_without_metadata_generation_only_observed_generation_is_required():
    obj = request(status("Ready", READY, ready=50, replicas=50))
    del obj["metadata"]["generation"]
    assert argocd_health(obj) == ("Healthy", "50/50 VMs ready")
    obj["status"].pop("observedGeneration")
    assert argocd_health(obj) == ("Progressing", "Waiting for the operator to observe the request")


# --- Degraded ------------------------------------------------------------------------------------------


def test_failed_reports_the_stalled_reason_and_message():
    stalled = cond("Stalled", "True", "InvalidName", "name 'Lob_123' is not a valid VM name prefix")
    not_ready = cond("Ready", "False", "InvalidName", "name 'Lob_123' is not a valid VM name prefix")
    obj = request(status("Failed", not_ready, stalled))
    assert argocd_health(obj) == ("Degraded", "InvalidName: name 'Lob_123' is not a valid VM name prefix")


def test_failed_without_stalled_reports_the_ready_reason():
    not_ready = cond("Ready", "False", "UnknownInstancetype", "no VirtualMachineClusterInstancetype u1.huge")
    obj = request(status("Failed", not_ready))
    assert argocd_health(obj) == ("Degraded", "UnknownInstancetype: no VirtualMachineClusterInstancetype u1.huge")


def test_failed_without_conditions_is_still_degraded():
    assert argocd_health(request(status("Failed"))) == ("Degraded", "Failed")


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("InsufficientCapacity", "50 x u1.large do not fit: the compute racks offered 31"),
        ("InsufficientImageReplicas", "image lob123-rhel-6.0 is held by 1 storage agent, 2 needed"),
        ("UnknownInstancetype", "no VirtualMachineClusterInstancetype u1.huge"),
    ],
)
def test_stalled_is_degraded_with_reason_and_message(reason: str, message: str):
    obj = request(status("Pending", cond("Ready", "False", reason, message), cond("Stalled", "True", reason, message),
                         cond("Reconciling", "False", reason, "")))
    assert argocd_health(obj) == ("Degraded", f"{reason}: {message}")


def test_stalled_without_reason_or_message():
    obj = request(status("Pending", {"type": "Stalled", "status": "True"}))
    assert argocd_health(obj) == ("Degraded", "Stalled")
    obj["status"]["conditions"][0]["message"] = "waiting for capacity"
    assert argocd_health(obj) == ("Degraded", "waiting for capacity")


def test_stalled_false_does_not_degrade():
    reconciling = cond("Reconciling", "True", "Deploying", "50/50 VMs written, 7 ready")
    obj = request(status("Deploying", NOT_STALLED, reconciling))
    assert argocd_health(obj) == ("Progressing", "50/50 VMs written, 7 ready")


# --- Healthy -------------------------------------------------------------------------------------------


def test_ready_is_healthy_with_its_message():
    obj = request(status("Ready", READY, NOT_RECONCILING, NOT_STALLED, ready=50, replicas=50))
    assert argocd_health(obj) == ("Healthy", "50/50 VMs ready")


def test_ready_without_message_falls_back_to_the_counts():
    obj = request(status("Ready", cond("Ready", "True", "Ready", ""), ready=50, replicas=50))
    assert argocd_health(obj) == ("Healthy", "50/50 VMs ready")


def test_numbers_given_as_strings_still_compare():
    """Argo CD hands a json.Number to Lua as a string."""
    obj = request(status("Ready", READY, ready=50, replicas=50))
    obj["metadata"]["generation"] = "2"
    obj["status"]["observedGeneration"] = "2"
    assert argocd_health(obj) == ("Healthy", "50/50 VMs ready")
    obj["metadata"]["generation"] = "10"  # compared as numbers, not as strings ("2" > "10")
    assert argocd_health(obj) == ("Progressing", "Waiting for the operator to observe generation 10")


# --- Progressing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "reason", "message"),
    [
        ("Placing", "Placing", "asking 3 compute racks for 50 x u1.large"),
        ("Deploying", "Deploying", "50/50 VMs written, 12 ready"),
        ("Deploying", "Scaling", "scaling from 50 to 60 VMs"),
        ("Deploying", "Healing", "recreating 2 VMs lost with node c-4"),
    ],
)
def test_reconciling_reports_its_message(phase: str, reason: str, message: str):
    not_ready = cond("Ready", "False", reason, "12/50 VMs ready")
    obj = request(status(phase, not_ready, cond("Reconciling", "True", reason, message), NOT_STALLED, ready=12))
    assert argocd_health(obj) == ("Progressing", message)


def test_reconciling_without_message_reports_its_reason():
    obj = request(status("Placing", {"type": "Reconciling", "status": "True", "reason": "Placing"}))
    assert argocd_health(obj) == ("Progressing", "Placing")


def test_without_reconciling_the_ready_message_is_reported():
    obj = request(status("Pending", cond("Ready", "False", "Pending", "waiting for a compute leader")))
    assert argocd_health(obj) == ("Progressing", "waiting for a compute leader")


def test_without_conditions_the_counts_are_reported():
    assert argocd_health(request(status("Deploying", ready=12, replicas=50))) == ("Progressing", "12/50 VMs ready")


def test_without_anything_the_message_is_generic():
    obj = request({"observedGeneration": 2})
    del obj["spec"]["replicas"]
    assert argocd_health(obj) == ("Progressing", "Waiting for the VMs to be ready")


def test_malformed_fields_are_not_errors():
    obj = request({"observedGeneration": 2, "phase": 7, "conditions": ["Ready", None, {"type": "Ready", "status": True},
                                                                       {"type": "Ready", "message": {"x": 1}}]})
    assert argocd_health(obj) == ("Progressing", "Waiting for the VMs to be ready")
    for weird in ("Ready", 3, ["Ready"], True):
        assert argocd_health({"status": weird})[0] == "Progressing"


# --- the helper is as strict as Argo CD -----------------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        'return {status = string.format("%s", "Healthy"), message = ""}',  # no string library
        'return {status = ("healthy"):upper(), message = ""}',  # nor string methods
        "return {status = tostring(math.floor(1)), message = ''}",  # nor math
    ],
)
def test_the_helper_has_only_the_libraries_argo_cd_opens(script: str, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(argocd, "HEALTH_LUA", tmp_path / "health.lua")
    argocd.HEALTH_LUA.write_text(script)
    with pytest.raises(LuaError):
        argocd_health({})


def test_the_helper_reports_an_invalid_status_as_argo_cd_does(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(argocd, "HEALTH_LUA", tmp_path / "health.lua")
    argocd.HEALTH_LUA.write_text('return {status = "Fine", message = "ok"}')
    assert argocd_health({}) == ("Unknown", "Lua returned an invalid health status")


def test_lists_drop_nils_as_argo_cd_does():
    """gopher-lua's Append skips nil, so a condition after a null one is still found by ipairs."""
    obj = request(status("Ready", None, READY, ready=50, replicas=50))  # type: ignore[arg-type]
    assert argocd_health(obj) == ("Healthy", "50/50 VMs ready")


# --- the kustomize build ---------------------------------------------------------------------------------


@pytest.mark.kubectl
def test_kustomize_builds_argocd_cm_holding_exactly_health_lua():
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl is not on PATH (make system-deps installs it)"
    result = subprocess.run([kubectl, "kustomize", str(REPO / "manifests" / "argocd")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert len(docs) == 1
    (cm,) = docs
    assert (cm["apiVersion"], cm["kind"]) == ("v1", "ConfigMap")
    assert cm["metadata"]["name"] == "argocd-cm"  # no name suffix hash
    assert cm["metadata"]["namespace"] == "argocd"
    # Argo CD only reads settings ConfigMaps with this label.
    assert cm["metadata"]["labels"]["app.kubernetes.io/part-of"] == "argocd"
    assert list(cm["data"]) == [KEY]
    assert cm["data"][KEY].encode() == HEALTH_LUA.read_bytes()


# --- property: never an error, always one of three statuses ------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-3, 5) | st.floats(allow_nan=True) | st.text(max_size=8)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
condition_types = st.sampled_from(["Ready", "Reconciling", "Stalled", "Other"])
conditions = st.fixed_dictionaries({}, optional={
    "type": condition_types | json_values,
    "status": st.sampled_from(["True", "False", "Unknown"]) | json_values,
    "reason": st.sampled_from(["InsufficientCapacity", "InvalidName", "Placing", ""]) | json_values,
    "message": st.text(max_size=20) | json_values,
    "observedGeneration": st.integers(0, 4) | json_values,
})
statuses = st.fixed_dictionaries({}, optional={
    "observedGeneration": st.integers(0, 4) | st.sampled_from(["2", "x"]) | json_values,
    "phase": st.sampled_from(["Pending", "Placing", "Deploying", "Ready", "Failed"]) | json_values,
    "replicas": st.integers(0, 60) | json_values,
    "readyReplicas": st.integers(0, 60) | json_values,
    "conditions": st.lists(conditions, max_size=4) | json_values,
})
objects = st.fixed_dictionaries({}, optional={
    "metadata": st.fixed_dictionaries({}, optional={"generation": st.integers(1, 4) | json_values}) | json_values,
    "spec": st.fixed_dictionaries({}, optional={"replicas": st.integers(1, 60) | json_values}) | json_values,
    "status": statuses | json_values,
})


@settings(max_examples=300, deadline=None)
@given(objects)
def test_any_partial_status_gets_a_health(obj: dict[str, Any]):
    health, message = argocd_health(obj)
    assert health in {"Healthy", "Progressing", "Degraded"}
    assert isinstance(message, str)
    assert message != ""
