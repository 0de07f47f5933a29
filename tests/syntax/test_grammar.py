"""The grammar: conflict-free under lark's strict mode, every terminal named and worded."""

from __future__ import annotations

import re

from lark import Lark
from repo_paths import FIXTURES

from mcpdsl.source import SourceFile
from mcpdsl.syntax.parser import (
    grammar_text,
    keyword_terminals,
    parse_source,
    parser,
    terminal_words,
)

EXAMPLE = FIXTURES / "language_example.mcp"


def test_grammar_builds_in_strict_mode() -> None:
    """`strict=True` turns LALR shift/reduce conflicts and terminal collisions into errors.

    Collision detection between regular-expression terminals needs `interegular`.
    """
    import interegular  # noqa: F401  (strict mode is toothless without it)

    strict = Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        start=["start", "item", "package_decl"],
        maybe_placeholders=True,
        strict=True,
    )
    assert strict.terminals


def test_no_anonymous_terminals() -> None:
    """Every keyword and operator is a named terminal, so errors never say `__ANON_3`."""
    names = [t.name for t in parser().terminals]
    assert not [n for n in names if n.startswith("__")]
    # Anonymous string literals in rules would show up as `"..."` in the rule bodies.
    rules = grammar_text().split(
        "// -------------------------------------------------------------- terminals"
    )[0]
    code = "\n".join(line.split("//", 1)[0] for line in rules.splitlines())
    assert not re.findall(r'"[^"]*"', code), "a rule uses an inline string literal"


def test_every_terminal_has_a_worded_description() -> None:
    words = terminal_words()
    ignored = set(parser().lexer_conf.ignore)
    for term in parser().terminals:
        if term.name in ignored:
            continue
        assert term.name in words, f"terminal {term.name} has no description"
        text = words[term.name]
        assert text and term.name not in text, f"{term.name} is described as `{text}`"
    assert words["$END"] == "the end of the file"


def test_keywords_are_words() -> None:
    keywords = keyword_terminals()
    assert keywords["SERVICE"] == "service"
    assert all(re.fullmatch(r"[a-z]+", k) for k in keywords.values())


def test_language_example_parses() -> None:
    """The LANGUAGE.md section 3 example, verbatim, parses without a syntax error."""
    source = SourceFile("language_example.mcp", EXAMPLE.read_text(encoding="utf-8"))
    parsed = parse_source(source)
    assert parsed.diagnostics == []
    assert parsed.package is not None
    kinds = [str(item.data) for item in parsed.items]
    assert kinds == [
        "service_decl",
        "scale_decl",
        "pool_decl",
        "balance_decl",
        "carbon_decl",
        "job_decl",
        "policy_decl",
        "integration_decl",
        "gateway_decl",
        "test_decl",
        "test_decl",
    ]


def test_parser_is_cached() -> None:
    assert parser() is parser()
