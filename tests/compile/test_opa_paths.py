"""A rule's path test in the generated Rego matches exactly what the glob matches.

The OPA target writes `on ... "PREFIX/**"` as one string test on the request
path cut once per request (`startswith(lib.bare_path_slash, "PREFIX/")`), a
glob without `*` as an equality, and keeps the regular expression only for
other globs (`opa._path_lines`).  These tests evaluate that form in real OPA
beside the regular-expression form (what the target wrote before:
`regex.match` of `glob_regex` on a string path without its query) and the
engine's own `globs.matches`, on generated paths (any string: queries,
fragments, empty segments, `.` segments, escapes, line breaks, non-ASCII);
all three must agree on every path.  No normal-form assumption is needed: a
glob's segments never contain `*` (but as a whole segment), `?` or `#`
(`globs.glob_error`).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from validators import opa_available

from mcpdsl.compile import opa as target
from mcpdsl.compile.opa_expr import rego_string
from mcpdsl.ir.globs import glob_error, glob_regex, matches

pytestmark = pytest.mark.skipif(
    not opa_available(),
    reason="system component missing: the OPA engine (opa-golib-python-bindings)",
)

GLOBS = [
    "/**",
    "/",
    "/v0/items/**",
    "/v0/items",
    "/v0/items/*",
    "/v0/*/items/**",
    "/a.b/**",
    "/a+b/(x)/**",
    "/x y/\u00e9\u2713/**",
    "/a\\b/**",
    '/a"b/}/**',
    "/a/**/b",
    "/line\nbreak/**",
]

#: Pieces paths are built from: the globs' own segments and what could confuse a prefix test.
PIECES = ["v0", "items", "a.b", "a+b", "(x)", "x y", "\u00e9\u2713", "a\\b", 'a"b', "}", "a", "b"]
NOISE = ["", "/", "//", ".", "..", "?", "#", "?q=1", "#frag", "%2F", "\n", "x", "items2", "*"]


def _module(globs: list[str]) -> str:
    lines = ["package t", "", "import rego.v1", "", "import data.mcp.lib", ""]
    for i, glob in enumerate(globs):
        lines += [f"default plain_{i} := false", f"plain_{i} if {{"]
        lines += [f"\t{line}" for line in target._path_lines(glob)]
        lines += ["}", f"default regex_{i} := false", f"regex_{i} if {{"]
        lines += [
            "\tis_string(input.request.path)",
            "\tbare := lib.strip_query(input.request.path)",
        ]
        lines += [f"\tregex.match({rego_string(glob_regex(glob))}, bare)", "}"]
    return "\n".join(lines) + "\n"


def _engine(globs: list[str]) -> Any:
    from opa_bindings import OpaEngine

    opa = OpaEngine()
    opa.add_policy("lib.rego", target.render_template("lib.rego.j2", version="t", cidr=False))
    opa.add_policy("t.rego", _module(globs))
    return opa


def _check(opa: Any, globs: list[str], path: Any) -> None:
    result = opa.eval_document("t", {"request": {"path": path}})
    for i, glob in enumerate(globs):
        assert result[f"plain_{i}"] == result[f"regex_{i}"], (glob, path)
        if isinstance(path, str):
            assert result[f"plain_{i}"] == matches(glob, path), (glob, path)


paths = st.lists(st.sampled_from(PIECES + NOISE) | st.text(max_size=4), max_size=6).map(
    lambda parts: "/" + "/".join(parts)
) | st.text(max_size=12)


@pytest.fixture(scope="module")
def fixed() -> Any:
    return _engine(GLOBS)


def test_the_globs_are_valid_and_take_every_form() -> None:
    assert all(glob_error(g) is None for g in GLOBS)
    forms = {target._path_lines(g)[0].split("(")[0].split(" ")[0] for g in GLOBS}
    assert forms == {"startswith", "lib.bare_path", "regex.match"}


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=paths)
def test_plain_and_regex_forms_agree_on_generated_paths(fixed: Any, path: str) -> None:
    _check(fixed, GLOBS, path)


def test_edge_paths(fixed: Any) -> None:
    for path in [
        "/v0/items",
        "/v0/items/",
        "/v0/items?x",
        "/v0/items#f",
        "/v0/items/?x",
        "/v0/itemsx",
        "/v0/item",
        "/v0/items/a/b",
        "/v0/items%2Fa",
        "/v0//items/a",
        "?/v0/items/a",
        "#/v0/items/a",
        "",
        "/",
        "//",
        "v0/items/a",
        "/a/x/b",
        "/a/b",
        "/line\nbreak",
        "/line\nbreak/x",
    ]:
        _check(fixed, GLOBS, path)
    for not_a_string in [None, 5, ["/v0/items/a"], {"p": "/"}]:
        result = fixed.eval_document("t", {"request": {"path": not_a_string}})
        assert not any(result.values()), not_a_string


segment = st.sampled_from(PIECES) | st.text(
    st.characters(blacklist_characters="/*?#", blacklist_categories=("Cs",)), min_size=1, max_size=4
)
globs = st.tuples(
    st.lists(segment | st.just("*"), max_size=3), st.sampled_from(["**", "*", "lit", ""])
).map(lambda t: "/" + "/".join([*t[0], *([] if not t[1] else [t[1] if t[1] != "lit" else "z"])]))


@settings(max_examples=40, deadline=None)
@given(glob=globs, tails=st.lists(paths, min_size=1, max_size=8))
def test_generated_globs(glob: str, tails: list[str]) -> None:
    """Random globs, on paths under them and on unrelated ones."""
    assert glob_error(glob) is None, glob
    opa = _engine([glob])
    prefix = glob.split("*")[0]
    for tail in tails:
        for path in (tail, prefix + tail.lstrip("/"), prefix.rstrip("/") + tail, prefix[:-1]):
            _check(opa, [glob], path)
