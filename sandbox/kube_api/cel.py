"""CEL validation rules (``x-kubernetes-validations``) of CRD schemas, evaluated as kube-apiserver does.

Rules are parsed and run by cel-python (``celpy``); this module adds what apiextensions-apiserver
puts around cel-go: typing values by their schema, the compile-time checks the server does when a
CRD is written, transition rules, ratcheting, and the exact field errors of a refusal::

    validator = RuleValidator(openapi_v3_schema)      # compiled once, kept with the CrdSchema
    errors, warnings = validator.validate(obj, old)   # old=None on create
    problems = rule_errors(openapi_v3_schema, "spec.validation.openAPIV3Schema")  # at CRD creation

Followed: apiextensions-apiserver v0.32 ``pkg/apiserver/schema/cel/{validation,compilation}.go``,
``pkg/apis/apiextensions/validation/validation.go``; apiserver ``pkg/cel/common/values.go`` (how
values are typed) and ``pkg/cel/escaping.go`` (property names in CEL). ``matches()`` is Go's regexp
(:mod:`.goregexp`), and a constant pattern it refuses fails compilation (cel-go's ValidateRegexLiterals).
Docs: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules

Not emulated: cost budgets; the Kubernetes CEL libraries (strings extensions such as ``lowerAscii``,
lists, regex ``find``, ``url``, ``quantity``, ``ip``/``cidr``, ``format``), ``dyn`` and optionals — a
rule using them is refused when its CRD is written, saying so; ``optionalOldSelf`` (likewise); cel-go's
type checker beyond undeclared names and undeclared fields of typed objects (other type errors show
up when the rule runs); order-insensitive equality of ``set``/``map`` lists. Compile errors are worded
like cel-go's, but parser messages and columns are cel-python's.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
import re
from collections.abc import Iterable
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.evaluation import CELEvalError, base_functions, celstr

from rackmesh_sandbox.kube_api import goregexp
from rackmesh_sandbox.kube_api.fielderrors import FieldError, GoValue, invalid, required

Schema = dict[str, Any]

_ENV = celpy.Environment()
_MACROS = frozenset({"has", "all", "exists", "exists_one", "map", "filter"})
_ITERATING = _MACROS - {"has"}
# Standard functions and type names cel-python provides (operators are the names that start with "_" or "!").
_FUNCTIONS = frozenset(name for name in base_functions if name[0].isalpha())
_REASONS = frozenset({"FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"})
_MAX_MESSAGE_BYTES = 5 * 1024  # celconfig.MaxEvaluatedMessageExpressionSizeBytes
# Nodes of celpy's parse tree that stand for their only child (the grammar's precedence levels).
_PASSTHROUGH = frozenset(
    {
        *("expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary"),
        *("member", "primary", "paren_expr"),
    }
)
# CEL's reserved words: properties named so are "__<name>__" in rules (apiserver's cel.Escape).
_RESERVED = frozenset(
    {
        *("true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if"),
        *("import", "let", "loop", "package", "namespace", "return", "var", "void", "while"),
    }
)
# Names kube-apiserver's CEL environment adds to standard CEL (apiserver pkg/cel/library, cel-go ext).
_KUBERNETES_LIBRARIES = frozenset(
    {
        *("charAt", "indexOf", "lastIndexOf", "lowerAscii", "upperAscii", "replace", "split", "substring"),
        *("trim", "join", "quote", "reverse", "format", "strings", "dyn", "optional", "hasValue", "orValue"),
        *("isSorted", "sum", "min", "max", "find", "findAll", "sets", "math", "base64"),
        *("url", "isURL", "getScheme", "getHost", "getHostname", "getPort", "getEscapedPath", "getQuery"),
        *("quantity", "isQuantity", "sign", "isGreaterThan", "isLessThan", "compareTo", "add", "sub"),
        *("asInteger", "isInteger", "asApproximateFloat", "semver", "isSemver", "major", "minor", "patch"),
        *("ip", "isIP", "cidr", "isCIDR", "family", "isUnspecified", "isLoopback", "isGlobalUnicast"),
        *("isLinkLocalMulticast", "isLinkLocalUnicast", "containsIP", "containsCIDR", "prefixLength", "masked"),
    }
)
_BLOCKING = frozenset({"unsupported", "required", "too_long", "too_many", "type"})
BLOCKED = FieldError(
    "invalid",
    "<nil>",
    "some validation rules were not checked because the object was invalid; correct the existing errors to "
    "complete validation",
    "null",
)


def blocked(found: list[FieldError]) -> bool:
    """Whether schema errors keep the server from running CEL rules (it reports ``BLOCKED`` instead)."""
    return any(error.kind in _BLOCKING for error in found)


# -- schemas as CEL sees them -------------------------------------------------------------------


def escape(name: str) -> str | None:
    """A property name as a CEL identifier (apiserver's cel.Escape), None if it has none."""
    if not name or name[0].isdigit():
        return None
    if name in _RESERVED:
        return f"__{name}__"
    if not re.fullmatch(r"[A-Za-z0-9_./-]*", name):
        return None
    words = {"__": "__underscores__", ".": "__dot__", "-": "__dash__", "/": "__slash__"}
    return re.sub(r"__|[./-]", lambda m: words[m.group()], name)


def _with_type_and_object_meta(schema: Schema) -> Schema:
    """A resource root as rules see it: apiVersion, kind, and only metadata.name and generateName."""
    string = {"type": "string"}
    meta = {"type": "object", "properties": {"name": string, "generateName": string}}
    properties = {**(schema.get("properties") or {}), "apiVersion": string, "kind": string, "metadata": meta}
    return {**schema, "properties": properties}


def _fields(schema: Schema) -> dict[str, tuple[str, Schema]] | None:
    """CEL field name → (property, schema) of a typed object; None if the node is not one."""
    if schema.get("type") != "object" or not (schema.get("properties") or schema.get("x-kubernetes-embedded-resource")):
        return None
    if schema.get("x-kubernetes-embedded-resource"):
        schema = _with_type_and_object_meta(schema)
    found = {}
    for name, sub in schema["properties"].items():
        escaped = escape(name)
        if escaped is not None:
            found[escaped] = (name, sub)
    return found


def _map_values(schema: Schema) -> Schema | None:
    """The value schema of a map (an object with ``additionalProperties``)."""
    additional = schema.get("additionalProperties")
    return additional if schema.get("type") == "object" and isinstance(additional, dict) else None


def _string(value: str, schema: Schema) -> celtypes.Value:
    """Strings with a time or bytes format are typed as such (values.go); others stay strings."""
    try:
        match schema.get("format"):
            case "date-time":
                return celtypes.TimestampType(value.upper())  # RFC 3339 allows a lower-case t and z
            case "date":
                return celtypes.TimestampType(f"{value}T00:00:00Z")
            case "duration":
                return celtypes.DurationType(value)
            case "byte":
                return celtypes.BytesType(base64.b64decode(value, validate=True))
    except (ValueError, binascii.Error):
        pass  # not of the format after all: the schema validator has reported it
    return celtypes.StringType(value)


def to_cel(value: Any, schema: Schema) -> celtypes.Value:
    """A JSON value typed by its schema, as rules see it."""
    if value is None:
        return None
    if schema.get("x-kubernetes-int-or-string"):
        return celtypes.StringType(value) if isinstance(value, str) else celtypes.IntType(value)
    fields = _fields(schema)
    if fields is not None and isinstance(value, dict):
        # Absent and null fields alike are unset: has() is false, selecting them is an error.
        return celtypes.MapType(
            {
                celtypes.StringType(cel_name): to_cel(value[name], sub)
                for cel_name, (name, sub) in fields.items()
                if value.get(name) is not None
            }
        )
    values = _map_values(schema)
    if values is not None and isinstance(value, dict):
        return celtypes.MapType({celtypes.StringType(k): to_cel(v, values) for k, v in value.items()})
    items = schema.get("items")
    if isinstance(value, list) and isinstance(items, dict):
        return celtypes.ListType([to_cel(item, items) for item in value])
    match schema.get("type"), value:
        case "string", str():
            return _string(value, schema)
        case "number", int() | float() if not isinstance(value, bool):
            return celtypes.DoubleType(value)
        case "integer", int() | float() if not isinstance(value, bool):
            return celtypes.IntType(int(value))
    return celpy.json_to_cel(value)  # booleans, and untyped (preserved) data


# -- compiling ----------------------------------------------------------------------------------


class CompileError(Exception):
    """A rule that does not compile; ``str()`` is the detail the server gives."""


def _issue(text: str, line: int, column: int, message: str) -> str:
    """One cel-go issue: position, message and the source line with a caret."""
    source = (text.splitlines() or [""])[line - 1]
    return f"ERROR: <input>:{line}:{column}: {message}\n | {source}\n | {'.' * max(column - 1, 0)}^"


class _Checker:
    """Undeclared names and undeclared fields of typed objects: what cel-go's checker refuses most often."""

    def __init__(self, text: str, self_schema: Schema | None) -> None:
        self.text = text
        self.self_schema = self_schema  # None: no ``self``/``oldSelf`` (admission expressions)
        self.issues: list[str] = []
        self.literal_issues: list[str] = []  # cel.ValidateRegexLiterals
        self.uses_old_self = False

    def _report(self, token: lark.Token, message: str, column: int | None = None) -> None:
        self.issues.append(_issue(self.text, token.line or 1, column or token.column or 1, message))

    def _check_regex_literal(self, arg: Any) -> None:
        """A constant that Go's regexp refuses is a compile error.

        cel-go checks the call's first argument: the pattern of ``s.matches(p)``, the text of ``matches(s, p)``.
        """
        literal = _string_literal(arg)
        if literal is not None and goregexp.compile_error(celstr(literal)) is not None:
            issue = _issue(self.text, literal.line or 1, literal.column or 1, "invalid matches argument")
            self.literal_issues.append(issue)

    def schema_of(self, node: Any, scope: dict[str, Schema | None]) -> Schema | None:
        """Check a subtree; return the schema of its value when it is known (a path from self)."""
        if not isinstance(node, lark.Tree):
            return None
        children = node.children
        match node.data:
            case "ident" | "dot_ident":
                return self._ident(children[0], scope)
            case "member_dot":
                return self._select(self.schema_of(children[0], scope), children[1])
            case "member_index":
                receiver = self.schema_of(children[0], scope)
                self.schema_of(children[1], scope)
                if receiver is None:
                    return None
                items = receiver.get("items")
                return items if isinstance(items, dict) else _map_values(receiver)
            case "member_dot_arg":
                receiver = self.schema_of(children[0], scope)
                self._call(children[1], children[2:], scope, receiver)
                return None
            case "ident_arg" | "dot_ident_arg":
                self._call(children[0], children[1:], scope, None)
                return None
        found = [self.schema_of(child, scope) for child in children]
        return found[0] if node.data in _PASSTHROUGH and len(children) == 1 else None

    def _ident(self, token: lark.Token, scope: dict[str, Schema | None]) -> Schema | None:
        name = str(token)
        if name in scope:
            return scope[name]
        if name in ("self", "oldSelf") and self.self_schema is not None:
            self.uses_old_self |= name == "oldSelf"
            return self.self_schema
        if name not in _FUNCTIONS:
            self._report(token, _undeclared(name))
        return None

    def _select(self, receiver: Schema | None, token: lark.Token) -> Schema | None:
        if receiver is None:
            return None
        fields = _fields(receiver)
        if fields is None:
            return _map_values(receiver)
        if str(token) not in fields:
            # cel-go places a selection at its dot.
            self._report(token, f"undefined field '{token}'", (token.column or 2) - 1)
            return None
        return fields[str(token)][1]

    def _call(self, token: lark.Token, rest: list[Any], scope: dict[str, Schema | None], receiver: Any) -> None:
        name = str(token)
        args = rest[0].children if rest and isinstance(rest[0], lark.Tree) else []
        if name not in _FUNCTIONS and name not in _MACROS:
            self._report(token, _undeclared(name))
        if name == "matches" and args:
            self._check_regex_literal(args[0])
        if name in _ITERATING and args:
            variable = _ident_name(args[0])
            element = None
            if receiver is not None and isinstance(receiver.get("items"), dict):
                element = receiver["items"]  # map keys are strings: nothing to check on them
            if variable is not None:
                scope = {**scope, variable: element}
                args = args[1:]
        for arg in args:
            self.schema_of(arg, scope)


def _undeclared(name: str) -> str:
    """cel-go's refusal of an unknown name, saying when a real server would have known it."""
    if name in _KUBERNETES_LIBRARIES:
        return (
            f"undeclared reference to '{name}' (in container ''): a function of the Kubernetes CEL libraries, "
            "which the rackmesh sandbox API does not provide"
        )
    return f"undeclared reference to '{name}' (in container '')"


def _string_literal(node: Any) -> lark.Token | None:
    """The token of an expression that is a bare string literal."""
    while isinstance(node, lark.Tree) and len(node.children) == 1:
        node = node.children[0]
    if isinstance(node, lark.Token) and node.type in ("STRING_LIT", "MLSTRING_LIT"):
        return node
    return None


def _ident_name(node: Any) -> str | None:
    """The name of an expression that is a bare identifier (a macro's variable)."""
    while isinstance(node, lark.Tree) and len(node.children) == 1:
        if node.data == "ident":
            return str(node.children[0])
        node = node.children[0]
    return None


def _matches(text: str, pattern: str) -> celtypes.BoolType | CELEvalError:
    """CEL's ``matches()`` as cel-go runs it: Go's regexp, and its error when the pattern does not compile."""
    try:
        return celtypes.BoolType(goregexp.match_string(pattern, text))
    except goregexp.RegexpError as e:
        return CELEvalError(str(e), goregexp.RegexpError, ())


# Functions bound into every program, in place of cel-python's.
_GO_FUNCTIONS = {"matches": _matches}


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> lark.Tree:
    """Parse once per text: CRDs are checked when written and compiled again for their validator."""
    try:
        return _ENV.compile(text)
    except celpy.CELParseError as e:
        cause = e.__context__
        line, column = e.line or 1, e.column or 1
        if isinstance(cause, lark.exceptions.UnexpectedToken) and cause.token.type == "$END":
            lines = text.splitlines() or [""]
            line, column = len(lines), len(lines[-1]) + 1  # cel-go places the end of input after the text
            message = "Syntax error: mismatched input '<EOF>'"
        elif isinstance(cause, lark.exceptions.UnexpectedToken):
            message = f"Syntax error: mismatched input '{cause.token}'"
        elif isinstance(cause, lark.exceptions.UnexpectedCharacters):
            message = f"Syntax error: token recognition error at: '{cause.char}'"
        else:
            message = f"Syntax error: {e.args[0].splitlines()[0]}"
        raise CompileError(_issue(text, line, column, message)) from None


def _program(
    text: str, self_schema: Schema | None, names: dict[str, Schema | None] | None = None
) -> tuple[celpy.Runner, bool]:
    """Compile one expression (over ``self`` typed by its schema, and ``names``); return it and whether it
    uses oldSelf."""
    tree = _parse(text)
    checker = _Checker(text, self_schema)
    checker.schema_of(tree, dict(names or {}))
    # cel-go runs its AST validators (regex literals) only on expressions that type-check.
    issues = checker.issues or checker.literal_issues
    if issues:
        raise CompileError("\n".join(issues))
    return _ENV.program(tree, functions=_GO_FUNCTIONS), checker.uses_old_self


def compile_expression(text: str, names: Iterable[str]) -> celpy.Runner:
    """Compile an expression over untyped variables ``names`` (admission policies: ``object``, ``request``...);
    :class:`CompileError` when cel-go would refuse it (the same checks and functions as CRD rules)."""
    return _program(text, None, dict.fromkeys(names))[0]


def normalize_field_path(path: str, schema: Schema) -> str | None:
    """A rule's ``fieldPath`` as the field path errors name (cel.ValidFieldPath); None if invalid."""
    tokens = re.findall(r"'(?:[^'\\]|\\.)*'|[.\[\]]|[^.\[\]']+", path)
    result, position = "", 0

    def step(name: str) -> Schema | None:
        nonlocal result
        if schema.get("properties") is not None:
            result = f"{result}.{name}" if result else name
            return schema["properties"].get(name)
        if isinstance(schema.get("additionalProperties"), dict):
            result = f"{result}[{name}]"
            return schema["additionalProperties"]
        return None

    while position < len(tokens):
        token = tokens[position]
        if token == "." and position + 1 < len(tokens):
            name, position = tokens[position + 1], position + 2
        elif token == "[" and position + 2 < len(tokens) and tokens[position + 2] == "]":
            quoted, position = tokens[position + 1], position + 3
            if len(quoted) < 2 or quoted[0] != "'" or quoted[-1] != "'":
                return None
            name = re.sub(r"\\(.)", r"\1", quoted[1:-1])
        else:
            return None
        found = step(name)
        if found is None:
            return None
        schema = found
    return result


@dataclasses.dataclass(frozen=True)
class Rule:
    """One entry of ``x-kubernetes-validations``, compiled."""

    spec: dict[str, Any]  # as written in the CRD
    program: celpy.Runner | None = None
    message_program: celpy.Runner | None = None
    uses_old_self: bool = False
    field_path: str = ""  # normalized; "" for the node itself
    error: str = ""  # why it did not compile

    @property
    def text(self) -> str:
        return str(self.spec.get("rule") or "").strip()

    def error_string(self) -> str:
        """The message if there is one, else the rule (ruleErrorString)."""
        return str(self.spec.get("message") or "").strip() or self.text


def compile_rule(spec: dict[str, Any], self_schema: Schema, node_schema: Schema) -> Rule:
    """Compile a rule against the type of ``self`` (errors are kept in ``Rule.error``)."""
    try:
        program, uses_old_self = _program(spec.get("rule") or "", self_schema)
    except CompileError as e:
        return Rule(spec, error=f"compilation failed: {e}")
    message_program = None
    if str(spec.get("messageExpression") or "").strip():
        try:
            message_program, _ = _program(spec["messageExpression"], self_schema)
        except CompileError as e:
            return Rule(spec, error=f"messageExpression compilation failed: {e}")
    field_path = normalize_field_path(spec["fieldPath"], node_schema) if spec.get("fieldPath") else ""
    return Rule(spec, program, message_program, uses_old_self, field_path or "")


def _go_rule(spec: dict[str, Any]) -> GoValue:
    """A ValidationRule printed with Go's %#v, as the server quotes it in CRD errors."""

    def pointer(kind: str, key: str) -> str:
        # Go prints the pointer's address, which differs on every server.
        return f"(*{kind})(nil)" if spec.get(key) is None else f"(*{kind})(0xc000a1b2c0)"

    return GoValue(
        "apiextensions.ValidationRule{"
        f"Rule:{json.dumps(spec.get('rule') or '', ensure_ascii=False)}, "
        f"Message:{json.dumps(spec.get('message') or '', ensure_ascii=False)}, "
        f"MessageExpression:{json.dumps(spec.get('messageExpression') or '', ensure_ascii=False)}, "
        f"Reason:{pointer('apiextensions.FieldValueErrorReason', 'reason')}, "
        f"FieldPath:{json.dumps(spec.get('fieldPath') or '', ensure_ascii=False)}, "
        f"OptionalOldSelf:{pointer('bool', 'optionalOldSelf')}}}"
    )


# -- the validator tree -------------------------------------------------------------------------


@dataclasses.dataclass
class _Problems:
    """CRD-time refusals of rules, apart as the server keeps them (SchemaErrors, then CELErrors)."""

    spec: list[FieldError] = dataclasses.field(default_factory=list)
    compiled: list[FieldError] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Node:
    """The rules at one schema node and the nodes below it that have rules."""

    schema: Schema
    self_schema: Schema  # with apiVersion, kind and the visible metadata at resource roots
    rules: list[Rule]
    properties: dict[str, _Node]
    items: _Node | None
    additional: _Node | None
    all_of: list[_Node]


def _has_rules(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if schema.get("x-kubernetes-validations"):
        return True
    nested = [schema.get("items"), schema.get("additionalProperties"), *(schema.get("properties") or {}).values()]
    return any(_has_rules(sub) for sub in [*nested, *(schema.get("allOf") or [])])


def _build(
    validation: Schema,
    node: Schema,
    root: bool,
    problems: _Problems | None,
    path: str,
    uncorrelatable: str | None,
) -> _Node | None:
    """The validator for ``node`` with the rules of ``validation`` (the same schema, or one of its allOf)."""
    if not _has_rules(validation):
        return None
    self_schema = _with_type_and_object_meta(node) if root else node
    rules = []
    for index, spec in enumerate(validation.get("x-kubernetes-validations") or []):
        has_rule = isinstance(spec, dict) and bool(str(spec.get("rule") or "").strip())
        rule = compile_rule(spec, self_schema, node) if has_rule else None  # empty rules are skipped
        if problems is not None:
            rule_path = f"{path}.x-kubernetes-validations[{index}]"
            found = _spec_problems(spec, node, rule_path)
            problems.spec += found
            if rule is not None and not found:
                problems.compiled += _compile_problems(rule, rule_path, uncorrelatable)
        if rule is not None:
            rules.append(rule)
    properties = {}
    for name, sub in (validation.get("properties") or {}).items():
        child = (node.get("properties") or {}).get(name)
        if isinstance(child, dict):
            built = _build(
                sub,
                child,
                bool(child.get("x-kubernetes-embedded-resource")),
                problems,
                f"{path}.properties[{name}]",
                uncorrelatable,
            )
            if built is not None:
                properties[name] = built
    items = None
    if isinstance(validation.get("items"), dict) and isinstance(node.get("items"), dict):
        if node.get("x-kubernetes-list-type") != "map":
            uncorrelatable = uncorrelatable or path  # only map lists correlate old and new items
        items = _build(
            validation["items"],
            node["items"],
            bool(node["items"].get("x-kubernetes-embedded-resource")),
            problems,
            f"{path}.items",
            uncorrelatable,
        )
    additional = None
    if isinstance(validation.get("additionalProperties"), dict) and isinstance(node.get("additionalProperties"), dict):
        additional = _build(
            validation["additionalProperties"],
            node["additionalProperties"],
            bool(node["additionalProperties"].get("x-kubernetes-embedded-resource")),
            problems,
            f"{path}.additionalProperties",
            uncorrelatable,
        )
    # Rules under allOf are evaluated (not checked when the CRD is written, as on real servers).
    all_of = [
        built for sub in validation.get("allOf") or [] if (built := _build(sub, node, root, None, path, uncorrelatable))
    ]
    return _Node(node, self_schema, rules, properties, items, additional, all_of)


def _spec_problems(spec: Any, schema: Schema, path: str) -> list[FieldError]:
    """What the server checks in a rule before compiling it."""
    if not isinstance(spec, dict) or not str(spec.get("rule") or "").strip():
        return [required(f"{path}.rule", "rule is not specified")]
    found = []
    message = str(spec.get("message") or "")
    if message and not message.strip():
        found.append(invalid(f"{path}.message", message, "message must be non-empty if specified"))
    elif "\n" in message.strip():
        found.append(invalid(f"{path}.message", message, "message must not contain line breaks"))
    elif "\n" in spec["rule"].strip() and not message.strip():
        found.append(required(f"{path}.message", "message must be specified if rule contains line breaks"))
    if spec.get("messageExpression") is not None and not str(spec["messageExpression"]).strip():
        found.append(required(f"{path}.messageExpression", "messageExpression must be non-empty if specified"))
    if spec.get("reason") is not None and spec["reason"] not in _REASONS:
        supported = ", ".join(json.dumps(r) for r in sorted(_REASONS))
        found.append(FieldError("unsupported", f"{path}.reason", f"supported values: {supported}", spec["reason"]))
    field_path = spec.get("fieldPath")
    if field_path is not None:
        if not str(field_path).strip():
            found.append(invalid(f"{path}.fieldPath", field_path, "fieldPath must be non-empty if specified"))
        elif "\n" in field_path:
            found.append(invalid(f"{path}.fieldPath", field_path, "fieldPath must not contain line breaks"))
        elif normalize_field_path(field_path, schema) is None:
            found.append(invalid(f"{path}.fieldPath", field_path, "fieldPath must be a valid path"))
    return found


def _compile_problems(rule: Rule, path: str, uncorrelatable: str | None) -> list[FieldError]:
    if rule.error:
        field = "messageExpression" if rule.error.startswith("messageExpression") else "rule"
        return [invalid(f"{path}.{field}", _go_rule(rule.spec), rule.error)]
    if rule.spec.get("optionalOldSelf") is not None:
        if not rule.uses_old_self:
            return [
                invalid(
                    f"{path}.optionalOldSelf",
                    rule.spec["optionalOldSelf"],
                    "may not be set if oldSelf is not used in rule",
                )
            ]
        return [
            invalid(
                f"{path}.optionalOldSelf",
                rule.spec["optionalOldSelf"],
                "not emulated by the rackmesh sandbox API (cel-python has no optional values)",
            )
        ]
    if rule.uses_old_self and uncorrelatable is not None:
        detail = f"oldSelf cannot be used on the uncorrelatable portion of the schema within {uncorrelatable}"
        return [invalid(f"{path}.rule", rule.spec["rule"], detail)]
    return []


def rule_errors(openapi: Schema, path: str, *, compile_rules: bool = True) -> list[FieldError]:
    """Why the server refuses the rules of a CRD version's schema (``path`` names its openAPIV3Schema).

    Without ``compile_rules`` (the server's choice for a schema with structural errors) only the
    rules' fields are checked, not whether they compile.
    """
    problems = _Problems()
    _build(openapi, openapi, True, problems, path, None)
    return problems.spec + (problems.compiled if compile_rules else [])


# -- validating objects -------------------------------------------------------------------------


def error_text(error: Exception) -> str:
    """A cel-python evaluation error worded as cel-go's (``no such key: x``)."""
    text = str(error.args[0]) if error.args else str(error)
    missing = re.fullmatch(r"no such member in mapping: '(.*)'", text)
    return f"no such key: {missing[1]}" if missing else text


def _eval_detail(error: Exception, rule: Rule) -> str:
    """How the server words a rule that failed to evaluate."""
    text = error_text(error)
    if "no such overload" in text or "no matching overload" in text:
        return (
            f"'{text}': call arguments did not match a supported operator, function or macro signature "
            f"for rule: {rule.error_string()}"
        )
    return f"{text} evaluating rule: {rule.error_string()}"


def _message(rule: Rule, activation: dict[str, Any]) -> str:
    """The messageExpression's result when it makes a usable message, else message or the default."""
    if rule.message_program is not None:
        try:
            value = rule.message_program.evaluate(activation)
        except Exception:  # any failure falls back to the static message, as on the server
            value = None
        if isinstance(value, str):
            text = value.strip()
            if text and "\n" not in text and len(text.encode()) <= _MAX_MESSAGE_BYTES:
                return text
    message = str(rule.spec.get("message") or "").strip()
    return message or f"failed rule: {rule.text}"


def _refusal(rule: Rule, path: str, value_type: str, detail: str) -> FieldError:
    match rule.spec.get("reason"):
        case "FieldValueForbidden":
            return FieldError("forbidden", path, detail)
        case "FieldValueRequired":
            return FieldError("required", path, detail)
        case "FieldValueDuplicate":
            return FieldError("duplicate", path, value=value_type)
    return invalid(path, value_type, detail)


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _map_list_key(item: Any, keys: list[str]) -> Any:
    return json.dumps([item.get(k) for k in keys]) if isinstance(item, dict) else None


class RuleValidator:
    """The compiled ``x-kubernetes-validations`` of one schema (a CRD version's openAPIV3Schema)."""

    def __init__(self, openapi: Schema) -> None:
        self.root = _build(openapi, openapi, True, None, "openAPIV3Schema", None)

    def __bool__(self) -> bool:
        return self.root is not None

    def validate(self, obj: Any, old: Any = None, *, ratchet: bool = False) -> tuple[list[FieldError], list[str]]:
        """Errors for ``obj`` (``old``: the stored object, on updates); warnings for ratcheted errors.

        With ``ratchet`` (updates of the main resource, CRDValidationRatcheting), an error of a
        rule without oldSelf at a node whose value did not change is only a warning.
        """
        run = _Run(ratchet)
        if self.root is not None:
            run.node(self.root, obj, old, "", old is not None and obj == old)
        return run.errors, run.warnings


@dataclasses.dataclass
class _Run:
    """One validation of an object: walks the validator tree along the object and its old value."""

    ratchet: bool
    errors: list[FieldError] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def node(self, node: _Node, value: Any, old: Any, path: str, unchanged: bool) -> None:
        """``unchanged``: whether the nearest node with an old value (this one or above) kept it."""
        if value is None:
            return  # rules only see values that are set
        self.rules(node, value, old, path, unchanged)
        for sub in node.all_of:
            self.node(sub, value, old, path, unchanged)
        if isinstance(value, dict):
            old_map = old if isinstance(old, dict) else {}
            for key, item in value.items():
                if node.additional is not None:
                    child, path_to = node.additional, f"{path}[{key}]"
                elif key in node.properties:
                    child, path_to = node.properties[key], _child(path, key)
                else:
                    continue
                previous = old_map.get(key)
                self.node(child, item, previous, path_to, item == previous if key in old_map else unchanged)
        elif isinstance(value, list) and node.items is not None:
            keys = node.schema.get("x-kubernetes-list-map-keys") or []
            olds: dict[Any, Any] = {}
            if node.schema.get("x-kubernetes-list-type") == "map" and isinstance(old, list):
                olds = {_map_list_key(item, keys): item for item in old}  # only map lists correlate items
            for index, item in enumerate(value):
                previous = olds.get(_map_list_key(item, keys))
                same = item == previous if previous is not None else unchanged
                self.node(node.items, item, previous, f"{path}[{index}]", same)

    def rules(self, node: _Node, value: Any, old: Any, path: str, unchanged: bool) -> None:
        if not node.rules:
            return
        value_type = str(node.schema.get("type") or "")
        here = path or "<nil>"  # the root's field path is nil on the server
        activation = {"self": to_cel(value, node.self_schema)}
        if old is not None:
            activation["oldSelf"] = to_cel(old, node.self_schema)
        for rule in node.rules:
            if rule.error:
                self.errors.append(invalid(here, value_type, f"rule compile error: {rule.error}"))
                continue
            if rule.uses_old_self and old is None:
                continue  # transition rules need an old value to compare with
            assert rule.program is not None
            try:
                result = rule.program.evaluate(activation)
            except Exception as e:  # any evaluation failure is reported as the server does
                self.errors.append(invalid(here, value_type, _eval_detail(e, rule)))
                continue
            if isinstance(result, celtypes.BoolType) and result:
                continue
            target = _child(path, rule.field_path) if rule.field_path else here
            error = _refusal(rule, target, value_type, _message(rule, activation))
            if self.ratchet and unchanged and not rule.uses_old_self:
                self.warnings.append(str(error))
            else:
                self.errors.append(error)
