"""Envoy clusters: one per upstream a gateway routes to, plus `opa` for ext_authz.

* a service -> STRICT_DNS to its headless Service
  `<name>-headless.<namespace>.svc.cluster.local:<port>` (one endpoint per pod);
  with `failover [r1, r2, ...]` one locality per region, priority 0, 1, ...,
  addressed `<name>-headless.<namespace>.<region>.svc.cluster.local` (that
  region's pods, under the same headless name);
  regions of the service left out of `failover` come last, at one more priority;
  `balance` adds lb_policy, health_checks, outlier_detection (with `interval`)
  and, from `connections`, circuit_breakers and max_requests_per_connection;
* an integration -> LOGICAL_DNS to the call URL's host:port, with TLS (SNI and
  server certificate verification against the system CA bundle) for https;
* `opa` -> the OPA-Envoy plugin's gRPC port, HTTP/2; the decision server's Service
  (`mcpdsl serve`) instead when the tree declares a `server`.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_FLOOR, Decimal
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

from mcpdsl.compile import TargetOutput
from mcpdsl.compile.serialize import decimal_str
from mcpdsl.ir import model as m
from mcpdsl.ir.paths import percent_controls

CONNECT_TIMEOUT = "5s"
OPA_CLUSTER = "opa"
OPA_HOST = "opa.mcpdsl-system.svc.cluster.local"
OPA_PORT = 9191
#: The CA bundle integration certificates are verified against (Debian/Ubuntu/Alpine path).
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"

LB_POLICY = {
    "round-robin": "ROUND_ROBIN",
    "least-request": "LEAST_REQUEST",
    "ring-hash": "RING_HASH",
    "maglev": "MAGLEV",
    "random": "RANDOM",
}
HASHING = ("ring-hash", "maglev")

_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


def duration(seconds: Decimal) -> str:
    """A protobuf JSON Duration (`1.5s`); nanosecond precision, rounded down."""
    value = seconds.quantize(Decimal("0.000000001"), rounding=ROUND_FLOOR)
    return decimal_str(value) + "s"


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _endpoint(host: str, port: int) -> dict[str, Any]:
    return {"endpoint": {"address": _socket(host, port)}}


def _http1() -> dict[str, Any]:
    return {
        _HTTP_OPTIONS: {
            "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
            "explicit_http_config": {"http_protocol_options": {}},
        }
    }


def _http2() -> dict[str, Any]:
    return {
        _HTTP_OPTIONS: {
            "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }


def service_cluster(
    name: str,
    service: m.Service,
    balance: m.Balance | None,
    report: TargetOutput,
    fqdn: Callable[[str | None], str],
) -> dict[str, Any]:
    """The cluster of a service, shaped by its `balance` declaration (if any).

    `fqdn(None)` is the service's headless Service, `fqdn(region)` the same
    headless Service as a region's cluster exports it
    (`kubernetes_index.Index.headless_fqdn`): STRICT_DNS gets one endpoint per
    ready pod, so the load balancer, hash affinity and outlier detection act on
    pods, not on a ClusterIP, in every failover region as in a single one.
    """
    failover: list[str] = []
    if balance is not None:
        for region in balance.failover:
            if region not in failover:
                failover.append(region)
    priorities = failover_priorities(failover, service.regions)
    if failover:
        endpoints = [
            {
                "locality": {"region": region},
                "priority": priority,
                "lb_endpoints": [_endpoint(fqdn(region), service.port)],
            }
            for region, priority in priorities
        ]
    else:
        endpoints = [{"lb_endpoints": [_endpoint(fqdn(None), service.port)]}]
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STRICT_DNS",
        "connect_timeout": CONNECT_TIMEOUT,
        "lb_policy": LB_POLICY[balance.strategy if balance else "round-robin"],
        "load_assignment": {"cluster_name": name, "endpoints": endpoints},
    }
    if balance is None:
        return cluster
    if balance.health is not None:
        cluster["health_checks"] = [_health_check(balance.health, service, report)]
        if balance.health.protocol == "grpc":
            cluster["typed_extension_protocol_options"] = _http2()
    if balance.eject is not None:
        cluster["outlier_detection"] = _outlier(balance.eject)
    if balance.connections is not None:
        _connection_pool(cluster, balance.connections)
    return cluster


def failover_priorities(failover: list[str], regions: tuple[str, ...]) -> list[tuple[str, int]]:
    """(region, priority) of a failover cluster: the listed regions 0, 1, ... in order,
    then every other region of the service, all at the next priority (as Istio places
    localities a failover list leaves out: last, never without endpoints)."""
    listed = [(region, priority) for priority, region in enumerate(failover)]
    rest = [r for r in dict.fromkeys(regions) if r not in failover]
    return listed + [(region, len(failover)) for region in rest]


def _connection_pool(cluster: dict[str, Any], pool: m.ConnectionPool) -> None:
    """`connections { ... }` -> circuit_breakers (DEFAULT priority, the one routes use) and
    `max_requests_per_connection` in the cluster's HttpProtocolOptions."""
    thresholds: dict[str, Any] = {}
    for field, value in (
        ("max_connections", pool.max_connections),
        ("max_pending_requests", pool.max_pending),
        ("max_requests", pool.max_requests),
    ):
        if value is not None:
            thresholds[field] = value
    if thresholds:
        cluster["circuit_breakers"] = {"thresholds": [{"priority": "DEFAULT", **thresholds}]}
    if pool.per_connection is not None:
        options = cluster.setdefault("typed_extension_protocol_options", _http1())
        config = options[_HTTP_OPTIONS]
        config["common_http_protocol_options"] = {
            "max_requests_per_connection": pool.per_connection
        }


def _health_check(
    health: m.HealthCheck, service: m.Service, report: TargetOutput
) -> dict[str, Any]:
    check: dict[str, Any] = {
        "timeout": duration(health.timeout),
        "interval": duration(health.interval),
        "healthy_threshold": health.healthy,
        "unhealthy_threshold": health.unhealthy,
    }
    if health.protocol == "http":
        path = health.path or "/"
        encoded = percent_controls(path)
        if encoded != path:
            report.report(
                "B0115",
                f"control characters in the health check path of service `{service.name}` "
                f"are sent percent-encoded (`{encoded}`)",
                health.span,
            )
        check["http_health_check"] = {"path": encoded}
    elif health.protocol == "tcp":
        check["tcp_health_check"] = {}
    else:
        check["grpc_health_check"] = {}
    return check


def _outlier(eject: m.Ejection) -> dict[str, Any]:
    detection: dict[str, Any] = {
        "consecutive_5xx": eject.errors,
        "base_ejection_time": duration(eject.duration),
    }
    if eject.max_percent is not None:
        percent = (eject.max_percent * 100).to_integral_value(rounding=ROUND_FLOOR)
        detection["max_ejection_percent"] = int(min(max(percent, Decimal(0)), Decimal(100)))
    if eject.interval is not None:
        detection["interval"] = duration(eject.interval)
    return detection


def upstream_host(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of an integration's call URL; userinfo is never used."""
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:  # a port outside 0..65535: keep the default, Envoy reports DNS errors
        port = 443 if tls else 80
    return host, port, tls


def host_header(url: str) -> str:
    host, port, tls = upstream_host(url)
    shown = f"[{host}]" if ":" in host else host
    return shown if port == (443 if tls else 80) else f"{shown}:{port}"


def _is_ip(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def integration_cluster(name: str, integration: m.Integration) -> dict[str, Any]:
    host, port, tls = upstream_host(integration.url)
    return dns_cluster(name, host, port, tls)


def dns_cluster(name: str, host: str, port: int, tls: bool) -> dict[str, Any]:
    """A LOGICAL_DNS cluster to `host:port`; with `tls`, SNI and a verified server certificate.

    Shared by integrations and the JWKS endpoints of identity providers.
    """
    cluster: dict[str, Any] = {
        "name": name,
        "type": "LOGICAL_DNS",
        "connect_timeout": CONNECT_TIMEOUT,
        "lb_policy": "ROUND_ROBIN",
        "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [_endpoint(host, port)]}],
        },
    }
    if tls:
        san_type = "IP_ADDRESS" if _is_ip(host) else "DNS"
        context: dict[str, Any] = {
            "@type": _TLS,
            "common_tls_context": {
                "validation_context": {
                    "trusted_ca": {"filename": SYSTEM_CA},
                    "match_typed_subject_alt_names": [
                        {"san_type": san_type, "matcher": {"exact": host}}
                    ],
                }
            },
        }
        if san_type == "DNS":
            context["sni"] = host
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": context,
        }
    return cluster


def opa_cluster(address: tuple[str, int] | None = None) -> dict[str, Any]:
    """The ext_authz cluster: the tree's decision server when it declares one, else OPA.

    `address` is `Index.server_grpc()`: the Service of the `server` the Kubernetes
    target emits (`mcpdsl serve`, same Check API); without one, the OPA-Envoy plugin.
    """
    host, port = address if address is not None else (OPA_HOST, OPA_PORT)
    return {
        "name": OPA_CLUSTER,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": _http2(),
        "load_assignment": {
            "cluster_name": OPA_CLUSTER,
            "endpoints": [{"lb_endpoints": [_endpoint(host, port)]}],
        },
    }


def cluster_names(
    services: list[m.Service], integrations: list[m.Integration], with_opa: bool
) -> dict[tuple[str, str, str], str]:
    """Distinct cluster names: `<service>`, `integration_<name>`, `opa`.

    A name that two upstreams would share is qualified by package instead
    (`<package>.<service>`, `integration.<package>.<name>`); `.` never occurs in
    an mcpdsl name, so qualified names cannot collide.
    """
    wanted: dict[tuple[str, str, str], str] = {}
    for s in services:
        wanted[("service", s.package, s.name)] = s.name
    for i in integrations:
        wanted[("integration", i.package, i.name)] = f"integration_{i.name}"
    counts: dict[str, int] = {}
    for name in wanted.values():
        counts[name] = counts.get(name, 0) + 1
    if with_opa:
        counts[OPA_CLUSTER] = counts.get(OPA_CLUSTER, 0) + 1
    out = {}
    for (kind, package, name), preferred in wanted.items():
        if counts[preferred] == 1:
            out[(kind, package, name)] = preferred
        elif kind == "service":
            out[(kind, package, name)] = f"{package}.{name}"
        else:
            out[(kind, package, name)] = f"integration.{package}.{name}"
    return out
