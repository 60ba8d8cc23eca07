"""OwnerReferencesPermissionEnforcement (``--enable-admission-plugins``), the admission plugin OpenShift enables.

Docs: https://kubernetes.io/docs/reference/access-authn-authz/admission-controllers/#ownerreferencespermissionenforcement

Case matrix:
- a reference that blocks its owner's deletion needs ``update`` on the owner's ``<resource>/finalizers`` (by its
  name): refused with the plugin's message without it, allowed with it; a non-blocking reference needs nothing;
- changing the references of an existing object needs ``delete`` on it;
- a server without the plugin (kube-apiserver's and kind's default) asks for neither.
``sandbox up`` enables the plugin, so tests/sandbox/test_rbac_used.py shows the agents' grant for it is used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from rackmesh_sandbox.kube_api import KubeApiServer
from rackmesh_sandbox.kube_api.authn import AuthConfig
from rackmesh_sandbox.kube_api.owner_references import NAME
from tests.kube_api.conftest import DR_CRD, dr
from tests.kube_api.test_authn import Clock, Session, https_session
from tests.kube_api.test_rbac import RBAC, binding, role, sa_subject, sa_token

CONFIGMAPS = "/api/v1/namespaces/team/configmaps"
REQUESTS = "/apis/rackmesh.io/v1alpha1/namespaces/team/deploymentrequests"
WRITE_CONFIGMAPS = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "update", "get"]}
FINALIZE_REQUESTS = {"apiGroups": ["rackmesh.io"], "resources": ["deploymentrequests/finalizers"],
                     "verbs": ["update"]}


async def serve(plugins: frozenset[str]) -> AsyncIterator[Session]:
    clock = Clock()
    async with KubeApiServer(crd_paths=[DR_CRD], auth=AuthConfig(clock=clock, admission_plugins=plugins)) as api, \
            https_session(api) as session:
        yield Session(api, session, clock)


@pytest.fixture
async def enforcing() -> AsyncIterator[Session]:
    async for session in serve(frozenset({NAME})):
        yield session


@pytest.fixture
async def default_plugins() -> AsyncIterator[Session]:
    async for session in serve(frozenset()):
        yield session


async def writer(session: Session, *rules: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A ServiceAccount allowed ``rules`` in namespace team, and a DeploymentRequest there to own things."""
    token = await sa_token(session, "team", "writer")
    await session.admin.create(f"{RBAC}/namespaces/team/roles", role("writer", *rules))
    await session.admin.create(f"{RBAC}/namespaces/team/rolebindings",
                               binding("writer", "writer", sa_subject("writer")))
    owner = await session.admin.create(REQUESTS, {**dr("owner"), "metadata": {"name": "owner", "namespace": "team"}})
    return session.as_token(token), owner


def owned(name: str, owner: dict[str, Any], block: bool) -> dict[str, Any]:
    return {"metadata": {"name": name, "ownerReferences": [{
        "apiVersion": "rackmesh.io/v1alpha1", "kind": "DeploymentRequest", "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": block}]}}


async def test_blocking_an_owners_deletion_needs_update_on_its_finalizers(enforcing: Session) -> None:
    user, owner = await writer(enforcing, WRITE_CONFIGMAPS)
    refused = await user.post(CONFIGMAPS, owned("blocking", owner, block=True))
    assert (refused.status, refused.body["reason"], refused.body["message"]) == (
        403, "Forbidden", 'configmaps "blocking" is forbidden: cannot set blockOwnerDeletion if an ownerReference '
                          "refers to a resource you can't set finalizers on: , <nil>")
    assert (await enforcing.admin.get(f"{CONFIGMAPS}/blocking")).status == 404
    assert (await user.post(CONFIGMAPS, owned("not-blocking", owner, block=False))).status == 201
    await enforcing.admin.create(f"{RBAC}/namespaces/team/roles", role("finalize", FINALIZE_REQUESTS))
    await enforcing.admin.create(f"{RBAC}/namespaces/team/rolebindings",
                                 binding("finalize", "finalize", sa_subject("writer")))
    assert (await user.post(CONFIGMAPS, owned("blocking", owner, block=True))).status == 201


async def test_changing_the_references_of_an_object_needs_delete_on_it(enforcing: Session) -> None:
    user, owner = await writer(enforcing, WRITE_CONFIGMAPS)
    assert (await user.post(CONFIGMAPS, {"metadata": {"name": "adopted"}})).status == 201
    current = (await user.get(f"{CONFIGMAPS}/adopted")).body
    refused = await user.put(f"{CONFIGMAPS}/adopted", {**current, **owned("adopted", owner, block=False)})
    assert (refused.status, refused.body["message"]) == (
        403, 'configmaps "adopted" is forbidden: cannot set an ownerRef on a resource you can\'t delete: , <nil>')


async def test_without_the_plugin_neither_is_asked(default_plugins: Session) -> None:
    user, owner = await writer(default_plugins, WRITE_CONFIGMAPS)
    assert (await user.post(CONFIGMAPS, owned("blocking", owner, block=True))).status == 201
