"""ValidatingAdmissionPolicies (admissionregistration.k8s.io/v1) and their bindings, run on writes.

Policies and bindings are objects the API stores; each create, update (patch, status and scale
writes included) and delete of a user's request is checked after the object's own validation and
before it is stored: policies whose ``matchConstraints`` match, through each of their bindings whose
``matchResources`` match, evaluate ``matchConditions``, ``variables`` and ``validations`` in CEL (the
environment and functions of :mod:`.cel`) over ``object``, ``oldObject``, ``request``,
``namespaceObject`` and ``variables``. A failed validation is acted on as the binding's
``validationActions`` say: Deny refuses the request, Warn adds a ``Warning`` header, Audit records
the failure in :attr:`ValidatingPolicies.audit` (there is no audit log). Errors follow
``failurePolicy``. Policies and bindings are defaulted and validated when written (bad CEL is a 422).

Followed: apiserver ``pkg/admission/plugin/policy/validating/{dispatcher,validator}.go``,
``pkg/admission/plugin/policy/matching``, ``pkg/admission/plugin/cel`` (activation, errors) and
``pkg/apis/admissionregistration/validation/validation.go``.
Docs: https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/

Not emulated: ``paramKind``/``paramRef`` (a policy with params fails as misconfigured, per its
failurePolicy), ``auditAnnotations``, ``authorizer`` in expressions, type checking against the
resources' schemas, ``matchPolicy: Equivalent`` across versions, cost budgets.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable
from typing import Any

import celpy
from celpy import celtypes
from celpy.evaluation import CELEvalError

from rackmesh_sandbox.kube_api import cel, errors
from rackmesh_sandbox.kube_api.authn import UserInfo
from rackmesh_sandbox.kube_api.fielderrors import FieldError, invalid, required
from rackmesh_sandbox.kube_api.registry import ResourceDef
from rackmesh_sandbox.kube_api.selectors import Requirement

GROUP = "admissionregistration.k8s.io"
POLICIES = "validatingadmissionpolicies"
BINDINGS = "validatingadmissionpolicybindings"
_NAMES = ("object", "oldObject", "request", "params", "namespaceObject", "variables", "authorizer")
_OPERATIONS = ("*", "CREATE", "UPDATE", "DELETE", "CONNECT")
_REASONS = ("Forbidden", "Invalid", "RequestEntityTooLarge", "Unauthorized")
_ACTIONS = ("Audit", "Deny", "Warn")
_CODES = {"Forbidden": 403, "Unauthorized": 401, "RequestEntityTooLarge": 413, "Invalid": 422}
_MAX_MESSAGE_BYTES = 5 * 1024  # celconfig.MaxEvaluatedMessageExpressionSizeBytes

# Lists stored objects: (group, resource plural, namespace or None) -> objects.
Lister = Callable[[str, str, str | None], list[dict[str, Any]]]
# Reads a stored object: (group, resource plural, namespace or None, name) -> object or None.
Getter = Callable[[str, str, str | None, str], dict[str, Any] | None]


@dataclasses.dataclass
class AdmissionRequest:
    """One write as admission sees it (admission.Attributes)."""

    rd: ResourceDef
    operation: str  # CREATE, UPDATE or DELETE
    namespace: str | None
    name: str
    obj: dict[str, Any] | None  # None on DELETE
    old: dict[str, Any] | None  # None on CREATE
    user: UserInfo
    subresource: str = ""
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        """``request`` as policies see it: an admission.k8s.io/v1 AdmissionRequest (empty fields left out)."""
        rd = self.rd
        kind = {"group": rd.group, "version": rd.version, "kind": rd.kind}
        resource = {"group": rd.group, "version": rd.version, "resource": rd.plural}
        found: dict[str, Any] = {
            "uid": str(uuid.uuid4()),
            "kind": kind,
            "resource": resource,
            "requestKind": kind,
            "requestResource": resource,
            "operation": self.operation,
            "userInfo": self.user.to_json(),
            "dryRun": self.dry_run,
        }
        if self.subresource:
            found["subResource"] = found["requestSubResource"] = self.subresource
        if self.name:
            found["name"] = self.name
        if self.namespace:
            found["namespace"] = self.namespace
        return found


# -- defaulting and validating the objects -------------------------------------------------------


def _default_match_resources(match: dict[str, Any]) -> None:
    match.setdefault("matchPolicy", "Equivalent")
    match.setdefault("namespaceSelector", {})
    match.setdefault("objectSelector", {})
    for rule in [*(match.get("resourceRules") or []), *(match.get("excludeResourceRules") or [])]:
        if isinstance(rule, dict):
            rule.setdefault("scope", "*")


def _rule_errors(rule: Any, path: str) -> list[FieldError]:
    if not isinstance(rule, dict):
        return [invalid(path, rule, "must be an object")]
    found = []
    for field in ("apiGroups", "apiVersions", "resources", "operations"):
        if not rule.get(field):
            found.append(required(f"{path}.{field}"))
    for index, operation in enumerate(rule.get("operations") or []):
        if operation not in _OPERATIONS:
            found.append(FieldError("unsupported", f"{path}.operations[{index}]", _supported(_OPERATIONS), operation))
    return found


def _supported(values: tuple[str, ...]) -> str:
    return "supported values: " + ", ".join(f'"{v}"' for v in sorted(values))


def _match_resources_errors(match: dict[str, Any], path: str) -> list[FieldError]:
    found = []
    for field in ("resourceRules", "excludeResourceRules"):
        for index, rule in enumerate(match.get(field) or []):
            found += _rule_errors(rule, f"{path}.{field}[{index}]")
    return found


def _compile_error(path: str, text: str) -> list[FieldError]:
    try:
        cel.compile_expression(text, _NAMES)
    except cel.CompileError as e:
        return [invalid(path, text, f"compilation failed: {e}")]
    return []


def policy_errors(policy: dict[str, Any]) -> list[FieldError]:
    """Default a ValidatingAdmissionPolicy as the server does; what its validation refuses."""
    spec = policy.setdefault("spec", {})
    spec.setdefault("failurePolicy", "Fail")
    found = []
    if spec["failurePolicy"] not in ("Fail", "Ignore"):
        policies = ("Fail", "Ignore")
        found.append(FieldError("unsupported", "spec.failurePolicy", _supported(policies), spec["failurePolicy"]))
    match = spec.get("matchConstraints")
    if not isinstance(match, dict):
        found.append(required("spec.matchConstraints"))
    else:
        _default_match_resources(match)
        found += _match_resources_errors(match, "spec.matchConstraints")
        if not match.get("resourceRules"):
            found.append(required("spec.matchConstraints.resourceRules"))
    for index, condition in enumerate(spec.get("matchConditions") or []):
        path = f"spec.matchConditions[{index}]"
        if not str(condition.get("expression") or "").strip():
            found.append(required(f"{path}.expression"))
        else:
            found += _compile_error(f"{path}.expression", condition["expression"].strip())
        if not condition.get("name"):
            found.append(required(f"{path}.name"))
    for index, variable in enumerate(spec.get("variables") or []):
        path = f"spec.variables[{index}]"
        name = str(variable.get("name") or "")
        if not name.strip():
            found.append(required(f"{path}.name", "name is not specified"))
        elif not re.fullmatch(r"[_a-zA-Z][_a-zA-Z0-9]*", name) or cel.escape(name) != name:
            found.append(invalid(f"{path}.name", name, "name is not a valid CEL identifier"))
        if not str(variable.get("expression") or "").strip():
            found.append(required(f"{path}.expression", "expression is not specified"))
        else:
            found += _compile_error(f"{path}.expression", variable["expression"])
    validations = spec.get("validations") or []
    if not validations and not spec.get("auditAnnotations"):
        detail = "validations or auditAnnotations must contain at least one item"
        found += [required("spec.validations", detail), required("spec.auditAnnotations", detail)]
    for index, validation in enumerate(validations):
        found += _validation_errors(validation, f"spec.validations[{index}]")
    return found


def _validation_errors(validation: dict[str, Any], path: str) -> list[FieldError]:
    found = []
    expression = str(validation.get("expression") or "")
    if not expression.strip():
        found.append(required(f"{path}.expression", "expression is not specified"))
    else:
        found += _compile_error(f"{path}.expression", expression)
    message_expression = validation.get("messageExpression")
    if message_expression and not str(message_expression).strip():
        found.append(invalid(f"{path}.messageExpression", message_expression, "must be non-empty if specified"))
    elif message_expression:
        found += _compile_error(f"{path}.messageExpression", message_expression)
    message = validation.get("message")
    if message and not str(message).strip():
        found.append(invalid(f"{path}.message", message, "message must be non-empty if specified"))
    elif message and ("\n" in message.strip() or "\r" in message.strip()):
        found.append(invalid(f"{path}.message", message, "message must not contain line breaks"))
    reason = validation.get("reason")
    if reason is not None and reason not in _REASONS:
        found.append(FieldError("unsupported", f"{path}.reason", _supported(_REASONS), reason))
    return found


def binding_errors(binding: dict[str, Any]) -> list[FieldError]:
    """Default a ValidatingAdmissionPolicyBinding as the server does; what its validation refuses."""
    spec = binding.setdefault("spec", {})
    found = [] if spec.get("policyName") else [required("spec.policyName")]
    if isinstance(spec.get("matchResources"), dict):
        _default_match_resources(spec["matchResources"])
        found += _match_resources_errors(spec["matchResources"], "spec.matchResources")
    actions = spec.get("validationActions") or []
    for index, action in enumerate(actions):
        if action not in _ACTIONS:
            found.append(FieldError("unsupported", f"spec.validationActions[{index}]", _supported(_ACTIONS), action))
        if action in actions[:index]:
            found.append(FieldError("duplicate", f"spec.validationActions[{index}]", value=action))
    if "Deny" in actions and "Warn" in actions:
        detail = (
            "must not contain both Deny and Warn (repeating the same validation failure information in the API "
            "response and headers serves no purpose)"
        )
        found.append(invalid("spec.validationActions", actions, detail))
    if not actions:
        found.append(required("spec.validationActions", "at least one validation action is required"))
    return found


# -- matching ------------------------------------------------------------------------------------


def _selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels, matchExpressions); an empty one selects everything."""
    selector = selector or {}
    requirements = [Requirement(k, "=", (v,)) for k, v in (selector.get("matchLabels") or {}).items()]
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expression in selector.get("matchExpressions") or []:
        op = operators.get(expression.get("operator"), "")
        requirements.append(Requirement(expression.get("key", ""), op, tuple(expression.get("values") or ())))
    return all(r.matches(labels) for r in requirements)


def _labels(obj: dict[str, Any] | None) -> dict[str, str] | None:
    return ((obj.get("metadata") or {}).get("labels") or {}) if obj is not None else None


def _resource_matches(resources: list[str], request: AdmissionRequest) -> bool:
    plural, sub = request.rd.plural, request.subresource
    for resource in resources:
        name, _, rule_sub = resource.partition("/")
        if name not in ("*", plural):
            continue
        if (not rule_sub and not sub) or rule_sub == "*" or (rule_sub and rule_sub == sub):
            return True
    return False


def _rule_matches(rule: dict[str, Any], request: AdmissionRequest) -> bool:
    rd = request.rd
    scope = rule.get("scope") or "*"
    names = rule.get("resourceNames") or []
    return (
        any(op in ("*", request.operation) for op in rule.get("operations") or [])
        and any(g in ("*", rd.group) for g in rule.get("apiGroups") or [])
        and any(v in ("*", rd.version) for v in rule.get("apiVersions") or [])
        and _resource_matches(rule.get("resources") or [], request)
        and (scope == "*" or (scope == "Namespaced") == rd.namespaced)
        and (not names or request.name in names)
    )


# -- evaluating ----------------------------------------------------------------------------------


@dataclasses.dataclass
class _Decision:
    """A failed validation (or an error that failurePolicy Fail turns into one)."""

    message: str
    reason: str = ""


class _Compiled:
    """A policy's expressions, compiled once per resourceVersion."""

    def __init__(self, policy: dict[str, Any]) -> None:
        spec = policy["spec"]
        self.name = policy["metadata"]["name"]
        self.spec = spec
        self.fail = spec.get("failurePolicy", "Fail") != "Ignore"
        self.error = "paramKind is not supported by the rackmesh sandbox API" if spec.get("paramKind") else ""
        try:
            conditions = spec.get("matchConditions") or []
            self.conditions = [(c["expression"], self._compile(c["expression"])) for c in conditions]
            self.variables = [
                (v["name"], v["expression"], self._compile(v["expression"])) for v in spec.get("variables") or []
            ]
            self.validations = [
                (v, self._compile(v["expression"]), self._compile_message(v)) for v in spec.get("validations") or []
            ]
        except cel.CompileError as e:
            self.error = f"compilation error: {e}"

    @staticmethod
    def _compile(text: str) -> celpy.Runner:
        return cel.compile_expression(text, _NAMES)

    @classmethod
    def _compile_message(cls, validation: dict[str, Any]) -> celpy.Runner | None:
        text = validation.get("messageExpression")
        return cls._compile(text) if text else None


def _evaluate(program: celpy.Runner, text: str, activation: dict[str, Any]) -> Any:
    """A program's value; CELEvalError worded as the server words an expression's failure."""
    try:
        return program.evaluate(activation)
    except Exception as e:  # any failure of the expression is reported, as cel-go reports it
        return CELEvalError(f"expression '{text}' resulted in error: {cel.error_text(e)}")


class ValidatingPolicies:
    """The admission plugin: evaluates the stored policies and bindings on each write."""

    def __init__(self, list_objects: Lister, get_object: Getter) -> None:
        self.list = list_objects
        self.get = get_object
        self._compiled: dict[tuple[str, str], _Compiled] = {}
        self.audit: list[dict[str, Any]] = []  # validation_failure annotations of Audit bindings

    def object_errors(self, rd: ResourceDef, obj: dict[str, Any]) -> list[FieldError]:
        """Default and check a policy or binding being written (other objects: nothing to do)."""
        if rd.group != GROUP:
            return []
        if rd.plural == POLICIES:
            return policy_errors(obj)
        return binding_errors(obj) if rd.plural == BINDINGS else []

    def admit(self, request: AdmissionRequest) -> list[str]:
        """Warnings for the request; an ApiError when a policy denies it."""
        warnings: list[str] = []
        denied: list[tuple[str, str | None, _Decision]] = []
        bindings = self.list(GROUP, BINDINGS, None)
        for policy in sorted(self.list(GROUP, POLICIES, None), key=lambda p: p["metadata"]["name"]):
            match = policy["spec"].get("matchConstraints") or {}
            if not self._matches(match, request):
                continue
            compiled = self._compile(policy)
            if compiled.error:
                if compiled.fail:
                    denied.append((compiled.name, None, _Decision(f"failed to configure policy: {compiled.error}")))
                continue
            for binding in sorted(bindings, key=lambda b: b["metadata"]["name"]):
                spec = binding.get("spec") or {}
                if spec.get("policyName") != compiled.name:
                    continue
                narrowing = spec.get("matchResources")
                if narrowing is not None and not self._matches(narrowing, request, rules_required=False):
                    continue
                for decision in self._validate(compiled, request):
                    name = binding["metadata"]["name"]
                    actions = spec.get("validationActions") or []
                    if "Deny" in actions:
                        denied.append((compiled.name, name, decision))
                    if "Warn" in actions:
                        warnings.append(
                            f"Validation failed for ValidatingAdmissionPolicy '{compiled.name}' with binding "
                            f"'{name}': {decision.message}"
                        )
                    if "Audit" in actions:
                        failure = {"message": decision.message, "policy": compiled.name, "binding": name}
                        self.audit.append({**failure, "validationActions": actions})
        if denied:
            raise self._denial(request, *denied[0])
        return warnings

    def _compile(self, policy: dict[str, Any]) -> _Compiled:
        md = policy["metadata"]
        key = (md["name"], md.get("resourceVersion", ""))
        if key not in self._compiled:
            self._compiled = {k: v for k, v in self._compiled.items() if k[0] != md["name"]}
            self._compiled[key] = _Compiled(policy)
        return self._compiled[key]

    def _matches(self, match: dict[str, Any], request: AdmissionRequest, *, rules_required: bool = True) -> bool:
        """matchConstraints (or a binding's matchResources): namespace and object selectors, rules."""
        if request.rd.plural == "namespaces" and not request.rd.group:
            namespace = request.obj or request.old  # a Namespace is selected by its own labels
        else:
            namespace = self.get("", "namespaces", None, request.namespace) if request.namespace else None
        if namespace is not None and not _selector_matches(match.get("namespaceSelector"), _labels(namespace) or {}):
            return False
        labelled = [labels for labels in (_labels(request.obj), _labels(request.old)) if labels is not None]
        if not any(_selector_matches(match.get("objectSelector"), labels) for labels in labelled):
            return False
        if any(_rule_matches(rule, request) for rule in match.get("excludeResourceRules") or []):
            return False
        rules = match.get("resourceRules") or []
        if not rules and not rules_required:
            return True
        return any(_rule_matches(rule, request) for rule in rules)

    def _activation(self, request: AdmissionRequest) -> dict[str, Any]:
        namespace = None
        if request.namespace:
            stored = self.get("", "namespaces", None, request.namespace)
            if stored is not None:
                namespace = {k: stored[k] for k in ("metadata", "spec", "status") if k in stored}
        return {
            "object": celpy.json_to_cel(request.obj),
            "oldObject": celpy.json_to_cel(request.old),
            "request": celpy.json_to_cel(request.to_json()),
            "namespaceObject": celpy.json_to_cel(namespace),
            "params": None,
        }

    def _validate(self, compiled: _Compiled, request: AdmissionRequest) -> list[_Decision]:
        """The failed validations of one binding (errors as failurePolicy says)."""
        activation = self._activation(request)
        errors_found: list[str] = []
        for text, program in compiled.conditions:
            value = _evaluate(program, text, activation)
            if isinstance(value, CELEvalError):
                errors_found.append(str(value.args[0]))
            elif not (isinstance(value, celtypes.BoolType) and value):
                return []  # a false condition: the policy does not apply, whatever errors the others had
        if errors_found:
            message = errors_found[0] if len(errors_found) == 1 else f"[{', '.join(errors_found)}]"
            return [_Decision(message)] if compiled.fail else []
        variables = celtypes.MapType()
        activation["variables"] = variables
        for name, text, program in compiled.variables:
            value = _evaluate(program, text, activation)
            if isinstance(value, CELEvalError):  # surfaces only where the variable is used, as lazily on the server
                value = CELEvalError(f'composited variable "{name}" fails to evaluate: {value.args[0]}')
            variables[celtypes.StringType(name)] = value
        decisions = []
        for validation, program, message_program in compiled.validations:
            text = validation["expression"]
            value = _evaluate(program, text, activation)
            if isinstance(value, CELEvalError):
                if compiled.fail:
                    decisions.append(_Decision(str(value.args[0])))
            elif not (isinstance(value, celtypes.BoolType) and value):
                message = self._message(validation, message_program, activation)
                decisions.append(_Decision(message, validation.get("reason") or "Invalid"))
        return decisions

    @staticmethod
    def _message(validation: dict[str, Any], program: celpy.Runner | None, activation: dict[str, Any]) -> str:
        """messageExpression's string when usable, else message, else the expression."""
        if program is not None:
            value = _evaluate(program, validation["messageExpression"], activation)
            if isinstance(value, str):
                text = value.strip()
                if text and "\n" not in text and len(text.encode()) <= _MAX_MESSAGE_BYTES:
                    return text
        message = str(validation.get("message") or "").strip()
        return message or f"failed expression: {validation['expression'].strip()}"

    @staticmethod
    def _denial(request: AdmissionRequest, policy: str, binding: str | None, decision: _Decision) -> errors.ApiError:
        """admission.NewForbidden with the validation's reason and its code (Invalid, 422, by default)."""
        which = f"ValidatingAdmissionPolicy '{policy}'" + (f" with binding '{binding}'" if binding else "")
        message = f"{which} denied request: {decision.message}"
        error = errors.forbidden(request.rd.group, request.rd.plural, request.name, message)
        reason = decision.reason or "Invalid"
        error.reason, error.code = reason, _CODES.get(reason, 422)
        assert error.details is not None
        error.details["causes"] = [{"message": message}]
        return error
