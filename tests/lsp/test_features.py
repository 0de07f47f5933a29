"""The pure features under arbitrary input: never an exception, positions round-trip."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from lsprotocol import types

from mcpdsl.lsp.complete import complete, context_at
from mcpdsl.lsp.positions import BadPosition, column_of, to_point, units_of
from mcpdsl.lsp.tokens import classify
from mcpdsl.source import SourceFile

ENCODINGS = ("utf-16", "utf-8", "utf-32")
# Policy-ish text: keywords, punctuation, quotes, comments, astral characters.
TEXT = st.text(
    alphabet=st.sampled_from(
        list('service policy allow deny when unless { } [ ] ( ) . : , " # \n -> 5s 1Gi x_y é 🚀')
    ),
    max_size=200,
)


@given(
    text=st.text(max_size=80), character=st.integers(0, 200), encoding=st.sampled_from(ENCODINGS)
)
def test_columns_round_trip(text: str, character: int, encoding: str) -> None:
    column = column_of(text, character, encoding)
    assert 0 <= column <= len(text)
    units = units_of(text, column, encoding)
    assert units <= max(character, 0) or column == len(text)
    assert column_of(text, units, encoding) == column


@given(text=TEXT, line=st.integers(-2, 20), character=st.integers(-2, 400))
def test_points_are_in_the_document_or_refused(text: str, line: int, character: int) -> None:
    source = SourceFile("a.mcp", text)
    try:
        got_line, got_column = to_point(
            source, types.Position(line=max(line, 0), character=max(character, 0)), "utf-16"
        )
    except BadPosition:
        assert line >= len(source.lines)
        return
    assert 1 <= got_line <= len(source.lines)
    assert 1 <= got_column <= len(source.line(got_line)) + 1


@given(text=TEXT, data=st.data())
def test_completion_never_fails(text: str, data: st.DataObject) -> None:
    lines = text.split("\n")
    line = data.draw(st.integers(1, len(lines)))
    column = data.draw(st.integers(1, len(lines[line - 1]) + 1))
    context_at(text, line, column)
    for candidate in complete(None, text, line, column, "p"):
        assert candidate.label


@given(text=TEXT)
def test_semantic_tokens_cover_text_in_order(text: str) -> None:
    tokens = classify(text, None)
    positions = [(t.line, t.column) for t in tokens]
    assert positions == sorted(positions)
    lines = text.split("\n")
    for t in tokens:
        assert t.length > 0
        assert t.column - 1 + t.length <= len(lines[t.line - 1])


def test_completion_after_a_dotted_root_lists_its_fields() -> None:
    text = "package p\npolicy x {\n  allow user any -> any when now.\n}\n"
    labels = {
        c.label for c in complete(None, text, 3, len("  allow user any -> any when now.") + 1)
    }
    assert labels == {"now.hour", "now.minute", "now.weekday", "now.time", "now.date"}


def test_completion_lists_the_server_counters() -> None:
    line = "  deny agent any -> any unless stats."
    text = f"package p\npolicy x {{\n{line}\n}}\n"
    labels = {c.label for c in complete(None, text, 3, len(line) + 1)}
    assert labels == {
        "stats.principal.calls_1m",
        "stats.principal.calls_1h",
        "stats.principal.denials_1m",
        "stats.principal.denials_1h",
        "stats.principal.resources_1m",
        "stats.principal.resources_1h",
    }


def test_no_completion_inside_a_comment() -> None:
    text = "package p\n# service \n"
    assert complete(None, text, 2, 11) == []


def test_completion_offers_the_mcp_gateway_clauses() -> None:
    """The gateway's clauses are completed, and the words that follow their keywords."""
    text = "package p\nintegration crm {\n  \n}\n"
    labels = {c.label for c in complete(None, text, 3, 3)}
    assert {"auth", "breaker", "idempotent", "upstream", "call", "expose"} <= labels
    text = "package p\nintegration crm {\n  auth \n}\n"
    assert [c.label for c in complete(None, text, 3, 8)] == ["bearer", "header"]
    text = "package p\nintegration crm {\n  auth bearer \n}\n"
    assert [c.label for c in complete(None, text, 3, 15)] == ["env", "file"]
    text = "package p\nserver authz {\n  \n}\n"
    assert "mcp" in {c.label for c in complete(None, text, 3, 3)}
    text = "package p\nserver authz {\n  mcp \n}\n"
    assert [c.label for c in complete(None, text, 3, 7)] == ["resource"]
