"""Semantic tokens: a classification of every token, refined by the name index.

The scan is lexical (it must work on text that does not parse), with the same
token shapes as the grammar's terminals; names are then classified by what
the index knows: a declaration, a reference to a service or pool, an
attribute root, a built-in function.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from mcpdsl.ir.typecheck import CONDITION_ROOTS
from mcpdsl.lsp.complete import FUNCTIONS
from mcpdsl.lsp.index import FileIndex

TOKEN_TYPES = (
    "keyword",
    "string",
    "number",
    "comment",
    "operator",
    "variable",
    "function",
    "class",
    "namespace",
    "property",
    "enumMember",
)
TOKEN_MODIFIERS = ("declaration",)

_KIND_TYPES = {
    "service": "class",
    "pool": "class",
    "carbon": "class",
    "job": "class",
    "policy": "class",
    "integration": "class",
    "gateway": "class",
    "provider": "class",
    "mesh": "class",
    "server": "class",
    "test": "class",
    "rule": "enumMember",
    "tool": "string",
    "package": "namespace",
}

_LEX = re.compile(
    r"(?P<comment>#[^\n]*)"
    r'|(?P<string>"(?:[^"\\\n]|\\.)*"?)'
    r"|(?P<number>[0-9]{2}:[0-9]{2}|\$?[0-9]+(?:\.[0-9]+)?(?:%|[A-Za-z]+(?:/[A-Za-z]+)?|/[A-Za-z]+)?)"
    r"|(?P<name>[A-Za-z_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?|\$)"
    r"|(?P<operator>->|\.\.|\?\?|==|!=|<=|>=|[<>=+\-*/])"
)


@lru_cache(maxsize=1)
def keywords() -> frozenset[str]:
    from mcpdsl.syntax.parser import keyword_terminals

    return frozenset(keyword_terminals().values())


@dataclass(frozen=True)
class Token:
    line: int  # 1-based
    column: int  # 1-based, characters
    length: int  # characters
    type: str
    declaration: bool = False


def classify(text: str, index: FileIndex | None) -> list[Token]:
    """Every token of `text` with its semantic type, in order."""
    names: dict[tuple[int, int], tuple[str, bool]] = {}
    if index is not None:
        for s in index.symbols:
            names[(s.span.line, s.span.column)] = (_KIND_TYPES.get(s.kind, "class"), True)
        for r in index.references:
            names.setdefault(
                (r.span.line, r.span.column), (_KIND_TYPES.get(r.kind, "class"), False)
            )
    out: list[Token] = []
    kws = keywords()
    roots = set(CONDITION_ROOTS) | {"$"}
    for number, line in enumerate(text.split("\n"), start=1):
        for match in _LEX.finditer(line):
            group = match.lastgroup or ""
            word = match.group()
            column = match.start() + 1
            if group == "name":
                known = names.get((number, column))
                after = line[match.end() : match.end() + 1]
                if known is not None:
                    kind, decl = known
                    out.append(Token(number, column, len(word), kind, decl))
                    continue
                if word in FUNCTIONS and after == "(":
                    group = "function"
                elif word in roots and (after == "." or word in ("risk", "action")):
                    group = "variable"
                elif word in kws:
                    group = "keyword"
                elif match.start() > 0 and line[match.start() - 1] == ".":
                    group = "property"
                else:
                    group = "variable"
            out.append(Token(number, column, len(word), group))
    return out
