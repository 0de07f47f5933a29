"""Lower: syntax trees of one file to IR declarations, reporting clause errors.

Workload declarations are lowered here; `policy`, `integration` and `gateway`
in `lower_access.py`, both on the clause layer of `clauses.py`.  This stage
knows the shape of every declaration kind: which clauses it takes,
which may repeat, which are required, and what unit each value has.  It does
not look across declarations; names are resolved by `resolve`, expression
types by `typecheck`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo, available_timezones

from lark import Token, Tree

from mcpdsl.ir import limits, units
from mcpdsl.ir import model as m
from mcpdsl.ir.clauses import (
    VALUE_TOKENS,
    Clauses,
    check_percent,
    clause_value,
    decl_name,
    lower_image,
    lower_limit,
    lower_replicas,
    lower_targets,
    metric_name,
    positive,
    string_list,
    string_object,
)
from mcpdsl.ir.common import (
    Context,
    child_tree,
    first_token,
    lower_range,
    lower_ref,
    tokens,
)
from mcpdsl.ir.lower_access import lower_gateway, lower_integration, lower_policy
from mcpdsl.ir.lower_identity import lower_mesh, lower_provider
from mcpdsl.ir.lower_server import lower_server
from mcpdsl.ir.parts import part
from mcpdsl.ir.settings import SettingsReader
from mcpdsl.ir.tests_lower import lower_test
from mcpdsl.ir.workload import parse_spiffe
from mcpdsl.syntax.parser import ParsedFile, closest

ACCESS_MODES = ("ReadWriteOnce", "ReadWriteOncePod", "ReadOnlyMany", "ReadWriteMany")
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
            failed.append((kind.removesuffix("_decl"), decl_name(item)))
    unit = m.FileUnit(
        path=parsed.source.path,
        package=package,
        imports=tuple(imports),
        decls=tuple(decls),
        failed=tuple(failed),
        span=ctx.span(parsed.package),
    )
    return unit, ctx.diagnostics


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
    zone_node = part(node, "zone")
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


#: `image` and metric names are read as every declaration reads them (clauses.py).
_image = lower_image
_metric_name = metric_name


# ------------------------------------------------------------ declarations


def _service(ctx: Context, decl: Tree[Token]) -> m.Service | None:
    name = decl_name(decl)
    c = Clauses(ctx, decl)
    image = _image(ctx, c.require("image_clause", "image", name))
    port_clause = c.require("port_clause", "port", name)
    port = ctx.count(clause_value(port_clause), 1, 65535) if port_clause is not None else None
    cpu = ctx.read(clause_value(c.one("cpu_clause")), limits.read_cpu)
    memory = ctx.read(clause_value(c.one("memory_clause")), limits.read_memory)
    gpu = ctx.count(clause_value(c.one("gpu_clause")), 0, 64) or 0
    identity = ctx.string(clause_value(c.one("identity_clause")))
    if identity is not None and not identity.startswith("spiffe://"):
        ctx.error(
            "E0206",
            "identity must be a SPIFFE id",
            clause_value(c.one("identity_clause")),
            help='write it as "spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/ACCOUNT"',
        )
    _account_fits(ctx, identity, clause_value(c.one("identity_clause")))
    replicas = ctx.count(clause_value(c.one("replicas_clause")), 0, 10000)
    namespace = ctx.string(clause_value(c.one("namespace_clause"))) or ctx.package
    tier = clause_value(c.one("tier_clause"))
    labels = string_object(ctx, clause_value(c.one("labels_clause")))
    stateful = c.one("stateful_clause") is not None
    storage = _storage(ctx, c.one("storage_clause"), stateful)
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
        regions=string_list(ctx, clause_value(c.one("regions_clause"))),
        identity=identity,
        labels=labels,
        env=string_object(ctx, clause_value(c.one("env_clause"))),
        pool=lower_ref(ctx, clause_value(c.one("pool_ref_clause"))),
        namespace=namespace,
        replicas=replicas,
        stateful=stateful,
        team=_team(ctx, c.one("team_clause")) or labels.get("team"),
        storage=storage,
        span=ctx.span(decl),
    )


def _account_fits(ctx: Context, identity: str | None, node: Any) -> None:
    """The service account a SPIFFE id names becomes a ServiceAccount: it must be a name."""
    parsed = parse_spiffe(identity) if identity is not None else None
    if parsed is not None and not limits.is_dns_subdomain(parsed.service_account):
        ctx.error(
            "E0313",
            "the service account of this identity is longer than a Kubernetes name allows",
            node,
            help="a ServiceAccount name has at most 253 characters",
        )


def _team(ctx: Context, clause: Tree[Token] | None) -> str | None:
    """`team "T"`; an empty name would own nothing, so it is refused."""
    if clause is None:
        return None
    team = ctx.string(clause_value(clause))
    if team is not None and not team.strip():
        ctx.error("E0206", "team name is empty", clause_value(clause), help='write `team "NAME"`')
        return None
    return team


def _storage(ctx: Context, clause: Tree[Token] | None, stateful: bool) -> m.Storage | None:
    """`storage { size, class, access, path }`: validated so that the PVC template applies."""
    if clause is None:
        return None
    r = SettingsReader(ctx, child_tree(clause, "settings"), "storage")
    size = r.value("size", limits.read_memory, required=True)
    size_node = r.raw("size")
    class_node = r.raw("class")
    access_node = r.raw("access")
    path_node = r.raw("path")
    klass = ctx.string(class_node)
    access = ctx.string(access_node)
    path = ctx.string(path_node)
    r.finish()
    ok = True
    if size is not None and size <= 0:
        ctx.error("E0303", "storage size must be above 0", size_node, help="write e.g. `size 20Gi`")
        ok = False
    if klass is not None and not limits.is_dns_subdomain(klass):
        ctx.error(
            "E0313",
            f"storage class {_quoted(klass)} is not a Kubernetes object name",
            class_node,
            help="lowercase letters, digits, `-` and `.` (at most 253 characters)",
        )
        ok = False
    if access is not None and access not in ACCESS_MODES:
        guess = closest(access, ACCESS_MODES)
        ctx.error(
            "E0204",
            f"unknown access mode {_quoted(access)}",
            access_node,
            help=f"did you mean `{guess}`?"
            if guess
            else "one of " + ", ".join(f"`{a}`" for a in ACCESS_MODES),
        )
        ok = False
    if path is not None and not limits.is_mount_path(path):
        ctx.error(
            "E0206",
            f"storage path {_quoted(path)} is not an absolute path",
            path_node,
            help='write an absolute path without `..` or `:`, e.g. `path "/var/lib/data"`',
        )
        ok = False
    if not stateful:
        ctx.error(
            "E0209",
            "`storage` on a service that is not `stateful`",
            clause,
            label="a Deployment has no per-pod volumes",
            help="add `stateful` (the service becomes a StatefulSet) or remove `storage`",
        )
        ok = False
    if size is None or not ok:
        return None
    return m.Storage(
        size=size,
        storage_class=klass,
        access=cast(Any, access or "ReadWriteOnce"),
        path=path or "/data",
        span=ctx.span(clause),
    )


def _quoted(text: str) -> str:
    """A user string in a message: JSON-quoted, so control characters stay visible."""
    return json.dumps(text, ensure_ascii=False)


def _scale(ctx: Context, decl: Tree[Token]) -> m.Scale | None:
    name = decl_name(decl)
    c = Clauses(ctx, decl)
    bounds = lower_replicas(ctx, c.require("replicas_clause", "replicas", name))
    targets = lower_targets(ctx, c)
    up = _rules(ctx, c, "up")
    down = _rules(ctx, c, "down")
    during = [d for d in (_during(ctx, clause) for clause in c.all("during_clause")) if d]
    predict = None
    if (pc := c.one("predict_clause")) is not None:
        metric_name = _metric_name(ctx, clause_value(pc, 0))
        horizon = positive(
            ctx, clause_value(pc, 1), ctx.read(clause_value(pc, 1), limits.read_duration), "horizon"
        )
        lookback = positive(
            ctx,
            clause_value(pc, 2),
            ctx.read(clause_value(pc, 2), limits.read_duration),
            "lookback",
        )
        if metric_name and horizon is not None and lookback is not None:
            predict = m.Predict(
                metric=metric_name, horizon=horizon, lookback=lookback, span=ctx.span(pc)
            )
    expected = ctx.count(clause_value(c.one("expected_clause")), 0, 100000)
    if bounds is None:
        return None
    if expected is not None and not bounds[0] <= expected <= bounds[1]:
        ctx.error(
            "E0303",
            f"expected replicas `{expected}` lie outside `replicas {bounds[0]}..{bounds[1]}`",
            clause_value(c.one("expected_clause")),
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
        targets=targets,
        up=up,
        down=down,
        during=tuple(during),
        predict=predict,
        expected=expected,
        span=ctx.span(decl),
    )


def _rules(ctx: Context, c: Clauses, direction: str) -> m.ScaleRules | None:
    """One direction's `up`/`down` clauses: several policies, one window, one `select`."""
    clauses = [cl for cl in c.all("step_clause") if str(part(cl, "direction")) == direction]
    selects = [cl for cl in c.all("select_clause") if str(part(cl, "direction")) == direction]
    if not clauses and not selects:
        return None
    policies: list[m.StepPolicy] = []
    stabilize: Decimal | None = None
    window_clause: Tree[Token] | None = None
    for clause in clauses:
        policy, window = _step(ctx, clause)
        if policy is not None:
            policies.append(policy)
        if window is None:
            continue
        if window_clause is not None and window != stabilize:
            ctx.error(
                "E0201",
                f"conflicting `stabilize` windows for `{direction}`",
                clause,
                label="second window",
                secondary=((window_clause, "first window"),),
                help=f"an `{direction}` direction has one stabilisation window: keep one",
            )
            continue
        stabilize, window_clause = window, clause
    select = "max"
    for i, clause in enumerate(selects):
        choice = str(part(clause, "choice"))
        if i:
            ctx.error(
                "E0201",
                f"duplicate `{direction} select` clause",
                clause,
                label="second occurrence",
                secondary=((selects[0], "first occurrence"),),
                help="remove one of them",
            )
        elif choice not in ("max", "min", "disabled"):
            ctx.error(
                "E0303",
                f"unknown policy selection `{choice}`",
                clause,
                help="use `max` (the largest change), `min` (the smallest) or `disabled`",
            )
        else:
            select = choice
    return m.ScaleRules(
        policies=tuple(policies),
        select=cast(Any, select),
        stabilize=stabilize,
        span=ctx.span(clauses[0] if clauses else selects[0]),
    )


def _step(ctx: Context, clause: Tree[Token]) -> tuple[m.StepPolicy | None, Decimal | None]:
    """A policy and its `stabilize` window (Kubernetes ranges: period 1s..30m, window 0..1h)."""
    amount_node = clause_value(clause, 0)
    has_pods = first_token(clause, "PODS") is not None
    amount: Decimal | int | None
    if has_pods:
        amount = ctx.read(amount_node, limits.read_int32)
        unit = "pods"
    else:
        amount = ctx.read(amount_node, limits.read_percent)
        unit = "percent"
    amount = positive(ctx, amount_node, amount, "a scaling step")
    period = positive(
        ctx,
        clause_value(clause, 1),
        ctx.read(clause_value(clause, 1), units.read_duration),
        "a period",
    )
    stabilize = None
    if first_token(clause, "STABILIZE") is not None:
        stabilize = ctx.read(clause_value(clause, 2), units.read_duration)
        if stabilize is not None and stabilize > 3600:
            ctx.error(
                "E0303",
                "stabilisation windows are at most 1h (Kubernetes limit)",
                clause_value(clause, 2),
            )
            stabilize = None
        elif stabilize is not None and stabilize != stabilize.to_integral_value():
            ctx.error(
                "E0303",
                "a stabilisation window is whole seconds (Kubernetes `stabilizationWindowSeconds`)",
                clause_value(clause, 2),
                help=f"write `{math.ceil(stabilize)}s`",
            )
            stabilize = None
    if amount is None or period is None:
        return None, stabilize
    if period > 1800:
        ctx.error(
            "E0303",
            "a scaling policy period is at most 30m (Kubernetes limit)",
            clause_value(clause, 1),
        )
        return None, stabilize
    if period != period.to_integral_value():
        ctx.error(
            "E0303",
            "a scaling policy period is whole seconds (Kubernetes `periodSeconds`)",
            clause_value(clause, 1),
            help=f"write `{math.ceil(period)}s`",
        )
        return None, stabilize
    policy = m.StepPolicy(
        amount=Decimal(amount), unit=cast(Any, unit), period=period, span=ctx.span(clause)
    )
    return policy, stabilize


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
    bounds = reader.range("replicas", limits.read_int32)
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
        cpu=reader.value("cpu", limits.read_cpu) or Decimal(0),
        memory=reader.value("memory", limits.read_memory) or 0,
        gpu=reader.value("gpu", units.read_count) or 0,
    )


def _pool(ctx: Context, decl: Tree[Token]) -> m.Pool | None:
    name = decl_name(decl)
    c = Clauses(ctx, decl)
    node_clause = c.require("node_clause", "node", name)
    shape = None
    if node_clause is not None:
        r = SettingsReader(ctx, child_tree(node_clause, "settings"), "node")
        cpu = r.value("cpu", limits.read_cpu, required=True)
        memory = r.value("memory", limits.read_memory, required=True)
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
    bounds = lower_range(ctx, clause_value(nodes_clause), limits.read_int32)
    quotas = []
    for clause in c.all("quota_clause"):
        team = ctx.string(clause_value(clause, 0))
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
    tier = clause_value(c.one("tier_clause"))
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
        regions=string_list(ctx, clause_value(c.one("regions_clause"))),
        span=ctx.span(decl),
    )


def _balance(ctx: Context, decl: Tree[Token]) -> m.Balance | None:
    name = decl_name(decl)
    c = Clauses(ctx, decl)
    strategy = "round-robin"
    if (sc := c.one("strategy_clause")) is not None:
        tok = clause_value(sc)
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
        source = str(clause_value(ac, 0))
        key = ctx.string(clause_value(ac, 1))
        ttl = (
            ctx.read(clause_value(ac, 2), limits.read_duration)
            if clause_value(ac, 2) is not None
            else None
        )
        if source not in ("cookie", "header"):
            ctx.error(
                "E0204",
                f"unknown affinity source `{source}`",
                clause_value(ac, 0),
                help="use `cookie` or `header`",
            )
        elif key is not None:
            affinity = m.Affinity(source=cast(Any, source), key=key, ttl=ttl, span=ctx.span(ac))
    health = None
    if (hc := c.one("health_clause")) is not None:
        health = _health(ctx, hc)
    eject = None
    if (ec := c.one("eject_clause")) is not None:
        errors = ctx.count(clause_value(ec, 0), 1, 1000)
        duration = positive(
            ctx,
            clause_value(ec, 1),
            ctx.read(clause_value(ec, 1), limits.read_duration),
            "an ejection time",
        )
        max_percent = None
        if (node := _after(ec, "MAX")) is not None:
            max_percent = check_percent(ctx, node, ctx.read(node, units.read_percent))
        interval = None
        if (node := _after(ec, "EVERY")) is not None:
            interval = positive(
                ctx, node, ctx.read(node, limits.read_duration), "an ejection interval"
            )
        if errors is not None and duration is not None:
            eject = m.Ejection(
                errors=errors,
                duration=duration,
                max_percent=max_percent,
                interval=interval,
                span=ctx.span(ec),
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
        failover=string_list(ctx, clause_value(c.one("failover_clause"))),
        limit=lower_limit(ctx, c.one("limit_clause")),
        connections=_connections(ctx, c.one("connections_clause")),
        span=ctx.span(decl),
    )


#: `connections { ... }` keys of a `balance` -> ConnectionPool fields (Envoy uint32 counts).
CONNECTION_KEYS = {
    "max": "max_connections",
    "pending": "max_pending",
    "requests": "max_requests",
    "per-connection": "per_connection",
}


def _connections(ctx: Context, clause: Tree[Token] | None) -> m.ConnectionPool | None:
    """`connections { max N, pending N, requests N, per-connection N }`, each 1..2^32-1."""
    if clause is None:
        return None
    r = SettingsReader(ctx, child_tree(clause, "settings"), "connections")
    values: dict[str, int] = {}
    for key, field in CONNECTION_KEYS.items():
        node = r.raw(key)
        if node is not None:
            count = ctx.count(node, 1, 2**32 - 1)
            if count is not None:
                values[field] = count
    r.finish()
    if not values:
        if not r.entries:
            ctx.error(
                "E0202",
                "`connections` block sets nothing",
                clause,
                help="set `max`, `pending`, `requests` or `per-connection`",
            )
        return None
    return m.ConnectionPool(**values, span=ctx.span(clause))


def _after(clause: Tree[Token], keyword: str) -> Any:
    """The child right after the keyword token `keyword` (None when it is absent)."""
    kids = [ch for ch in clause.children if ch is not None]
    for i, ch in enumerate(kids[:-1]):
        if isinstance(ch, Token) and ch.type == keyword:
            return kids[i + 1]
    return None


def _health(ctx: Context, clause: Tree[Token]) -> m.HealthCheck | None:
    values = [ch for ch in clause.children if isinstance(ch, Token) and ch.type in VALUE_TOKENS]
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
    interval = positive(
        ctx, rest[0], ctx.read(rest[0], limits.read_probe_duration), "a health check interval"
    )
    timeout = positive(
        ctx, rest[1], ctx.read(rest[1], limits.read_probe_duration), "a health check timeout"
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
    name = decl_name(decl)
    c = Clauses(ctx, decl)
    budget = None
    if (bc := c.one("budget_clause")) is not None:
        mass = positive(
            ctx, clause_value(bc, 0), ctx.read(clause_value(bc, 0), units.read_mass), "a budget"
        )
        period = str(clause_value(bc, 1))
        if period not in _PERIODS:
            ctx.error(
                "E0204",
                f"unknown budget period `{period}`",
                clause_value(bc, 1),
                help="use day, week, month or year",
            )
        elif mass is not None:
            budget = m.Budget(mass_kg=mass, period=cast(Any, period), span=ctx.span(bc))
    renewable = None
    if (rc := c.one("renewable_clause")) is not None:
        renewable = check_percent(
            ctx, clause_value(rc), ctx.read(clause_value(rc), units.read_percent)
        )
    regions = []
    seen: dict[str, Tree[Token]] = {}
    for clause in c.all("region_clause"):
        region = ctx.string(clause_value(clause, 0))
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
    intensity_file = ctx.string(clause_value(c.one("intensity_from_clause")))
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
    name = decl_name(decl)
    c = Clauses(ctx, decl)
    image = _image(ctx, c.require("image_clause", "image", name))
    runs_clause = c.require("runs_clause", "runs", name)
    runs = positive(
        ctx,
        clause_value(runs_clause),
        ctx.read(clause_value(runs_clause), limits.read_job_duration),
        "a run time",
    )
    window_clause = c.require("window_clause", "window", name)
    window = _window(ctx, child_tree(window_clause, "time_window")) if window_clause else None
    deadline = None
    if window_clause is not None and first_token(window_clause, "DEADLINE") is not None:
        node = [
            ch for ch in window_clause.children if isinstance(ch, Token) and ch.type in VALUE_TOKENS
        ][-1]
        deadline = positive(ctx, node, ctx.read(node, limits.read_job_duration), "a deadline")
        if deadline is not None and runs is not None and deadline < runs:
            ctx.error(
                "E0302", "the deadline is shorter than the run time", node, label="no run fits"
            )
    energy = ctx.read(clause_value(c.one("energy_clause")), units.read_energy)
    if image is None or runs is None or window is None:
        return None
    return m.Job(
        package=ctx.package,
        name=name,
        image=image,
        cpu=ctx.read(clause_value(c.one("cpu_clause")), limits.read_cpu),
        memory=ctx.read(clause_value(c.one("memory_clause")), limits.read_memory),
        gpu=ctx.count(clause_value(c.one("gpu_clause")), 0, 64) or 0,
        energy_kwh=energy,
        runs=runs,
        window=window,
        deadline=deadline,
        regions=string_list(ctx, clause_value(c.one("regions_clause"))),
        carbon=lower_ref(
            ctx,
            _carbon_ref_tree(c.one("carbon_ref_clause")),
        ),
        pool=lower_ref(ctx, clause_value(c.one("pool_ref_clause"))),
        namespace=ctx.string(clause_value(c.one("namespace_clause"))) or ctx.package,
        team=_team(ctx, c.one("team_clause")),
        span=ctx.span(decl),
    )


def _carbon_ref_tree(clause: Tree[Token] | None) -> Tree[Token] | None:
    return None if clause is None else child_tree(clause, "ref")


_LOWERERS: dict[str, Callable[[Context, Tree[Token]], m.Decl | None]] = {
    "service_decl": _service,
    "scale_decl": _scale,
    "pool_decl": _pool,
    "balance_decl": _balance,
    "carbon_decl": _carbon,
    "job_decl": _job,
    "policy_decl": lower_policy,
    "integration_decl": lower_integration,
    "gateway_decl": lower_gateway,
    "provider_decl": lower_provider,
    "mesh_decl": lower_mesh,
    "server_decl": lower_server,
    "test_decl": lower_test,
}
