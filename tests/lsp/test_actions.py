"""Did-you-mean quick fixes replace the wrong name only, never the code around it.

An unknown service in a rule has the span `service ap`, and one in a test
request the span of the whole `test` block: a fix that replaced the span with
the suggestion deleted the `service` keyword or the whole test.  Each case
here compiles a tree, applies the offered fix and compiles it again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import mcpdsl
from mcpdsl.diagnostics import Diagnostic
from mcpdsl.lsp.actions import Fix, suggestion_fix
from mcpdsl.source import SourceFile

SERVICES = (
    "package p\n\n"
    'service api {\n  image "ghcr.io/x/api:1"\n  port 80\n}\n'
    'service web {\n  image "ghcr.io/x/web:1"\n  port 80\n}\n'
)
POLICY = (
    'policy access {\n  default deny\n  r: allow service web -> service api on GET "/v1/**"\n}\n'
)
TEST = 'test "reads" {\n  request service web -> service api GET "/v1/x"\n  expect allow\n}\n'


def _errors(tree: Path) -> list[Diagnostic]:
    return [d for d in mcpdsl.check(tree) if d.severity == "error"]


def _fixes(tree: Path, text: str) -> tuple[list[Diagnostic], list[Fix]]:
    (tree / "services.mcp").write_text(SERVICES, encoding="utf-8")
    (tree / "main.mcp").write_text(text, encoding="utf-8")
    errors = [d for d in _errors(tree) if d.span is not None and d.span.file == "main.mcp"]
    source = SourceFile("main.mcp", text)
    return errors, [f for d in errors if (f := suggestion_fix(source, d)) is not None]


def _apply(text: str, fix: Fix) -> str:
    lines = text.splitlines(keepends=True)
    for edit in fix.edits:
        assert edit.span.line == edit.span.end_line
        line = lines[edit.span.line - 1]
        start, end = edit.span.column - 1, edit.span.end_column - 1
        lines[edit.span.line - 1] = line[:start] + edit.text + line[end:]
    return "".join(lines)


@pytest.mark.parametrize(
    ("broken", "fixed"),
    [
        # the rule's span is `service ap`
        (POLICY.replace("service api on", "service ap on"), POLICY),
        # the test request's span is the whole test block
        (POLICY + TEST.replace("service api GET", "service apx GET"), POLICY + TEST),
        # the wrong name also in the test's title (a string) is left alone
        (
            POLICY + TEST.replace("service api GET", "service apx GET").replace("reads", "apx"),
            POLICY + TEST.replace("reads", "apx"),
        ),
    ],
    ids=["rule", "test-request", "name-in-a-string"],
)
def test_the_fix_replaces_only_the_unknown_name(tmp_path: Path, broken: str, fixed: str) -> None:
    errors, fixes = _fixes(tmp_path, "package p\n\n" + broken)
    assert [d.code for d in errors] == ["E0402"]
    (fix,) = fixes
    assert fix.title == "replace with `api`"
    result = _apply("package p\n\n" + broken, fix)
    assert result == "package p\n\n" + fixed
    (tmp_path / "main.mcp").write_text(result, encoding="utf-8")
    assert _errors(tmp_path) == []


def test_no_fix_when_the_name_is_not_in_the_span_once(tmp_path: Path) -> None:
    """Both sides of a test request wrong: one span, two places; no guess."""
    broken = POLICY + TEST.replace("service web -> service api", "service apx -> service apx")
    errors, fixes = _fixes(tmp_path, "package p\n\n" + broken)
    assert errors and all(d.code == "E0402" for d in errors)
    assert fixes == []


def test_a_keyword_typo_is_still_fixed(tmp_path: Path) -> None:
    text = "package p\n\n" + POLICY.replace("default deny", "default deni")
    errors, fixes = _fixes(tmp_path, text)
    assert [d.code for d in errors] == ["E0101"]
    (fix,) = fixes
    assert _apply(text, fix) == "package p\n\n" + POLICY


def _apply(text: str, fix: Fix) -> str:
    lines = text.split("\n")
    for edit in sorted(fix.edits, key=lambda e: (e.span.line, e.span.column), reverse=True):
        line = lines[edit.span.line - 1]
        start, end = edit.span.column - 1, edit.span.end_column - 1
        lines[edit.span.line - 1] = line[:start] + edit.text + line[end:]
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("condition", "rewritten"),
    [
        ("stats.principal.calls_1m > 600", "unless stats.principal.calls_1m <= 600"),
        ("stats.principal.denials_1h >= 3", "unless stats.principal.denials_1h < 3"),
        ("5 < stats.principal.resources_1m", "unless 5 >= stats.principal.resources_1m"),
        ("stats.principal.calls_1h == 0", "unless stats.principal.calls_1h != 0"),
    ],
)
def test_a_deny_on_a_server_counter_is_rewritten_with_unless(
    tmp_path: Path, condition: str, rewritten: str
) -> None:
    """W0106's own suggestion as a code action: the `unless` of the opposite comparison."""
    from mcpdsl.lsp.actions import unless_fixes
    from mcpdsl.syntax.parser import parse_source

    text = f"package p\n\npolicy x {{\n  default allow\n  r: deny agent any -> any when {condition}\n}}\n"
    [fix] = unless_fixes(parse_source(SourceFile("main.mcp", text)), 1, 1, 10)
    fixed = _apply(text, fix)
    assert f"  r: deny agent any -> any {rewritten}\n" in fixed
    (tmp_path / "main.mcp").write_text(fixed, encoding="utf-8")
    assert [d.code for d in mcpdsl.check(tmp_path)] == []


def test_a_counter_in_a_larger_condition_is_left_alone() -> None:
    from mcpdsl.lsp.actions import unless_fixes
    from mcpdsl.syntax.parser import parse_source

    text = (
        "package p\n\npolicy x {\n  default allow\n"
        "  r: deny agent any -> any when context.n > 1\n"
        "  s: deny agent any -> any when stats.principal.calls_2m > 1\n}\n"
    )
    assert unless_fixes(parse_source(SourceFile("main.mcp", text)), 1, 1, 10) == []
