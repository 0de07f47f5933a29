"""The Envoy target: one v3 Bootstrap (JSON) per `gateway`, at `envoy/<gateway>.json`.

    admin 127.0.0.1:9901
    listener 0.0.0.0:<listen>  -> http_connection_manager
        http_filters: local_ratelimit (gateway limit), local_ratelimit (route limits),
                      rbac deny, rbac allow (one per `default deny` policy),
                      ext_authz -> opa, router (always last)
        one virtual host (domains = `hosts` or *), routes in declaration order
    clusters: one per upstream (envoy_clusters), `opa` when a route is delegated (the
              tree's decision server, `server`, when it declares one; else OPA)

Paths and rewrites: `envoy_matchers` (their meaning: `mcpdsl.ir.paths`, shared
with the evaluator).  Access control per route: `envoy_authz`.  What is supported and why:
targets/envoy/README.md.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from functools import partial
from typing import Any

from mcpdsl.compile import Artifact, Enforcement, Status, TargetContext, TargetOutput
from mcpdsl.compile.envoy_authz import Resource, RouteAuthz, route_authz
from mcpdsl.compile.envoy_clusters import (
    HASHING,
    OPA_CLUSTER,
    cluster_names,
    duration,
    host_header,
    integration_cluster,
    opa_cluster,
    service_cluster,
)
from mcpdsl.compile.envoy_identity import (
    JWT_FILTER,
    JWT_METADATA_NAMESPACE,
    STRIP_FILTER,
    accepted,
    downstream_tls,
    jwt_authn,
    sds_cluster,
    strip_untrusted,
    stripped_headers,
    uses_sds,
)
from mcpdsl.compile.envoy_matchers import (
    condition_matchers,
    method_matcher,
    path_match,
    rewrite_action,
    valid_header_value,
)
from mcpdsl.compile.kubernetes_index import build_index
from mcpdsl.compile.serialize import dump_json
from mcpdsl.compile.server import SERVER
from mcpdsl.compile.tool_args import GATEWAY
from mcpdsl.ir import model as m
from mcpdsl.ir.door import door_mapping
from mcpdsl.ir.paths import effective_retry, rewrite_path, route_glob, route_rewrite

__all__ = ["NAME", "compile", "rewrite_path"]

NAME = "envoy"

ADMIN_ADDRESS = "127.0.0.1"
ADMIN_PORT = 9901
#: Per-client buckets kept per keyed limit (least recently used ones are dropped).
MAX_CLIENT_BUCKETS = 10000
#: How long ext_authz waits for OPA before failing closed (403).
OPA_TIMEOUT = "0.5s"

_T = "type.googleapis.com/"
HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "envoy.extensions.filters.http.router.v3.Router"
RBAC = "envoy.extensions.filters.http.rbac.v3.RBAC"
RBAC_PER_ROUTE = "envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
EXT_AUTHZ = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
EXT_AUTHZ_PER_ROUTE = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
LOCAL_RATELIMIT = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"

GATEWAY_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
ROUTE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit.route"
DENY_FILTER = "envoy.filters.http.rbac.deny"
#: A tree without access policies: an ALLOW filter with no policy (denies every request).
CLOSED_FILTER = "envoy.filters.http.rbac.closed"
ALLOW_FILTER = "envoy.filters.http.rbac.allow."
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
ROUTER_FILTER = "envoy.filters.http.router"

#: `limit ... per KEY` keys Envoy can bucket by, and the rate-limit action producing the key.
LIMIT_KEYS: dict[str, tuple[str, dict[str, Any]]] = {
    "client-ip": ("remote_address", {"remote_address": {}})
}


_LIMIT_HELP = "keys Envoy can bucket by: " + ", ".join(f"`{k}`" for k in LIMIT_KEYS)


class _Index:
    """Lookups over the project (declarations by package and name)."""

    def __init__(self, project: m.Project) -> None:
        self.project = project
        # The Kubernetes names of the tree: where each service's pods answer in DNS.
        self.pods = build_index(project)
        self.services = {(s.package, s.name): s for s in project.services}
        self.integrations = {(i.package, i.name): i for i in project.integrations}
        self.balances: dict[tuple[str, str], m.Balance] = {}
        for b in project.balances:
            key = (b.service.package or b.package, b.service.name)
            self.balances.setdefault(key, b)
        self.identities: dict[str, list[str | None]] = {}
        for s in project.services:
            self.identities.setdefault(s.name, []).append(s.identity)
        names = Counter(p.name for p in project.policies)
        self.policies = [
            (p.name if names[p.name] == 1 else p.qualified, p) for p in project.policies
        ]

    def target(self, t: m.RouteTarget) -> m.Service | m.Integration:
        key = (t.ref.package or "", t.ref.name)
        found = self.services.get(key) if t.kind == "service" else self.integrations.get(key)
        if found is None:  # the front end resolved every route target
            raise AssertionError(f"unresolved route target {t.kind} {t.ref}")
        return found


# ------------------------------------------------------------------ entry


def compile(project: m.Project, ctx: TargetContext) -> TargetOutput:
    """One bootstrap per gateway; enforcement records for every rule a route checks."""
    index = _Index(project)
    out = TargetOutput()
    names = Counter(g.name for g in project.gateways)
    for gateway in project.gateways:
        file = gateway.name if names[gateway.name] == 1 else gateway.qualified
        doc = _Gateway(gateway, index, ctx, out).bootstrap()
        out.artifacts.append(Artifact(f"envoy/{file}.json", dump_json(doc)))
    return out


def _pct100() -> dict[str, Any]:
    return {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}


def token_bucket(limit: m.Limit) -> dict[str, Any]:
    """`amount/per burst B`: B (or the amount) tokens, `amount` more every `per` seconds.

    A fractional amount is scaled to whole tokens over a longer interval
    (`0.5/s` -> 5 tokens every 10s), which keeps the average rate exact.
    """
    amount, per = limit.rate.amount, limit.rate.per
    scale = Decimal(1)
    while amount * scale != (amount * scale).to_integral_value():
        scale *= 10
    tokens = min(int(amount * scale), 2**32 - 1)
    return {
        "max_tokens": min(limit.burst or tokens, 2**32 - 1),
        "tokens_per_fill": tokens,
        "fill_interval": duration(per * scale),
    }


def local_ratelimit(limit: m.Limit, stat_prefix: str) -> dict[str, Any]:
    """An enabled, enforced LocalRateLimit; keyed limits get one bucket per key value."""
    bucket = token_bucket(limit)
    config: dict[str, Any] = {
        "@type": _T + LOCAL_RATELIMIT,
        "stat_prefix": stat_prefix,
        "token_bucket": bucket,
        "filter_enabled": _pct100(),
        "filter_enforced": _pct100(),
    }
    if limit.key is not None:
        descriptor_key, action = LIMIT_KEYS[limit.key]
        config.update(
            {
                # An empty value makes the descriptor dynamic: one bucket per client address.
                "descriptors": [
                    {"entries": [{"key": descriptor_key, "value": ""}], "token_bucket": bucket}
                ],
                "rate_limits": [{"actions": [action]}],
                "max_dynamic_descriptors": MAX_CLIENT_BUCKETS,
                "always_consume_default_token_bucket": False,
            }
        )
    return config


class _Gateway:
    """Builds the bootstrap of one gateway."""

    def __init__(
        self, gateway: m.Gateway, index: _Index, ctx: TargetContext, out: TargetOutput
    ) -> None:
        self.gw = gateway
        self.index = index
        self.ctx = ctx
        self.out = out
        self.where = f"gateway {gateway.name}"
        targets = [index.target(r.target) for r in gateway.routes]
        self.upstreams: list[m.Service | m.Integration] = []
        for t in targets:
            if t not in self.upstreams:
                self.upstreams.append(t)
        self.door = door_mapping(index.project, gateway)
        self.authz = [
            self._authz(i, r, t)
            for i, (r, t) in enumerate(zip(gateway.routes, targets, strict=True))
        ]
        self.delegated = any(a.delegated for a in self.authz)
        self.clusters = cluster_names(
            [u for u in self.upstreams if isinstance(u, m.Service)],
            [u for u in self.upstreams if isinstance(u, m.Integration)],
            self.delegated,
        )
        self.allow_labels = sorted({label for a in self.authz for label in a.allow})
        self.has_deny = any(a.deny for a in self.authz)
        self.route_limits = [
            self._limit(r, t) for r, t in zip(gateway.routes, targets, strict=True)
        ]
        self._note_shared_limits(targets)
        self.jwt, self.jwks_clusters = jwt_authn(
            index.project, accepted(index.project, gateway), out
        )

    def cluster_of(self, upstream: m.Service | m.Integration) -> str:
        return self.clusters[(upstream.kind, upstream.package, upstream.name)]

    # ------------------------------------------------------------ authz

    def _authz(self, i: int, route: m.Route, upstream: m.Service | m.Integration) -> RouteAuthz:
        named = self.door.routes[i]  # the resource the CheckRequest mapping gives the route
        resource = Resource(*named) if named is not None else Resource(None, None)
        where = f"{self.where}, route {route.path}"
        if route.prefix:
            # Rule relevance reasons in globs: a glob covering every path of the
            # prefix keeps every rule that can apply (the RBAC filters still
            # check each rule's own path), so nothing relevant is left out.
            route = route.model_copy(update={"path": route_glob(route), "prefix": False})
        server = self.index.pods.server()
        authz = route_authz(
            self.index.policies,
            resource,
            route,
            self.index.identities,
            where,
            self.door,
            "opa" if server is None else f"mcpdsl serve {server.name}",
        )
        for r in authz.records:
            record = Enforcement(rule=r.rule, target=NAME, where=r.where, status=r.status)
            if r.server and server is None:  # with a `server`, ext_authz is the one counting
                label, _, rule_id = r.rule.rpartition("/")
                policy = dict(self.index.policies)[label]
                rule = next(x for x in policy.rules if x.id == rule_id)
                SERVER.finding(self.out, record, rule, policy, r.span, f"at {r.site}", r.why)
                continue
            if r.gateway:  # its tool's arguments are an evaluation error here: fails closed
                label, _, rule_id = r.rule.rpartition("/")
                policy = dict(self.index.policies)[label]
                rule = next(x for x in policy.rules if x.id == rule_id)
                GATEWAY.finding(self.out, record, rule, policy, r.span, f"at {r.site}", r.why)
                continue
            if r.status is Status.ENFORCED:
                self.out.enforced(record, r.span)
                continue
            verb = "is not enforced" if r.status is Status.NOT_ENFORCED else "is narrowed"
            fails = "fails open" if r.status is Status.NOT_ENFORCED else "fails closed"
            self.out.enforced(
                record,
                r.span,
                message=f"{r.effect} rule `{r.rule}` {verb} at {r.site} ({fails})",
                why=(*r.why, f"there: {r.where}"),
                help="enforce it where the attributes exist (the embedded engine, or OPA "
                "queried with the whole request), or decide on what the gateway sees",
            )
        return authz

    # ----------------------------------------------------------- limits

    def _limit(self, route: m.Route, upstream: m.Service | m.Integration) -> m.Limit | None:
        if isinstance(upstream, m.Integration):
            limit = upstream.limit
        else:
            balance = self.index.balances.get((upstream.package, upstream.name))
            limit = balance.limit if balance else None
        if limit is not None and limit.key is not None and limit.key not in LIMIT_KEYS:
            self.out.unsupported(
                "B0110",
                f"`limit ... per {limit.key}` of {upstream.kind} `{upstream.name}` is not "
                f"expressible with Envoy's local rate limit; route `{route.path}` of "
                f"{self.where} has no limit",
                limit.span or upstream.span,
                label=f"not applied on route `{route.path}`",
                help=_LIMIT_HELP,
            )
            return None
        return limit

    def _note_shared_limits(self, targets: list[m.Service | m.Integration]) -> None:
        counts = Counter(
            (t.kind, t.package, t.name)
            for t, limit in zip(targets, self.route_limits, strict=True)
            if limit is not None
        )
        limits = {
            (t.kind, t.package, t.name): (t, limit)
            for t, limit in zip(targets, self.route_limits, strict=True)
            if limit is not None
        }
        for key, count in sorted(counts.items()):
            if count > 1:
                upstream, limit = limits[key]
                self.out.unsupported(
                    "B0111",
                    f"{upstream.kind} `{upstream.name}` is reached by {count} routes of "
                    f"{self.where}; Envoy keeps one rate-limit bucket per route, so together "
                    f"they admit up to {count} times its limit",
                    limit.span or upstream.span,
                    label=f"enforced per route, up to {count} times",
                )

    # ----------------------------------------------------------- routes

    def _route(self, i: int, route: m.Route, upstream: m.Service | m.Integration) -> dict[str, Any]:
        match: dict[str, Any] = (
            {"prefix": route.path} if route.prefix else dict(path_match(route.path))
        )
        headers, query = condition_matchers(route)
        if route.methods:
            headers.insert(0, method_matcher(route.methods))
        if headers:
            match["headers"] = headers
        if query:
            match["query_parameters"] = query
        action: dict[str, Any] = {"cluster": self.cluster_of(upstream)}
        integration = upstream if isinstance(upstream, m.Integration) else None
        rewrite = route_rewrite(route, integration)
        if integration is not None and route.rewrite is None and rewrite is None:
            self.out.unsupported(
                "B0112",
                f"route `{route.path}` of {self.where} cannot be mapped onto the URL template "
                f"of integration `{integration.name}`; it is forwarded unchanged",
                route.span or self.gw.span,
                help="add a `rewrite` to the route",
            )
        action.update(rewrite_action(rewrite, route.path, prefix=route.prefix))
        timeout = route.timeout if route.timeout is not None else getattr(upstream, "timeout", None)
        if timeout is not None:
            action["timeout"] = duration(timeout)
        retry = self._retry_policy(route, integration)
        if retry is not None:
            action["retry_policy"] = retry
        if integration is not None:
            action["host_rewrite_literal"] = host_header(integration.url)
        else:
            assert isinstance(upstream, m.Service)
            hashing = self._hash_policy(route, upstream)
            if hashing:
                action["hash_policy"] = hashing
        target = f"{upstream.package}.{upstream.name}"
        return {
            "name": f"{self.gw.name}/{i}",
            "match": match,
            "route": action,
            "metadata": {
                "filter_metadata": {
                    "mcpdsl": {
                        "gateway": self.gw.qualified,
                        "index": i,
                        "path": route.path,
                        "target_kind": upstream.kind,
                        "target": target,
                    }
                }
            },
            "typed_per_filter_config": self._per_route(i),
        }

    def _retry_policy(
        self, route: m.Route, integration: m.Integration | None
    ) -> dict[str, Any] | None:
        """`effective_retry` (the route's retry over the integration's) as a RetryPolicy."""
        retry = effective_retry(route, integration)
        if retry is None:
            return None
        policy: dict[str, Any] = {"num_retries": retry.attempts, "retry_on": ",".join(retry.on)}
        if retry.backoff_min is not None:
            top = retry.backoff_max if retry.backoff_max is not None else retry.backoff_min
            policy["retry_back_off"] = {
                "base_interval": duration(retry.backoff_min),
                "max_interval": duration(max(top, retry.backoff_min)),
            }
        if retry.per_try_timeout is not None:
            policy["per_try_timeout"] = duration(retry.per_try_timeout)
        return policy

    def _hash_policy(self, route: m.Route, service: m.Service) -> list[dict[str, Any]]:
        balance = self.index.balances.get((service.package, service.name))
        if balance is None or balance.affinity is None:
            return []
        affinity = balance.affinity
        if balance.strategy not in HASHING:
            self.out.unsupported(
                "B0113",
                f"affinity of `{service.name}` needs strategy `ring-hash` or `maglev`; route "
                f"`{route.path}` of {self.where} gets no hash policy",
                affinity.span or balance.span,
                label="requests are not sticky",
                help="add `strategy ring-hash` (or `maglev`) to the balance",
            )
            return []
        if not affinity.key or not valid_header_value(affinity.key):
            self.out.unsupported(
                "B0113",
                f"affinity key {json.dumps(affinity.key, ensure_ascii=False)} of "
                f"`{service.name}` is not usable; route `{route.path}` of {self.where} gets "
                "no hash policy",
                affinity.span or balance.span,
                label="requests are not sticky",
            )
            return []
        if affinity.source == "cookie":
            cookie: dict[str, Any] = {"name": affinity.key}
            if affinity.ttl is not None:
                cookie["ttl"] = duration(affinity.ttl)
            return [{"cookie": cookie}]
        return [{"header": {"header_name": affinity.key.lower()}}]

    def _per_route(self, i: int) -> dict[str, Any]:
        authz = self.authz[i]
        config: dict[str, Any] = {}
        limit = self.route_limits[i]
        if limit is not None:
            config[ROUTE_LIMIT_FILTER] = local_ratelimit(limit, "route_limit")
        if self.has_deny:
            config[DENY_FILTER] = _rbac_per_route("DENY", authz.deny)
        for label in self.allow_labels:
            config[ALLOW_FILTER + label] = _rbac_per_route(
                "ALLOW", authz.allow.get(label), disabled=label not in authz.allow
            )
        if self.delegated:
            if authz.delegated:
                resource = authz.resource
                extensions = {"mcpdsl.gateway": self.gw.qualified, "mcpdsl.route": str(i)}
                if resource.type is not None and resource.id is not None:
                    extensions["mcpdsl.resource.type"] = resource.type
                    extensions["mcpdsl.resource.id"] = resource.id
                config[EXT_AUTHZ_FILTER] = {
                    "@type": _T + EXT_AUTHZ_PER_ROUTE,
                    "check_settings": {"context_extensions": extensions},
                }
            else:
                config[EXT_AUTHZ_FILTER] = {"@type": _T + EXT_AUTHZ_PER_ROUTE, "disabled": True}
        return config

    # ---------------------------------------------------------- filters

    def _filters(self) -> list[dict[str, Any]]:
        filters: list[dict[str, Any]] = []
        strip = strip_untrusted(self.gw)
        if strip is not None:  # first: no filter after it sees a header the caller made up
            filters.append(_filter(STRIP_FILTER, strip))
        if self.gw.limit is not None:
            if self.gw.limit.key is not None and self.gw.limit.key not in LIMIT_KEYS:
                self.out.unsupported(
                    "B0110",
                    f"`limit ... per {self.gw.limit.key}` of {self.where} is not expressible "
                    "with Envoy's local rate limit; the gateway has no limit",
                    self.gw.limit.span or self.gw.span,
                    label="not applied",
                    help=_LIMIT_HELP,
                )
            else:
                filters.append(
                    _filter(GATEWAY_LIMIT_FILTER, local_ratelimit(self.gw.limit, "gateway_limit"))
                )
        if any(x is not None for x in self.route_limits):
            # Off unless a route's own configuration (typed_per_filter_config) enables it.
            filters.append(
                _filter(
                    ROUTE_LIMIT_FILTER,
                    {"@type": _T + LOCAL_RATELIMIT, "stat_prefix": "route_limit"},
                )
            )
        if self.jwt is not None:  # before every access filter: they read its verdict
            filters.append(_filter(JWT_FILTER, self.jwt))
        if not self.index.project.policies:
            filters.append(_filter(CLOSED_FILTER, self._closed()))
        if self.has_deny:
            filters.append(_filter(DENY_FILTER, {"@type": _T + RBAC}))
        for label in self.allow_labels:
            filters.append(_filter(ALLOW_FILTER + label, {"@type": _T + RBAC}))
        if self.delegated:
            filters.append(
                _filter(
                    EXT_AUTHZ_FILTER,
                    {
                        "@type": _T + EXT_AUTHZ,
                        "grpc_service": {
                            "envoy_grpc": {"cluster_name": OPA_CLUSTER},
                            "timeout": OPA_TIMEOUT,
                        },
                        "transport_api_version": "V3",
                        "failure_mode_allow": False,
                        "include_peer_certificate": True,
                        **(
                            {"metadata_context_namespaces": [JWT_METADATA_NAMESPACE]}
                            if self.jwt is not None
                            else {}
                        ),
                    },
                )
            )
        filters.append(_filter(ROUTER_FILTER, {"@type": _T + ROUTER}))
        return filters

    def _closed(self) -> dict[str, Any]:
        """Fail closed: no policy allows anything, as `Engine.authorize` and the Rego decide.

        An RBAC filter with ALLOW rules and no policy matches no request, so every
        request is refused with 403 before any upstream sees it.
        """
        self.out.report(
            "B0117",
            f"{self.where} denies every request: the tree declares no access `policy`",
            self.gw.span,
            label="every request is refused here",
            help="declare who may call what, e.g. `policy open { default allow }` to open "
            "the gateway deliberately, or `allow` rules for the intended callers",
        )
        return {"@type": _T + RBAC, "rules": {"action": "ALLOW"}}

    # -------------------------------------------------------- bootstrap

    def bootstrap(self) -> dict[str, Any]:
        gw = self.gw
        routes = [self._route(i, r, self.index.target(r.target)) for i, r in enumerate(gw.routes)]
        domains = []
        for host in gw.hosts or ("*",):
            if not valid_header_value(host):
                self.out.unsupported(
                    "B0114",
                    f"host {json.dumps(host, ensure_ascii=False)} of {self.where} cannot be an "
                    "Envoy domain; it is skipped",
                    self.ctx.clause_span(gw.span, "hosts"),
                    label="skipped" if gw.hosts else "",
                    notes=("a gateway left without hosts answers for any host",),
                )
            elif host not in domains:
                domains.append(host)
        hcm = {
            "@type": _T + HCM,
            "stat_prefix": gw.name,
            "codec_type": "AUTO",
            "use_remote_address": True,
            "normalize_path": True,
            "merge_slashes": True,
            "path_with_escaped_slashes_action": "REJECT_REQUEST",
            "strip_any_host_port": True,
            "route_config": {
                "name": gw.name,
                "virtual_hosts": [{"name": gw.name, "domains": domains or ["*"], "routes": routes}],
                **(
                    {"request_headers_to_remove": stripped_headers(gw)}
                    if stripped_headers(gw)
                    else {}
                ),
            },
            "http_filters": self._filters(),
        }
        clusters = []
        for upstream in self.upstreams:
            name = self.cluster_of(upstream)
            if isinstance(upstream, m.Service):
                balance = self.index.balances.get((upstream.package, upstream.name))
                fqdn = partial(self.index.pods.headless_fqdn, upstream)
                clusters.append(service_cluster(name, upstream, balance, self.out, fqdn))
            else:
                clusters.append(integration_cluster(name, upstream))
        if self.delegated:
            clusters.append(opa_cluster(self.index.pods.server_grpc()))
        clusters.extend(self.jwks_clusters)
        if uses_sds(gw.tls):
            clusters.append(sds_cluster())
        clusters.sort(key=lambda c: str(c["name"]))
        return {
            "node": {"id": gw.qualified, "cluster": f"mcpdsl-gateway-{gw.name}"},
            "admin": {
                "address": {"socket_address": {"address": ADMIN_ADDRESS, "port_value": ADMIN_PORT}}
            },
            "static_resources": {
                "listeners": [
                    {
                        "name": gw.name,
                        "address": {
                            "socket_address": {"address": "0.0.0.0", "port_value": gw.port}
                        },
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm,
                                    }
                                ],
                                **(
                                    {"transport_socket": downstream_tls(gw.tls)}
                                    if gw.tls is not None
                                    else {}
                                ),
                            }
                        ],
                    }
                ],
                "clusters": clusters,
            },
        }


def _filter(name: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "typed_config": config}


def _rbac_per_route(
    action: str, policies: dict[str, dict[str, Any]] | None, *, disabled: bool = False
) -> dict[str, Any]:
    """RBACPerRoute: the route's own rules, or (no `rbac`) the filter off for the route."""
    if disabled or (action == "DENY" and not policies):
        return {"@type": _T + RBAC_PER_ROUTE}
    return {
        "@type": _T + RBAC_PER_ROUTE,
        "rbac": {"rules": {"action": action, "policies": dict(policies or {})}},
    }
