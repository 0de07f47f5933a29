"""Checks the formatter runs on its own output before anything is written.

Three properties must hold between the input and the formatted text:

- the syntax trees are equal once commas and parentheses are removed (the
  printer drops and re-inserts exactly those);
- the lowered IR (`FileUnit`, span-blind equality) and the lowering
  diagnostic codes are equal;
- the comments are the same multiset of texts.
"""

from __future__ import annotations

from typing import Any

from lark import Token, Tree

from mcpdsl.ir import model as m
from mcpdsl.source import SourceFile
from mcpdsl.syntax.parser import ParsedFile

Shape = tuple[Any, ...]


def shape(node: Tree[Token] | Token) -> Shape:
    """A position-free form of a syntax tree, without commas and parentheses."""
    if isinstance(node, Token):
        return (node.type, str(node))
    while node.data == "atom":
        node = next(c for c in node.children if isinstance(c, Tree) or _operand(c))  # type: ignore[assignment]
        if isinstance(node, Token):
            return (node.type, str(node))
    return (
        str(node.data),
        tuple(
            shape(c)
            for c in node.children
            if c is not None and not (isinstance(c, Token) and c.type == "COMMA")
        ),
    )


def file_shape(tree: Tree[Token]) -> Shape:
    """The shape of a whole file; imports may move before the declarations."""
    items = [c for c in tree.children[1:] if isinstance(c, Tree)]
    return (
        shape(tree.children[0]),  # type: ignore[arg-type]
        tuple(shape(i) for i in items if i.data == "import_decl"),
        tuple(shape(i) for i in items if i.data != "import_decl"),
    )


def _operand(c: object) -> bool:
    return isinstance(c, Token) and c.type not in ("LPAR", "RPAR")


def lower_tree(path: str, text: str, tree: Tree[Token]) -> tuple[m.FileUnit | None, list[str]]:
    """The IR of one parsed file and its lowering diagnostic codes."""
    from mcpdsl.ir.lower import lower

    parsed = ParsedFile(SourceFile(path, text))
    parsed.package = tree.children[0]  # type: ignore[assignment]
    parsed.items = [c for c in tree.children[1:] if isinstance(c, Tree)]
    unit, diagnostics = lower(parsed)
    return unit, [d.code for d in diagnostics]
