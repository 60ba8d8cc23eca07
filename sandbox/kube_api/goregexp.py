r"""Regular expressions from schemas, compiled and matched as Go's ``regexp`` package does (RE2 syntax).

kube-apiserver compiles a CRD's ``pattern`` with ``regexp.Compile`` when the CRD is written and checks
values with ``MatchString``, an unanchored search (kube-openapi ``validate.Pattern``); CEL's
``matches()`` does the same. Python's ``re`` differs where it matters: ``$`` also matches before a
final newline, ``\d``/``\w``/``\s``/``\b`` are Unicode-aware, ``a{,3}`` is a repeat rather than literal
text, ``[[:alpha:]]`` is not a POSIX class, and lookarounds, backreferences, ``\Z``, ``(?x)``, atomic
groups and possessive repeats compile. So patterns run on google-re2 (C++ RE2, from which Go's
``regexp/syntax`` was ported), and this module bridges where C++ RE2 and Go still differ:

- Go refuses ``\C`` (any byte) and capture names that are not ASCII letters, digits and ``_``;
- Go (1.22 and later) reads every ``(?<`` as a named capture, so a lookbehind is refused as a bad name;
- errors are worded as Go words them (``error parsing regexp: <code>: `<expr>```), including which of
  two faults Go names first where the parsers check in another order (a repeat count out of range).

Followed: Go 1.23 ``src/regexp/syntax/parse.go``; RE2 ``re2/re2.cc`` (its error texts).

Not emulated: Go's limit on nesting (a parse tree over 1000 high); RE2 needs far more memory than
Go for large Unicode classes under repeats (``\pL{1000}``), so a pattern over RE2's 8 MiB budget
is refused with a message saying so, where Go may accept it.
"""

from __future__ import annotations

import functools
import re

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # refusals are answered to clients; C++ RE2 would also print them on stderr

# C++ RE2's error texts → Go's regexp/syntax ErrorCode texts, where they differ (the expression after
# ": " is the same).
_GO_CODES = {
    "missing ]": "missing closing ]",
    "missing )": "missing closing )",
    "trailing \\": "trailing backslash at end of expression",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid repetition size": "invalid repeat count",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid named capture group": "invalid named capture",
}
_TOO_LARGE = "pattern too large - compile failed"
# Where C++ RE2 and Go part: \C, and the name after "(?<" or "(?P<".
_GO_ONLY = re.compile(r"\\C|\(\?P?<")
# The last repetition of an expression in an error, as {min}, {min,} or {min,max}, maybe non-greedy.
_LAST_REPEAT = re.compile(r"(\{([0-9]+)(,([0-9]*))?\})\??$")
# Go decodes a JSON string's unpaired surrogate escapes to U+FFFD; Python keeps them, and they have no UTF-8.
_SURROGATES = dict.fromkeys(range(0xD800, 0xE000), "\ufffd")


class RegexpError(ValueError):
    """A pattern Go's ``regexp.Compile`` refuses; ``str()`` is Go's error text."""


def _go_error(code: str, expr: str) -> str:
    return f"error parsing regexp: {code}: `{expr}`"


def _cxx_error(pattern: str) -> str | None:
    """C++ RE2's error for ``pattern`` (e.g. ``missing ): (``), None when it compiles."""
    try:
        re2.compile(pattern, _OPTIONS)
    except re2.error as e:
        return e.args[0].decode()
    return None


def _parses_to_the_end(before: str, code: str, probes: tuple[str, str]) -> bool:
    """Whether Go's parser reaches the end of ``before`` with no error, in a context where it reads a
    construct that follows as syntax (not escaped, quoted or in a class).

    C++ RE2 tells: each of two constructs it refuses with ``code`` must fail there, on itself (an
    error earlier in ``before`` would be the same for both).
    """
    return all(_cxx_error(before + probe) == f"{code}: {probe}" for probe in probes)


def _valid_capture_name(name: str) -> bool:
    """Go's isValidCaptureName: ASCII letters, digits and ``_`` only."""
    return bool(name) and all(c == "_" or (c.isascii() and c.isalnum()) for c in name)


def _go_only_error(pattern: str) -> str | None:
    r"""Go's error for the first construct it refuses where C++ RE2 accepts or words it differently.

    A candidate counts only where Go's parser would meet it: outside ``\Q…\E``, not escaped, not in a
    character class, and with nothing wrong before it.
    """
    for found in _GO_ONLY.finditer(pattern):
        before, rest = pattern[: found.start()], pattern[found.start() :]
        if found.group() == "\\C":
            if _parses_to_the_end(before, "invalid escape sequence", ("\\Y", "\\Z")):
                return _go_error("invalid escape sequence", "\\C")
            continue
        if not _parses_to_the_end(before, "invalid perl operator", ("(?#", "(?'")):
            continue
        name_at = len(found.group())
        if len(rest) <= name_at:
            continue  # a bare "(?<" or "(?P<" at the end: both refuse it alike
        end = rest.find(">")
        if end < 0:
            return _go_error("invalid named capture", rest)
        if not _valid_capture_name(rest[name_at:end]):
            return _go_error("invalid named capture", rest[: end + 1])
    return None


def _go_string(text: str) -> str:
    """``text`` as Go holds it after decoding the JSON it came in."""
    return text.translate(_SURROGATES)


def _go_wording(text: str, pattern: str) -> str:
    """C++ RE2's refusal ``text`` of ``pattern``, as Go words its refusal of the same pattern."""
    if text == "invalid UTF-8":  # what C++ RE2 says of a "\\x{" ending the pattern (the text is valid UTF-8)
        return _go_error("invalid escape sequence", "\\x{")
    if text == _TOO_LARGE:
        return _go_error("expression too large for RE2's memory budget in the rackmesh sandbox API", pattern)
    code, _, expr = text.partition(": ")
    if code in ("invalid repetition size", "bad repetition operator"):
        # Go checks a count's range first, and names only the braces then (no nesting, no "?").
        last = _LAST_REPEAT.search(expr)
        if last is not None:
            low = int(last[2])
            high = low if last[3] is None else int(last[4] or -1)  # -1: no maximum, as in Go
            if low > 1000 or high > 1000 or 0 <= high < low:
                return _go_error("invalid repeat count", last[1])
    return _go_error(_GO_CODES.get(code, code), expr)


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str) -> re2._Regexp | str:
    """The compiled pattern, or Go's error text; cached, so each pattern is compiled once."""
    pattern = _go_string(pattern)
    refusal = _go_only_error(pattern)
    if refusal is not None:
        return refusal
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as e:
        return _go_wording(e.args[0].decode(), pattern)


def compile_error(pattern: str) -> str | None:
    """Go's ``regexp.Compile`` error for ``pattern`` (``error parsing regexp: ...``), None if it compiles."""
    compiled = _compile(pattern)
    return compiled if isinstance(compiled, str) else None


def search(pattern: str, text: str) -> re2._Match | None:
    """The leftmost match of ``pattern`` in ``text`` with its groups (``FindStringSubmatch``), or None.

    Raises RegexpError when Go's regexp refuses the pattern.
    """
    compiled = _compile(pattern)
    if isinstance(compiled, str):
        raise RegexpError(compiled)
    return compiled.search(_go_string(text))


def match_string(pattern: str, text: str) -> bool:
    """``regexp.MatchString``: whether ``pattern`` matches anywhere in ``text`` (RegexpError if refused)."""
    return search(pattern, text) is not None
