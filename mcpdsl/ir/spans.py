"""Clause spans: the IR keeps one span per declaration; findings point at the clause.

`clause(a, decl_span, "replicas")` finds the first line inside the
declaration (after its header) whose code starts a `replicas` clause and
returns the span of that clause up to the end of its code (comments
excluded); it falls back to the declaration's span.  Purely a presentation
aid: no analysis depends on it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mcpdsl.source import SourceMap, Span

if TYPE_CHECKING:
    from mcpdsl.analysis import Analysis


def clause(a: Analysis, decl: Span | None, keyword: str) -> Span | None:
    return clause_in(a.sources, decl, keyword)


def clause_in(sources: SourceMap | None, decl: Span | None, keyword: str) -> Span | None:
    """`clause` for any holder of the source texts (the build's targets use it too)."""
    if decl is None or sources is None:
        return decl
    source = sources.get(decl.file)
    if source is None:
        return decl
    pattern = re.compile(rf"(?:^|[\s{{,]){re.escape(keyword)}(?=\s|$)")
    for number in range(decl.line + 1, decl.end_line + 1):
        text = source.line(number)
        code = _code(text)
        found = pattern.search(code)
        if found is None:
            continue
        start = found.start() + (0 if code[found.start()] == keyword[0] else 1)
        return Span(decl.file, number, start + 1, number, len(code.rstrip()) + 1)
    return decl


def _code(line: str) -> str:
    """The line without its comment (a `#` outside a string)."""
    quoted = False
    for i, c in enumerate(line):
        if c == '"':
            quoted = not quoted
        elif c == "#" and not quoted:
            return line[:i]
    return line
