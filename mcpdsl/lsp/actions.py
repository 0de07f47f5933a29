"""Code actions: fixes the diagnostics already suggest, and `unless` for fail-open denies.

A fix is only offered when it is a plain text edit the diagnostic names
exactly: `did you mean `X`?` replaces the name the message quotes (`unknown
service `ap``), found once inside the diagnostic's span, with `X`
(`did you mean `X` instead of `W`?` replaces the word `W` before it).  The
`unless` rewrite turns `deny ... when a not in b` and `deny ... when a != b`
into `unless a in b` / `unless a == b`: `not in` and `!=` are false when a side
is missing (docs/semantics.md), so the `when` form does not fire on a request
without the attribute (fail open); the `unless` form does (fail closed).
`when not C` needs no rewrite: `not` of a missing value is already true.
A comparison of one of the decision server's counters (`stats.principal.*`,
missing wherever nobody counts) is rewritten the same way with the opposite
operator: `when stats.principal.calls_1m > 600` becomes `unless ... <= 600`
(exact: the counters are integers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lark import Token, Tree

from mcpdsl.diagnostics import Diagnostic
from mcpdsl.ir import stats
from mcpdsl.lsp.index import contains, token_span
from mcpdsl.source import SourceFile, Span
from mcpdsl.syntax.parser import ParsedFile

_DID_YOU_MEAN = re.compile(r'^did you mean (`([^`]+)`|"([^"]+)")( instead of `([^`]+)`)?\?$')


@dataclass(frozen=True)
class Edit:
    span: Span
    text: str


@dataclass(frozen=True)
class Fix:
    title: str
    edits: tuple[Edit, ...]
    diagnostic: Diagnostic | None = None
    preferred: bool = False


def suggestion_fix(source: SourceFile, diagnostic: Diagnostic) -> Fix | None:
    """The edit a did-you-mean help line describes, if it names one exactly."""
    if diagnostic.help is None or diagnostic.span is None:
        return None
    match = _DID_YOU_MEAN.match(diagnostic.help)
    if match is None:
        return None
    replacement = match.group(2) if match.group(2) is not None else f'"{match.group(3)}"'
    span: Span | None = diagnostic.span
    instead = match.group(5)
    if instead is not None:
        span = _word_before(source, diagnostic.span, instead)
    else:
        quoted = match.group(3) is not None
        span = _the_wrong_name(source, diagnostic.span, diagnostic.message, quoted=quoted)
    if span is None or _text(source, span) == replacement:
        return None
    return Fix(f"replace with `{replacement}`", (Edit(span, replacement),), diagnostic, True)


_NAMED = re.compile(r"`([^`]+)`")


def _text(source: SourceFile, span: Span) -> str | None:
    if span.line != span.end_line:
        return None
    return source.line(span.line)[span.column - 1 : span.end_column - 1]


def _the_wrong_name(source: SourceFile, span: Span, message: str, *, quoted: bool) -> Span | None:
    """The span of the one name the message calls wrong, inside the diagnostic's span.

    A diagnostic's span is often wider than the name: `service ap` in a rule,
    or a whole `test` block for a test request naming an unknown service.
    Replacing all of it would delete code, so the edit covers only the name the
    message quotes first (`unknown service `ap``), found once as a whole word
    outside string literals (or once as a string, when the suggestion is one).
    Not found, or found more than once: no fix rather than a guess.
    """
    named = _NAMED.search(message)
    if named is None:
        text = _text(source, span)
        return span if text is not None and text.strip() == text and " " not in text else None
    wrong = f'"{named.group(1)}"' if quoted else named.group(1)
    if _text(source, span) == wrong:
        return span
    edge = "" if quoted else r"(?<![A-Za-z0-9_.-])"
    tail = "" if quoted else r"(?![A-Za-z0-9_.-])"
    pattern = re.compile(edge + re.escape(wrong) + tail)
    hits: list[Span] = []
    for line in range(span.line, span.end_line + 1):
        text = source.line(line)
        first = span.column - 1 if line == span.line else 0
        last = span.end_column - 1 if line == span.end_line else len(text)
        for hit in pattern.finditer(text, first, last):
            if not quoted and _inside_string(text, hit.start()):
                continue
            hits.append(Span(source.path, line, hit.start() + 1, line, hit.end() + 1))
    return hits[0] if len(hits) == 1 else None


def _inside_string(line: str, offset: int) -> bool:
    """Whether `offset` is inside a double-quoted literal (escaped quotes skipped)."""
    before = re.sub(r"\\.", "", line[:offset])
    return before.count('"') % 2 == 1


def _word_before(source: SourceFile, span: Span, word: str) -> Span | None:
    """The last whole occurrence of `word` at or before `span` (same or previous lines)."""
    for line in range(span.line, max(0, span.line - 20), -1):
        text = source.line(line)
        limit = span.column - 1 if line == span.line else len(text)
        pattern = re.compile(rf"(?<![A-Za-z0-9_-]){re.escape(word)}(?![A-Za-z0-9_-])")
        hits = [m for m in pattern.finditer(text) if m.end() <= limit]
        if hits:
            start = hits[-1].start() + 1
            return Span(source.path, line, start, line, start + len(word))
    return None


def unless_fixes(parsed: ParsedFile, line: int, column: int, end_line: int) -> list[Fix]:
    """`unless` rewrites for negated deny conditions on the lines `line..end_line`."""
    path = parsed.source.path
    out: list[Fix] = []
    for item in parsed.items:
        if item.data != "policy_decl":
            continue
        for rule in item.children:
            if not isinstance(rule, Tree) or rule.data != "rule":
                continue
            effect = [t for t in rule.children if isinstance(t, Token) and t.type == "DENY"]
            cond = rule.children[-1]
            if not effect or not isinstance(cond, Tree) or cond.data != "when_condition":
                continue
            first = token_span(path, effect[0])
            toks = list(rule.scan_values(lambda v: isinstance(v, Token)))
            last = token_span(path, toks[-1])
            if last.end_line < line or first.line > end_line:
                continue
            fix = _rewrite(path, cond)
            if fix is not None:
                out.append(fix)
    return out


def _rewrite(path: str, cond: Tree[Token]) -> Fix | None:
    when, expr = cond.children[0], cond.children[1]
    if not isinstance(when, Token) or not isinstance(expr, Tree):
        return None
    when_edit = Edit(token_span(path, when), "unless")
    if expr.data == "not_member":
        not_tok = expr.children[1]
        in_tok = expr.children[2]
        if not isinstance(not_tok, Token) or not isinstance(in_tok, Token):
            return None
        a, b = token_span(path, not_tok), token_span(path, in_tok)
        edits = (when_edit, Edit(Span(path, a.line, a.column, b.line, b.column), ""))
    elif expr.data == "compare" and str(expr.children[1]) == "!=":
        op = expr.children[1]
        assert isinstance(op, Token)
        edits = (when_edit, Edit(token_span(path, op), "=="))
    elif (
        expr.data == "compare"
        and str(expr.children[1]) in _OPPOSITE
        and any(_counter(side) for side in (expr.children[0], expr.children[2]))
    ):
        op = expr.children[1]
        assert isinstance(op, Token)
        edits = (when_edit, Edit(token_span(path, op), _OPPOSITE[str(op)]))
    else:
        return None
    return Fix("fail closed: rewrite the deny with `unless`", edits)


#: The comparison true exactly when `op` is false, on two present integers.
_OPPOSITE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!="}


def _counter(node: object) -> bool:
    """A `stats.principal.FIELD` path in the syntax tree."""
    if not isinstance(node, Tree) or node.data != "path":
        return False
    words = [str(t) for t in node.scan_values(lambda v: isinstance(v, Token)) if str(t) != "."]
    return len(words) == 3 and words[:2] == [stats.ROOT, stats.SCOPE] and words[2] in stats.FIELDS


def overlaps(span: Span, line: int, end_line: int) -> bool:
    return not (span.end_line < line or span.line > end_line)


__all__ = ["Edit", "Fix", "contains", "overlaps", "suggestion_fix", "unless_fixes"]
