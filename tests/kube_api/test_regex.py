r"""Regular expressions from schemas, matched as kube-apiserver (Go's ``regexp``, RE2 syntax) matches them.

Sources followed: kube-openapi ``validate.Pattern`` (``regexp.MatchString``, an unanchored search),
apiextensions-apiserver ``pkg/apiserver/schema/validation.go`` (a CRD whose ``pattern`` does not
compile is refused: ``must be a valid regular expression, but isn't: <Go's error>``; CEL rules are
then not compiled), Go 1.23 ``regexp/syntax/parse.go`` (error texts; ``(?<`` starts a named capture),
cel-go ``ValidateRegexLiterals`` (a constant pattern in ``matches()`` that does not compile: ``invalid
matches argument``), kube-openapi strfmt/govalidator (uuid, date, date-time, byte).

Case matrix (each difference from Python's ``re`` is asserted too, so the case keeps its point):
- values: ``$`` and a trailing newline (the DeploymentRequest's instancetype, through the API and
  through ``kubectl apply``), ASCII-only ``\d``/``\w``/``\s``, ``a{,3}`` as text, POSIX classes;
  patterns valid in both with the same result; no catastrophic backtracking.
- patterns Go refuses, with Go's error: ``\Z``, lookahead, lookbehind, backreferences, atomic groups,
  possessive repeats, ``(?x)``, ``\u``, ``\C``, non-ASCII capture names; the first fault as Go names
  it; ones Python refuses that Go takes (``\z``, ``(?<name>)``, ``\pL``, ``\Q…\E``); one too large
  for RE2 (refused, saying it is the sandbox's limit).
- CRD creation: a pattern Go refuses → 422 with the server's message, nothing stored, rules not compiled.
- CEL ``matches()``: RE2 semantics; a constant pattern Go refuses → CRD refused; a pattern from data
  that does not compile → the rule fails with Go's error.
- formats Go checks with its regexp: uuid, date, date-time, byte.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any

import pytest

from rackmesh_sandbox.kube_api import cel, goregexp
from rackmesh_sandbox.kube_api.schema import CrdSchema
from tests.kube_api.conftest import DRS, Client, dr, widget_crd

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
DR_NAME_PATTERN = "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"  # image in crds/deploymentrequest.yaml
INSTANCETYPE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"  # a DNS-1123 subdomain


def python_search(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


# -- matching -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "go"),
    [
        (DR_NAME_PATTERN, "u1.large\n", False),  # Python's $ also matches before a final newline
        ("^x$", "x\n", False),
        (r"^\d+$", "١٢٣", False),  # Arabic-Indic digits: Python's \d is Unicode-aware
        (r"^\d+$", "\uff11\uff12\uff13", False),  # fullwidth digits
        (r"^\w+$", "é", False),
        (r"^\s$", "\v", False),  # Go's \s is [\t\n\f\r ]
        (r"^\bé", "é", False),  # \b between ASCII word characters only
        ("^a{,3}$", "a{,3}", True),  # not a repeat in Go: the text itself
        ("^[[:digit:]]+$", "123", True),  # a POSIX class in Go, a set of characters in Python
    ],
)
@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")  # Python's hint at [[:digit:]]
def test_values_are_matched_as_go_matches_them(pattern: str, text: str, go: bool) -> None:
    assert goregexp.match_string(pattern, text) is go
    assert python_search(pattern, text) is not go


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        (DR_NAME_PATTERN, "u1.large", True),
        (DR_NAME_PATTERN, "U1.large", False),
        (DR_NAME_PATTERN, "-u1", False),
        ("[0-9]+", "abc123def", True),  # unanchored, as MatchString searches
        ("^(ab|cd)*e?$", "abcdab", True),
        ("(?i)^rhel-[0-9]+$", "RHEL-9", True),
        ("(?m)^b$", "a\nb\nc", True),
        ("(?s)a.b", "a\nb", True),
        ("a.b", "a\nb", False),
        (r"^[^\n]*$", "a\nb", False),
    ],
)
def test_patterns_valid_in_both_match_alike(pattern: str, text: str, matches: bool) -> None:
    assert goregexp.match_string(pattern, text) is matches
    assert python_search(pattern, text) is matches


def test_there_is_no_catastrophic_backtracking() -> None:
    started = time.monotonic()
    assert not goregexp.match_string("^(a+)+$", "a" * 100_000 + "!")
    assert time.monotonic() - started < 1


def test_unpaired_surrogates_are_matched_as_go_decodes_them() -> None:
    # JSON may escape a lone surrogate; Go decodes it to U+FFFD, Python keeps it (and it has no UTF-8).
    assert goregexp.match_string("^a\ufffd$", "a\ud800")
    assert goregexp.match_string("^a.$", "a\udfff")


# -- compiling ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "error"),
    [
        (r"^u1\.large\Z", r"invalid escape sequence: `\Z`"),
        ("^(?=u1).*$", "invalid or unsupported Perl syntax: `(?=`"),
        ("^(?!x)", "invalid or unsupported Perl syntax: `(?!`"),
        # Go 1.22 and later read "(?<" as a named capture; C++ RE2 calls it a Perl operator.
        ("(?<=a)b", "invalid named capture: `(?<=a)b`"),
        ("x(?<!a)>b", "invalid named capture: `(?<!a)>`"),
        (r"^(a)\1$", r"invalid escape sequence: `\1`"),
        ("(?P<n>a)(?P=n)", "invalid or unsupported Perl syntax: `(?P`"),
        ("(?>a)", "invalid or unsupported Perl syntax: `(?>`"),
        ("a*+", "invalid nested repetition operator: `*+`"),
        ("(?x) a", "invalid or unsupported Perl syntax: `(?x`"),
        (r"\u00e9", r"invalid escape sequence: `\u`"),
        ("(?P<é>a)", "invalid named capture: `(?P<é>`"),  # C++ RE2 takes Unicode names, Go ASCII ones
    ],
)
def test_patterns_python_takes_and_go_refuses(pattern: str, error: str) -> None:
    re.compile(pattern)
    assert goregexp.compile_error(pattern) == f"error parsing regexp: {error}"
    with pytest.raises(goregexp.RegexpError, match=re.escape(error)):
        goregexp.match_string(pattern, "a")


@pytest.mark.parametrize(
    ("pattern", "error"),
    [
        ("+", "missing argument to repetition operator: `+`"),
        ("a(b", "missing closing ): `a(b`"),
        ("[a", "missing closing ]: `[a`"),
        ("a\\", "trailing backslash at end of expression: ``"),
        ("x{1001}", "invalid repeat count: `{1001}`"),
        # Where the parsers check in another order, Go's first fault is named.
        ("x{1001}?", "invalid repeat count: `{1001}`"),
        ("x{2}{1001}", "invalid repeat count: `{1001}`"),
        ("(x{100}){100}?", "invalid repeat count: `{100}?`"),
        ("x\\x{", "invalid escape sequence: `\\x{`"),
    ],
)
def test_go_wording_of_errors_both_refuse(pattern: str, error: str) -> None:
    assert goregexp.compile_error(pattern) == f"error parsing regexp: {error}"


@pytest.mark.parametrize(
    ("pattern", "text"), [(r"^ab\z", "ab"), ("^(?<n>a)$", "a"), (r"^\pL+$", "é"), (r"^\Q1.5\E$", "1.5")]
)
def test_patterns_python_refuses_and_go_takes(pattern: str, text: str) -> None:
    with pytest.raises(re.error):
        re.compile(pattern)
    assert goregexp.match_string(pattern, text)


def test_a_pattern_too_large_for_re2_is_refused_saying_so() -> None:
    # Go's regexp takes it; RE2 needs more than its 8 MiB budget (a sandbox limit, not the server's).
    error = goregexp.compile_error(r"\pL{1000}")
    assert error is not None
    assert "too large for RE2's memory budget in the rackmesh sandbox API" in error


def test_constructs_are_refused_only_where_go_parses_them() -> None:
    # C++ RE2 takes \C (any byte), Go refuses it; escaped, inside a class or a \Q…\E quote, "(?<=" and
    # "\C" are plain text.
    for pattern in (r"\(?<=a", "[(?<=a]", r"\Q(?<=a\E", r"\\C", r"\Q\C\E"):
        assert goregexp.compile_error(pattern) is None, pattern
    for pattern in (r"a\C", r"[\C]"):
        assert goregexp.compile_error(pattern) == r"error parsing regexp: invalid escape sequence: `\C`"
    # The first error is reported, as Go's parser meets it.
    assert goregexp.compile_error(r"(?=a)\C") == "error parsing regexp: invalid or unsupported Perl syntax: `(?=`"
    assert goregexp.compile_error(r"\C(?=a)") == r"error parsing regexp: invalid escape sequence: `\C`"
    assert goregexp.compile_error(r"\Z\C") == r"error parsing regexp: invalid escape sequence: `\Z`"
    assert goregexp.compile_error("(?#c)(?P<é>a)") == "error parsing regexp: invalid or unsupported Perl syntax: `(?#`"


# -- through the API ----------------------------------------------------------------------------


def widget_crd_with(path: list[str], **keywords: Any) -> dict[str, Any]:
    """The Widget CRD with ``keywords`` added to the schema node at ``path`` (property names)."""
    crd = copy.deepcopy(widget_crd())
    node = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for name in path:
        node = node["properties"][name]
    node.update(keywords)
    return crd


async def test_a_crd_with_a_pattern_go_refuses_is_refused(client: Client) -> None:
    reply = await client.post(CRDS, widget_crd_with(["spec", "flavor"], pattern=r"^u1\.large\Z"))
    assert reply.status == 422
    assert reply.body["message"] == (
        'CustomResourceDefinition.apiextensions.k8s.io "widgets.test.rackmesh.io" is invalid: '
        "spec.validation.openAPIV3Schema.properties[spec].properties[flavor].pattern: "
        'Invalid value: "^u1\\\\.large\\\\Z": must be a valid regular expression, but isn\'t: '
        "error parsing regexp: invalid escape sequence: `\\Z`"
    )
    assert (await client.get(f"{CRDS}/widgets.test.rackmesh.io")).status == 404


async def test_patterns_are_checked_under_junctors_and_rules_then_not_compiled(client: Client) -> None:
    crd = widget_crd_with(["spec", "flavor"], anyOf=[{"pattern": "(?=x)"}, {"maxLength": 3}])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"] = [{"rule": "self.nope > 0"}]  # does not compile, but is not compiled
    reply = await client.post(CRDS, crd)
    assert reply.status == 422
    assert [c["field"] for c in reply.body["details"]["causes"]] == [
        "spec.validation.openAPIV3Schema.properties[spec].properties[flavor].anyOf[0].pattern"
    ]


async def test_a_trailing_newline_does_not_pass_a_pattern_ending_in_dollar(client: Client) -> None:
    reply = await client.post(DRS, dr("nl", instancetype="u1.large\n"))
    assert reply.status == 422
    assert reply.body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": f'Invalid value: "u1.large\\n": spec.instancetype in body should match '
                       f"'{INSTANCETYPE_PATTERN}'",
            "field": "spec.instancetype",
        }
    ]
    assert (await client.post(DRS, dr("plain"))).status == 201


def test_a_pattern_no_crd_check_saw_is_reported_invalid_where_it_is_used() -> None:
    schema = CrdSchema.from_openapi(
        {"type": "object", "properties": {"v": {"type": "string", "pattern": "(?=a)"}}}, kind="Thing", group="t.io"
    )
    assert schema.validate({"v": "a"})[0].detail == (
        "v in body should match '(?=a), but pattern is invalid: "
        "error parsing regexp: invalid or unsupported Perl syntax: `(?=`'"
    )


# -- CEL matches() ------------------------------------------------------------------------------


def test_cel_matches_is_go_regexp() -> None:
    rule = {"rule": f"self.matches('{DR_NAME_PATTERN}')", "message": "not a name"}
    validator = cel.RuleValidator({"type": "string", "x-kubernetes-validations": [rule]})
    assert validator.validate("u1.large") == ([], [])
    assert [str(e) for e in validator.validate("u1.large\n")[0]] == ['<nil>: Invalid value: "string": not a name']


def test_cel_matches_with_a_pattern_from_data_that_does_not_compile() -> None:
    schema = {
        "type": "object",
        "properties": {"text": {"type": "string"}, "pattern": {"type": "string"}},
        "x-kubernetes-validations": [{"rule": "self.text.matches(self.pattern)"}],
    }
    [error], _ = cel.RuleValidator(schema).validate({"text": "ab", "pattern": "(a)\\1"})
    assert error.detail == (
        "error parsing regexp: invalid escape sequence: `\\1` evaluating rule: self.text.matches(self.pattern)"
    )


async def test_a_crd_whose_rule_has_a_constant_pattern_go_refuses_is_refused(client: Client) -> None:
    rule = {"rule": "self.matches('^(?!legacy)')"}
    reply = await client.post(CRDS, widget_crd_with(["spec", "flavor"], **{"x-kubernetes-validations": [rule]}))
    assert reply.status == 422
    [cause] = reply.body["details"]["causes"]
    assert cause["field"] == (
        "spec.validation.openAPIV3Schema.properties[spec].properties[flavor].x-kubernetes-validations[0].rule"
    )
    assert cause["message"].endswith(
        "compilation failed: ERROR: <input>:1:14: invalid matches argument\n"
        " | self.matches('^(?!legacy)')\n"
        " | .............^"
    )


# -- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "value", "valid"),
    [
        ("uuid", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", True),
        ("uuid", "6BA7B8109DAD11D180B400C04FD430C8", True),
        ("uuid", "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}", False),  # Python's uuid.UUID takes these three
        ("uuid", "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8", False),
        ("uuid", "6ba7-b8109dad11d180b400c04fd430c8", False),
        ("uuid", "6ba7b810-9dad-11d1-80b4-00c04fd430c8\n", False),
        ("date", "2024-02-29", True),
        ("date", "2023-02-29", False),  # Go's time.Parse knows the calendar
        ("date", "2024-13-01", False),
        ("date", "\uff12\uff10\uff12\uff14-01-01", False),  # fullwidth digits (Python's \d takes them)
        ("date-time", "2024-01-01T10:00:00Z", True),
        ("date-time", "2024-01-01t10:00:00.5+01:00", True),
        ("date-time", "2024-01-01 10:00:00Z", False),  # strfmt splits at "t" only
        ("date-time", "2024-01-01T24:00:00Z", False),
        ("date-time", "2024-01-01T10:00:00Z\n", False),
        ("byte", "YWJj", True),
        ("byte", "", False),  # govalidator's pattern wants at least one quantum; Python decodes ""
        ("byte", "YWJj\n", False),
    ],
)
def test_formats_go_checks_with_its_regexp(fmt: str, value: str, valid: bool) -> None:
    schema = CrdSchema.from_openapi(
        {"type": "object", "properties": {"v": {"type": "string", "format": fmt}}}, kind="Thing", group="t.io"
    )
    assert (schema.validate({"v": value}) == []) is valid
