"""Least authority on the running sandbox, tried as an attacker would (docs/security.md).

Case matrix:
- ZooKeeper: a client without a rackmesh certificate cannot even connect, so it cannot publish a fake
  leader; a compromised agent (a valid agent certificate) that publishes `leaders/compute/rack-evil`
  pointing at its own listener is ignored by the operator (no Node of that rack backs it): the listener
  gets no order, and requests are placed on real nodes
- the signer: a token of the wrong audience, of another ServiceAccount, or no CSR gets a 4xx with a
  reason; a real agent token gets a certificate for its own node, whatever the CSR asks
- the Kubernetes API, as agent c-0-0 with its own token: creating a VM pinned to c-0-1, deleting or
  patching c-0-1's VM, patching its own VM over to c-0-1, or deleting c-0-1's root-disk DataVolume is refused
  by the admission policy; a VM pinned to c-0-0, and patching it, is allowed; verbs its role lacks (updating
  VMs, reading Secrets, deleting DeploymentRequests) are refused by RBAC
"""

import asyncio
import base64
import hashlib
import json
import ssl
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from aiohttp import web
from cryptography import x509
from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError

from rackmesh.identity.authority import csr_for, new_key
from rackmesh.identity.names import Identity
from rackmesh.image_access import basic_header
from rackmesh.labels import Role
from rackmesh.protocol import ImageHolder, Order, RequestRef
from rackmesh.zk_layout import MemberRecord, ZkLayout
from rackmesh_node_agent.vms.manifest import virtual_machine
from tests.support.builders import make_request
from tests.support.waiting import eventually

COMPROMISED = "c-0-0"


class Listener:
    """An attacker's TLS server, holding the compromised node's certificate; counts what reaches it."""

    def __init__(self, sandbox: Any) -> None:
        self.seen: Counter[str] = Counter()
        self._credentials = sandbox.credentials(Identity.agent(COMPROMISED))
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "Listener":
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        async def anything(request: web.Request) -> web.Response:
            self.seen[request.path] += 1
            return web.json_response({"reason": "Gotcha", "message": "the attacker's listener"}, status=500)

        async def start() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", anything)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self._credentials.server_context())
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()


@pytest.fixture
def fake_leader(sandbox) -> Iterator[Listener]:
    with Listener(sandbox) as listener, sandbox.zookeeper(Identity.agent(COMPROMISED)) as client:
        record = MemberRecord(COMPROMISED, "rack-evil", Role.COMPUTE, f"https://127.0.0.1:{listener.port}")
        path = ZkLayout().leader(Role.COMPUTE, "rack-evil")
        client.create(path, record.encode(), ephemeral=True, makepath=True)
        yield listener


def test_without_a_certificate_zookeeper_cannot_be_reached_at_all(sandbox):
    client = KazooClient(hosts=sandbox.state.zk_hosts)  # no TLS, no certificate: what the attack used
    with pytest.raises(KazooTimeoutError):
        client.start(timeout=3)
    client.stop()
    client.close()


def test_a_fake_leader_published_by_a_compromised_agent_gets_no_order(sandbox, fake_leader, tmp_path):
    manifest = make_request("after-attack").replicas(4).instancetype("u1.small").write(tmp_path / "dr.yaml")
    sandbox.kubectl("apply", "-f", str(manifest))
    try:
        eventually(lambda: json.loads(sandbox.kubectl("get", "dr", "after-attack", "-o", "json").stdout)
                   .get("status", {}).get("phase") == "Ready", timeout=30, what="the request Ready")
        vms = json.loads(sandbox.kubectl("get", "vm", "-l", "rackmesh.io/request=after-attack", "-o",
                                         "json").stdout)["items"]
        assert len(vms) == 4
        assert {vm["metadata"]["labels"]["rackmesh.io/node"] for vm in vms} <= set(sandbox.state.agents)
        assert fake_leader.seen["/v1/orders"] == 0
        log = (sandbox.state_dir / "logs" / "operator.log").read_text()
        assert "leader entries that no Node backs are ignored" in log and "rack-evil/c-0-0" in log
    finally:
        sandbox.kubectl("delete", "dr", "after-attack", "--ignore-not-found")


def test_image_files_need_the_namespace_credential_the_operator_granted(sandbox, tmp_path):
    manifest = make_request("imported").replicas(1).instancetype("u1.small").write(tmp_path / "dr.yaml")
    sandbox.kubectl("apply", "-f", str(manifest))
    try:
        [vm] = eventually(lambda: json.loads(sandbox.kubectl("get", "vm", "-l", "rackmesh.io/request=imported",
                                                             "-o", "json").stdout)["items"], what="the VM")
        source = vm["spec"]["dataVolumeTemplates"][0]["spec"]["source"]["http"]
        assert (source["certConfigMap"], source["secretRef"]) == ("rackmesh-ca", "rackmesh-image-access")
        secret = json.loads(sandbox.kubectl("get", "secret", source["secretRef"], "-o", "json").stdout)["data"]
        user, password = (base64.b64decode(secret[key]).decode() for key in ("accessKeyId", "secretKey"))
        ca = json.loads(sandbox.kubectl("get", "configmap", source["certConfigMap"], "-o", "json").stdout)["data"]
        trust = ssl.create_default_context(cadata=ca["ca.pem"])  # what CDI's importer is given
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(source["url"], timeout=10, context=trust)
        assert refused.value.code == 401
        request = urllib.request.Request(source["url"], headers={"Authorization": basic_header(user, password)})
        with urllib.request.urlopen(request, timeout=10, context=trust) as response:
            image = response.read()
        assert hashlib.sha256(image).hexdigest() == vm["metadata"]["annotations"]["rackmesh.io/image-sha256"]
    finally:
        sandbox.kubectl("delete", "dr", "imported", "--ignore-not-found")


def _sign(sandbox, token: str, csr: str) -> tuple[int, dict[str, Any]]:
    signer = sandbox.state.processes[[r.name for r in sandbox.state.processes].index("operator")].env[
        "RACKMESH_SIGNER_URL"]
    request = urllib.request.Request(f"{signer}/v1/certificates", method="POST",
                                     data=json.dumps({"csr": csr, "token": token}).encode(),
                                     headers={"Content-Type": "application/json"})
    context = sandbox.tls(identity=None)
    context.check_hostname = False  # the signer is reached by IP; its certificate names operator.rackmesh
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


def test_the_signer_certifies_only_the_node_an_agent_token_is_bound_to(sandbox):
    identities = sandbox.state_dir / "identities"
    signer_token = (identities / f"agent-{COMPROMISED}" / "token").read_text()
    asking_for_another = csr_for(new_key(), Identity.agent("c-0-1")).decode()

    status, issued = _sign(sandbox, signer_token, asking_for_another)
    assert status == 200
    cert = x509.load_pem_x509_certificate(issued["certificate"].encode())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [f"{COMPROMISED}.agent.rackmesh"]

    api_token = _kubeconfig_token(identities / f"agent-{COMPROMISED}" / "kubeconfig")
    assert _sign(sandbox, api_token, asking_for_another)[1]["reason"] == "TokenRejected"  # the API's audience
    operator_token = _kubeconfig_token(identities / "operator" / "kubeconfig")
    assert _sign(sandbox, operator_token, asking_for_another)[1]["reason"] == "TokenRejected"
    status, refused = _sign(sandbox, signer_token, "not a CSR")
    assert (status, refused["reason"]) == (400, "BadCsr")


def _kubeconfig_token(path) -> str:
    return yaml.safe_load(path.read_text())["users"][0]["user"]["token"]


def _vm_for(node: str, name: str) -> str:
    """VM ``name``-0000 pinned to ``node`` as an agent writes one (its root disk ``name``-0000-rootdisk), owned by
    nothing."""
    order = Order(RequestRef("00000000-0000-0000-0000-000000000000", "default", name), 1, "u1.small",
                  "lob123-rhel-6.0")
    vm = virtual_machine(order, node, 0, [ImageHolder("s-0-0", "storage-0", "https://127.0.0.1/x.img")], "1Gi")
    vm["metadata"].pop("ownerReferences", None)
    return json.dumps(vm)


def test_an_agent_writes_only_vms_pinned_to_its_own_node_and_only_with_its_verbs(sandbox):
    agent = f"agent-{COMPROMISED}"
    other = sandbox.kubectl_as(agent, "create", "-f", "-", stdin=_vm_for("c-0-1", "evil"), check=False)
    assert other.returncode != 0
    assert "ValidatingAdmissionPolicy 'rackmesh-agent-own-node'" in other.stderr
    assert "may create only VirtualMachines pinned to its own node" in other.stderr

    own = sandbox.kubectl_as(agent, "create", "-f", "-", stdin=_vm_for(COMPROMISED, "own"), check=False)
    assert own.returncode == 0, own.stderr
    sandbox.kubectl("create", "-f", "-", stdin=_vm_for("c-0-1", "theirs"))
    try:
        deleting = sandbox.kubectl_as(agent, "delete", "vm", "theirs-0000", "--wait=false", check=False)
        assert deleting.returncode != 0 and "rackmesh-agent-own-node" in deleting.stderr
        patching = sandbox.kubectl_as(agent, "patch", "vm", "theirs-0000", "--type=merge", "-p",
                                      '{"metadata":{"labels":{"x":"y"}}}', check=False)
        assert patching.returncode != 0 and "may update only VirtualMachines pinned to its own node" in patching.stderr
        own_patch = sandbox.kubectl_as(agent, "patch", "vm", "own-0000", "--type=merge", "-p",
                                       '{"metadata":{"labels":{"x":"y"}}}', check=False)
        assert own_patch.returncode == 0, own_patch.stderr
        moving = sandbox.kubectl_as(agent, "patch", "vm", "own-0000", "--type=merge", "-p", json.dumps(
            {"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/hostname": "c-0-1"}}}}}), check=False)
        assert moving.returncode != 0 and 'hostname="c-0-1"' in moving.stderr
        their_disk = _wait_for_root_disk(sandbox, "theirs-0000")
        deleting = sandbox.kubectl_as(agent, "delete", "dv", their_disk, "--wait=false", check=False)
        assert deleting.returncode != 0 and "may delete only DataVolumes of its own node's" in deleting.stderr
        replacing = sandbox.kubectl_as(agent, "replace", "-f", "-", stdin=_vm_for(COMPROMISED, "own"),
                                       check=False)
        assert replacing.returncode != 0 and "forbidden" in replacing.stderr, replacing.stderr
        for verb in (["get", "secrets", "-n", "kube-system"], ["delete", "dr", "anything", "-n", "default"]):
            refused = sandbox.kubectl_as(agent, *verb, check=False)
            assert refused.returncode != 0 and "forbidden" in refused.stderr, (verb, refused.stderr)
    finally:
        sandbox.kubectl("delete", "vm", "own-0000", "theirs-0000", "--ignore-not-found", "--wait=false")


def _wait_for_root_disk(sandbox, vm: str) -> str:
    """The name of ``vm``'s root-disk DataVolume, once the simulated KubeVirt made it."""
    name = f"{vm}-rootdisk"
    eventually(lambda: sandbox.kubectl("get", "dv", name, check=False).returncode == 0, what=f"DataVolume {name}")
    return name
