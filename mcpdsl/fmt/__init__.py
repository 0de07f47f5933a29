"""`mcpdsl fmt`: one canonical layout for `.mcp` files, comments included.

>>> print(format_source('package demo\\nservice api{image "a:1"   port 8080 # http\\n}'), end="")
package demo
<BLANKLINE>
service api {
  image "a:1"
  port  8080  # http
}

The formatter never guesses: it formats only files that parse, and before it
returns it re-parses its own output and checks that the syntax tree (up to
commas and parentheses), the lowered IR and the comments are unchanged
(`InternalError` otherwise).  See docs/fmt.md for the layout rules.
"""

from __future__ import annotations

import sys
from collections import Counter

from lark.exceptions import UnexpectedInput

from mcpdsl.diagnostics import Diagnostic
from mcpdsl.fmt.comments import Comments, comment_text, parse_with_comments
from mcpdsl.fmt.printer import Printer
from mcpdsl.fmt.verify import file_shape, lower_tree
from mcpdsl.source import SourceFile

__all__ = ["FormatError", "InternalError", "SyntaxErrors", "format_source", "format_tree"]


class FormatError(Exception):
    """The file cannot be formatted; it must be left as it is."""


class SyntaxErrors(FormatError):
    """The input does not parse (or is not UTF-8 text); `diagnostics` say why."""

    def __init__(self, source: SourceFile, diagnostics: list[Diagnostic]) -> None:
        super().__init__(f"`{source.path}` has syntax errors")
        self.source = source
        self.diagnostics = diagnostics


class InternalError(FormatError):
    """The formatter's output failed its own checks: a formatter bug, never the user's."""


def format_tree(text: str) -> str:
    """Format text that is known to parse, without the safety checks (for tests)."""
    tree, comments = parse_with_comments(text)
    return _render(text, tree, comments)


def _render(text: str, tree, comments) -> str:  # type: ignore[no-untyped-def]
    store = Comments.attach(text, tree, comments)
    lines = Printer(store).file(tree)
    if store.remaining() or store.tail:
        raise InternalError("a comment was not printed")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def format_source(text: str, path: str = "<input>") -> str:
    """The canonical form of one file's text.

    Raises `SyntaxErrors` when the text does not parse and `InternalError`
    when the result would not be equivalent to the input.
    """
    source = SourceFile(path, text[1:] if text.startswith("\ufeff") else text)
    try:
        tree, comments = parse_with_comments(source.text)
    except UnexpectedInput:
        from mcpdsl.syntax.parser import parse_source

        diagnostics = parse_source(source).diagnostics
        raise SyntaxErrors(source, diagnostics) from None
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(limit, 10_000))
        output = _render(source.text, tree, comments)
        _verify(source, tree, comments, output)
    except RecursionError:
        raise InternalError("the file nests too deeply to be formatted") from None
    finally:
        sys.setrecursionlimit(limit)
    return output


def _verify(source: SourceFile, tree, comments, output: str) -> None:  # type: ignore[no-untyped-def]
    try:
        new_tree, new_comments = parse_with_comments(output)
    except UnexpectedInput as exc:
        raise InternalError(f"the formatted text does not parse: {exc}") from None
    if file_shape(new_tree) != file_shape(tree):
        raise InternalError("the formatted text has a different syntax tree")
    before = Counter(comment_text(c) for c in comments)
    after = Counter(comment_text(c) for c in new_comments)
    if before != after:
        raise InternalError("the formatted text lost or changed a comment")
    if lower_tree(source.path, source.text, tree) != lower_tree(source.path, output, new_tree):
        raise InternalError("the formatted text lowers to a different IR")
