"""Lower `test` blocks: a request, a scaling, routing or transform input, and expectations."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from lark import Token, Tree

from mcpdsl.ir import args, stats, units
from mcpdsl.ir import model as m
from mcpdsl.ir.common import (
    Context,
    child_tree,
    first_token,
    key_text,
    lower_entity,
    lower_ref,
    tokens,
    trees,
)
from mcpdsl.ir.parts import part
from mcpdsl.ir.settings import SettingsReader
from mcpdsl.syntax.parser import closest

REQUEST_ROOTS = (
    "principal", "resource", "request", "source", "context", "now", stats.ROOT, args.ROOT,
)  # fmt: skip

_GIVEN_FOR = {
    "decision": "request",
    "risk": "request",
    "replicas": "scale",
    "route": "route",
    "no-route": "route",
    "output": "transform",
    "error": "transform",
}


def json_number(value: Decimal) -> int | float:
    """A Decimal as the JSON number a request would carry."""
    return int(value) if value == value.to_integral_value() else float(value)


def literal(ctx: Context, node: Tree[Token] | Token) -> Any:
    """A test literal (string, number, quantity, bool, list, object) as JSON data."""
    if isinstance(node, Token):
        if node.type == "STRING":
            return ctx.string(node)
        try:
            if node.type == "TIME":
                return units.parse_time(str(node))
            value, _ = units.read_expression_literal(str(node))
        except units.UnitError as exc:
            ctx.error(exc.code, str(exc), node, help=exc.help)
            return None
        return json_number(value)
    if node.data == "true":
        return True
    if node.data == "false":
        return False
    if node.data == "list_literal":
        return [literal(ctx, c) for c in node.children if _is_literal(c)]
    if node.data == "object_literal":
        out: dict[str, Any] = {}
        for pair in trees(node):
            key_node = part(pair, "key")
            if isinstance(key_node, Token) and key_node.type == "STRING":
                key = ctx.string(key_node) or ""
            else:
                key = key_text(key_node)
            out[key] = literal(ctx, part(pair, "value"))
        return out
    raise AssertionError(f"unexpected literal {node.data}")


def _is_literal(c: object) -> bool:
    if isinstance(c, Tree):
        return True
    return isinstance(c, Token) and c.type in ("STRING", "NUMBER", "QUANTITY", "TIME")


def _attributes(
    ctx: Context, node: Tree[Token] | None, target: dict[str, Any], roots: tuple[str, ...]
) -> None:
    if node is None:
        return
    for attribute in trees(node):
        path = key_text(part(attribute, "path")).split(".")
        if roots and path[0] not in roots:
            ctx.error(
                "E0306",
                f"unknown attribute root `{path[0]}`",
                part(attribute, "path"),
                help="request attributes start with " + ", ".join(f"`{r}`" for r in roots),
            )
            continue
        if path[0] == stats.ROOT and not _counter(ctx, attribute, path):
            continue
        cursor = target
        for step in path[:-1]:
            nxt = cursor.setdefault(step, {})
            if not isinstance(nxt, dict):
                ctx.error(
                    "E0208", f"`{'.'.join(path)}` extends a value that is not an object", attribute
                )
                break
            cursor = nxt
        else:
            cursor[path[-1]] = literal(ctx, part(attribute, "value"))


def _counter(ctx: Context, attribute: Tree[Token], path: list[str]) -> bool:
    """A test sets the server's counters as `mcpdsl serve` would: known names, whole counts."""
    if len(path) != 3 or path[1] != stats.SCOPE or path[2] not in stats.FIELDS:
        known = ", ".join(f"`{stats.ROOT}.{stats.SCOPE}.{f}`" for f in stats.FIELDS)
        guess = closest(path[-1], stats.FIELDS)
        ctx.error(
            "E0320",
            f"unknown server statistic `{'.'.join(path)}`",
            part(attribute, "path"),
            help=f"did you mean `{stats.ROOT}.{stats.SCOPE}.{guess}`?"
            if guess
            else f"the server counts {known}",
        )
        return False
    value = part(attribute, "value")
    text = str(value) if isinstance(value, Token) and value.type == "NUMBER" else ""
    if not text.isdigit() or int(text) > stats.MAX:
        ctx.error(
            "E0208",
            f"`{'.'.join(path)}` is a count: a whole number from 0 to {stats.MAX}",
            value,
        )
        return False
    return True


def _request(ctx: Context, clause: Tree[Token]) -> dict[str, Any] | None:
    patterns = [c for c in trees(clause) if c.data != "attributes" and c.data != "action"]
    principal = lower_entity(ctx, patterns[0])
    resource = lower_entity(ctx, patterns[1])
    for pattern, node in ((principal, patterns[0]), (resource, patterns[1])):
        if pattern.type is None or pattern.ids is None or len(pattern.ids) != 1:
            ctx.error(
                "E0208",
                "a test request names one concrete principal and resource",
                node,
                help="write e.g. `service frontend -> service api`",
            )
            return None
    action_tree = child_tree(clause, "action")
    assert action_tree is not None
    action = str(part(action_tree, "name"))
    request: dict[str, Any] = {
        "principal": {"type": principal.type, "id": principal.ids[0]},  # type: ignore[index]
        "action": action,
        "resource": {"type": resource.type, "id": resource.ids[0]},  # type: ignore[index]
    }
    path_tok = first_token(clause, "STRING")
    if path_tok is not None:
        request["request"] = {"path": ctx.string(path_tok)}
    _attributes(ctx, child_tree(clause, "attributes"), request, REQUEST_ROOTS)
    return request


def lower_test(ctx: Context, decl: Tree[Token]) -> m.Test | None:
    name_tok = first_token(decl, "STRING")
    name = ctx.string(name_tok) or ""
    request = scale = route = transform = None
    expects: list[m.Expectation] = []
    givens: list[tuple[str, Tree[Token]]] = []
    for clause in trees(decl):
        data = str(clause.data)
        span = ctx.span(clause)
        if data == "request_clause":
            request = _request(ctx, clause)
            givens.append(("request", clause))
        elif data == "given_scale":
            ref = _ref(ctx, clause)
            reader = SettingsReader(ctx, child_tree(clause, "settings"), "given scale")
            replicas = reader.value("replicas", units.read_count, required=True)
            at_node = reader.raw("at")
            at = ctx.string(at_node) if at_node is not None else None
            metrics: dict[str, Decimal] = {}
            for key, _setting, value in reader.unread():
                # cpu and memory are utilisations (`95%`); other metrics are
                # per-pod averages, but a percent is accepted for them too.
                if key in ("cpu", "memory"):
                    metrics[key] = cast(Decimal, ctx.read(value, units.read_percent))
                else:
                    metrics[key] = cast(Decimal, ctx.read(value, units.read_ratio))
            givens.append(("scale", clause))
            if replicas is not None:
                scale = m.ScaleGiven(
                    service=ref,
                    replicas=replicas,
                    metrics={k: v for k, v in metrics.items() if v is not None},
                    at=at,
                    span=span,
                )
        elif data == "given_route":
            ref = _ref(ctx, clause)
            method = str(tokens(clause, "NAME")[-1]).upper()
            path = ctx.string(first_token(clause, "STRING")) or "/"
            headers: dict[str, Any] = {}
            _attributes(ctx, child_tree(clause, "attributes"), headers, ())
            givens.append(("route", clause))
            route = m.RouteGiven(
                gateway=ref,
                method=method,
                path=path,
                headers={str(k).lower(): str(v) for k, v in headers.items()},
                span=span,
            )
        elif data == "given_transform":
            ref = _ref(ctx, clause)
            payload = literal(ctx, cast(Tree[Token], child_tree(clause, "object_literal")))
            givens.append(("transform", clause))
            transform = m.TransformGiven(integration=ref, payload=payload, span=span)
        else:
            expectation = _expect(ctx, clause)
            if expectation is not None:
                expects.append(expectation)
    if len(givens) > 1:
        ctx.error(
            "E0208",
            f"test `{name}` has more than one input",
            givens[1][1],
            secondary=((givens[0][1], "first input"),),
            help="a test makes one request or gives one scaling, routing or transform input",
        )
        return None
    if not givens:
        ctx.error(
            "E0208",
            f"test `{name}` has no input",
            name_tok,
            help="add a `request` or `given` clause",
        )
        return None
    kind = givens[0][0]
    if not expects:
        ctx.error(
            "W0104", f"test `{name}` expects nothing", name_tok, help="add an `expect` clause"
        )
    for expectation in expects:
        wanted = _GIVEN_FOR[expectation.kind]
        if wanted != kind:
            ctx.error(
                "E0208",
                f"`expect {expectation.kind}` does not fit a {kind} test",
                None if expectation.span is None else _find(decl, expectation),
                help=f"this expectation needs a `{'request' if wanted == 'request' else 'given ' + wanted}` input",
            )
            return None
    return m.Test(
        package=ctx.package,
        name=name,
        request=request,
        scale=scale,
        route=route,
        transform=transform,
        expect=tuple(expects),
        span=ctx.span(decl),
    )


def _find(decl: Tree[Token], expectation: m.Expectation) -> Tree[Token] | None:
    for clause in trees(decl):
        span = ctx_span_line(clause)
        if span == expectation.span.line:  # type: ignore[union-attr]
            return clause
    return None


def ctx_span_line(clause: Tree[Token]) -> int | None:
    from mcpdsl.syntax.parser import tree_bounds

    bounds = tree_bounds(clause)
    return bounds[0].line if bounds else None


def _ref(ctx: Context, clause: Tree[Token]) -> m.Ref:
    ref = lower_ref(ctx, child_tree(clause, "ref"))
    assert ref is not None
    return ref


def _expect(ctx: Context, clause: Tree[Token]) -> m.Expectation | None:
    data = str(clause.data)
    span = ctx.span(clause)
    if data == "expect_decision":
        allowed = first_token(clause, "ALLOW") is not None
        obligations = None
        if first_token(clause, "WITH") is not None:
            obligations = tuple(sorted(str(t) for t in tokens(clause, "NAME")))
        return m.Expectation(kind="decision", allowed=allowed, obligations=obligations, span=span)
    if data == "expect_risk":
        value = ctx.read(part(clause, "value"), units.read_number)
        return None if value is None else m.Expectation(kind="risk", risk=value, span=span)
    if data == "expect_replicas":
        replicas = ctx.count(part(clause, "value"), 0, 100000)
        if replicas is None:
            return None
        return m.Expectation(kind="replicas", replicas=replicas, span=span)
    if data == "expect_route":
        target_tree = next(t for t in trees(clause))
        ref = lower_ref(ctx, child_tree(target_tree, "ref"))
        rewrite = (
            ctx.string(first_token(clause, "STRING")) if first_token(clause, "STRING") else None
        )
        target = m.RouteTarget(
            kind="service" if target_tree.data == "route_to_service" else "integration",
            ref=cast(m.Ref, ref),
            span=ctx.span(target_tree),
        )
        return m.Expectation(kind="route", route=target, rewrite=rewrite, span=span)
    if data == "expect_no_route":
        return m.Expectation(kind="no-route", span=span)
    if data == "expect_output":
        output = literal(ctx, cast(Tree[Token], child_tree(clause, "object_literal")))
        return m.Expectation(kind="output", output=output, span=span)
    if data == "expect_error":
        text = ctx.string(first_token(clause, "STRING")) if first_token(clause, "STRING") else None
        return m.Expectation(kind="error", error=text, span=span)
    raise AssertionError(data)
