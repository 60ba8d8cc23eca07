"""The admission plugin OwnerReferencesPermissionEnforcement, which OpenShift enables (kube-apiserver and kind
do not by default), as ``plugin/pkg/admission/gc/gc_admission.go`` (v1.32) checks a write:

- changing ``metadata.ownerReferences`` of an existing object needs ``delete`` on it (a create may set them:
  its writer could as well not have created it);
- a reference that newly blocks its owner's deletion (``blockOwnerDeletion: true``, absent or false before)
  needs ``update`` on the owner's ``finalizers`` subresource, by the owner's name, unless the user may update
  the finalizers of everything.

A refusal is 403 with the plugin's words, e.g. ``virtualmachines.kubevirt.io "web-0000" is forbidden: cannot
set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: ...``.
"""

from collections.abc import Callable
from typing import Any

from rackmesh_sandbox.kube_api import errors
from rackmesh_sandbox.kube_api.rbac import Attributes

NAME = "OwnerReferencesPermissionEnforcement"
Authorize = Callable[[Attributes], tuple[bool, str]]
# (apiVersion, kind) -> the resource plural, or None when the API does not serve that kind
ResourceOf = Callable[[str, str], str | None]


def _references(obj: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(((obj or {}).get("metadata") or {}).get("ownerReferences") or [])


def _newly_blocking(new: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, Any]]:
    """newBlockingOwnerDeletionRefs: references blocking deletion that did not block it, by uid, before."""
    blocked_before = {ref.get("uid") for ref in _references(old) if ref.get("blockOwnerDeletion") is True}
    return [ref for ref in _references(new)
            if ref.get("blockOwnerDeletion") is True and ref.get("uid") not in blocked_before]


def _group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def enforce(authorize: Authorize, resource_of: ResourceOf, target: Attributes, new: dict[str, Any],
            old: dict[str, Any] | None) -> None:
    """Refuse (403) the write of ``new`` (over ``old``; None on create) that ``target`` describes."""
    if _references(new) == _references(old):
        return
    if old is not None:
        allowed, reason = authorize(_like(target, "delete", target.api_group, target.resource, "", target.name))
        if not allowed:
            raise _refusal(target, f"cannot set an ownerRef on a resource you can't delete: {reason}")
    blocking = _newly_blocking(new, old)
    if not blocking or authorize(_like(target, "update", "*", "*", "finalizers", ""))[0]:
        return
    for ref in blocking:
        api_version, kind = str(ref.get("apiVersion", "")), str(ref.get("kind", ""))
        resource = resource_of(api_version, kind)
        if resource is None:
            raise _refusal(target, "cannot set blockOwnerDeletion in this case because cannot find RESTMapping for "
                                   f"APIVersion {api_version} Kind {kind}")
        allowed, reason = authorize(_like(target, "update", _group_of(api_version), resource, "finalizers",
                                          str(ref.get("name", ""))))
        if not allowed:
            raise _refusal(target, "cannot set blockOwnerDeletion if an ownerReference refers to a resource you "
                                   f"can't set finalizers on: {reason}")


def _like(target: Attributes, verb: str, group: str, resource: str, subresource: str, name: str) -> Attributes:
    return Attributes(verb, target.path, True, api_group=group, resource=resource, subresource=subresource,
                      namespace=target.namespace, name=name)


def _refusal(target: Attributes, why: str) -> errors.ApiError:
    """admission.NewForbidden: the plugin's error reads "<why>: <reason>, <nil>" (the authorizer's error is nil)."""
    return errors.forbidden(target.api_group, target.resource, target.name, f"{why}, <nil>")
