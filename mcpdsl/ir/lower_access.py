"""Lower access and integration declarations: `policy`, `integration`, `gateway`."""

from __future__ import annotations

import json
import re
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
from mcpdsl.ir.lower_upstream import (
    check_retry_idempotence,
    lower_auth,
    lower_breaker,
    lower_input,
    lower_upstream,
)
from mcpdsl.ir.parts import part
from mcpdsl.ir.paths import header_name_problem, prefix_error


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
    federated = lower_upstream(ctx, c, name) if c.one("upstream_clause") is not None else None
    tool = None
    schema: dict[str, str] = {}
    optional: tuple[str, ...] = ()
    if (ec := c.one("expose_clause")) is not None:
        tool = ctx.string(clause_value(ec, 0))
        schema, optional = lower_input(ctx, child_tree(ec, "input_schema"))
    url: str | None
    if c.one("upstream_clause") is not None:
        method, url = "POST", federated[0] if federated is not None else None
    else:
        call = c.require("call_clause", "call", name)
        method = str(clause_value(call, 0)) if call is not None else "GET"
        url = ctx.string(clause_value(call, 1)) if call is not None else None
        if call is not None and method.upper() not in (
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD",
        ):  # fmt: skip
            ctx.error("E0204", f"unknown HTTP method `{method}`", clause_value(call, 0))
        if url is not None and not (url.startswith("https://") or url.startswith("http://")):
            ctx.error(
                "E0206",
                "the call URL must start with `http://` or `https://`",
                clause_value(call, 1),
            )
            url = None
    timeout = positive(
        ctx,
        clause_value(c.one("timeout_clause")),
        ctx.read(clause_value(c.one("timeout_clause")), limits.read_duration),
        "a timeout",
    )
    retry = lower_retry(ctx, c.one("retry_clause"))
    idempotent = True if c.one("idempotent_clause") is not None else None
    check_retry_idempotence(ctx, c, method.upper(), retry, idempotent)
    auth = lower_auth(ctx, c)
    breaker = lower_breaker(ctx, c.one("breaker_clause"))
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
    extra: dict[str, Any] = {}
    if federated is not None:
        extra = {"upstream": "mcp", "prefix": federated[1]}
    return m.Integration(
        package=ctx.package,
        name=name,
        tool=tool,
        input=schema,
        optional=optional,
        description=ctx.string(clause_value(c.one("description_clause"))),
        method=method.upper(),
        url=url,
        timeout=timeout,
        retry=retry,
        limit=lower_limit(ctx, c.one("limit_clause")),
        mappings=tuple(mappings),
        auth=auth,
        breaker=breaker,
        idempotent=idempotent,
        span=ctx.span(decl),
        **extra,
    )


#: Retry conditions of `retry N on [...]` (integrations and routes alike): Envoy's own
#: `retry_on` names, so the Envoy target passes them through unchanged.
RETRY_ON = ("5xx", "reset", "connect-failure", "retriable-4xx", "refused-stream", "gateway-error")


def _after(clause: Tree[Token], keyword: str) -> Any:
    """The child right after the keyword token `keyword` (None when the keyword is absent)."""
    kids = [ch for ch in clause.children if ch is not None]
    for i, ch in enumerate(kids[:-1]):
        if isinstance(ch, Token) and ch.type == keyword:
            return kids[i + 1]
    return None


def lower_retry(ctx: Context, rc: Tree[Token] | None) -> m.Retry | None:
    """`retry N [backoff A..B] [on [...]] [per try timeout T]`, of an integration or a route.

    One definition for both, so a route's retry means what an integration's does.
    """
    if rc is None:
        return None
    attempts = ctx.count(clause_value(rc, 0), 0, 10)
    backoff = None
    if (node := _after(rc, "BACKOFF")) is not None:
        backoff = lower_range(ctx, node, limits.read_duration)
    on = word_list(ctx, child_tree(rc, "list"))
    ok = True
    for word in on:
        if word not in RETRY_ON:
            ok = False
            ctx.error(
                "E0204",
                f"unknown retry condition `{word}`",
                child_tree(rc, "list") or rc,
                help="use " + ", ".join(f"`{x}`" for x in RETRY_ON),
            )
    per_try = None
    if (node := _after(rc, "TIMEOUT")) is not None:
        per_try = positive(ctx, node, ctx.read(node, limits.read_duration), "a per-try timeout")
        if per_try is None:
            ok = False
    if attempts is None or not ok:
        return None
    return m.Retry(
        attempts=attempts,
        backoff_min=backoff[0] if backoff else None,
        backoff_max=backoff[1] if backoff else None,
        on=tuple(dict.fromkeys(on)),
        per_try_timeout=per_try,
        span=ctx.span(rc),
    )


def lower_gateway(ctx: Context, decl: Tree[Token]) -> m.Gateway | None:
    name = decl_name(decl)
    c = Clauses(ctx, decl)
    listen = c.require("listen_clause", "listen", name)
    port = ctx.count(clause_value(listen), 1, 65535) if listen is not None else None
    routes = []
    for clause in c.all("route_clause"):
        path_tok = part(clause, "path")
        path = ctx.string(path_tok)
        prefix = part(clause, "prefix") is not None
        if path is not None:
            problem = prefix_error(path) if prefix else glob_error(path)
            if problem:
                ctx.error(
                    "E0309",
                    problem,
                    path_tok,
                    help="a `prefix` is text, not a glob" if prefix else None,
                )
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
        rewrite = timeout = retry = None
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
            elif option.data == "retry_clause":
                retry = lower_retry(ctx, option)
        headers, query = route_conditions(ctx, clause)
        if path is None:
            continue
        routes.append(
            m.Route(
                path=path,
                methods=methods,
                target=target,
                rewrite=rewrite,
                timeout=timeout,
                retries=retry.attempts if retry is not None else None,
                prefix=prefix,
                retry=retry,
                headers=headers,
                query=query,
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


def route_conditions(
    ctx: Context, clause: Tree[Token]
) -> tuple[tuple[m.RouteCondition, ...], tuple[m.RouteCondition, ...]]:
    """The `header "N" [== | != "V"]` and `query "N" [== "V"]` conditions of a route.

    Header names are lower-cased (HTTP names are case-insensitive; Envoy and the
    engine compare them lower-cased) and must be HTTP tokens; a value must be
    something a header can carry.  Query parameters have no `!=`: Envoy's
    query-parameter matcher cannot invert.
    """
    headers: list[m.RouteCondition] = []
    query: list[m.RouteCondition] = []
    for match in trees(clause):
        if match.data not in ("header_match", "query_match"):
            continue
        is_header = match.data == "header_match"
        what = "header" if is_header else "query parameter"
        name_tok, op_tok, value_tok = part(match, "name"), part(match, "op"), part(match, "value")
        name = ctx.string(name_tok)
        value = ctx.string(value_tok) if value_tok is not None else None
        op = str(op_tok) if op_tok is not None else "present"
        if name is None or (value_tok is not None and value is None):
            continue
        problem = header_name_problem(name) if is_header else (None if name else "is empty")
        if problem is not None:
            if "gateway" in problem:
                hint = (
                    "route on the host with the gateway's `hosts`"
                    if name.lower() == "host"
                    else "condition on a header the client sends and the gateway passes on"
                )
            else:
                hint = "a header name is a token: letters, digits and !#$%&'*+-.^_`|~"
            ctx.error("E0314", f"{what} name {_shown(name)} {problem}", name_tok, help=hint)
            continue
        allowed = ("==", "!=") if is_header else ("==",)
        if op != "present" and op not in allowed:
            ctx.error(
                "E0314",
                f"`{op}` cannot compare a {what} on a route",
                op_tok,
                help="use " + " or ".join(f"`{x}`" for x in allowed) + ", or no operator "
                f"(the {what} is present)",
            )
            continue
        if value is not None and _BAD_VALUE.search(value):
            ctx.error(
                "E0314",
                f"the value of {what} `{name}` holds a NUL, CR or LF, which no request can carry",
                value_tok,
            )
            continue
        condition = m.RouteCondition(
            name=name.lower() if is_header else name,
            op=cast(Any, op),
            value=value,
            span=ctx.span(match),
        )
        (headers if is_header else query).append(condition)
    return tuple(headers), tuple(query)


_BAD_VALUE = re.compile(r"[\x00\r\n]")


def _shown(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
