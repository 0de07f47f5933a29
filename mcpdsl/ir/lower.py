"""Lower: syntax trees of one file to IR declarations, reporting clause errors.

This stage knows the shape of every declaration kind: which clauses it takes,
which may repeat, which are required, and what unit each value has.  It does
not look across declarations; names are resolved by `resolve`, expression
types by `typecheck`.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo, available_timezones

from lark import Token, Tree

from mcpdsl.ir import model as m
from mcpdsl.ir import units
from mcpdsl.ir.common import (
    Context,
    child_tree,
    first_token,
    key_text,
    lower_entity,
    lower_range,
    lower_ref,
    tokens,
    trees,
)
from mcpdsl.ir.expr import lower_expr
from mcpdsl.ir.globs import glob_error
from mcpdsl.ir.settings import SettingsReader
from mcpdsl.ir.tests_lower import lower_test
from mcpdsl.syntax.parser import ParsedFile, closest

_REPEATABLE = {
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
}

STRATEGIES = ("round-robin", "least-request", "ring-hash", "maglev", "random")
DAYS = {
    "daily": (0, 1, 2, 3, 4, 5, 6),
    "weekdays": (0, 1, 2, 3, 4),
    "weekends": (5, 6),
    "mon": (0,),
    "tue": (1,),
    "wed": (2,),
    "thu": (3,),
    "fri": (4,),
    "sat": (5,),
    "sun": (6,),
}


def lower(parsed: ParsedFile) -> tuple[m.FileUnit | None, list[Any]]:
    """Lower one parsed file; returns the unit (None without a package) and diagnostics."""
    if parsed.package is None:
        return None, []
    name_tok = first_token(parsed.package, "NAME")
    package = str(name_tok) if name_tok is not None else "main"
    ctx = Context(parsed.source.path, package)
    imports: list[m.Import] = []
    decls: list[m.Decl] = []
    failed: list[tuple[str, str]] = []
    for item in parsed.items:
        kind = str(item.data)
        if kind == "import_decl":
            text = ctx.string(first_token(item, "STRING"))
            if text is not None:
                imports.append(m.Import(package=text, span=ctx.span(item)))
            continue
        lowerer = _LOWERERS.get(kind)
        if lowerer is None:  # pragma: no cover - the grammar admits no other item
            continue
        decl = lowerer(ctx, item)
        if decl is not None:
            decls.append(decl)
        else:
            failed.append((kind.removesuffix("_decl"), _name(item)))
    unit = m.FileUnit(
        path=parsed.source.path,
        package=package,
        imports=tuple(imports),
        decls=tuple(decls),
        failed=tuple(failed),
        span=ctx.span(parsed.package),
    )
    return unit, ctx.diagnostics


# ------------------------------------------------------------------ clauses


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
            if kind not in _REPEATABLE and len(found) > 1:
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
    tok = clause.children[0]
    return str(tok) if isinstance(tok, Token) else str(clause.data)


def _head(decl: Tree[Token]) -> Token | Tree[Token]:
    """The declaration's name token (for labels that should not span the body)."""
    for c in decl.children:
        if isinstance(c, Token) and c.type in ("NAME", "STRING"):
            return c
        if isinstance(c, Tree) and c.data == "ref":
            return c
    return decl


def _name(decl: Tree[Token]) -> str:
    head = _head(decl)
    if isinstance(head, Tree):
        return ".".join(str(t) for t in tokens(head, "NAME"))
    return str(head)


def _value(clause: Tree[Token] | None, index: int = 0) -> Any:
    """The index-th non-keyword child of a clause (a token or subtree)."""
    if clause is None:
        return None
    values = [
        c
        for c in clause.children
        if c is not None and (isinstance(c, Tree) or c.type in _VALUE_TOKENS)
    ]
    return values[index] if index < len(values) else None


_VALUE_TOKENS = {"NUMBER", "QUANTITY", "STRING", "TIME", "NAME"}


def _strings(ctx: Context, node: Tree[Token] | None) -> tuple[str, ...]:
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


def _words(ctx: Context, node: Tree[Token] | None) -> tuple[str, ...]:
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


def _object(ctx: Context, node: Tree[Token] | None) -> dict[str, str]:
    """A `{ key: "value" }` object of strings (labels, env, input schemas)."""
    out: dict[str, str] = {}
    if node is None:
        return out
    for pair in trees(node):
        key_node = pair.children[0]
        key = (
            ctx.string(key_node)
            if isinstance(key_node, Token) and key_node.type == "STRING"
            else key_text(key_node)
        )
        value_node = pair.children[-1]
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


def _zone(ctx: Context, node: Token | None) -> str:
    if node is None:
        return "UTC"
    text = ctx.string(node) if node.type == "STRING" else str(node)
    if text is None:
        return "UTC"
    if text == "UTC":
        return text
    try:
        ZoneInfo(text)
    except (ValueError, KeyError, OSError):
        guess = closest(text, available_timezones())
        ctx.error(
            "E0205",
            f"unknown time zone `{text}`",
            node,
            label="not an IANA zone",
            help=f'did you mean "{guess}"?'
            if guess
            else 'use an IANA name like "Europe/Stockholm"',
        )
    return text


def _window(ctx: Context, node: Tree[Token] | None) -> m.TimeWindow | None:
    if node is None:
        return None
    times = tokens(node, "TIME")
    zone_node = node.children[-1]
    zone = _zone(ctx, zone_node if isinstance(zone_node, Token) else None)
    minutes = []
    for tok in times:
        try:
            minutes.append(units.parse_time(str(tok)))
        except units.UnitError as exc:
            ctx.error(exc.code, str(exc), tok, label="not a time of day")
    if len(minutes) != 2:
        return None
    start, end = minutes
    if start == end:
        ctx.error("E0302", "time window is empty", node, label="start equals end")
        return None
    return m.TimeWindow(start=start, end=end, zone=zone, span=ctx.span(node))


def _check_percent(
    ctx: Context, node: Any, value: Decimal | None, *, allow_over: bool = False
) -> Decimal | None:
    if value is None:
        return None
    if value < 0 or (not allow_over and value > 1):
        ctx.error("E0303", f"percent `{node}` is out of bounds (0%..100%)", node)
        return None
    return value


def _positive(ctx: Context, node: Any, value: Any, what: str) -> Any:
    if value is None:
        return None
    if value <= 0:
        ctx.error("E0303", f"{what} must be positive, found `{node}`", node)
        return None
    return value


def _image(ctx: Context, clause: Tree[Token] | None) -> str | None:
    tok = _value(clause)
    text = ctx.string(tok)
    if text is not None and (not text or any(ch.isspace() for ch in text)):
        ctx.error("E0206", "image reference must be non-empty and contain no spaces", tok)
        return None
    return text


# ------------------------------------------------------------ declarations


def _service(ctx: Context, decl: Tree[Token]) -> m.Service | None:
    name = _name(decl)
    c = Clauses(ctx, decl)
    image = _image(ctx, c.require("image_clause", "image", name))
    port_clause = c.require("port_clause", "port", name)
    port = ctx.count(_value(port_clause), 1, 65535) if port_clause is not None else None
    cpu = ctx.read(_value(c.one("cpu_clause")), units.read_cpu)
    memory = ctx.read(_value(c.one("memory_clause")), units.read_bytes)
    gpu = ctx.count(_value(c.one("gpu_clause")), 0, 64) or 0
    identity = ctx.string(_value(c.one("identity_clause")))
    if identity is not None and not identity.startswith("spiffe://"):
        ctx.error(
            "E0206",
            "identity must be a SPIFFE id",
            _value(c.one("identity_clause")),
            help='write it as "spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/ACCOUNT"',
        )
    replicas = ctx.count(_value(c.one("replicas_clause")), 0, 10000)
    namespace = ctx.string(_value(c.one("namespace_clause"))) or ctx.package
    tier = _value(c.one("tier_clause"))
    if image is None or port is None:
        return None
    return m.Service(
        package=ctx.package,
        name=name,
        image=image,
        port=port,
        cpu=cpu,
        memory=memory,
        gpu=gpu,
        tier=str(tier) if tier is not None else None,
        regions=_strings(ctx, _value(c.one("regions_clause"))),
        identity=identity,
        labels=_object(ctx, _value(c.one("labels_clause"))),
        env=_object(ctx, _value(c.one("env_clause"))),
        pool=lower_ref(ctx, _value(c.one("pool_ref_clause"))),
        namespace=namespace,
        replicas=replicas,
        stateful=c.one("stateful_clause") is not None,
        span=ctx.span(decl),
    )


def _scale(ctx: Context, decl: Tree[Token]) -> m.Scale | None:
    name = _name(decl)
    c = Clauses(ctx, decl)
    replicas_clause = c.require("replicas_clause", "replicas", name)
    bounds = lower_range(ctx, _value(replicas_clause), units.read_count)
    if bounds is not None and bounds[1] < 1:
        ctx.error("E0303", "maximum replicas must be at least 1", _value(replicas_clause))
        bounds = None
    targets: list[m.Target] = []
    for clause in c.all("target_cpu") + c.all("target_memory"):
        metric = "cpu" if clause.data == "target_cpu" else "memory"
        node = _value(clause)
        value = ctx.read(node, units.read_percent)
        if value is not None and value > 0:
            targets.append(m.Target(metric=metric, value=value, span=ctx.span(clause)))
        elif value is not None:
            ctx.error("E0303", "a utilisation target must be above 0%", node)
    for clause in c.all("target_metric"):
        metric_name = ctx.string(_value(clause, 0))
        value = _positive(
            ctx,
            _value(clause, 1),
            ctx.read(_value(clause, 1), units.read_number),
            "a metric target",
        )
        if metric_name and value is not None:
            targets.append(
                m.Target(metric="pods", name=metric_name, value=value, span=ctx.span(clause))
            )
    up = down = None
    for clause in c.all("step_clause"):
        direction = str(clause.children[0])
        policy = _step(ctx, clause)
        if direction == "up":
            if up is not None:
                ctx.error("E0201", "duplicate `up` clause", clause, label="second occurrence")
            up = policy
        else:
            if down is not None:
                ctx.error("E0201", "duplicate `down` clause", clause, label="second occurrence")
            down = policy
    during = [d for d in (_during(ctx, clause) for clause in c.all("during_clause")) if d]
    predict = None
    if (pc := c.one("predict_clause")) is not None:
        metric_name = ctx.string(_value(pc, 0))
        horizon = _positive(
            ctx, _value(pc, 1), ctx.read(_value(pc, 1), units.read_duration), "horizon"
        )
        lookback = _positive(
            ctx, _value(pc, 2), ctx.read(_value(pc, 2), units.read_duration), "lookback"
        )
        if metric_name and horizon is not None and lookback is not None:
            predict = m.Predict(
                metric=metric_name, horizon=horizon, lookback=lookback, span=ctx.span(pc)
            )
    expected = ctx.count(_value(c.one("expected_clause")), 0, 100000)
    if bounds is None:
        return None
    if expected is not None and not bounds[0] <= expected <= bounds[1]:
        ctx.error(
            "E0303",
            f"expected replicas `{expected}` lie outside `replicas {bounds[0]}..{bounds[1]}`",
            _value(c.one("expected_clause")),
            label="outside the scaling range",
        )
        expected = None
    target_ref = lower_ref(ctx, child_tree(decl, "ref"))
    assert target_ref is not None
    return m.Scale(
        package=ctx.package,
        name=name,
        service=target_ref,
        min_replicas=bounds[0],
        max_replicas=bounds[1],
        targets=tuple(targets),
        up=up,
        down=down,
        during=tuple(during),
        predict=predict,
        expected=expected,
        span=ctx.span(decl),
    )


def _step(ctx: Context, clause: Tree[Token]) -> m.StepPolicy | None:
    amount_node = _value(clause, 0)
    has_pods = first_token(clause, "PODS") is not None
    amount: Decimal | int | None
    if has_pods:
        amount = ctx.read(amount_node, units.read_count)
        unit = "pods"
    else:
        amount = ctx.read(amount_node, units.read_percent)
        unit = "percent"
    amount = _positive(ctx, amount_node, amount, "a scaling step")
    period = _positive(
        ctx, _value(clause, 1), ctx.read(_value(clause, 1), units.read_duration), "a period"
    )
    stabilize = None
    if first_token(clause, "STABILIZE") is not None:
        stabilize = ctx.read(_value(clause, 2), units.read_duration)
        if stabilize is not None and stabilize > 3600:
            ctx.error(
                "E0303",
                "stabilisation windows are at most 1h (Kubernetes limit)",
                _value(clause, 2),
            )
            stabilize = None
    if amount is None or period is None:
        return None
    if period > 1800:
        ctx.error(
            "E0303", "a scaling policy period is at most 30m (Kubernetes limit)", _value(clause, 1)
        )
        return None
    return m.StepPolicy(
        amount=Decimal(amount),
        unit=cast(Any, unit),
        period=period,
        stabilize=stabilize,
        span=ctx.span(clause),
    )


def _during(ctx: Context, clause: Tree[Token]) -> m.During | None:
    days_tok = first_token(clause, "NAME")
    assert days_tok is not None
    days = DAYS.get(str(days_tok))
    if days is None:
        guess = closest(str(days_tok), tuple(DAYS))
        ctx.error(
            "E0204",
            f"unknown day set `{days_tok}`",
            days_tok,
            help=f"did you mean `{guess}`?" if guess else "use one of: " + ", ".join(DAYS),
        )
    window = _window(ctx, child_tree(clause, "time_window"))
    reader = SettingsReader(ctx, child_tree(clause, "settings"), "during")
    bounds = reader.range("replicas", units.read_count)
    reader.finish()
    if days is None or window is None:
        return None
    if bounds is None:
        ctx.error("E0202", "a `during` block needs `replicas LOW..HIGH`", clause)
        return None
    return m.During(
        days=days,
        window=window,
        min_replicas=bounds[0],
        max_replicas=bounds[1],
        span=ctx.span(clause),
    )


def _resources(reader: SettingsReader) -> m.Resources:
    return m.Resources(
        cpu=reader.value("cpu", units.read_cpu) or Decimal(0),
        memory=reader.value("memory", units.read_bytes) or 0,
        gpu=reader.value("gpu", units.read_count) or 0,
    )


def _pool(ctx: Context, decl: Tree[Token]) -> m.Pool | None:
    name = _name(decl)
    c = Clauses(ctx, decl)
    node_clause = c.require("node_clause", "node", name)
    shape = None
    if node_clause is not None:
        r = SettingsReader(ctx, child_tree(node_clause, "settings"), "node")
        cpu = r.value("cpu", units.read_cpu, required=True)
        memory = r.value("memory", units.read_bytes, required=True)
        gpu = r.value("gpu", units.read_count) or 0
        idle = r.value("idle", units.read_power)
        peak = r.value("peak", units.read_power)
        cost = r.value("cost", units.read_money_per_hour)
        r.finish()
        if idle is not None and peak is not None and idle > peak:
            ctx.error("E0302", "node idle power is above its peak power", node_clause)
        if cpu is not None and memory is not None:
            shape = m.NodeShape(
                cpu=cpu,
                memory=memory,
                gpu=gpu,
                idle_watts=idle,
                peak_watts=peak,
                cost_per_hour=cost,
                span=ctx.span(node_clause),
            )
    nodes_clause = c.require("nodes_clause", "nodes", name)
    bounds = lower_range(ctx, _value(nodes_clause), units.read_count)
    quotas = []
    for clause in c.all("quota_clause"):
        team = ctx.string(_value(clause, 0))
        r = SettingsReader(ctx, child_tree(clause, "settings"), "quota")
        res = _resources(r)
        r.finish()
        if team is not None:
            quotas.append(m.Quota(team=team, resources=res, span=ctx.span(clause)))
    reservations = []
    for clause in c.all("reserve_clause"):
        ref = lower_ref(ctx, child_tree(clause, "ref"))
        r = SettingsReader(ctx, child_tree(clause, "settings"), "reserve")
        res = _resources(r)
        r.finish()
        if ref is not None:
            reservations.append(m.Reservation(service=ref, resources=res, span=ctx.span(clause)))
    tier = _value(c.one("tier_clause"))
    if shape is None or bounds is None:
        return None
    return m.Pool(
        package=ctx.package,
        name=name,
        tier=str(tier) if tier is not None else None,
        node=shape,
        min_nodes=bounds[0],
        max_nodes=bounds[1],
        quotas=tuple(quotas),
        reservations=tuple(reservations),
        regions=_strings(ctx, _value(c.one("regions_clause"))),
        span=ctx.span(decl),
    )


def _limit(ctx: Context, clause: Tree[Token] | None) -> m.Limit | None:
    if clause is None:
        return None
    values = [ch for ch in clause.children if isinstance(ch, Token) and ch.type in _VALUE_TOKENS]
    rate = ctx.read(values[0], units.read_rate)
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


def _balance(ctx: Context, decl: Tree[Token]) -> m.Balance | None:
    name = _name(decl)
    c = Clauses(ctx, decl)
    strategy = "round-robin"
    if (sc := c.one("strategy_clause")) is not None:
        tok = _value(sc)
        if str(tok) in STRATEGIES:
            strategy = str(tok)
        else:
            guess = closest(str(tok), STRATEGIES)
            ctx.error(
                "E0204",
                f"unknown strategy `{tok}`",
                tok,
                label="not a strategy",
                help=f"did you mean `{guess}`?"
                if guess
                else "use one of: " + ", ".join(STRATEGIES),
            )
    affinity = None
    if (ac := c.one("affinity_clause")) is not None:
        source = str(_value(ac, 0))
        key = ctx.string(_value(ac, 1))
        ttl = ctx.read(_value(ac, 2), units.read_duration) if _value(ac, 2) is not None else None
        if source not in ("cookie", "header"):
            ctx.error(
                "E0204",
                f"unknown affinity source `{source}`",
                _value(ac, 0),
                help="use `cookie` or `header`",
            )
        elif key is not None:
            affinity = m.Affinity(source=cast(Any, source), key=key, ttl=ttl, span=ctx.span(ac))
    health = None
    if (hc := c.one("health_clause")) is not None:
        health = _health(ctx, hc)
    eject = None
    if (ec := c.one("eject_clause")) is not None:
        errors = ctx.count(_value(ec, 0), 1, 1000)
        duration = _positive(
            ctx, _value(ec, 1), ctx.read(_value(ec, 1), units.read_duration), "an ejection time"
        )
        max_percent = None
        if _value(ec, 2) is not None:
            max_percent = _check_percent(
                ctx, _value(ec, 2), ctx.read(_value(ec, 2), units.read_percent)
            )
        if errors is not None and duration is not None:
            eject = m.Ejection(
                errors=errors, duration=duration, max_percent=max_percent, span=ctx.span(ec)
            )
    ref = lower_ref(ctx, child_tree(decl, "ref"))
    assert ref is not None
    return m.Balance(
        package=ctx.package,
        name=name,
        service=ref,
        strategy=cast(Any, strategy),
        affinity=affinity,
        health=health,
        eject=eject,
        failover=_strings(ctx, _value(c.one("failover_clause"))),
        limit=_limit(ctx, c.one("limit_clause")),
        span=ctx.span(decl),
    )


def _health(ctx: Context, clause: Tree[Token]) -> m.HealthCheck | None:
    values = [ch for ch in clause.children if isinstance(ch, Token) and ch.type in _VALUE_TOKENS]
    protocol = str(values[0])
    rest = values[1:]
    path = None
    if rest and rest[0].type == "STRING":
        path = ctx.string(rest[0])
        rest = rest[1:]
        if path is not None and not path.startswith("/"):
            ctx.error("E0206", "a health check path must start with `/`", values[1])
    if protocol not in ("http", "tcp", "grpc"):
        ctx.error(
            "E0204",
            f"unknown health check protocol `{protocol}`",
            values[0],
            help="use `http`, `tcp` or `grpc`",
        )
        return None
    if protocol == "http" and path is None:
        path = "/"
    interval = _positive(
        ctx, rest[0], ctx.read(rest[0], units.read_duration), "a health check interval"
    )
    timeout = _positive(
        ctx, rest[1], ctx.read(rest[1], units.read_duration), "a health check timeout"
    )
    healthy = ctx.count(rest[2], 1, 100)
    unhealthy = ctx.count(rest[3], 1, 100)
    if None in (interval, timeout, healthy, unhealthy):
        return None
    assert interval is not None and timeout is not None
    if timeout > interval:
        ctx.error("E0302", "health check timeout is longer than its interval", rest[1])
    return m.HealthCheck(
        protocol=cast(Any, protocol),
        path=path,
        interval=interval,
        timeout=timeout,
        healthy=cast(int, healthy),
        unhealthy=cast(int, unhealthy),
        span=ctx.span(clause),
    )


_PERIODS = ("day", "week", "month", "year")


def _carbon(ctx: Context, decl: Tree[Token]) -> m.Carbon | None:
    name = _name(decl)
    c = Clauses(ctx, decl)
    budget = None
    if (bc := c.one("budget_clause")) is not None:
        mass = _positive(ctx, _value(bc, 0), ctx.read(_value(bc, 0), units.read_mass), "a budget")
        period = str(_value(bc, 1))
        if period not in _PERIODS:
            ctx.error(
                "E0204",
                f"unknown budget period `{period}`",
                _value(bc, 1),
                help="use day, week, month or year",
            )
        elif mass is not None:
            budget = m.Budget(mass_kg=mass, period=cast(Any, period), span=ctx.span(bc))
    renewable = None
    if (rc := c.one("renewable_clause")) is not None:
        renewable = _check_percent(ctx, _value(rc), ctx.read(_value(rc), units.read_percent))
    regions = []
    seen: dict[str, Tree[Token]] = {}
    for clause in c.all("region_clause"):
        region = ctx.string(_value(clause, 0))
        r = SettingsReader(ctx, child_tree(clause, "settings"), "region")
        intensity = r.value("intensity", units.read_intensity, required=True)
        share = r.value("renewable", units.read_percent)
        pue = r.value("pue", units.read_number)
        r.finish()
        if share is not None and share > 1:
            ctx.error("E0303", "renewable share is above 100%", clause)
        if pue is not None and pue < 1:
            ctx.error("E0303", f"PUE must be at least 1.0, found `{pue}`", clause)
        if region is None or intensity is None:
            continue
        if region in seen:
            ctx.error(
                "E0201",
                f"region `{region}` appears twice",
                clause,
                secondary=((seen[region], "first here"),),
            )
            continue
        seen[region] = clause
        regions.append(
            m.CarbonRegion(
                region=region, intensity=intensity, renewable=share, pue=pue, span=ctx.span(clause)
            )
        )
    intensity_file = ctx.string(_value(c.one("intensity_from_clause")))
    return m.Carbon(
        package=ctx.package,
        name=name,
        budget=budget,
        renewable_min=renewable,
        intensity_file=intensity_file,
        regions=tuple(regions),
        span=ctx.span(decl),
    )


def _job(ctx: Context, decl: Tree[Token]) -> m.Job | None:
    name = _name(decl)
    c = Clauses(ctx, decl)
    image = _image(ctx, c.require("image_clause", "image", name))
    runs_clause = c.require("runs_clause", "runs", name)
    runs = _positive(
        ctx, _value(runs_clause), ctx.read(_value(runs_clause), units.read_duration), "a run time"
    )
    window_clause = c.require("window_clause", "window", name)
    window = _window(ctx, child_tree(window_clause, "time_window")) if window_clause else None
    deadline = None
    if window_clause is not None and first_token(window_clause, "DEADLINE") is not None:
        node = [
            ch
            for ch in window_clause.children
            if isinstance(ch, Token) and ch.type in _VALUE_TOKENS
        ][-1]
        deadline = _positive(ctx, node, ctx.read(node, units.read_duration), "a deadline")
        if deadline is not None and runs is not None and deadline < runs:
            ctx.error(
                "E0302", "the deadline is shorter than the run time", node, label="no run fits"
            )
    energy = ctx.read(_value(c.one("energy_clause")), units.read_energy)
    if image is None or runs is None or window is None:
        return None
    return m.Job(
        package=ctx.package,
        name=name,
        image=image,
        cpu=ctx.read(_value(c.one("cpu_clause")), units.read_cpu),
        memory=ctx.read(_value(c.one("memory_clause")), units.read_bytes),
        gpu=ctx.count(_value(c.one("gpu_clause")), 0, 64) or 0,
        energy_kwh=energy,
        runs=runs,
        window=window,
        deadline=deadline,
        regions=_strings(ctx, _value(c.one("regions_clause"))),
        carbon=lower_ref(
            ctx,
            _carbon_ref_tree(c.one("carbon_ref_clause")),
        ),
        pool=lower_ref(ctx, _value(c.one("pool_ref_clause"))),
        namespace=ctx.string(_value(c.one("namespace_clause"))) or ctx.package,
        span=ctx.span(decl),
    )


def _carbon_ref_tree(clause: Tree[Token] | None) -> Tree[Token] | None:
    return None if clause is None else child_tree(clause, "ref")


def _policy(ctx: Context, decl: Tree[Token]) -> m.Policy | None:
    name = _name(decl)
    c = Clauses(ctx, decl)
    default = "deny"
    if (dc := c.one("default_clause")) is not None:
        default = str(dc.children[1])
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
            weight = ctx.read(term.children[0], units.read_number)
            cond = lower_expr(ctx, term.children[2])
            if weight is not None and weight > 1:
                ctx.error("E0303", "a risk weight is at most 1", term.children[0])
            elif weight is not None and cond is not None:
                risk.append(m.RiskTerm(weight=weight, condition=cond, span=ctx.span(term)))
    requires = []
    for clause in c.all("require_clause"):
        obligation = str(clause.children[1])
        cond = lower_expr(ctx, clause.children[3]) if clause.children[3] is not None else None
        if clause.children[3] is not None and cond is None:
            continue
        requires.append(m.Requirement(obligation=obligation, condition=cond, span=ctx.span(clause)))
    return m.Policy(
        package=ctx.package,
        name=name,
        default=cast(Any, default),
        rules=tuple(rules),
        risk=tuple(risk),
        requires=tuple(requires),
        span=ctx.span(decl),
    )


def _rule(ctx: Context, rule: Tree[Token], index: int) -> m.Rule | None:
    kids = rule.children
    label = kids[0]
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
        actions = tuple(str(cast(Tree[Token], a).children[0]) for a in trees(on))
        if "*" in actions:
            actions = ()
        path_tok = on.children[-1]
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
        expr = lower_expr(ctx, cond_tree.children[1])
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


def _integration(ctx: Context, decl: Tree[Token]) -> m.Integration | None:
    name = _name(decl)
    c = Clauses(ctx, decl)
    tool = None
    schema: dict[str, str] = {}
    if (ec := c.one("expose_clause")) is not None:
        tool = ctx.string(_value(ec, 0))
        schema = _object(ctx, child_tree(ec, "object"))
        for key, typ in schema.items():
            if typ not in ("string", "number", "boolean", "object", "array"):
                ctx.error(
                    "E0204",
                    f"unknown input type `{typ}` for `{key}`",
                    ec,
                    help="use string, number, boolean, object or array",
                )
    call = c.require("call_clause", "call", name)
    method = str(_value(call, 0)) if call is not None else "GET"
    url = ctx.string(_value(call, 1)) if call is not None else None
    if call is not None and method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"):
        ctx.error("E0204", f"unknown HTTP method `{method}`", _value(call, 0))
    if url is not None and not (url.startswith("https://") or url.startswith("http://")):
        ctx.error("E0206", "the call URL must start with `http://` or `https://`", _value(call, 1))
        url = None
    timeout = _positive(
        ctx,
        _value(c.one("timeout_clause")),
        ctx.read(_value(c.one("timeout_clause")), units.read_duration),
        "a timeout",
    )
    retry = None
    if (rc := c.one("retry_clause")) is not None:
        attempts = ctx.count(_value(rc, 0), 0, 10)
        backoff = None
        vals = [ch for ch in rc.children if ch is not None]
        for i, ch in enumerate(vals):
            if isinstance(ch, Token) and ch.type == "BACKOFF":
                backoff = lower_range(ctx, vals[i + 1], units.read_duration)
        on = _words(ctx, child_tree(rc, "list"))
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
            target = tuple(key_text(mapping.children[0]).split("."))
            expr = lower_expr(ctx, mapping.children[2])
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
        description=ctx.string(_value(c.one("description_clause"))),
        method=method.upper(),
        url=url,
        timeout=timeout,
        retry=retry,
        limit=_limit(ctx, c.one("limit_clause")),
        mappings=tuple(mappings),
        span=ctx.span(decl),
    )


_RETRY_ON = ("5xx", "reset", "connect-failure", "retriable-4xx", "refused-stream", "gateway-error")


def _gateway(ctx: Context, decl: Tree[Token]) -> m.Gateway | None:
    name = _name(decl)
    c = Clauses(ctx, decl)
    listen = c.require("listen_clause", "listen", name)
    port = ctx.count(_value(listen), 1, 65535) if listen is not None else None
    routes = []
    for clause in c.all("route_clause"):
        path_tok = clause.children[1]
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
                rewrite = ctx.string(option.children[1])
                if rewrite is not None and not rewrite.startswith("/"):
                    ctx.error("E0206", "a rewrite must start with `/`", option.children[1])
            elif option.data == "timeout_option":
                timeout = _positive(
                    ctx,
                    option.children[1],
                    ctx.read(option.children[1], units.read_duration),
                    "a timeout",
                )
            elif option.data == "retry_option":
                retries = ctx.count(option.children[1], 0, 10)
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
    if port is None:
        return None
    return m.Gateway(
        package=ctx.package,
        name=name,
        port=port,
        hosts=_strings(ctx, _value(c.one("hosts_clause"))),
        routes=tuple(routes),
        limit=_limit(ctx, c.one("limit_clause")),
        span=ctx.span(decl),
    )


_LOWERERS: dict[str, Callable[[Context, Tree[Token]], m.Decl | None]] = {
    "service_decl": _service,
    "scale_decl": _scale,
    "pool_decl": _pool,
    "balance_decl": _balance,
    "carbon_decl": _carbon,
    "job_decl": _job,
    "policy_decl": _policy,
    "integration_decl": _integration,
    "gateway_decl": _gateway,
    "test_decl": lower_test,
}
