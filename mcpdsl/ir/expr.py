"""Lower expression syntax trees (conditions, risk terms, mappings) to IR."""

from __future__ import annotations

from decimal import Decimal
from typing import cast

from lark import Token, Tree

from mcpdsl.ir import model as m
from mcpdsl.ir import units
from mcpdsl.ir.common import Context, decode_string, key_text, label_for
from mcpdsl.ir.parts import part, rest
from mcpdsl.syntax.parser import closest

MAX_DEPTH = 100

_FUNCTIONS = ("lower", "upper", "len", "startswith", "endswith", "contains")


class _TooDeep(Exception):
    pass


def lower_expr(ctx: Context, node: Tree[Token] | Token) -> m.Expr | None:
    """Lower one expression; None when it had errors (already reported)."""
    errors = len(ctx.diagnostics)
    try:
        result = _lower(ctx, node, 0)
    except _TooDeep:
        ctx.error(
            "E0106",
            f"expression nests more than {MAX_DEPTH} levels deep",
            node,
            label="too deep",
            help="split the condition; real policies never need this depth",
        )
        return None
    if len(ctx.diagnostics) != errors:
        return None
    return result


def _lower(ctx: Context, node: Tree[Token] | Token, depth: int) -> m.Expr:
    if depth > MAX_DEPTH:
        raise _TooDeep
    span = ctx.span(node)
    if isinstance(node, Token):
        return _token(ctx, node)
    data = node.data
    kids = node.children
    sub = [c for c in kids if isinstance(c, Tree) or _is_operand(c)]
    d = depth + 1
    if data == "or_expr":
        return m.Or.fast(operands=tuple(_lower(ctx, c, d) for c in sub), span=span)
    if data == "and_expr":
        return m.And.fast(operands=tuple(_lower(ctx, c, d) for c in sub), span=span)
    if data == "not_op":
        return m.Not.fast(operand=_lower(ctx, sub[0], d), span=span)
    if data == "compare":
        op = next(str(c) for c in kids if isinstance(c, Token) and c.type == "COMPARE_OP")
        return m.Compare.fast(
            op=cast("m.CompareOp", op),
            left=_lower(ctx, sub[0], d),
            right=_lower(ctx, sub[1], d),
            span=span,
        )
    if data in ("member", "not_member"):
        return m.In.fast(
            item=_lower(ctx, sub[0], d),
            collection=_lower(ctx, sub[1], d),
            negated=data == "not_member",
            span=span,
        )
    if data == "in_cidr":
        operand = _lower(ctx, sub[0], d)
        pattern = part(node, "network")
        assert isinstance(pattern, Token)
        text = decode_string(ctx, pattern) or ""
        return m.InCidr.fast(operand=operand, cidr=text, span=ctx.span(pattern))
    if data == "glob_match":
        operand = _lower(ctx, sub[0], d)
        pattern = part(node, "pattern")
        assert isinstance(pattern, Token)
        text = decode_string(ctx, pattern) or ""
        return m.Matches.fast(operand=operand, pattern=text, span=ctx.span(pattern))
    if data == "arith":
        op = next(
            str(c)
            for c in kids
            if isinstance(c, Token) and c.type in ("PLUS", "MINUS", "STAR", "SLASH")
        )
        return m.Arith.fast(
            op=cast("m.ArithOp", op),
            left=_lower(ctx, sub[0], d),
            right=_lower(ctx, sub[1], d),
            span=span,
        )
    if data == "default_op":
        return m.Default.fast(
            operand=_lower(ctx, sub[0], d), fallback=_lower(ctx, sub[1], d), span=span
        )
    if data == "negate":
        return m.Neg.fast(operand=_lower(ctx, sub[0], d), span=span)
    if data == "true":
        return m.Literal_.fast(value=True, unit=None, span=span)
    if data == "false":
        return m.Literal_.fast(value=False, unit=None, span=span)
    if data == "risk_ref":
        return m.Attr.fast(root="risk", path=(), span=span)
    if data == "path":
        root = str(part(node, "root"))
        path = tuple(key_text(c) for c in rest(node) if isinstance(c, Tree))
        return m.Attr.fast(root=root, path=path, span=span)
    if data == "call":
        name_tok = part(node, "function")
        assert isinstance(name_tok, Token)
        # every child after the name that is an argument (not `(`, `,` or `)`)
        args = tuple(_lower(ctx, c, d) for c in rest(node) if c is not None and _is_arg(c))
        name = str(name_tok)
        if name not in _FUNCTIONS:
            guess = closest(name, _FUNCTIONS)
            ctx.error(
                "E0307",
                f"unknown function `{name}`",
                name_tok,
                label="not a built-in function",
                help=f"did you mean `{guess}`?" if guess else "built-ins: " + ", ".join(_FUNCTIONS),
            )
            name = "len"
        return m.Call.fast(function=cast("m.FunctionName", name), args=args, span=span)
    if data == "list_expr":
        items = tuple(_lower(ctx, c, d) for c in kids if c is not None and _is_arg(c))
        return m.ListExpr.fast(items=items, span=span)
    if data == "atom":  # parenthesised expression
        inner = [c for c in kids if c is not None and _is_arg(c)]
        return _lower(ctx, inner[0], d)
    raise AssertionError(f"unexpected expression node {data}")


def _is_operand(c: object) -> bool:
    return isinstance(c, Token) and c.type in ("NUMBER", "QUANTITY", "STRING", "TIME")


def _is_arg(c: object) -> bool:
    return isinstance(c, Tree) or _is_operand(c)


def _token(ctx: Context, tok: Token) -> m.Expr:
    span = ctx.span(tok)
    if tok.type == "STRING":
        return m.Literal_.fast(value=decode_string(ctx, tok) or "", unit=None, span=span)
    if tok.type == "TIME":
        try:
            minutes = units.parse_time(str(tok))
        except units.UnitError as exc:
            ctx.error(exc.code, str(exc), tok, label="not a time of day")
            minutes = 0
        return m.Literal_.fast(value=Decimal(minutes), unit="time", span=span)
    try:
        value, unit = units.read_expression_literal(str(tok))
    except units.UnitError as exc:
        ctx.error(exc.code, str(exc), tok, label=label_for(exc.code), help=exc.help)
        value, unit = Decimal(0), None
    return m.Literal_.fast(value=value, unit=unit or "number", span=span)
