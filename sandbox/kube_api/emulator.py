"""kmock's ``KubernetesEmulator`` made to answer as kube-apiserver does.

kmock stays the HTTP handler and the object store: tests can still inject reactions with its DSL
(``emulator['get /api/v1/nodes'] << 500``) and assert on ``emulator.objects``. Requests no user
reaction claims are served here instead of by kmock's own lax fallbacks: routing, verbs, selectors,
watches, tables, discovery and OpenAPI, with the object semantics of :mod:`.api`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import apps, parsing, rendering

from rackmesh_sandbox.kube_api import (
    discovery,
    errors,
    openapi,
    owner_references,
    patches,
    protobuf_bodies,
    rbac,
    scale,
    selectors,
    tables,
    token_api,
    watch,
)
from rackmesh_sandbox.kube_api import metrics as api_metrics
from rackmesh_sandbox.kube_api.access import PATH as ACCESS_PATH
from rackmesh_sandbox.kube_api.access import AccessRecord
from rackmesh_sandbox.kube_api.admission_policy import ValidatingPolicies
from rackmesh_sandbox.kube_api.api import ObjectApi, WriteOptions
from rackmesh_sandbox.kube_api.authn import AuthConfig, Authenticator
from rackmesh_sandbox.kube_api.registry import CRD_RESOURCE, Registry, ResourceDef
from rackmesh_sandbox.kube_api.store import ObjectStore

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_FIELD_VALIDATION = ("Ignore", "Warn", "Strict")
JSON = "application/json"
_DECODED = ("POST", "PUT", "DELETE")  # the methods whose protobuf bodies are objects (DeleteOptions for DELETE)
USER = "rackmesh.user"  # where an authenticated request keeps its user (aiohttp request storage)


def _json(body: Any, status: int = 200, warnings: list[str] | None = None) -> aiohttp.web.Response:
    headers = {}
    if warnings:
        # RFC 7234 warn-code 299 warnings in one comma-separated header (client-go splits them).
        headers = {"Warning": ", ".join(f"299 - {json.dumps(w)}" for w in warnings)}
    return aiohttp.web.json_response(body, status=status, headers=headers)


def _error(error: errors.ApiError) -> aiohttp.web.Response:
    return _json(error.status(), error.code)


def _accepts_json(headers: Any) -> bool:
    """Whether the Accept header admits JSON, the only media type the sandbox answers in (absent: any)."""
    ranges = [part.split(";")[0].strip().lower() for part in headers.get("Accept", "").split(",")]
    return not any(ranges) or any(media in (JSON, "application/*", "*/*") for media in ranges)


@attrs.define(kw_only=True)
class KubeApiEmulator(kmock.KubernetesEmulator):
    """A Kubernetes API emulator with real-server semantics where clients rely on them."""

    request_log_limit: int | None = None  # keep kmock's request log bounded in long-running servers
    auth: AuthConfig | None = None  # None: any request is served, as the admin's
    registry: Registry = attrs.field(factory=Registry, init=False)
    store: ObjectStore = attrs.field(init=False)
    api: ObjectApi = attrs.field(init=False)
    metrics: api_metrics.ApiMetrics = attrs.field(factory=api_metrics.ApiMetrics, init=False)  # served at /metrics
    authn: Authenticator | None = attrs.field(default=None, init=False)
    authz: rbac.Authorizer | None = attrs.field(default=None, init=False)
    access: AccessRecord | None = attrs.field(default=None, init=False)  # what each user was allowed

    def __attrs_post_init__(self) -> None:
        # Deliberately not calling kmock's: its fallback reactions (lax list/create/patch) are replaced
        # by this class's serving of every request that no user-defined reaction answers.
        self.registry.load_bundled()
        self.store = ObjectStore(self.objects)
        self.api = ObjectApi(self.registry, self.store)
        namespaces = self.registry.get("", "v1", "namespaces")
        assert namespaces is not None
        for name in DEFAULT_NAMESPACES:
            self.api.create(namespaces, None, {"metadata": {"name": name}}, WriteOptions())
        if self.auth is not None:
            self._enable_auth(self.auth)

    def _enable_auth(self, config: AuthConfig) -> None:
        """Authenticate every request, authorize it with the stored RBAC objects, run admission policies."""
        self.authn = config.authenticator(lambda plural, ns, name: self._stored("", plural, ns, name))
        self.authz = rbac.Authorizer(
            lambda plural, ns: self._stored_list(rbac.GROUP, plural, ns),
            lambda plural, ns, name: self._stored(rbac.GROUP, plural, ns, name),
        )
        self.access = AccessRecord()
        self.api.policies = ValidatingPolicies(self._stored_list, self._stored)
        roles, bindings = rbac.bootstrap_policy()
        for plural, docs in (("clusterroles", roles), ("clusterrolebindings", bindings)):
            rd = self.registry.get(rbac.GROUP, "v1", plural)
            assert rd is not None
            for doc in docs:
                self.api.create(rd, None, doc, WriteOptions())

    def _stored(self, group: str, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        rd = self.registry.get(group, "v1", plural)
        return None if rd is None else self.store.get(self.api.key(rd, namespace, name))

    def _stored_list(self, group: str, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        """The stored objects of a v1 resource (in ``namespace``; None: all of them)."""
        rd = self.registry.get(group, "v1", plural)
        return [] if rd is None else self.store.list(rd.storage, namespace if rd.namespaced else None)

    def add_crd(self, crd: dict[str, Any]) -> list[ResourceDef]:
        """Install a CRD as ``kubectl apply`` would (stored, and its resources served)."""
        rd = self.registry.get(CRD_RESOURCE[0], "v1", CRD_RESOURCE[1])
        assert rd is not None
        self.api.create(rd, None, crd, WriteOptions())
        return [
            d for d in self.registry.all() if d.custom and f"{d.plural}.{d.group}" == crd["metadata"]["name"]
        ]

    # -- kmock integration -----------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Answer a request and count it in the metrics (user reactions and errors included)."""
        if raw_request.path == api_metrics.PATH:
            return await self._dispatch(raw_request)
        labels = api_metrics.request_labels(
            raw_request.method, raw_request.path, raw_request.query, raw_request.headers.get("Content-Type", "")
        )
        try:
            if labels.verb == "WATCH":
                with self.metrics.running(labels):
                    response = await self._dispatch(raw_request)
            else:
                response = await self._dispatch(raw_request)
        except asyncio.CancelledError:
            raise  # not answered (the server is stopping)
        except Exception:
            self.metrics.record(labels, 500)  # aiohttp answers an escaped exception with a 500
            raise
        self.metrics.record(labels, response.status)
        return response

    async def _dispatch(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if self.authn is not None:
            refused = self._authorize(raw_request)
            if refused is not None:
                return refused
        if raw_request.path.startswith(("/api/", "/apis/")) and not _accepts_json(raw_request.headers):
            return _error(errors.not_acceptable([JSON]))
        body = await raw_request.read()
        if body and raw_request.content_type == protobuf_bodies.CONTENT_TYPE and raw_request.method in _DECODED:
            try:
                decoded = json.dumps(protobuf_bodies.decode(body)).encode()
            except errors.ApiError as e:
                return _error(e)
            # Served as the JSON body it encodes, as kube-apiserver serves a decoded object.
            headers = {k: v for k, v in raw_request.headers.items() if k.lower() != "content-type"}
            return await self._call_own(raw_request, decoded, {**headers, "Content-Type": JSON})
        try:
            parsing.parse_path(raw_request.path)
            body.decode()
        except ValueError:
            # kmock 0.8 cannot parse some valid paths (e.g. GET /api/v1/namespaces) and answers a body that is
            # not UTF-8 with a 500 (it reads every body as text); route them ourselves.
            return await self._call_own(raw_request, body, dict(raw_request.headers))
        return await super().__call__(raw_request)

    def _authorize(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.Response | None:
        """401 without a valid token, 403 for what RBAC does not allow; None (the user kept) to serve it."""
        assert self.authn is not None and self.authz is not None and self.access is not None
        user = self.authn.authenticate_header(raw.headers.get("Authorization"))
        if user is None:
            return _error(errors.unauthorized())
        attributes = rbac.request_attributes(raw.method, raw.path, raw.query)
        allowed, reason = self.authz.authorize(user, attributes)
        if attributes.path.rstrip("/") == ACCESS_PATH and rbac.MASTERS not in user.groups:
            allowed, reason = False, ""  # the access record is the admin's only, whatever RBAC says
        if not allowed:
            return _error(rbac.forbidden(user, attributes, reason))
        self.access.record(user.username, attributes)
        raw[USER] = user
        return None

    async def _call_own(
        self, raw: aiohttp.web.BaseRequest, body: bytes, headers: dict[str, str]
    ) -> aiohttp.web.StreamResponse:
        """Serve ``raw`` with this body and these headers, parsed as kmock parses requests it can read."""
        try:
            path = parsing.parse_path(raw.path)
        except ValueError:
            path = None
        request = rendering.Request(
            id=len(self._requests),
            raw_request=raw,
            url=raw.url,
            method=raw.method,
            params=dict(raw.query),
            headers=headers,
            body=body,
            text=body.decode("utf-8", "replace"),
            action=None if path is None else parsing.guess_k8s(path, kmock.method(raw.method), dict(raw.query)),
            resource=None
            if path is None or path.group is None
            else kmock.resource(group=path.group, version=path.version, plural=path.plural),
            namespace=None if path is None else path.namespace,
            name=None if path is None else path.name,
            subresource=None if path is None else path.subresource,
        )
        self._requests.append(request)
        try:
            return await self._handle(request)
        except Exception as e:
            if not self._errors:
                raise
            self._errors[-1].append(e)
            return await self._render_error(e)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if self.request_log_limit is not None and len(self._requests) > self.request_log_limit:
            del self._requests[: len(self._requests) - self.request_log_limit // 2]
        try:
            return await apps.RawHandler._handle(self, request)  # user-defined reactions first
        except NotImplementedError:  # none matched (kmock's way of saying so)
            pass
        try:
            return await self._serve(request)
        except errors.ApiError as e:
            return _error(e)

    # -- routing ---------------------------------------------------------------------------------

    async def _serve(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        path = "/" + request.url.path.strip("/")
        parts = path.strip("/").split("/") if path != "/" else []
        match parts:
            case [] | ["healthz" | "livez" | "readyz"]:
                if not parts:
                    paths = ["/api", "/apis", "/version", "/openapi/v3", "/healthz", "/metrics"]
                    return _json({"paths": sorted(paths)})
                return aiohttp.web.Response(text="ok")
            case ["version"]:
                return _json(discovery.VERSION_INFO)
            case ["debug", "rackmesh", "access"] if self.access is not None:
                return _json(self.access.to_json())
            case ["metrics"]:
                body, content_type = self.metrics.exposition(request.headers.get("Accept", ""))
                return aiohttp.web.Response(body=body, headers={"Content-Type": content_type})
            case ["api"]:
                return _json(discovery.api_versions(raw.host))
            case ["apis"]:
                return _json(discovery.api_group_list(self.registry))
            case ["openapi", "v3"]:
                return _json(openapi.root_document(self.registry))
            case ["openapi", "v3", "api", version] | ["openapi", "v3", "apis", _, version]:
                group = parts[3] if parts[2] == "apis" else ""
                document = openapi.group_version_document(self.registry, group, version)
                if document is None:
                    raise errors.resource_not_found()
                return _json(document)
            case ["apis", group]:
                versions = self.registry.group_versions().get(group)
                if not versions:
                    raise errors.resource_not_found()
                return _json(discovery.api_group(group, versions))
            case ["api", version, *rest]:
                return await self._serve_group_version(request, "", version, rest)
            case ["apis", group, version, *rest]:
                return await self._serve_group_version(request, group, version, rest)
        # Like the real server, unknown non-resource paths (incl. /openapi/v2) are a plain 404.
        return aiohttp.web.Response(status=404, text="404 page not found\n")

    async def _serve_group_version(
        self, request: rendering.Request, group: str, version: str, rest: list[str]
    ) -> aiohttp.web.StreamResponse:
        if not rest:
            resource_list = discovery.api_resource_list(self.registry, group, version)
            if resource_list is None:
                raise errors.resource_not_found()
            return _json(resource_list)
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            candidate = self.registry.get(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise errors.resource_not_found()
        rd = self.registry.get(group, version, rest[0])
        if rd is None or (namespace is not None and not rd.namespaced):
            raise errors.resource_not_found()
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if subresource == "token" and (rd.group, rd.plural) == ("", "serviceaccounts") and self.authn is not None:
            return self._serve_token_request(request, namespace or "", name or "")
        served = (subresource == "status" and rd.has_status) or (subresource == "scale" and rd.scale is not None)
        if subresource is not None and not served:
            # The CRD handler answers for its resources' names; other paths are unknown to the server.
            raise errors.not_found(rd.group, rd.plural, name or "") if rd.custom else errors.resource_not_found()
        return await self._serve_resource(request, rd, namespace, name, subresource)

    def _serve_token_request(self, request: rendering.Request, namespace: str, name: str) -> aiohttp.web.Response:
        """POST .../serviceaccounts/<name>/token: a TokenRequest (the only verb of the subresource)."""
        raw = request._raw_request
        assert raw is not None and self.authn is not None
        if raw.method.upper() != "POST":
            raise errors.method_not_allowed()
        return _json(token_api.token_request(self.authn, namespace, name, self._body(request)), 201)

    # -- verbs -----------------------------------------------------------------------------------

    async def _serve_resource(
        self,
        request: rendering.Request,
        rd: ResourceDef,
        namespace: str | None,
        name: str | None,
        subresource: str | None,
    ) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        method = raw.method.upper()
        params = dict(request.params)
        if method == "GET" and params.get("watch") in ("true", "1"):
            verb = "watch"
        else:
            verb = {
                ("GET", True): "get",
                ("GET", False): "list",
                ("POST", False): "create",
                ("PUT", True): "update",
                ("PATCH", True): "patch",
                ("DELETE", True): "delete",
                ("DELETE", False): "deletecollection",
            }.get((method, name is not None), "")
        if not verb or verb not in (rd.verbs if subresource is None else ("get", "update", "patch")):
            raise errors.method_not_allowed()
        if rd.namespaced and namespace is None and verb in ("create", "get", "update", "patch", "delete"):
            raise errors.resource_not_found()  # namespaced objects are addressed within a namespace
        opts = dataclasses.replace(self._write_options(params, raw.headers.get("User-Agent", "")), user=raw.get(USER),
                                   admit=self._admission(raw, rd, namespace))
        if verb == "create" and (rd.group, rd.plural) == ("authentication.k8s.io", "tokenreviews") and self.authn:
            return _json(token_api.token_review(self.authn, self._body(request)), 201)
        if subresource == "scale":
            assert name is not None
            return self._serve_scale(request, rd, namespace, name, verb, opts)
        match verb:
            case "get":
                assert name is not None
                obj = self.api.get(rd, namespace, name)
                return _json(self._render_one(request, rd, obj))
            case "list" | "watch":
                return await self._serve_collection(request, rd, namespace, name, params, verb)
            case "create":
                written = self.api.create(rd, namespace, self._body(request), opts)
                return _json(written.obj, 201, written.warnings)
            case "update":
                assert name is not None
                written = self.api.update(rd, namespace, name, self._body(request), opts, subresource)
                return _json(written.obj, 200, written.warnings)
            case "patch":
                assert name is not None
                content_type = raw.content_type
                if content_type == patches.APPLY_PATCH:
                    body = patches.load_apply_patch(request.body)
                    opts = dataclasses.replace(opts, authorize_create=self._create_authorizer(raw))
                else:
                    body = self._body(request)
                written = self.api.patch(rd, namespace, name, content_type, body, opts, subresource)
                return _json(written.obj, 201 if written.created else 200, written.warnings)
            case "delete":
                assert name is not None
                result, _ = self.api.delete(
                    rd, namespace, name, self._delete_options(request, params), opts.dry_run, opts.user
                )
                return _json(result)
            case _:
                return self._delete_collection(request, rd, namespace, params, opts)

    def _serve_scale(
        self, request: rendering.Request, rd: ResourceDef, namespace: str | None, name: str, verb: str,
        opts: WriteOptions,
    ) -> aiohttp.web.StreamResponse:
        """GET, PUT and PATCH of a custom resource's ``autoscaling/v1`` Scale."""
        match verb:
            case "get":
                found = self.api.get_scale(rd, namespace, name)
                if self._wants_table(request):
                    # The Scale prints its own columns: Desired, Available, Age.
                    printed = dataclasses.replace(rd, columns=scale.COLUMNS)
                    include = request.params.get("includeObject", "Metadata")
                    return _json(tables.table(printed, [found], found["metadata"]["resourceVersion"], include))
                return _json(found)
            case "update":
                written = self.api.update_scale(rd, namespace, name, self._body(request), opts)
            case _:
                raw = request._raw_request
                assert raw is not None
                written = self.api.patch_scale(rd, namespace, name, raw.content_type, self._body(request), opts)
        return _json(written.obj, 200, written.warnings)

    def _write_options(self, params: dict[str, str], user_agent: str) -> WriteOptions:
        validation = params.get("fieldValidation") or "Warn"
        if validation not in _FIELD_VALIDATION:
            raise errors.bad_request(f'fieldValidation parameter unsupported value: "{validation}"')
        return WriteOptions(
            dry_run=params.get("dryRun") == "All",
            field_validation=validation,
            field_manager=params.get("fieldManager", ""),
            user_agent=user_agent,
            force=params.get("force"),
        )

    def _admission(self, raw: aiohttp.web.BaseRequest, rd: ResourceDef,
                   namespace: str | None) -> Callable[[dict[str, Any], dict[str, Any] | None], None] | None:
        """The enabled validating admission plugins for this request's writes (None: none are)."""
        if self.auth is None or owner_references.NAME not in self.auth.admission_plugins:
            return None
        authz, access, user = self.authz, self.access, raw[USER]
        assert authz is not None and access is not None

        def authorize(attributes: rbac.Attributes) -> tuple[bool, str]:
            allowed, reason = authz.authorize(user, attributes)
            if allowed:
                access.record(user.username, attributes)
            return allowed, reason

        def resource_of(api_version: str, kind: str) -> str | None:
            group, _, version = api_version.rpartition("/")
            found = [d.plural for d in self.registry.in_group_version(group, version) if d.kind == kind]
            return found[0] if found else None

        def admit(new: dict[str, Any], old: dict[str, Any] | None) -> None:
            target = rbac.Attributes("", raw.path, True, api_group=rd.group, resource=rd.plural,
                                     namespace=namespace or "", name=str(new["metadata"].get("name", "")))
            owner_references.enforce(authorize, resource_of, target, new, old)

        return admit

    def _create_authorizer(self, raw: aiohttp.web.BaseRequest) -> Callable[[], None] | None:
        """An apply that creates must also be allowed to create (the patch handler's withAuthorization)."""
        if self.authz is None or self.access is None:
            return None
        authz, access, user = self.authz, self.access, raw[USER]
        attributes = dataclasses.replace(rbac.request_attributes(raw.method, raw.path, raw.query), verb="create")

        def authorize() -> None:
            allowed, reason = authz.authorize(user, attributes)
            if not allowed:
                raise rbac.forbidden(user, attributes, reason)
            access.record(user.username, attributes)

        return authorize

    @staticmethod
    def _body(request: rendering.Request) -> Any:
        try:
            return json.loads(request.body or b"null")
        except ValueError as e:
            raise errors.bad_request(f"the request body is not valid JSON: {e}") from None

    def _delete_options(self, request: rendering.Request, params: dict[str, str]) -> dict[str, Any]:
        options = self._body(request) if request.body.strip() else {}
        options = options if isinstance(options, dict) else {}
        if params.get("propagationPolicy"):
            options["propagationPolicy"] = params["propagationPolicy"]
        if params.get("orphanDependents"):
            options["orphanDependents"] = params["orphanDependents"] == "true"
        policy = options.get("propagationPolicy")
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise errors.bad_request(f'propagationPolicy: Unsupported value: "{policy}"')
        return options

    @staticmethod
    def _field_selector(params: dict[str, str], name: str | None) -> str:
        field_selector = params.get("fieldSelector", "")
        if name is not None:  # a watch on a single object's path
            field_selector = ",".join(filter(None, [field_selector, f"metadata.name={name}"]))
        return field_selector

    def _selectors(
        self, rd: ResourceDef, params: dict[str, str], name: str | None
    ) -> tuple[selectors.Matcher, selectors.IndexTerm | None]:
        """The whole selector's matcher, and its exact-match term that lists and watches are indexed by."""
        field_selector = self._field_selector(params, name)
        try:
            by_label = selectors.label_matcher(params.get("labelSelector"))
            by_field = selectors.field_matcher(field_selector, rd.field_selectors, custom=rd.custom)
        except selectors.SelectorError as e:
            raise errors.bad_request(str(e)) from None
        # Valid selectors by now (the matchers parsed them), so the term can be read from them.
        term = selectors.index_term(params.get("labelSelector"), field_selector)
        return (lambda obj: by_label(obj) and by_field(obj)), term

    async def _serve_collection(
        self,
        request: rendering.Request,
        rd: ResourceDef,
        namespace: str | None,
        name: str | None,
        params: dict[str, str],
        verb: str,
    ) -> aiohttp.web.StreamResponse:
        matches, term = self._selectors(rd, params, name)
        if verb == "watch":
            raw = request._raw_request
            assert raw is not None
            table = self._wants_table(request)
            render = (
                (
                    lambda obj: tables.table(
                        rd, [obj], obj["metadata"]["resourceVersion"], params.get("includeObject", "Metadata")
                    )
                )
                if table
                else (lambda o: o)
            )
            return await watch.serve(raw, self.api, rd, namespace, matches, params, render, term)
        # `limit`/`continue` are ignored: "the server may return all results" (API concepts, chunking).
        items = [obj for obj in self.api.list(rd, namespace, term) if matches(obj)]
        revision = str(self.store.revision)
        if self._wants_table(request):
            return _json(tables.table(rd, items, revision, params.get("includeObject", "Metadata")))
        return _json(
            {
                "kind": rd.list_kind,
                "apiVersion": rd.api_version,
                "metadata": {"resourceVersion": revision},
                "items": items,
            }
        )

    def _delete_collection(
        self,
        request: rendering.Request,
        rd: ResourceDef,
        namespace: str | None,
        params: dict[str, str],
        opts: WriteOptions,
    ) -> aiohttp.web.StreamResponse:
        matches, term = self._selectors(rd, params, None)
        options = self._delete_options(request, params)
        items = [obj for obj in self.api.list(rd, namespace, term) if matches(obj)]
        for obj in items:
            self.api.delete(
                rd, obj["metadata"].get("namespace"), obj["metadata"]["name"], options, opts.dry_run, opts.user
            )
        return _json(
            {
                "kind": rd.list_kind,
                "apiVersion": rd.api_version,
                "metadata": {"resourceVersion": str(self.store.revision)},
                "items": items,
            }
        )

    @staticmethod
    def _wants_table(request: rendering.Request) -> bool:
        return tables.TABLE_ACCEPT in request.headers.get("Accept", "")

    def _render_one(self, request: rendering.Request, rd: ResourceDef, obj: dict[str, Any]) -> dict[str, Any]:
        if self._wants_table(request):
            return tables.table(
                rd, [obj], obj["metadata"]["resourceVersion"], request.params.get("includeObject", "Metadata")
            )
        return obj
