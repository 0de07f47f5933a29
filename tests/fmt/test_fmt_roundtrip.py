"""Property tests: layout independence, idempotence and an unchanged IR.

(a) Every `.mcp` file of the repository's policy trees (`policies/`,
    `examples/`) and `tests/fixtures/*.mcp` is re-laid out at random (the
    whitespace between tokens changes, never a string or a comment, and a
    comment stays trailing or on its own line): the formatter must give the
    same output as for the original, that output must be a fixed point, and
    the IR must not change.
(b) Random valid programs (every declaration kind, nested conditions with
    every operator, comments anywhere between tokens) laid out at random:
    the output parses, is a fixed point, keeps every comment and lowers to
    the same IR.
"""

from __future__ import annotations

import random
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from fmt_strategies import layout, programs
from fmt_support import unit_of
from hypothesis import given, settings
from hypothesis import strategies as st
from lark import Token

from mcpdsl.fmt import SyntaxErrors, format_source
from mcpdsl.fmt.comments import comment_text, parse_with_comments

REPO = Path(__file__).resolve().parents[2]
CORPUS = sorted(
    [
        *(REPO / "policies").rglob("*.mcp"),
        *(REPO / "examples").rglob("*.mcp"),
        *(REPO / "tests" / "fixtures").glob("*.mcp"),
    ]
)
# The corpus is shared by many files: spend about the same time whatever its size.
EXAMPLES_PER_FILE = max(4, min(25, 240 // max(1, len(CORPUS))))


@cache
def _original(path: Path) -> tuple[str, str] | None:
    """The file's text and its formatted form; None when it does not parse."""
    text = path.read_text(encoding="utf-8")
    try:
        return text, format_source(text, path.name)
    except SyntaxErrors:
        return None


def perturb(text: str, seed: int, style: str) -> str:
    """The same tokens and comments with different whitespace between them.

    The whitespace around a comment keeps its kind: a trailing comment stays
    trailing, a comment on its own line stays there, and a blank line after a
    comment (which detaches it from the code below) is kept.
    """
    tree, comments = parse_with_comments(text)
    spans = sorted(
        [(t.start_pos, t.end_pos, False) for t in tree.scan_values(lambda v: isinstance(v, Token))]
        + [(c.start_pos, c.end_pos, True) for c in comments]
    )
    rng = random.Random(seed)
    out: list[str] = []
    position = 0
    previous_is_comment = False
    for start, end, is_comment in spans:
        original = text[position:start]
        if previous_is_comment:  # a blank line after a comment is kept (or not added)
            lines = rng.randint(2, 3) if original.count("\n") >= 2 else 1
            gap = "\n" * lines + rng.choice(["", "  ", "\t", "      "])
        elif is_comment:  # a trailing comment stays trailing, an own-line one on its line
            if "\n" in original:
                gap = "\n" * rng.randint(1, 3) + " " * rng.randint(0, 6)
            else:
                gap = " " * rng.randint(0, 4)
        elif position == 0:
            gap = rng.choice(["", "\n", "  "])
        elif style == "compact":
            gap = "" if original == "" else " "
        elif style == "spread":
            gap = "\n" + " " * rng.randint(0, 9)
        else:
            gap = rng.choice([original, " ", "  ", "\t", "\n", "\n\n   ", "\n\t"])
        out.append(gap)
        out.append(text[start:end])
        position = end
        previous_is_comment = is_comment
    out.append("\n" if previous_is_comment else rng.choice(["", "\n", "\n\n"]))
    return "".join(out)


@pytest.mark.parametrize("path", CORPUS, ids=[p.relative_to(REPO).as_posix() for p in CORPUS])
def test_corpus_file(path: Path) -> None:
    original = _original(path)
    if original is None:
        pytest.skip(f"{path.name} has syntax errors (a diagnostics fixture)")
    text, formatted = original
    assert format_source(formatted, path.name) == formatted
    assert unit_of(formatted, path.name) == unit_of(text, path.name)

    @settings(max_examples=EXAMPLES_PER_FILE)
    @given(
        seed=st.integers(0, 2**32 - 1),
        style=st.sampled_from(["compact", "spread", "mixed", "mixed"]),
    )
    def check(seed: int, style: str) -> None:
        moved = perturb(text, seed, style)
        assert format_source(moved, path.name) == formatted

    check()


def test_perturb_keeps_tokens_and_comments() -> None:
    text = (REPO / "tests" / "fixtures" / "language_example.mcp").read_text(encoding="utf-8")
    for style in ("compact", "spread", "mixed"):
        moved = perturb(text, 7, style)
        assert moved != text
        a_tree, a_comments = parse_with_comments(text)
        b_tree, b_comments = parse_with_comments(moved)
        assert a_tree == b_tree  # lark trees compare without positions
        assert [str(c) for c in a_comments] == [str(c) for c in b_comments]


@settings(max_examples=150)
@given(
    program=programs(),
    seed=st.integers(0, 2**32 - 1),
    style=st.sampled_from(["compact", "spread", "mixed", "mixed"]),
)
def test_generated_programs(program, seed: int, style: str) -> None:
    source = layout(program, seed, style)
    before, codes = unit_of(source)
    assert codes == [], source  # the generator makes programs that lower cleanly
    output = format_source(source)
    assert unit_of(output) == (before, codes)
    assert format_source(output) == output
    _, comments_in = parse_with_comments(source)
    _, comments_out = parse_with_comments(output)
    assert Counter(map(comment_text, comments_in)) == Counter(map(comment_text, comments_out))
