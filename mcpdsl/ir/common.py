"""Helpers shared by the lowering modules: spans, tokens, literals, diagnostics."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

from lark import Token, Tree

from mcpdsl.diagnostics import Diagnostic, Label, make
from mcpdsl.ir import model as m
from mcpdsl.ir import units
from mcpdsl.ir.parts import leading, part, rest, tree_part
from mcpdsl.source import Span
from mcpdsl.syntax.parser import tree_bounds

T = TypeVar("T")
Node = Tree[Token] | Token
MAX_STRING = 64 * 1024


class Context:
    """Diagnostics sink and span maker for one file being lowered."""

    def __init__(self, path: str, package: str) -> None:
        self.path = path
        self.package = package
        self.diagnostics: list[Diagnostic] = []

    # ------------------------------------------------------------- spans
    def span(self, node: Node | None) -> Span | None:
        if node is None:
            return None
        if isinstance(node, Token):
            return _token_span(self.path, node, node)
        bounds = tree_bounds(node)
        if bounds is None:
            return None
        return _token_span(self.path, *bounds)

    # ------------------------------------------------------- diagnostics
    def error(
        self,
        code: str,
        message: str,
        node: Node | None,
        *,
        label: str = "",
        help: str | None = None,
        notes: tuple[str, ...] = (),
        secondary: tuple[tuple[Node, str], ...] = (),
    ) -> None:
        labels = []
        for other, text in secondary:
            other_span = self.span(other)
            if other_span is not None:
                labels.append(Label(span=other_span, message=text))
        self.diagnostics.append(
            make(
                code,
                message,
                self.span(node),
                label=label,
                help=help,
                notes=notes,
                secondary=labels,
            )
        )

    # ---------------------------------------------------------- literals
    def read(self, token: Node | None, reader: Callable[[str], T]) -> T | None:
        """Read a scalar token with a unit reader; report a wrong unit at the token."""
        if token is None:
            return None
        if isinstance(token, Tree):
            self.error("E0301", f"expected a single value, found {describe(token)}", token)
            return None
        if token.type == "STRING" or token.type == "TIME":
            kind = _reader_kind(reader)
            self.error(
                "E0301",
                f"expected {kind}, found {describe(token)}",
                token,
                label=f"expected {kind}",
            )
            return None
        try:
            return reader(str(token))
        except units.UnitError as exc:
            self.error(exc.code, str(exc), token, label=label_for(exc.code), help=exc.help)
            return None

    def string(self, token: Node | None) -> str | None:
        if token is None:
            return None
        if not isinstance(token, Token) or token.type != "STRING":
            self.error("E0301", f"expected a string, found {describe(token)}", token)
            return None
        return decode_string(self, token)

    def count(self, token: Node | None, low: int = 0, high: int | None = None) -> int | None:
        value = self.read(token, units.read_count)
        if value is None:
            return None
        if value < low or (high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f"at least {low}"
            nearest = low if value < low else high
            self.error(
                "E0303",
                f"`{value}` is out of bounds ({bounds})",
                token,
                label=f"must be {bounds}",
                help=f"the nearest allowed value is `{nearest}`",
            )
            return None
        return value


def _token_span(path: str, first: Token, last: Token) -> Span | None:
    """The span from the start of `first` to the end of `last` (tokens of one file)."""
    if first.line is None or first.column is None:
        return None
    end_line = last.end_line if last.end_line is not None else first.line
    end_column = last.end_column if last.end_column is not None else first.column + 1
    return Span.make(path, first.line, first.column, end_line, end_column)


def decode_string(ctx: Context, token: Token) -> str | None:
    text = str(token)
    if len(text) > MAX_STRING:
        ctx.error(
            "E0109", f"string literal longer than {MAX_STRING // 1024} KiB", token, label="too long"
        )
        return None
    if "\\" not in text:  # no escapes: the fast path for nearly every string
        return text[1:-1]
    try:
        value = json.loads(text)
    except ValueError:
        ctx.error("E0311", "invalid escape in string", token)
        return None
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        ctx.error("E0311", "string contains an unpaired surrogate escape", token)
        return None
    return str(value)


def _reader_kind(reader: Callable[[str], Any]) -> str:
    kinds: dict[Callable[[str], Any], units.UnitKind] = {
        units.read_cpu: units.CPU,
        units.read_bytes: units.BYTES,
        units.read_duration: units.DURATION,
        units.read_percent: units.PERCENT,
        units.read_rate: units.RATE,
        units.read_energy: units.ENERGY,
        units.read_power: units.POWER,
        units.read_mass: units.MASS,
        units.read_intensity: units.INTENSITY,
        units.read_money: units.MONEY,
        units.read_money_per_hour: units.MONEY_RATE,
        units.read_count: units.COUNT,
        units.read_number: units.NUMBER,
        units.read_ratio: units.NUMBER,
        units.read_percent_or_count: units.PERCENT,
    }
    probe = kinds.get(getattr(reader, "__wrapped__", reader))  # limits' bounded readers
    if probe is None:
        return "a value"
    return f"{probe.name} like `{probe.example}`"


def label_for(code: str) -> str:
    return {
        "E0301": "wrong unit",
        "E0304": "ambiguous unit",
        "E0109": "too large",
        "E0312": "out of the target's range",
    }.get(code, "invalid value")


def describe(node: Node) -> str:
    if isinstance(node, Token):
        text = str(node)
        if len(text) > 40:
            text = text[:37] + "..."
        kind = {"STRING": "string", "NAME": "name", "TIME": "time of day"}.get(node.type, "")
        return f"{kind} `{text}`".strip() if kind else f"`{text}`"
    return {"range": "a range", "list": "a list", "object": "an object"}.get(
        str(node.data), "an expression"
    )


def trees(node: Tree[Token]) -> Iterator[Tree[Token]]:
    for child in node.children:
        if isinstance(child, Tree):
            yield child


def tokens(node: Tree[Token], *types: str) -> list[Token]:
    return [c for c in node.children if isinstance(c, Token) and (not types or c.type in types)]


def first_token(node: Tree[Token], *types: str) -> Token | None:
    for c in node.children:
        if isinstance(c, Token) and c.type in types:
            return c
    return None


def child_tree(node: Tree[Token], data: str) -> Tree[Token] | None:
    for c in node.children:
        if isinstance(c, Tree) and c.data == data:
            return c
    return None


def key_text(node: Node) -> str:
    """The text of a `key` (a name or keyword) or `key_path` tree."""
    if isinstance(node, Token):
        return str(node)
    if node.data == "key":
        return str(part(node, "word"))
    if node.data == "key_path":
        return ".".join(key_text(c) for c in node.children if isinstance(c, Tree))
    return str(leading(node))


def lower_ref(ctx: Context, node: Tree[Token] | None) -> m.Ref | None:
    """`name` or `package.name` as a reference (the package is bound by resolve)."""
    if node is None:
        return None
    if isinstance(node, Token):
        return m.Ref(name=str(node), span=ctx.span(node))
    names = [str(t) for t in tokens(node, "NAME")]
    if len(names) == 2:
        return m.Ref(package=names[0], name=names[1], span=ctx.span(node))
    return m.Ref(name=names[0], span=ctx.span(node))


def lower_range(
    ctx: Context,
    node: Tree[Token] | Token | None,
    reader: Callable[[str], Any],
) -> tuple[Any, Any] | None:
    """`low..high` (or a single value meaning low == high), checked for inversion."""
    if node is None:
        return None
    if isinstance(node, Tree) and node.data == "range":
        low_t, high_t = part(node, "low"), part(node, "high")
        low, high = ctx.read(low_t, reader), ctx.read(high_t, reader)
        if low is None or high is None:
            return None
        if low > high:
            ctx.error(
                "E0302",
                f"range `{low_t}..{high_t}` is inverted",
                node,
                label="low end above high end",
                help=f"write `{high_t}..{low_t}`",
            )
            return None
        return low, high
    value = ctx.read(node, reader)
    return None if value is None else (value, value)


def lower_entity(ctx: Context, node: Tree[Token]) -> m.EntityPattern:
    """`any`, `TYPE any`, `TYPE id` or `TYPE [id, ...]` of a rule or a test request."""
    if node.data == "principal_pattern":
        node = tree_part(node, "entity")
    span = ctx.span(node)
    if node.data == "any_entity":
        return m.EntityPattern.fast(type=None, ids=None, span=span)
    etype = cast(Any, str(part(tree_part(node, "type"), "keyword")))
    if node.data == "any_of_type":
        return m.EntityPattern.fast(type=etype, ids=None, span=span)
    ids: list[str] = []
    for child in rest(node):
        if isinstance(child, Tree) and child.data == "ref":
            ids.append(".".join(str(t) for t in tokens(child, "NAME")))
        elif isinstance(child, Token) and child.type == "STRING":
            ids.append(ctx.string(child) or "")
    return m.EntityPattern.fast(type=etype, ids=tuple(ids), span=span)
