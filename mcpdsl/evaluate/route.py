"""`Engine.route`: which gateway route takes a request, and what the upstream sees.

The first route in declaration order whose glob matches the path (query
removed, `mcpdsl.ir.globs`) -- or, for `route prefix "P"`, whose path starts
with P as text --, whose method list (if any) contains the method (exact,
case-sensitive) and whose `header` / `query` conditions hold
(`mcpdsl.ir.paths.conditions_hold`: header names compared lower-cased, the
query split by `mcpdsl.evaluate.target.split_target`, as Envoy parses it) wins.  The rewrite is the Envoy target's own
definition (`mcpdsl.ir.paths.rewrite_path`), so the two agree by
construction: a `PREFIX/**` route with `rewrite R` replaces the matched PREFIX
(`/v1/**` rewrite `/`: `/v1/items` -> `/items`), any other rewrite replaces
the whole path, a route to an integration without `rewrite` takes the path of
the integration's call URL, and the query string is kept.  Timeouts and
retries fall back to the integration's `timeout` and `retry` as in Envoy
(`mcpdsl.ir.paths.effective_retry`, the Envoy target's own definition).
When the gateway lists `hosts` and a `host` (or `:authority`) header is given,
it must match one of them (Envoy virtual-host domain rules) or nothing routes.

Before anything else the path is normalised as the generated Envoy
connection manager does (`mcpdsl.ir.paths.normalize_request_path`:
`%2e` is `.`, a backslash is `/`, RFC 3986 dot segments removed, `//` merged; the
query is untouched); the route is matched on, and `RouteDecision.path`
rewritten from, the normalised path.  Contract of `route()`: a
`RouteDecision` when a route takes the request, None when none does (Envoy:
404), and `PathRejected` (a ValueError, `.status` 400, `.reason`) is raised
when Envoy answers the request itself before routing (an escaped slash
`%2F`/`%5C`, or `%00`) -- the same cases tests/compile/envoy_matcher.py
raises `RequestRejected` for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mcpdsl.evaluate.closures import path_matcher
from mcpdsl.evaluate.target import split_target
from mcpdsl.ir import globs
from mcpdsl.ir import model as m
from mcpdsl.ir.paths import PathRejected as PathRejected  # re-exported
from mcpdsl.ir.paths import conditions_hold, effective_retry, normalize_request_path
from mcpdsl.source import Span

Rewriter = Callable[[m.Route, str, "m.Integration | None"], str]


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where a gateway sends a request."""

    gateway: str
    target_kind: str  # "service" | "integration"
    target: str  # the target's name
    path: str  # the path the upstream sees (rewritten, query kept)
    timeout: Decimal | None  # seconds
    retries: int | None
    rate_limit_key: str | None  # the gateway's `admit()` key, when it has a `limit`
    limit_keys: tuple[str, ...] = ()  # every `admit()` key on the way (gateway, integration)
    index: int = 0  # 0-based position of the route in its gateway
    target_qualified: str = ""  # `package.name`
    span: Span | None = None
    retry_on: tuple[str, ...] = ()  # Envoy `retry_on` conditions, when `retries`
    per_try_timeout: Decimal | None = None  # seconds


def prefix_of(pattern: str) -> str | None:
    """PREFIX of a `PREFIX/**` pattern without other wildcards, else None."""
    segments = pattern.split("/")[1:]
    if segments and segments[-1] == "**" and all("*" not in s for s in segments[:-1]):
        return "".join("/" + s for s in segments[:-1])
    return None


def default_rewrite_path(
    route: m.Route, path: str, integration: m.Integration | None = None
) -> str:
    """The documented rewrite (fallback when the Envoy target's module is unavailable)."""
    if route.rewrite is None:
        return path
    bare = globs.strip_query(path)
    suffix = path[len(bare) :]
    prefix = prefix_of(route.path)
    if prefix is None:
        return route.rewrite + suffix
    new = route.rewrite.rstrip("/") + bare[len(prefix) :]
    return (new or "/") + suffix


def _rewriter() -> Rewriter:
    try:
        from mcpdsl.ir.paths import rewrite_path
    except ImportError:  # pragma: no cover - the Envoy target ships with the package
        return default_rewrite_path
    return rewrite_path  # type: ignore[no-any-return]


def domain_matches(domain: str, host: str) -> bool:
    """Envoy virtual-host domain matching (`*`, `*.suffix`, `prefix*`, exact; no case)."""
    domain, host = domain.lower(), host.lower()
    if domain == "*":
        return True
    if domain.startswith("*"):
        return host.endswith(domain[1:]) and len(host) > len(domain) - 1
    if domain.endswith("*"):
        return host.startswith(domain[:-1]) and len(host) > len(domain) - 1
    return domain == host


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    ir: m.Route
    match: Callable[[str], bool]
    methods: frozenset[str] | None
    integration: m.Integration | None
    timeout: Decimal | None
    retries: int | None
    keys: tuple[str, ...]
    target_qualified: str
    retry: m.Retry | None = None
    conditional: bool = False  # has `header` / `query` conditions


@dataclass(frozen=True, slots=True)
class PreparedGateway:
    ir: m.Gateway
    routes: tuple[CompiledRoute, ...]
    limit_key: str | None
    rewrite: Rewriter

    def route(
        self, method: str, path: str, headers: Mapping[str, str] | None = None
    ) -> RouteDecision | None:
        """The route taking the request, None (404); raises PathRejected (Envoy's 400)."""
        gw = self.ir
        path = normalize_request_path(path)
        if gw.hosts and headers:
            host = _header(headers, ":authority") or _header(headers, "host")
            if host is not None:
                if not host.endswith("]") and host.count(":") == 1:
                    host = host.rsplit(":", 1)[0]
                if not any(domain_matches(d, host) for d in gw.hosts):
                    return None
        lowered: dict[str, str] | None = None
        query: dict[str, str] | None = None
        for i, r in enumerate(self.routes):
            if r.methods is not None and method not in r.methods:
                continue
            if not r.match(path):
                continue
            if r.conditional:
                if lowered is None:
                    lowered = {}
                    for k, v in (headers or {}).items():
                        lowered.setdefault(k.lower(), v)
                    query = split_target(path)[1]
                assert query is not None
                if not conditions_hold(r.ir, lowered, query):
                    continue
            route = r.ir
            rewritten = path
            if route.rewrite is not None or r.integration is not None:
                rewritten = self.rewrite(route, path, r.integration)
            return RouteDecision(
                gateway=gw.name,
                target_kind=route.target.kind,
                target=route.target.ref.name,
                path=rewritten,
                timeout=r.timeout,
                retries=r.retries,
                rate_limit_key=self.limit_key,
                limit_keys=r.keys,
                index=i,
                target_qualified=r.target_qualified,
                span=route.span,
                retry_on=r.retry.on if r.retry is not None else (),
                per_try_timeout=r.retry.per_try_timeout if r.retry is not None else None,
            )
        return None


def prepare_gateway(gateway: m.Gateway, integrations: tuple[m.Integration, ...]) -> PreparedGateway:
    by_ref = {(i.package, i.name): i for i in integrations}
    limit_key = f"gateway:{gateway.name}" if gateway.limit is not None else None
    routes = []
    for r in gateway.routes:
        integration = None
        if r.target.kind == "integration":
            integration = by_ref.get((r.target.ref.package or gateway.package, r.target.ref.name))
        timeout = r.timeout
        if timeout is None and integration is not None:
            timeout = integration.timeout
        retry = effective_retry(r, integration)
        keys = [limit_key] if limit_key else []
        if integration is not None and integration.limit is not None:
            keys.append(f"integration:{integration.name}")
        routes.append(
            CompiledRoute(
                ir=r,
                match=_prefix_matcher(r.path) if r.prefix else path_matcher(r.path),
                methods=frozenset(r.methods) if r.methods else None,
                integration=integration,
                timeout=timeout,
                retries=retry.attempts if retry is not None else None,
                keys=tuple(keys),
                target_qualified=f"{r.target.ref.package or gateway.package}.{r.target.ref.name}",
                retry=retry,
                conditional=bool(r.headers or r.query),
            )
        )
    return PreparedGateway(gateway, tuple(routes), limit_key, _rewriter())


def _prefix_matcher(prefix: str) -> Callable[[str], bool]:
    """`route prefix "P"`: the path without its query starts with P (Envoy `prefix`)."""
    return lambda path: globs.strip_query(path).startswith(prefix)


def find(items: Mapping[str, Any], name: str, what: str) -> Any:
    if name in items:
        return items[name]
    names = ", ".join(sorted(k for k in items if "." not in k)) or "none"
    raise KeyError(f"no {what} `{name}` (known: {names})")
