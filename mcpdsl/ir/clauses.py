"""The clause layer of lowering: the clauses of a declaration and their values.

Shared by the lowering of workload declarations (`lower.py`) and of access
and integration declarations (`lower_access.py`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from lark import Token, Tree

from mcpdsl.ir import limits
from mcpdsl.ir import model as m
from mcpdsl.ir.common import Context, first_token, key_text, lower_range, tokens, trees
from mcpdsl.ir.parts import leading, part
from mcpdsl.syntax.parser import closest

REPEATABLE = {
    "during_clause",
    "target_cpu",
    "target_memory",
    "target_metric",
    "quota_clause",
    "reserve_clause",
    "region_clause",
    "rule",
    "risk_block",
    "require_clause",
    "route_clause",
    "step_clause",
    "trust_header_clause",
    "cert_sds",
    "cert_file",
    "ca_sds",
    "ca_file",
    "jwks_url",
    "jwks_file",
    "select_clause",
}


class Clauses:
    """The clauses of one declaration by kind, with duplicate detection."""

    def __init__(self, ctx: Context, decl: Tree[Token]) -> None:
        self.ctx = ctx
        self.decl = decl
        self.by_kind: dict[str, list[Tree[Token]]] = {}
        for clause in trees(decl):
            if clause.data in ("ref",):
                continue
            self.by_kind.setdefault(str(clause.data), []).append(clause)
        for kind, found in self.by_kind.items():
            if kind not in REPEATABLE and len(found) > 1:
                for extra in found[1:]:
                    ctx.error(
                        "E0201",
                        f"duplicate `{_keyword(extra)}` clause",
                        extra,
                        label="second occurrence",
                        secondary=((found[0], "first occurrence"),),
                        help="remove one of them",
                    )

    def one(self, kind: str) -> Tree[Token] | None:
        found = self.by_kind.get(kind)
        return found[0] if found else None

    def all(self, kind: str) -> list[Tree[Token]]:
        return self.by_kind.get(kind, [])

    def require(self, kind: str, what: str, name: str) -> Tree[Token] | None:
        clause = self.one(kind)
        if clause is None:
            self.ctx.error(
                "E0202",
                f"{self.decl.data.removesuffix('_decl')} `{name}` has no `{what}` clause",
                _head(self.decl),
                label=f"missing `{what}`",
                help=f"add `{what} ...` inside the braces",
            )
        return clause


def _keyword(clause: Tree[Token]) -> str:
    tok = leading(clause)
    return str(tok) if isinstance(tok, Token) else str(clause.data)


def _head(decl: Tree[Token]) -> Token | Tree[Token]:
    """The declaration's name token (for labels that should not span the body)."""
    for c in decl.children:
        if isinstance(c, Token) and c.type in ("NAME", "STRING"):
            return c
        if isinstance(c, Tree) and c.data == "ref":
            return c
    return decl


def decl_name(decl: Tree[Token]) -> str:
    head = _head(decl)
    if isinstance(head, Tree):
        return ".".join(str(t) for t in tokens(head, "NAME"))
    return str(head)


def clause_value(clause: Tree[Token] | None, index: int = 0) -> Any:
    """The index-th non-keyword child of a clause (a token or subtree)."""
    if clause is None:
        return None
    values = [
        c
        for c in clause.children
        if c is not None and (isinstance(c, Tree) or c.type in VALUE_TOKENS)
    ]
    return values[index] if index < len(values) else None


VALUE_TOKENS = {"NUMBER", "QUANTITY", "STRING", "TIME", "NAME"}


def string_list(ctx: Context, node: Tree[Token] | None) -> tuple[str, ...]:
    """A list literal of strings (`regions`, `failover`, `hosts`)."""
    if node is None:
        return ()
    out: list[str] = []
    for item in node.children:
        if isinstance(item, Token) and item.type == "STRING":
            value = ctx.string(item)
            if value is not None:
                out.append(value)
        elif isinstance(item, (Tree, Token)) and not (
            isinstance(item, Token) and item.type in ("LBRACKET", "RBRACKET", "COMMA")
        ):
            ctx.error("E0301", "expected a string in this list", item)
    return tuple(out)


def word_list(ctx: Context, node: Tree[Token] | None) -> tuple[str, ...]:
    """A list of names, strings or quantities as text (`on [5xx, reset]`)."""
    if node is None:
        return ()
    out = []
    for item in node.children:
        if isinstance(item, Token) and item.type in ("NAME", "QUANTITY", "NUMBER"):
            out.append(str(item))
        elif isinstance(item, Token) and item.type == "STRING":
            out.append(ctx.string(item) or "")
    return tuple(out)


def string_object(ctx: Context, node: Tree[Token] | None) -> dict[str, str]:
    """A `{ key: "value" }` object of strings (labels, env, input schemas)."""
    out: dict[str, str] = {}
    if node is None:
        return out
    for pair in trees(node):
        key_node = part(pair, "key")
        key = (
            ctx.string(key_node)
            if isinstance(key_node, Token) and key_node.type == "STRING"
            else key_text(key_node)
        )
        value_node = part(pair, "value")
        if isinstance(value_node, Token) and value_node.type == "STRING":
            value = ctx.string(value_node)
        elif isinstance(value_node, Token) and value_node.type in ("NAME", "NUMBER", "QUANTITY"):
            value = str(value_node)
        elif isinstance(value_node, Tree) and value_node.data in ("true", "false"):
            value = str(value_node.data)
        else:
            ctx.error("E0301", "expected a string, name or number", value_node)
            continue
        if key is None or value is None:
            continue
        if key in out:
            ctx.error("E0201", f"duplicate key `{key}`", pair, label="second occurrence")
        out[key] = value
    return out


def check_percent(
    ctx: Context, node: Any, value: Decimal | None, *, allow_over: bool = False
) -> Decimal | None:
    if value is None:
        return None
    if value < 0 or (not allow_over and value > 1):
        ctx.error("E0303", f"percent `{node}` is out of bounds (0%..100%)", node)
        return None
    return value


def positive(ctx: Context, node: Any, value: Any, what: str) -> Any:
    if value is None:
        return None
    if value <= 0:
        ctx.error("E0303", f"{what} must be positive, found `{node}`", node)
        return None
    return value


def lower_limit(ctx: Context, clause: Tree[Token] | None) -> m.Limit | None:
    if clause is None:
        return None
    values = [ch for ch in clause.children if isinstance(ch, Token) and ch.type in VALUE_TOKENS]
    rate = ctx.read(values[0], limits.read_rate)
    if rate is not None and rate.amount <= 0:
        ctx.error("E0303", "a rate limit must be positive", values[0])
        rate = None
    burst = None
    key = None
    rest = values[1:]
    if first_token(clause, "BURST") is not None:
        burst = ctx.count(rest[0], 1, 10**9)
        rest = rest[1:]
    if first_token(clause, "PER") is not None and rest:
        key = str(rest[0])
        if key not in LIMIT_KEYS:
            _limit_key_error(ctx, rest[0], key)
            return None
    if rate is None:
        return None
    if burst is not None and burst < rate.amount and rate.per <= 1:
        ctx.error(
            "E0303",
            f"burst `{burst}` is below the rate `{values[0]}`",
            values[1],
            help="the burst is the bucket size; make it at least the rate per second",
        )
    return m.Limit(rate=rate, burst=burst, key=key, span=ctx.span(clause))


#: The `per KEY` forms of `limit` that every door enforces: the engine keys the
#: bucket by the caller's value, the Envoy gateway by the client's address.
LIMIT_KEYS = ("client-ip",)
#: Keys users write that name a verified identity; no generated artifact can
#: bucket by them yet (docs/language.md, "Rate limits per team or principal").
IDENTITY_LIMIT_KEYS = ("principal", "team", "user", "agent", "service", "tenant")


def _limit_key_error(ctx: Context, token: Token, key: str) -> None:
    """`limit ... per KEY` with a KEY no target enforces: an error, never a dropped limit."""
    if key in IDENTITY_LIMIT_KEYS:
        ctx.error(
            "E0315",
            f"`limit ... per {key}` cannot be enforced: gateways key rate limits only by "
            "`client-ip`",
            token,
            label="no bucket per " + key,
            help="use `per client-ip`, or no `per` for one bucket shared by everyone",
            notes=(
                f"a bucket per {key} needs the {key} verified at the gateway (a token claim or "
                "a trusted header), which the Envoy target does not key limits by yet",
            ),
        )
        return
    guess = closest(key, LIMIT_KEYS)
    ctx.error(
        "E0315",
        f"unknown limit key `{key}`",
        token,
        label="not a limit key",
        help=f"did you mean `{guess}`?" if guess else "the key is `client-ip`",
    )


# ------------------------------------------- clauses shared by several declarations


def lower_image(ctx: Context, clause: Tree[Token] | None) -> str | None:
    """`image "REF"` of a service, job or server: a reference a cluster can pull."""
    tok = clause_value(clause)
    text = ctx.string(tok)
    if text is not None and (not text or any(ch.isspace() for ch in text)):
        ctx.error("E0206", "image reference must be non-empty and contain no spaces", tok)
        return None
    problem = None if text is None else limits.image_problem(text)
    if problem is not None:
        ctx.error(
            limits.NOT_ACCEPTED,
            f"`{text}` is not a valid image reference: {problem}",
            tok,
            label="not an image reference",
            help='write it as "REGISTRY/PATH:TAG", e.g. "ghcr.io/acme/api:1.4"',
        )
        return None
    return text


def metric_name(ctx: Context, tok: Any) -> str | None:
    """A metric name Prometheus (and the HPA metrics API) accepts; else E0313."""
    name = ctx.string(tok)
    problem = None if name is None else limits.metric_name_problem(name)
    if problem is not None:
        ctx.error(
            limits.NOT_ACCEPTED,
            problem,
            tok,
            label="not a metric name",
            help="use letters, digits, `_` and `:`, not starting with a digit",
        )
        return None
    return name


def lower_replicas(ctx: Context, clause: Tree[Token] | None) -> tuple[int, int] | None:
    """`replicas MIN..MAX` of a `scale` or a `server`: int32 bounds, a maximum of at least 1."""
    bounds = lower_range(ctx, clause_value(clause), limits.read_int32)
    if bounds is not None and bounds[1] < 1:
        ctx.error("E0303", "maximum replicas must be at least 1", clause_value(clause))
        return None
    return bounds


def lower_targets(ctx: Context, c: Clauses) -> tuple[m.Target, ...]:
    """The `target cpu|memory P` and `target metric "NAME" N per pod` clauses (HPA metrics)."""
    targets: list[m.Target] = []
    for clause in c.all("target_cpu") + c.all("target_memory"):
        metric = "cpu" if clause.data == "target_cpu" else "memory"
        node = clause_value(clause)
        value = ctx.read(node, limits.read_percent)
        if value is not None and value > 0:
            targets.append(m.Target(metric=metric, value=value, span=ctx.span(clause)))
        elif value is not None:
            ctx.error("E0303", "a utilisation target must be above 0%", node)
    for clause in c.all("target_metric"):
        name = metric_name(ctx, clause_value(clause, 0))
        value = positive(
            ctx,
            clause_value(clause, 1),
            ctx.read(clause_value(clause, 1), limits.read_metric_target),
            "a metric target",
        )
        if name and value is not None:
            targets.append(m.Target(metric="pods", name=name, value=value, span=ctx.span(clause)))
    return tuple(targets)
