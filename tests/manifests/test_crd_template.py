"""The CRD's ``spec.template`` schema is KubeVirt's, as hack/template_schema.py writes it from the vendored
VirtualMachine schema: an edit by hand, or a new KubeVirt schema without regenerating, fails here."""

import pathlib
import subprocess
import sys

from tests.manifests.support import REPO

GENERATOR = REPO / "hack" / "template_schema.py"
CRD = REPO / "crds" / "deploymentrequest.yaml"


def check(crd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GENERATOR), "--check", "--crd", str(crd)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_crd_holds_what_the_generator_writes() -> None:
    done = check(CRD)
    assert done.returncode == 0, done.stderr


def test_a_hand_edit_of_the_generated_block_is_found(tmp_path: pathlib.Path) -> None:
    edited = tmp_path / "crd.yaml"
    text = CRD.read_text()
    assert "maxItems: 16" in text
    edited.write_text(text.replace("maxItems: 16", "maxItems: 17", 1))
    done = check(edited)
    assert done.returncode == 1 and "is stale" in done.stderr
