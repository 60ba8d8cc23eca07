"""What the API server does to objects on each verb, independent of HTTP.

Docs: https://kubernetes.io/docs/reference/using-api/api-concepts/ (verbs, resourceVersion,
dry-run, field validation), https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/object-meta/
(system-set metadata), https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
(status subresource, generation), https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import kmock

from rackmesh_sandbox.kube_api import errors, meta, patches, scale
from rackmesh_sandbox.kube_api.admission_policy import AdmissionRequest, ValidatingPolicies
from rackmesh_sandbox.kube_api.authn import UserInfo
from rackmesh_sandbox.kube_api.fielderrors import FieldError, invalid
from rackmesh_sandbox.kube_api.gc import FOREGROUND, GarbageCollector
from rackmesh_sandbox.kube_api.managed_fields import FieldManager, field_manager_errors, user_agent_manager
from rackmesh_sandbox.kube_api.registry import CRD_RESOURCE, Registry, ResourceDef, crd_errors
from rackmesh_sandbox.kube_api.selectors import IndexTerm
from rackmesh_sandbox.kube_api.store import Key, ObjectStore
from rackmesh_sandbox.kube_api.store import meta as meta_of

NAMESPACES = kmock.resource("", "v1", "namespaces")


@dataclasses.dataclass(frozen=True)
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Warn"  # Ignore, Warn or Strict; Warn is the server's default
    user: UserInfo | None = None  # who asks, when authentication is on (admission policies see it)
    field_manager: str = ""  # the fieldManager parameter (required to apply)
    user_agent: str = "kube-apiserver"  # names the manager of writes without one (the server's own by default)
    force: str | None = None  # the force parameter, as sent (applies only)
    authorize_create: Callable[[], None] | None = None  # may this user create what an apply would create?
    # The emulator's validating admission plugins, run on (new, old or None) once the object is valid.
    admit: Callable[[dict[str, Any], dict[str, Any] | None], None] | None = None

    @property
    def manager(self) -> str:
        """Who writes, for managedFields: the fieldManager, else the User-Agent's program, else "unknown"."""
        return self.field_manager or user_agent_manager(self.user_agent) or "unknown"


@dataclasses.dataclass
class Written:
    obj: dict[str, Any]
    warnings: list[str] = dataclasses.field(default_factory=list)
    created: bool = False  # an apply that created the object (201)


def _check_options(kind: str, opts: WriteOptions, *, apply: bool = False, patch: bool = False) -> bool:
    """Refuse bad write options as the server validates Create/Update/PatchOptions (422); return force."""
    found = field_manager_errors(opts.field_manager)
    if apply and not opts.field_manager:
        found.insert(0, FieldError("required", "fieldManager", "is required for apply patch"))
    if patch and not apply and opts.force is not None:
        found.insert(0, FieldError("forbidden", "force", "may not be specified for non-apply patch"))
    if found:
        raise errors.invalid("meta.k8s.io", kind, "", found)
    if opts.force is None:
        return False
    parsed = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}.get(opts.force.lower())
    if parsed is None:
        raise errors.bad_request(f'strconv.ParseBool: parsing "{opts.force}": invalid syntax')
    return parsed


def _without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


def _private_copy(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy to change freely; its managedFields entries (never changed in place) are shared."""
    md = obj.get("metadata")
    entries = md.get("managedFields") if isinstance(md, dict) else None
    if entries is None:
        return copy.deepcopy(obj)
    copied = copy.deepcopy({**obj, "metadata": _without(md, "managedFields")})
    copied["metadata"]["managedFields"] = entries
    return copied


class ObjectApi:
    def __init__(self, registry: Registry, store: ObjectStore) -> None:
        self.registry = registry
        self.store = store
        self.gc = GarbageCollector(self)
        self.policies: ValidatingPolicies | None = None  # admission of users' writes, when authentication is on

    # -- addressing ----------------------------------------------------------------------------

    def key(self, rd: ResourceDef, namespace: str | None, name: str) -> Key:
        return (rd.storage, namespace if rd.namespaced else None, name)

    def namespace_key(self, name: str) -> Key:
        return (NAMESPACES, None, name)

    def present(self, rd: ResourceDef, obj: dict[str, Any]) -> dict[str, Any]:
        """Serve a stored object in the requested version (CRDs' conversion strategy "None")."""
        obj["apiVersion"] = rd.api_version
        return obj

    def _rd_of(self, key: Key) -> ResourceDef | None:
        res = key[0]
        return self.registry.get(res.group or "", res.version or "", res.plural or "")

    # -- reads ---------------------------------------------------------------------------------

    def get(self, rd: ResourceDef, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.store.get(self.key(rd, namespace, name))
        if obj is None:
            raise errors.not_found(rd.group, rd.plural, name)
        return self.present(rd, obj)

    def list(self, rd: ResourceDef, namespace: str | None, term: IndexTerm | None = None) -> list[dict[str, Any]]:
        """The stored objects (only those ``term`` admits, read from its index, when given)."""
        stored = self.store.list(rd.storage, namespace if rd.namespaced else None, term)
        return [self.present(rd, obj) for obj in stored]

    # -- create --------------------------------------------------------------------------------

    def create(self, rd: ResourceDef, namespace: str | None, body: Any, opts: WriteOptions) -> Written:
        _check_options("CreateOptions", opts)
        return self._create(rd, namespace, self._typed(rd, body), opts)

    def _create(
        self, rd: ResourceDef, namespace: str | None, obj: dict[str, Any], opts: WriteOptions, *, applied: bool = False
    ) -> Written:
        """Store a new object; ``applied``: an apply made it, and its managedFields are already set."""
        md = meta_of(obj)
        if rd.namespaced:
            if md.get("namespace") and md["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            md["namespace"] = namespace
            self._check_namespace(namespace)
        else:
            md.pop("namespace", None)
        if md.get("resourceVersion"):
            raise errors.ApiError(
                500,
                "InternalError",
                "Internal error occurred: resourceVersion should not be set on objects to be created",
            )
        if not md.get("name") and md.get("generateName"):
            md["name"] = meta.generate_name(md["generateName"])
        sent = md.pop("managedFields", None)
        for field in (*meta.SYSTEM_FIELDS, "selfLink"):
            md.pop(field, None)
        md["uid"] = meta.new_uid()
        md["creationTimestamp"] = meta.now()
        if rd.tracks_generation:
            md["generation"] = 1
        if rd.custom and rd.has_status:
            obj.pop("status", None)  # the status of custom resources is written through /status only
        if (rd.group, rd.plural) == ("", "namespaces"):
            obj["spec"] = {"finalizers": ["kubernetes"], **(obj.get("spec") or {})}
            obj["status"] = {"phase": "Active"}
        warnings = self._admit(rd, obj, opts, patching=None)
        if not applied:
            sent = FieldManager.of(rd, None).created(obj, sent, opts.manager)
        if sent:
            md["managedFields"] = sent
        warnings += self._check_policies("CREATE", rd, namespace, md.get("name", ""), obj, None, opts)
        key = self.key(rd, namespace, md.get("name", ""))
        if self.store.get(key) is not None:
            raise errors.already_exists(rd.group, rd.plural, md["name"])
        if (rd.group, rd.plural) == CRD_RESOURCE:
            self._accept_crd(obj)
        if opts.dry_run:
            return Written(self.present(rd, obj), warnings)
        stored = self.store.write(key, obj, "ADDED")
        if (rd.group, rd.plural) == CRD_RESOURCE:
            self.registry.add_crd(stored)
        self.gc.created(key, stored)
        return Written(self.present(rd, stored), warnings)

    def _typed(self, rd: ResourceDef, body: Any, *, private: bool = False) -> dict[str, Any]:
        """Check the body's apiVersion/kind against the endpoint; store it in the storage version.

        ``private``: the body is the server's own (a patch's result), changed in place rather than copied.
        """
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object")
        obj = body if private else copy.deepcopy(body)
        if rd.custom and not obj.get("kind"):
            raise errors.bad_request(
                f"Object 'Kind' is missing in '{json.dumps(body, separators=(',', ':'))}'"
            )
        if obj.get("apiVersion") not in (None, rd.api_version):
            raise errors.bad_request(
                f"the API version in the data ({obj['apiVersion']}) does not match the "
                f"expected API version ({rd.api_version})"
            )
        if obj.get("kind") not in (None, rd.kind):
            raise errors.bad_request(
                f"the kind in the data ({obj['kind']}) does not match the expected kind ({rd.kind})"
            )
        if not isinstance(obj.get("metadata", {}), dict):
            raise errors.bad_request("metadata must be an object")
        obj["apiVersion"], obj["kind"] = rd.storage_api_version, rd.kind
        return obj

    def _check_namespace(self, namespace: str | None) -> None:
        ns = self.store.get(self.namespace_key(namespace or ""))
        if ns is None:
            raise errors.not_found("", "namespaces", namespace or "")
        if meta_of(ns).get("deletionTimestamp"):
            raise errors.ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
                {"name": namespace, "kind": "namespaces"},
            )

    def _admit(
        self,
        rd: ResourceDef,
        obj: dict[str, Any],
        opts: WriteOptions,
        *,
        patching: Any,
        old: dict[str, Any] | None = None,
        subresource: str | None = None,
    ) -> list[str]:
        """Prune, default and validate; refuse with 400/422 as the server does. Return warnings.

        ``old`` is the stored object on updates: CEL transition rules compare with it, and errors
        of unchanged parts are only warnings (ratcheting), except through ``/status``.
        """
        warnings: list[str] = []
        found: list[FieldError] = []
        name = meta_of(obj).get("name", "")
        if rd.schema is not None:
            unknown = rd.schema.prune(obj)
            if unknown and opts.field_validation == "Strict":
                listed = ", ".join(f'unknown field "{path}"' for path in unknown)
                if patching is None:
                    raise errors.bad_request(
                        f'{rd.kind} in version "{rd.version}" cannot be handled as a '
                        f"{rd.kind}: strict decoding error: {listed}"
                    )
                value = json.dumps(patching, separators=(",", ":"))
                raise errors.invalid(
                    "", "", "", [invalid("patch", value, f"strict decoding error: {listed}")]
                )
            if opts.field_validation == "Warn":
                warnings += [f'unknown field "{path}"' for path in unknown]
            rd.schema.apply_defaults(obj)
        is_namespace = (rd.group, rd.plural) == ("", "namespaces")
        rbac_named = rd.group == "rbac.authorization.k8s.io"  # RBAC names are path segments ("system:...")
        found += meta.validate_object_meta(meta_of(obj), dns_label=is_namespace, path_segment=rbac_named)
        if rd.schema is not None:
            found += rd.schema.validate(obj)
        if rd.scale is not None:
            found += scale.validate(rd.scale, obj, status_only=subresource == "status")
        if (rd.group, rd.plural) == CRD_RESOURCE:
            found += crd_errors(obj)
        if self.policies is not None:
            found += self.policies.object_errors(rd, obj)  # ValidatingAdmissionPolicies and their bindings
        if rd.schema is not None:
            ratchet = old is not None and subresource != "status"
            refused, ratcheted = rd.schema.validate_rules(found, obj, old, ratchet=ratchet)
            found += refused
            warnings += ratcheted
        if found:
            raise errors.invalid(rd.group, rd.kind, name, found)
        if opts.admit is not None:
            opts.admit(obj, old)
        return warnings

    def _check_policies(
        self,
        operation: str,
        rd: ResourceDef,
        namespace: str | None,
        name: str,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
        opts: WriteOptions,
        subresource: str | None = None,
    ) -> list[str]:
        """ValidatingAdmissionPolicies on a user's write (the server's own, as GC's, are not checked); warnings."""
        if self.policies is None or opts.user is None:
            return []
        scoped = namespace if rd.namespaced else None
        request = AdmissionRequest(rd, operation, scoped, name, obj, old, opts.user, subresource or "", opts.dry_run)
        return self.policies.admit(request)

    def _accept_crd(self, crd: dict[str, Any]) -> None:
        """What the CRD controllers would set soon after: accepted names and Established."""
        spec = crd["spec"]
        crd["status"] = {
            "acceptedNames": spec["names"],
            "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": meta.now()}
                for t, r, m in [
                    ("NamesAccepted", "NoConflicts", "no conflicts found"),
                    ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                ]
            ],
        }

    # -- update and patch ----------------------------------------------------------------------

    def update(
        self,
        rd: ResourceDef,
        namespace: str | None,
        name: str,
        body: Any,
        opts: WriteOptions,
        subresource: str | None = None,
    ) -> Written:
        """PUT: replace the object (or its status)."""
        _check_options("UpdateOptions", opts)
        return self._update(
            rd, namespace, name, lambda old: self._typed(rd, body), opts, subresource, patching=None
        )

    def patch(
        self,
        rd: ResourceDef,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        opts: WriteOptions,
        subresource: str | None = None,
    ) -> Written:
        """PATCH with one of the three patch types, or an apply; the patched result goes through update."""
        if content_type == patches.APPLY_PATCH:
            return self.apply(rd, namespace, name, patch, opts, subresource)
        _check_options("PatchOptions", opts, patch=True)
        apply = self._patcher(rd, content_type, patch)
        return self._update(
            rd, namespace, name, lambda old: self._typed(rd, apply(old), private=True), opts, subresource,
            patching=patch,
        )

    def apply(
        self,
        rd: ResourceDef,
        namespace: str | None,
        name: str,
        config: Any,
        opts: WriteOptions,
        subresource: str | None = None,
    ) -> Written:
        """Server-side apply: merge ``config`` into the object (creating it if missing) as ``opts.field_manager``.

        The merged object takes the write path of any other: validation, admission, dry run, and for a
        new object the create's (RBAC ``create`` too, through ``opts.authorize_create``).
        """
        force = _check_options("PatchOptions", opts, apply=True, patch=True)
        fields = FieldManager.of(rd, subresource)

        def merged(live: dict[str, Any]) -> dict[str, Any]:
            return self._typed(rd, fields.applied(live, config, opts.field_manager, force, namespace), private=True)

        if self.store.get(self.key(rd, namespace, name)) is not None:
            return self._update(rd, namespace, name, merged, opts, subresource, patching=config, applied=True)
        if subresource is not None:
            raise errors.not_found(rd.group, rd.plural, name)
        obj = merged(fields.empty_object({}))
        md = meta_of(obj)
        if md.setdefault("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({md['name']}) does not match the name on the URL ({name})"
            )
        if opts.authorize_create is not None:
            opts.authorize_create()
        return dataclasses.replace(self._create(rd, namespace, obj, opts, applied=True), created=True)

    @staticmethod
    def _patcher(rd: ResourceDef, content_type: str, patch: Any) -> Callable[[Any], Any]:
        """The function applying a patch of this content type (415 for types the resource refuses)."""
        accepted = [patches.JSON_PATCH, patches.MERGE_PATCH, patches.APPLY_PATCH]
        if not rd.custom:
            accepted.append(patches.STRATEGIC_MERGE_PATCH)
        # Server-side apply is accepted by real servers but not emulated: refused like unknown types.
        if content_type not in accepted or content_type == patches.APPLY_PATCH:
            raise errors.unsupported_media_type(content_type, accepted)
        method: Callable[[Any, Any], Any] = {
            patches.MERGE_PATCH: patches.merge_patch,
            patches.JSON_PATCH: patches.json_patch,
            patches.STRATEGIC_MERGE_PATCH: patches.strategic_merge_patch,
        }[content_type]

        def apply(target: Any) -> Any:
            try:
                return method(target, patch)
            except patches.PatchError as e:
                raise errors.ApiError(422, "Invalid", str(e)) from None

        return apply

    # -- the scale subresource -----------------------------------------------------------------

    def get_scale(self, rd: ResourceDef, namespace: str | None, name: str) -> dict[str, Any]:
        """The Scale of a custom resource (500 when its spec replicas are unset, as on the server)."""
        assert rd.scale is not None
        found_scale, found = self._scale_of(rd, self.get(rd, namespace, name))
        if not found:
            raise errors.internal(f'the spec replicas field "{rd.scale["specReplicasPath"]}" does not exist')
        return found_scale

    def update_scale(
        self, rd: ResourceDef, namespace: str | None, name: str, body: Any, opts: WriteOptions
    ) -> Written:
        """PUT .../scale: set the object's spec replicas to the Scale's."""
        _check_options("UpdateOptions", opts)
        return self._write_scale(rd, namespace, name, lambda old_scale: body, opts)

    def patch_scale(
        self, rd: ResourceDef, namespace: str | None, name: str, content_type: str, patch: Any, opts: WriteOptions
    ) -> Written:
        """PATCH .../scale: the patch applies to the current Scale (merge or JSON patch, as kubectl sends)."""
        _check_options("PatchOptions", opts, patch=True)
        return self._write_scale(rd, namespace, name, self._patcher(rd, content_type, patch), opts)

    def _scale_of(self, rd: ResourceDef, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        assert rd.scale is not None
        try:
            return scale.scale_of(rd.scale, obj)
        except scale.AccessError as e:
            raise errors.internal(str(e)) from None

    def _write_scale(
        self,
        rd: ResourceDef,
        namespace: str | None,
        name: str,
        requested: Callable[[dict[str, Any]], Any],
        opts: WriteOptions,
    ) -> Written:
        paths = rd.scale
        assert paths is not None

        def updated(old: dict[str, Any]) -> dict[str, Any]:
            old_scale, found = self._scale_of(rd, old)
            if not found:
                old_scale["spec"]["replicas"] = scale.UNSET  # tells "still unset" from a requested 0
            replicas, version = scale.requested_replicas(requested(old_scale), name)
            if replicas == scale.UNSET:
                raise errors.bad_request(
                    f'the spec replicas field "{paths["specReplicasPath"]}" cannot be empty'
                )
            new = copy.deepcopy(old)
            scale.set_replicas(paths, new, replicas)
            if version:
                meta_of(new)["resourceVersion"] = version  # the client's precondition
            return new

        written = self._update(rd, namespace, name, updated, opts, "scale", patching=None)
        return Written(self._scale_of(rd, written.obj)[0], written.warnings)

    def _update(
        self,
        rd: ResourceDef,
        namespace: str | None,
        name: str,
        compute: Callable[[dict[str, Any]], dict[str, Any]],
        opts: WriteOptions,
        subresource: str | None,
        *,
        patching: Any,
        applied: bool = False,
    ) -> Written:
        """Write ``compute(old)`` over the object; ``applied``: its managedFields are the apply's, already set."""
        key = self.key(rd, namespace, name)
        old = self.store.get(key)
        if old is None:
            raise errors.not_found(rd.group, rd.plural, name)
        new = compute(self.present(rd, _private_copy(old)))  # patches see the requested version
        md, old_md = meta_of(new), meta_of(old)
        if md.get("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({md['name']}) does not match the name on the URL ({name})"
            )
        if rd.namespaced and md.get("namespace", namespace) != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        if md.get("resourceVersion") and md["resourceVersion"] != old_md.get("resourceVersion"):
            raise errors.conflict(rd.group, rd.plural, name, errors.MODIFIED)  # optimistic concurrency
        sent = md.pop("managedFields", None)
        if subresource == "status":
            # Status writes change the status only; metadata and spec stay as they were.
            status = new.get("status")
            new = _private_copy(old)
            new.pop("status", None)
            if status is not None:
                new["status"] = status
            md = meta_of(new)
        elif rd.has_status:
            new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        md["name"] = name
        if rd.namespaced:
            md["namespace"] = namespace
        for field in meta.SYSTEM_FIELDS:
            md.pop(field, None)
            if field in old_md:
                md[field] = old_md[field]
        md.pop("managedFields", None)
        md["resourceVersion"] = old_md.get("resourceVersion")
        added = [f for f in md.get("finalizers") or [] if f not in (old_md.get("finalizers") or [])]
        if old_md.get("deletionTimestamp") and added:
            detail = (
                f"no new finalizers can be added if the object is being deleted, found new finalizers {added}"
            )
            raise errors.invalid(
                rd.group, rd.kind, name, [FieldError("forbidden", "metadata.finalizers", detail)]
            )
        warnings = self._admit(rd, new, opts, patching=patching, old=old, subresource=subresource)
        if rd.tracks_generation and self._spec_changed(rd, old, new):
            md["generation"] = int(old_md.get("generation", 1)) + 1
        if not applied:
            sent = FieldManager.of(rd, subresource).updated(old, new, sent, opts.manager)
        if sent:
            md["managedFields"] = sent
        warnings += self._check_policies("UPDATE", rd, namespace, name, new, old, opts, subresource)
        if new == old:
            return Written(self.present(rd, old), warnings)  # a no-op: no new resourceVersion, no event
        if opts.dry_run:
            return Written(self.present(rd, new), warnings)
        stored = self.store.write(key, new, "MODIFIED")
        if (rd.group, rd.plural) == CRD_RESOURCE:
            self.registry.add_crd(stored)
        if meta_of(stored).get("deletionTimestamp") and not meta_of(stored).get("finalizers"):
            self._remove(key, stored)  # the last finalizer is gone: now it really goes
        return Written(self.present(rd, stored), warnings)

    @staticmethod
    def _spec_changed(rd: ResourceDef, old: dict[str, Any], new: dict[str, Any]) -> bool:
        """Generation counts changes outside metadata (and status, when it is a subresource)."""
        ignored = ("metadata", "status") if rd.has_status else ("metadata",)
        return _without(old, *ignored) != _without(new, *ignored)

    # -- delete --------------------------------------------------------------------------------

    def delete(
        self,
        rd: ResourceDef,
        namespace: str | None,
        name: str,
        options: dict[str, Any],
        dry_run: bool = False,
        user: UserInfo | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Delete; return (the object still present, or a Success status; whether it is gone)."""
        key = self.key(rd, namespace, name)
        old = self.store.get(key)
        if old is None:
            raise errors.not_found(rd.group, rd.plural, name)
        self._check_policies("DELETE", rd, namespace, name, None, old, WriteOptions(dry_run=dry_run, user=user))
        preconditions = options.get("preconditions") or {}
        for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            expected, actual = preconditions.get(field), meta_of(old).get(field)
            if expected and expected != actual:
                why = (
                    f"Precondition failed: {label} in precondition: {expected}, "
                    f"{label} in object meta: {actual}"
                )
                raise errors.conflict(rd.group, rd.plural, name, why)
        if dry_run:
            return self.present(rd, old), False
        result = self.delete_key(key, options)
        if result is None:
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "kind": rd.plural, "uid": meta_of(old).get("uid")},
            }
            if rd.group:
                status["details"]["group"] = rd.group
            return status, True
        return self.present(rd, result), False

    def delete_key(self, key: Key, options: dict[str, Any]) -> dict[str, Any] | None:
        """Delete a stored object; return it if it lingers (finalizers), None if it is gone."""
        old = self.store.get(key)
        if old is None:
            return None
        md = meta_of(old)
        policy = options.get("propagationPolicy") or (
            "Orphan" if options.get("orphanDependents") else "Background"
        )
        if md.get("deletionTimestamp"):
            return old  # already being deleted: deleting again changes nothing
        if policy == "Orphan":
            self.gc.orphan(old)
        is_namespace = key[0] == NAMESPACES
        finalizers = list(md.get("finalizers") or [])
        if policy == "Foreground" and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        if not finalizers and not is_namespace:
            self._remove(key, old)
            return None
        new = copy.deepcopy(old)
        meta_of(new).update({"deletionTimestamp": meta.now(), "deletionGracePeriodSeconds": 0})
        if finalizers:
            meta_of(new)["finalizers"] = finalizers
        if is_namespace:
            new["status"] = {**(new.get("status") or {}), "phase": "Terminating"}
        stored = self.store.write(key, new, "MODIFIED")
        if policy == "Foreground":
            self.gc.foreground(stored)
        if is_namespace:
            self.gc.terminate_namespace(key[2])
        return stored

    def remove_finalizer(self, key: Key, obj: dict[str, Any], finalizer: str | None) -> None:
        """What a controller does when its cleanup is done (None: the namespace controller's)."""
        new = copy.deepcopy(obj)
        md = meta_of(new)
        if finalizer is not None:
            md["finalizers"] = [f for f in md.get("finalizers") or [] if f != finalizer]
            if not md["finalizers"]:
                del md["finalizers"]
        if finalizer is None or new != obj:
            if md.get("deletionTimestamp") and not md.get("finalizers"):
                self._remove(key, new)
            else:
                self.store.write(key, new, "MODIFIED")

    def _remove(self, key: Key, obj: dict[str, Any]) -> None:
        self.store.remove(key)
        if key[0].group == CRD_RESOURCE[0] and key[0].plural == CRD_RESOURCE[1]:
            for rd in self.registry.remove_crd(key[2]):  # a deleted CRD takes its objects along
                for object_key in self.store.keys_of(rd.storage):
                    self.store.remove(object_key)
        self.gc.removed(key, obj)
