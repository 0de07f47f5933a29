"""Lower access and integration declarations: `policy`, `integration`, `gateway`."""

from __future__ import annotations

from typing import Any, cast

from lark import Token, Tree

from mcpdsl.ir import limits, units
from mcpdsl.ir import model as m
from mcpdsl.ir.clauses import (
    Clauses,
    clause_value,
    decl_name,
    lower_limit,
    positive,
    string_list,
    string_object,
    word_list,
)
from mcpdsl.ir.common import (
    Context,
    child_tree,
    key_text,
    lower_entity,
    lower_range,
    lower_ref,
    tokens,
    trees,
)
from mcpdsl.ir.expr import lower_expr
from mcpdsl.ir.globs import glob_error
from mcpdsl.ir.lower_identity import gateway_identity
from mcpdsl.ir.parts import part


def lower_policy(ctx: Context, decl: Tree[Token]) -> m.Policy | None:
    name = decl_name(decl)
    c = Clauses(ctx, decl)
    default = "deny"
    if (dc := c.one("default_clause")) is not None:
        default = str(part(dc, "effect"))
    rules = []
    ids: dict[str, Tree[Token]] = {}
    for index, rule in enumerate(c.all("rule"), 1):
        lowered = _rule(ctx, rule, index)
        if lowered is None:
            continue
        if lowered.id in ids:
            ctx.error(
                "E0207",
                f"duplicate rule id `{lowered.id}`",
                rule,
                label="second rule with this id",
                secondary=((ids[lowered.id], "first rule with this id"),),
                help="give each rule of a policy its own label",
            )
            continue
        ids[lowered.id] = rule
        rules.append(lowered)
    risk = []
    for block in c.all("risk_block"):
        for term in trees(block):
            weight = ctx.read(part(term, "weight"), units.read_number)
            cond = lower_expr(ctx, part(term, "condition"))
            if weight is not None and weight > 1:
                ctx.error("E0303", "a risk weight is at most 1", part(term, "weight"))
            elif weight is not None and cond is not None:
                risk.append(m.RiskTerm(weight=weight, condition=cond, span=ctx.span(term)))
    requires = []
    for clause in c.all("require_clause"):
        obligation = str(part(clause, "obligation"))
        when = part(clause, "condition")
        cond = lower_expr(ctx, when) if when is not None else None
        if when is not None and cond is None:
            continue
        requires.append(m.Requirement(obligation=obligation, condition=cond, span=ctx.span(clause)))
    return m.Policy(
        package=ctx.package,
        name=name,
        default=cast(Any, default),
        rules=tuple(rules),
        risk=tuple(risk),
        requires=tuple(requires),
        strict=c.one("strict_clause") is not None,
        span=ctx.span(decl),
    )


def _rule(ctx: Context, rule: Tree[Token], index: int) -> m.Rule | None:
    kids = rule.children
    label = part(rule, "label")
    effect_tok = next(k for k in kids if isinstance(k, Token) and k.type in ("ALLOW", "DENY"))
    patterns = [
        k
        for k in kids
        if isinstance(k, Tree)
        and k.data
        in ("principal_pattern", "any_entity", "any_of_type", "one_entity", "entity_list")
    ]
    principal = lower_entity(ctx, patterns[0])
    resource = lower_entity(ctx, patterns[1])
    actions: tuple[str, ...] = ()
    path = None
    on = child_tree(rule, "on_clause")
    if on is not None:
        actions = tuple(str(part(a, "name")) for a in trees(on))
        if "*" in actions:
            actions = ()
        path_tok = part(on, "path")
        if isinstance(path_tok, Token) and path_tok.type == "STRING":
            path = ctx.string(path_tok)
            if path is not None:
                problem = glob_error(path)
                if problem:
                    ctx.error("E0309", problem, path_tok)
    condition = None
    cond_tree = next(
        (
            k
            for k in kids
            if isinstance(k, Tree) and k.data in ("when_condition", "unless_condition")
        ),
        None,
    )
    if cond_tree is not None:
        expr = lower_expr(ctx, part(cond_tree, "expr"))
        if expr is None:
            return None
        if cond_tree.data == "unless_condition":
            expr = m.Not(operand=expr, span=ctx.span(cond_tree))
        condition = expr
    rid = str(label) if isinstance(label, Token) else f"{effect_tok!s}-{index}"
    # Built without re-validation: every field is typed by construction above,
    # and rules are the bulk of large trees.
    return m.Rule.fast(
        id=rid,
        effect=cast(Any, str(effect_tok)),
        principal=principal,
        resource=resource,
        actions=actions,
        path=path,
        condition=condition,
        labelled=isinstance(label, Token),
        span=ctx.span(rule),
    )


def lower_integration(ctx: Context, decl: Tree[Token]) -> m.Integration | None:
    name = decl_name(decl)
    c = Clauses(ctx, decl)
    tool = None
    schema: dict[str, str] = {}
    if (ec := c.one("expose_clause")) is not None:
        tool = ctx.string(clause_value(ec, 0))
        schema = string_object(ctx, child_tree(ec, "object"))
        for key, typ in schema.items():
            if typ not in ("string", "number", "boolean", "object", "array"):
                ctx.error(
                    "E0204",
                    f"unknown input type `{typ}` for `{key}`",
                    ec,
                    help="use string, number, boolean, object or array",
                )
    call = c.require("call_clause", "call", name)
    method = str(clause_value(call, 0)) if call is not None else "GET"
    url = ctx.string(clause_value(call, 1)) if call is not None else None
    if call is not None and method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"):
        ctx.error("E0204", f"unknown HTTP method `{method}`", clause_value(call, 0))
    if url is not None and not (url.startswith("https://") or url.startswith("http://")):
        ctx.error(
            "E0206", "the call URL must start with `http://` or `https://`", clause_value(call, 1)
        )
        url = None
    timeout = positive(
        ctx,
        clause_value(c.one("timeout_clause")),
        ctx.read(clause_value(c.one("timeout_clause")), limits.read_duration),
        "a timeout",
    )
    retry = None
    if (rc := c.one("retry_clause")) is not None:
        attempts = ctx.count(clause_value(rc, 0), 0, 10)
        backoff = None
        vals = [ch for ch in rc.children if ch is not None]
        for i, ch in enumerate(vals):
            if isinstance(ch, Token) and ch.type == "BACKOFF":
                backoff = lower_range(ctx, vals[i + 1], limits.read_duration)
        on = word_list(ctx, child_tree(rc, "list"))
        for word in on:
            if word not in _RETRY_ON:
                ctx.error(
                    "E0204",
                    f"unknown retry condition `{word}`",
                    rc,
                    help="use " + ", ".join(_RETRY_ON),
                )
        if attempts is not None:
            retry = m.Retry(
                attempts=attempts,
                backoff_min=backoff[0] if backoff else None,
                backoff_max=backoff[1] if backoff else None,
                on=on,
                span=ctx.span(rc),
            )
    mappings = []
    if (mc := c.one("map_clause")) is not None:
        seen: set[tuple[str, ...]] = set()
        for mapping in trees(mc):
            target = tuple(key_text(part(mapping, "target")).split("."))
            expr = lower_expr(ctx, part(mapping, "expr"))
            if target in seen:
                ctx.error("E0201", f"field `{'.'.join(target)}` is mapped twice", mapping)
                continue
            seen.add(target)
            if expr is not None:
                mappings.append(m.Mapping(target=target, expr=expr, span=ctx.span(mapping)))
    if url is None:
        return None
    return m.Integration(
        package=ctx.package,
        name=name,
        tool=tool,
        input=schema,
        description=ctx.string(clause_value(c.one("description_clause"))),
        method=method.upper(),
        url=url,
        timeout=timeout,
        retry=retry,
        limit=lower_limit(ctx, c.one("limit_clause")),
        mappings=tuple(mappings),
        span=ctx.span(decl),
    )


_RETRY_ON = ("5xx", "reset", "connect-failure", "retriable-4xx", "refused-stream", "gateway-error")


def lower_gateway(ctx: Context, decl: Tree[Token]) -> m.Gateway | None:
    name = decl_name(decl)
    c = Clauses(ctx, decl)
    listen = c.require("listen_clause", "listen", name)
    port = ctx.count(clause_value(listen), 1, 65535) if listen is not None else None
    routes = []
    for clause in c.all("route_clause"):
        path_tok = part(clause, "path")
        path = ctx.string(path_tok)
        if path is not None:
            problem = glob_error(path)
            if problem:
                ctx.error("E0309", problem, path_tok)
                path = None
        methods: tuple[str, ...] = ()
        if (om := child_tree(clause, "on_methods")) is not None:
            methods = tuple(str(t).upper() for t in tokens(om, "NAME"))
        target_tree = next(
            t for t in trees(clause) if t.data in ("route_to_service", "route_to_integration")
        )
        target = m.RouteTarget(
            kind="service" if target_tree.data == "route_to_service" else "integration",
            ref=cast(m.Ref, lower_ref(ctx, child_tree(target_tree, "ref"))),
            span=ctx.span(target_tree),
        )
        rewrite = timeout = retries = None
        for option in trees(clause):
            if option.data == "rewrite_option":
                rewrite = ctx.string(part(option, "value"))
                if rewrite is not None and not rewrite.startswith("/"):
                    ctx.error("E0206", "a rewrite must start with `/`", part(option, "value"))
            elif option.data == "timeout_option":
                timeout = positive(
                    ctx,
                    part(option, "value"),
                    ctx.read(part(option, "value"), limits.read_duration),
                    "a timeout",
                )
            elif option.data == "retry_option":
                retries = ctx.count(part(option, "value"), 0, 10)
        if path is None:
            continue
        routes.append(
            m.Route(
                path=path,
                methods=methods,
                target=target,
                rewrite=rewrite,
                timeout=timeout,
                retries=retries,
                span=ctx.span(clause),
            )
        )
    identity = gateway_identity(ctx, c)
    if port is None:
        return None
    return m.Gateway(
        package=ctx.package,
        name=name,
        port=port,
        hosts=string_list(ctx, clause_value(c.one("hosts_clause"))),
        routes=tuple(routes),
        limit=lower_limit(ctx, c.one("limit_clause")),
        span=ctx.span(decl),
        **identity,
    )
