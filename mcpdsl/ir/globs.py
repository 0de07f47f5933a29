"""Path globs: `*` is one path segment, `**` any number of segments.

One definition serves every consumer (engine, Envoy routes, Rego, z3) so
that they agree on what a pattern matches: the pattern and the path are split
on `/`; a `*` segment matches one non-empty segment; a `**` segment matches
zero or more segments; any other segment matches itself exactly.  The query
string is never part of the path.
"""

from __future__ import annotations

import re
from functools import lru_cache


def glob_error(pattern: str) -> str | None:
    """Why a pattern is not a valid glob, or None."""
    if not pattern.startswith("/"):
        return f"path pattern `{pattern}` must start with `/`"
    for segment in pattern.split("/")[1:]:
        if "*" in segment and segment not in ("*", "**"):
            return f"`*` and `**` must be whole path segments, found `{segment}`"
    if "?" in pattern or "#" in pattern:
        return "path patterns match the path only; remove the query or fragment"
    return None


def is_literal(pattern: str) -> bool:
    return "*" not in pattern


@lru_cache(maxsize=4096)
def glob_regex(pattern: str) -> str:
    """An anchored RE2-compatible regex with exactly the glob's meaning."""
    segments = pattern.split("/")[1:]
    out = []
    for segment in segments:
        if segment == "**":
            out.append("(/[\\s\\S]*)?")
        elif segment == "*":
            out.append("/[^/]+")
        else:
            out.append("/" + re.escape(segment))
    body = "".join(out)
    # `[\s\S]` rather than `.` or a `(?s)` flag: it crosses line breaks in every
    # engine (Python, RE2, Go, rego-cpp), so a path containing `\n` matches the
    # same way everywhere.
    return "^" + body + "$"


@lru_cache(maxsize=4096)
def compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(glob_regex(pattern))


def matches(pattern: str, path: str) -> bool:
    """Does `path` (query string removed) match `pattern`?"""
    # fullmatch: Python's `$` also matches before a final newline; RE2 and Go
    # (Envoy, OPA) do not, and a full match removes the difference.
    return compiled(pattern).fullmatch(strip_query(path)) is not None


def strip_query(path: str) -> str:
    for sep in ("?", "#"):
        index = path.find(sep)
        if index != -1:
            path = path[:index]
    return path


# ------------------------------------------------------------ normal form

#: A percent-escape a normal-form path never carries: `/`, `\` and NUL, and the
#: unreserved characters of RFC 3986 (letters, digits, `-`, `.`, `_`, `~`), whose
#: escapes a normaliser may or may not decode.  The same text is used as an RE2
#: pattern in the Rego (`lib.path_refusal`): it means the same in both.
NON_NORMAL_ESCAPE = "%(?:2[FfDdEe]|5[CcFf]|00|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|7[Ee])"
#: A `.` or `..` segment, also with `;params` (`/..;x/` is `..` to many servers).
DOT_SEGMENT = "(?:^|/)\\.\\.?(?:;[^/]*)?(?:/|$)"

#: (pattern, why) in the order both the engine and the Rego report them.
_PROBLEMS = (
    ("\\\\", "it contains a backslash"),
    (NON_NORMAL_ESCAPE, "it percent-encodes `/`, `\\`, NUL or an unreserved character"),
    ("//", "it contains an empty segment (`//`)"),
    (DOT_SEGMENT, "it contains a `.` or `..` segment"),
)
PATH_PROBLEMS: tuple[tuple[str, str], ...] = (
    ("^[^/]", "it does not start with `/`"),
    *_PROBLEMS,
)
_PROBLEM_RES = tuple((re.compile(rx), why) for rx, why in _PROBLEMS)


def path_problem(path: str) -> str | None:
    """Why `path` (query and fragment aside) is not in normal form, or None.

    Why: a rule's glob is matched on the path as written, so a path that a
    server would resolve differently (`/a/../admin`, `/a//admin`, `/%61dmin`,
    `/x/..;p/admin`) could otherwise walk around a `deny` on `/admin/**`.  A
    normal-form path is left unchanged by the Envoy target's normalisation
    (`normalize_path`, `merge_slashes`, escaped slashes rejected), so the
    engine, the Rego and Envoy all see the same path.  See docs/semantics.md.
    """
    if (
        path[:1] == "/"
        and "%" not in path
        and "\\" not in path
        and "//" not in path
        and "/." not in path
    ):
        return None  # the common case, decided without cutting the query
    bare = strip_query(path)
    if bare[:1] != "/":
        return PATH_PROBLEMS[0][1]
    for rx, why in _PROBLEM_RES:
        if rx.search(bare) is not None:
            return why
    return None
