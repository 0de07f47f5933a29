"""Comments for the formatter: a second parser that records them, and their anchors.

The shared parser (`mcpdsl.syntax.parser.parser`) drops comments through the
grammar's `%ignore COMMENT`.  The formatter builds its own LALR parser from the
same grammar text and options, adding a lexer callback that records every
`COMMENT` token (lark calls callbacks for ignored terminals too), so the syntax
tree is exactly the one every other stage sees and the comments come with
positions.

Each comment is anchored to a token of the tree:

- a *trailing* comment (code before it on its line) belongs after the token
  that precedes it;
- a *leading* comment (alone on its line) belongs before the token that
  follows it, which may be the `}` of the enclosing block ("end of block");
- comments after the last token are the file's *tail*.

A leading comment followed by a blank line is *detached*: `BLANK` after it in
the list asks for one blank line there (a file header above `package`, a
section title above a group of rules).
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from functools import lru_cache

from lark import Lark, Token, Tree

from mcpdsl.syntax.parser import PARSER_OPTIONS, grammar_text
from mcpdsl.syntax.parser_cache import cached_parser

_local = threading.local()
BLANK = ""  # in a list of leading comments: one blank line here


def _record(token: Token) -> Token:
    sink = getattr(_local, "sink", None)
    if sink is not None:
        sink.append(token)
    return token


@lru_cache(maxsize=1)
def comment_parser() -> Lark:
    """The grammar's parser with a `COMMENT` callback; same options as the shared one."""
    return cached_parser(
        "fmt-parser",
        grammar_text(),
        {**PARSER_OPTIONS, "propagate_positions": True},
        {"lexer_callbacks": {"COMMENT": _record}},
    )


def parse_with_comments(text: str) -> tuple[Tree[Token], list[Token]]:
    """Parse a whole file; raises lark's `UnexpectedInput` on a syntax error."""
    sink: list[Token] = []
    previous = getattr(_local, "sink", None)
    _local.sink = sink
    try:
        tree = comment_parser().parse(text, start="start")
    finally:
        _local.sink = previous
    return tree, sink


def comment_text(token: Token) -> str:
    """A comment as it is written, without trailing whitespace (or a CR)."""
    return str(token).rstrip()


@dataclass
class Comments:
    """Comments anchored to tokens (by start offset), consumed as they are printed."""

    leading: dict[int, list[str]] = field(default_factory=dict)
    trailing: dict[int, list[str]] = field(default_factory=dict)
    tail: list[str] = field(default_factory=list)

    @classmethod
    def attach(cls, text: str, tree: Tree[Token], comments: list[Token]) -> Comments:
        found = cls()
        toks = sorted(
            (t for t in tree.scan_values(lambda v: isinstance(v, Token))),
            key=lambda t: t.start_pos or 0,
        )
        starts = [t.start_pos or 0 for t in toks]
        ordered = sorted(comments, key=lambda c: c.start_pos or 0)
        for n, comment in enumerate(ordered):
            pos = comment.start_pos or 0
            index = bisect.bisect_left(starts, pos)
            before = toks[index - 1] if index > 0 else None
            if before is not None and before.end_line == comment.line:
                found.trailing.setdefault(before.start_pos or 0, []).append(comment_text(comment))
                continue
            if index < len(toks):
                target = found.leading.setdefault(starts[index], [])
            else:
                target = found.tail
            target.append(comment_text(comment))
            following = [starts[index]] if index < len(toks) else [len(text)]
            if n + 1 < len(ordered):
                following.append(ordered[n + 1].start_pos or 0)
            gap = text[comment.end_pos or pos : min(following)]
            if gap.count("\n") >= 2 and (index < len(toks) or n + 1 < len(ordered)):
                target.append(BLANK)
        return found

    def take(self, token: Token) -> tuple[list[str], list[str]]:
        """The leading and trailing comments of a token, removed from the store."""
        pos = token.start_pos or 0
        return self.leading.pop(pos, []), self.trailing.pop(pos, [])

    def has_inner(self, node: Tree[Token] | Token) -> bool:
        """Whether a comment sits inside a construct (not before it, not after it)."""
        toks = list(_tokens(node))
        if len(toks) < 2:
            return False
        for i, tok in enumerate(toks):
            pos = tok.start_pos or 0
            if i > 0 and pos in self.leading:
                return True
            if i < len(toks) - 1 and pos in self.trailing:
                return True
        return False

    def has_leading(self, token: Token) -> bool:
        return (token.start_pos or 0) in self.leading

    def subset(self, node: Tree[Token] | Token) -> Comments:
        """A copy of the comments anchored inside a construct (for trial layouts)."""
        out = Comments()
        for tok in _tokens(node):
            pos = tok.start_pos or 0
            if pos in self.leading:
                out.leading[pos] = list(self.leading[pos])
            if pos in self.trailing:
                out.trailing[pos] = list(self.trailing[pos])
        return out

    def remaining(self) -> int:
        """How many comments were never printed."""
        return sum(len(v) for v in self.leading.values()) + sum(
            len(v) for v in self.trailing.values()
        )


def _tokens(node: Tree[Token] | Token) -> list[Token]:
    if isinstance(node, Token):
        return [node]
    return list(node.scan_values(lambda v: isinstance(v, Token)))
