"""Same answer as OPA for every string: case mapping and the other string builtins.

OPA's `lower`/`upper` are Go's `strings.ToLower`/`ToUpper`: each rune's simple
case mapping.  Python's `str.lower`/`upper` apply the full mapping (`ß` ->
`SS`, `İ` -> `i̇`) and the final-sigma rule.  The engine follows Go; this file
checks it on every cased code point against the real OPA engine, and checks
`len`, `startswith`, `endswith`, `contains` and glob matching on non-ASCII text.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from validators import opa_available

from mcpdsl.evaluate.closures import call
from mcpdsl.evaluate.values import _simple_upper, go_lower, go_upper
from mcpdsl.ir import globs

pytestmark = pytest.mark.skipif(not opa_available(), reason="the OPA engine is not installed")

ALL = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
#: Where Python's full mapping is not a single character: the exceptions.
EXCEPTIONS = [c for c in ALL if len(c.lower()) != 1 or len(c.upper()) != 1]
CASED = [c for c in ALL if c.lower() != c or c.upper() != c or c.title() != c]


@cache
def opa() -> Any:
    from opa_bindings import OpaEngine

    return OpaEngine()


def rego(query: str, value: Any) -> Any:
    return opa().eval_query(query, value)[0]["out"]


def test_the_exceptions_are_the_known_ones() -> None:
    assert [c for c in EXCEPTIONS if len(c.lower()) != 1] == ["\u0130"]
    assert {c for c in EXCEPTIONS if len(c.upper()) != 1} == set(_simple_upper())
    assert len(_simple_upper()) == 102  # all in the BMP: the table scans only there


def test_python_and_go_differ_on_the_exceptions() -> None:
    """The regression: Python's own mapping gives other answers than OPA."""
    assert "İstanbul".lower() != rego("out := lower(input)", "İstanbul")
    assert "straße".upper() != rego("out := upper(input)", "straße")
    assert go_lower("İstanbul") == rego("out := lower(input)", "İstanbul") == "istanbul"
    assert go_upper("straße") == rego("out := upper(input)", "straße") == "STRAßE"


@pytest.mark.parametrize("chars", [EXCEPTIONS, CASED], ids=["exceptions", "every-cased"])
def test_every_code_point_maps_like_opa(chars: list[str]) -> None:
    theirs = rego("out := [[lower(c), upper(c)] | some c in input]", chars)
    mismatches = [
        (f"U+{ord(c):04X}", go_lower(c), go_upper(c), lo, up)
        for c, (lo, up) in zip(chars, theirs, strict=True)
        if (go_lower(c), go_upper(c)) != (lo, up)
    ]
    assert not mismatches, mismatches[:20]


def test_final_sigma_and_whole_strings_map_like_opa() -> None:
    texts = ["ΟΔΟΣ", "ΣΑΣ ΣΑΣ.", "Σ", "aΣ", "İİ", "ﬃ ß ŉ ǰ ᾳ ᾀ", "".join(EXCEPTIONS)]
    theirs = rego("out := [[lower(t), upper(t)] | some t in input]", texts)
    assert [[go_lower(t), go_upper(t)] for t in texts] == theirs
    assert [call("lower", [t]) for t in texts] == [lo for lo, _ in theirs]
    assert [call("upper", [t]) for t in texts] == [up for _, up in theirs]


PIECES = ["a", "A", "/", "é", "e\u0301", "ß", "İ", "Σ", "ς", "😀", "\u200d", " ", "\t", "ǅ", "ﬁ"]
TEXT = st.lists(st.sampled_from(PIECES), max_size=6).map("".join)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=30))
def test_other_string_builtins_agree_with_opa(pairs: list[tuple[str, str]]) -> None:
    """`len` counts code points (OPA: runes), prefixes/suffixes/containment by
    code point, globs match one segment per `*` whatever the characters."""
    query = (
        "out := [[count(a), startswith(a, b), endswith(a, b), contains(a, b), "
        'lower(a), upper(a), regex.match(r1, concat("", ["/", a])), '
        'regex.match(r2, concat("", ["/x/", a]))] | some [a, b] in input.pairs]'
    )
    r1, r2 = globs.glob_regex("/*"), globs.glob_regex("/x/**")
    theirs = rego(
        query.replace("r1", f'"{_rego(r1)}"').replace("r2", f'"{_rego(r2)}"'), {"pairs": pairs}
    )
    for (a, b), got in zip(pairs, theirs, strict=True):
        mine = [
            call("len", [a]),
            call("startswith", [a, b]),
            call("endswith", [a, b]),
            call("contains", [a, b]),
            call("lower", [a]),
            call("upper", [a]),
            globs.matches("/*", "/" + a),
            globs.matches("/x/**", "/x/" + a),
        ]
        assert mine == got, (a, b, mine, got)


def _rego(regex: str) -> str:
    return regex.replace("\\", "\\\\")
