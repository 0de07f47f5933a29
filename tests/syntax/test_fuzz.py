"""The front end never crashes: any input gives diagnostics, never an exception.

`mcpdsl.load` may raise only `mcpdsl.CompileError`; `mcpdsl.check` never raises;
every renderer accepts whatever the stages report.  Hypothesis runs with the
`ci` profile of tests/conftest.py (derandomized, no deadline); the example
counts below add up to 2,300 per run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from repo_paths import FIXTURES

import mcpdsl
from mcpdsl.diagnostics import CODES, Diagnostic
from mcpdsl.diagnostics.render import render_human, render_json, render_sarif
from mcpdsl.pipeline import compile_tree
from mcpdsl.syntax.parser import keyword_terminals

EXAMPLE = (FIXTURES / "language_example.mcp").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """One directory per module (hypothesis re-runs the test body, not fixtures)."""
    with tempfile.TemporaryDirectory(prefix="mcpdsl-fuzz-") as name:
        yield Path(name)


def survives(workdir: Path, data: bytes | str) -> list[Diagnostic]:
    """Run every entry point on one input; return the diagnostics of `check`."""
    path = workdir / "main.mcp"
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    diagnostics = mcpdsl.check(workdir)  # never raises
    try:
        project = mcpdsl.load(workdir)
    except mcpdsl.CompileError as exc:
        assert any(d.is_error for d in exc.diagnostics)
    else:
        assert project is not None
        assert not any(d.is_error for d in diagnostics)
    compilation = compile_tree(workdir)
    assert compilation.diagnostics == diagnostics
    render_human(diagnostics, compilation.sources)
    render_human(diagnostics, compilation.sources, colour=True)
    render_json(diagnostics)
    render_sarif(diagnostics, version="0")
    for d in diagnostics:
        assert d.code in CODES
        assert d.message
    return diagnostics


# ---------------------------------------------------------------- strategies

KEYWORDS = sorted(keyword_terminals().values())
PUNCTUATION = ["{", "}", "[", "]", "(", ")", ",", ":", ".", "..", "->", "=", "==", "!=", "<"]
PUNCTUATION += [">=", "??", "+", "-", "*", "/", "$", "#", '"', "\\", ";", "@", "'", "%"]
VALUES = [
    "api",
    "frontend",
    "nightly-etl",
    "principal.tier",
    "context.device.managed",
    "$.id",
    '"/v1/**"',
    '"Europe/Stockholm"',
    '"spiffe://x"',
    '"\\q"',
    '"\\u12"',
    '"unterminated',
    "0",
    "8080",
    "70000",
    "500m",
    "5m",
    "512Mi",
    "70%",
    "150%",
    "100/s",
    "28g/kWh",
    "$0.38/h",
    "08:00",
    "25:99",
    "2..40",
    "40..2",
    "1.5",
    "9" * 40,
    "99999999999999999999999999999999999999",
    "1" + "0" * 400,
]
WHITESPACE = [" ", "\n", "\t", "\r\n", "\x00", "\ufeff", "\x1b[31m", "\u2028"]
TOKENS = KEYWORDS + PUNCTUATION + VALUES + WHITESPACE


def token_soup(tokens: list[str], with_package: bool) -> str:
    return ("package p\n" if with_package else "") + " ".join(tokens)


@st.composite
def mutated_example(draw: st.DrawFn, ops: tuple[str, ...]) -> str:
    """The LANGUAGE.md example with spans deleted, duplicated, swapped or tokens inserted."""
    text = EXAMPLE
    for _ in range(draw(st.integers(1, 4))):
        n = len(text)
        if n == 0:
            break
        op = draw(st.sampled_from(ops))
        a = draw(st.integers(0, n))
        b = draw(st.integers(a, min(n, a + draw(st.sampled_from([1, 3, 10, 80, 400])))))
        if op == "delete":
            text = text[:a] + text[b:]
        elif op == "duplicate":
            text = text[:b] + text[a:b] + text[b:]
        elif op == "swap":
            c = draw(st.integers(b, n))
            d = draw(st.integers(c, min(n, c + (b - a) + 5)))
            text = text[:a] + text[c:d] + text[b:c] + text[a:b] + text[d:]
        else:
            token = draw(st.sampled_from(TOKENS))
            text = text[:a] + token + text[a:]
    return text


# -------------------------------------------------------------------- property


@settings(max_examples=500)
@given(st.text(max_size=300))
def test_arbitrary_text(workdir: Path, text: str) -> None:
    survives(workdir, text)


@settings(max_examples=300)
@given(st.text(max_size=300).map(lambda t: "package p\n" + t))
def test_arbitrary_text_after_a_package(workdir: Path, text: str) -> None:
    survives(workdir, text)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(workdir: Path, data: bytes) -> None:
    survives(workdir, data)


@settings(max_examples=500)
@given(st.lists(st.sampled_from(TOKENS), max_size=60), st.booleans())
def test_token_soup(workdir: Path, tokens: list[str], with_package: bool) -> None:
    survives(workdir, token_soup(tokens, with_package))


@settings(max_examples=400)
@given(mutated_example(("delete", "duplicate", "swap")))
def test_example_with_spans_moved(workdir: Path, text: str) -> None:
    survives(workdir, text)


@settings(max_examples=400)
@given(mutated_example(("insert", "insert", "delete")))
def test_example_with_tokens_inserted(workdir: Path, text: str) -> None:
    survives(workdir, text)


def test_the_example_itself_survives(workdir: Path) -> None:
    codes = [d.code for d in survives(workdir, EXAMPLE)]
    # It names services and a provider it does not declare (peers in example_peers.mcp);
    # with its provider unknown, its gateway verifies nobody (W0111).
    assert set(codes) <= {"E0402", "W0103", "W0111"}


# ------------------------------------------------------------- direct bad input


def _codes(workdir: Path, data: bytes | str) -> list[str]:
    return [d.code for d in survives(workdir, data)]


BIG = 1 << 20


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"package p\x00\nservice a { }\n", ["E0105"]),
        (b"\x00", ["E0105"]),
        (b"package p\n# caf\xe9\n", ["E0105"]),
        (b"package p\n\xff\xfe\xfd", ["E0105"]),
        ('package p\nservice a { image "', ["E0104", "E0103"]),
        ('package p\n"', ["E0103"]),
        ("package p\npolicy q { allow any -> any when " + "(" * 10_000, ["E0104", "E0106"]),
        (
            "package p\npolicy q { allow any -> any when " + "(" * 10_000 + ")" * 10_000 + " }",
            ["E0106"],
        ),
        ("package p\nservice a { regions " + "[" * 10_000 + "]" * 10_000 + " }", ["E0106"]),
        ("package p\npolicy q { allow any -> any when " + "not " * 10_000 + "true }", ["E0106"]),
        ("package p\npolicy q { allow any -> any when " + "- " * 10_000 + "1 == 1 }", ["E0106"]),
        (
            'package p\nservice a { image "x" port 1 stateful labels { a: '
            + "{a: " * 10_000
            + "}" * 10_000
            + " } }",
            ["E0106"],
        ),
        ('package p\nservice a { image "' + "x" * BIG + '" port 1 stateful }\n', ["E0109"]),
        ("package p\n" + "x " * (BIG // 2), ["E0101"]),
        ("package p\n# " + "x" * BIG + '\nservice a { image "x" port 1 stateful }\n', []),
        (
            'package p\nservice a {\n  image "x"\n  port 99999999999999999999999999999999999999\n'
            "  stateful\n}\n",
            ["E0109"],
        ),
        ("package p\npolicy q { allow any -> any when context.x < 1" + "0" * 400 + " }", ["E0109"]),
        ("\ufeff", ["E0107"]),
        (b"\xef\xbb\xbf", ["E0107"]),
        ("", ["E0107"]),
        ("\n\n   \n", ["E0107"]),
        ("# only a comment\n", ["E0107"]),
        ("# header\npackage p\nservice a { imag }\n", ["E0101"]),
        ("package p\n", []),
        ("\ufeffpackage p\n", []),
    ],
    ids=[
        "nul-after-package",
        "only-nul",
        "invalid-utf8-in-comment",
        "invalid-utf8-at-eof",
        "quote-at-eof-in-declaration",
        "quote-at-eof",
        "10k-unclosed-parens",
        "10k-balanced-parens",
        "10k-nested-lists",
        "10k-nots",
        "10k-negations",
        "10k-nested-objects",
        "megabyte-string",
        "megabyte-of-names",
        "megabyte-comment",
        "38-digit-number",
        "401-digit-number-in-expression",
        "only-bom-text",
        "only-bom-bytes",
        "empty-file",
        "only-whitespace",
        "only-a-comment",
        "header-comment-then-error",
        "only-package",
        "bom-then-package",
    ],
)
def test_bad_input(workdir: Path, data: bytes | str, expected: list[str]) -> None:
    assert _codes(workdir, data) == expected


def test_many_errors_in_one_file_are_all_reported(workdir: Path) -> None:
    """10,000 duplicate clauses on one megabyte-long line: every one reported."""
    text = 'package p\nservice a { image "x" port 1 stateful ' + "tier gold " * 10_000 + "}\n"
    assert _codes(workdir, text) == ["E0201"] * 9_999
