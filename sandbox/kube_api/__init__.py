"""A local Kubernetes API for tests and the sandbox: kmock's emulator plus kube-apiserver semantics.

Public interface::

    from rackmesh_sandbox.kube_api import KubeApiServer, write_kubeconfig
    from rackmesh_sandbox.kube_api.schema import CrdSchema, load_kubevirt_schemas

    async with KubeApiServer(crd_paths=["crds/deploymentrequest.yaml"]) as api:
        api.url          # http://127.0.0.1:<port>
        api.emulator     # the kmock emulator: reactions (fault injection), .objects (assertions)

Process form: ``python -m rackmesh_sandbox.kube_api --crd FILE --ready-file PATH``.
"""

from rackmesh_sandbox.kube_api.kubeconfig import write_kubeconfig
from rackmesh_sandbox.kube_api.server import KubeApiServer

__all__ = ["KubeApiServer", "write_kubeconfig"]
