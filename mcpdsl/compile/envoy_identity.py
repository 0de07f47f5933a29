"""Identity at the Envoy edge: downstream TLS, JWT verification, trusted-header stripping.

* `tls { ... }` -> the listener's `DownstreamTlsContext`: the server
  certificate from SDS (the mesh agent's Workload API socket) or from files,
  and client certificates checked against the `ca` when `clients` asks for them;
* `accept [P, ...]` -> `envoy.filters.http.jwt_authn`, one provider per accepted
  `provider`, keyed by its qualified name, with the verified payload written
  to dynamic metadata under that same name (namespace
  `envoy.filters.http.jwt_authn`): the contract the CheckRequest mapping reads
  (evaluator and generated Rego).  A request without a token goes on
  unauthenticated (`allow_missing`) and is decided by policy; an invalid token
  is rejected with 401 before any authorization filter runs;
* `trust header` without `from` -> removed from every incoming request by a
  `header_mutation` filter placed first, so that no later filter (RBAC,
  ext_authz) and no upstream can see a value the caller made up.  Headers with
  `from` pass; the CheckRequest mapping ignores them from other peers.

What is supported and why: targets/envoy/README.md ("Identity").
"""

from __future__ import annotations

from typing import Any

from mcpdsl.compile import TargetOutput
from mcpdsl.compile.envoy_clusters import dns_cluster, upstream_host
from mcpdsl.ir import model as m
from mcpdsl.ir.jwks import load_jwks

_T = "type.googleapis.com/"
JWT_AUTHN = "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
HEADER_MUTATION = "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"
DOWNSTREAM_TLS = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"

JWT_FILTER = "envoy.filters.http.jwt_authn"
#: Where jwt_authn writes verified payloads; ext_authz forwards this namespace.
JWT_METADATA_NAMESPACE = "envoy.filters.http.jwt_authn"
STRIP_FILTER = "envoy.filters.http.header_mutation.untrusted"

#: The SDS server: the SPIFFE Workload API socket of the mesh agent (Istio's
#: `workload-spiffe-uds` convention; SPIRE's agent serves SDS on it too).
SDS_CLUSTER = "sds:workload-api"  # a colon never occurs in an mcpdsl name
SDS_SOCKET = "/var/run/secrets/workload-spiffe-uds/socket"
JWKS_FETCH_TIMEOUT = "5s"
JWKS_CACHE = "600s"


def jwks_cluster_name(uri: str) -> str:
    """`jwks:HOST:PORT`: a colon never occurs in an mcpdsl name, so no upstream shares it."""
    host, port, _ = upstream_host(uri)
    return f"jwks:{host}:{port}"


def _sds_source() -> dict[str, Any]:
    return {
        "resource_api_version": "V3",
        "api_config_source": {
            "api_type": "GRPC",
            "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": SDS_CLUSTER}}],
        },
    }


def sds_cluster() -> dict[str, Any]:
    """The gRPC cluster of the SDS server on its unix socket (HTTP/2)."""
    return {
        "name": SDS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": SDS_CLUSTER,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": SDS_SOCKET}}}}]}
            ],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
    }


def uses_sds(tls: m.GatewayTls | None) -> bool:
    return tls is not None and (tls.cert_sds is not None or tls.client_ca_sds is not None)


def downstream_tls(tls: m.GatewayTls) -> dict[str, Any]:
    """The listener's transport socket for `tls { ... }`."""
    common: dict[str, Any] = {
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
        "alpn_protocols": ["h2", "http/1.1"],
    }
    if tls.cert_sds is not None:
        common["tls_certificate_sds_secret_configs"] = [
            {"name": tls.cert_sds, "sds_config": _sds_source()}
        ]
    else:
        common["tls_certificates"] = [
            {
                "certificate_chain": {"filename": tls.cert_file},
                "private_key": {"filename": tls.key_file},
            }
        ]
    if tls.client_certs != "none":
        if tls.client_ca_sds is not None:
            common["validation_context_sds_secret_config"] = {
                "name": tls.client_ca_sds,
                "sds_config": _sds_source(),
            }
        elif tls.client_ca_file is not None:
            common["validation_context"] = {"trusted_ca": {"filename": tls.client_ca_file}}
    context: dict[str, Any] = {"@type": _T + DOWNSTREAM_TLS, "common_tls_context": common}
    if tls.client_certs == "required":
        context["require_client_certificate"] = True
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def accepted(project: m.Project, gateway: m.Gateway) -> list[m.Provider]:
    """The providers a gateway accepts, in its `accept` order, each once."""
    by_name = {(p.package, p.name): p for p in project.providers}
    out: list[m.Provider] = []
    for ref in gateway.providers:
        provider = by_name.get((ref.package or gateway.package, ref.name))
        if provider is not None and provider not in out:
            out.append(provider)
    return out


def jwt_authn(
    project: m.Project, providers: list[m.Provider], out: TargetOutput
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The jwt_authn filter config for `providers`, and the JWKS clusters it fetches from."""
    configs: dict[str, Any] = {}
    clusters: dict[str, dict[str, Any]] = {}
    for provider in providers:
        config: dict[str, Any] = {
            "issuer": provider.issuer,
            "forward": False,
            "payload_in_metadata": provider.qualified,
            "clock_skew_seconds": provider.clock_skew,
            # Only a bearer token in `Authorization`: Envoy's default would also take
            # one from the `access_token` query parameter, which OAuth 2.1 (and so
            # MCP) forbids, and which the canonical request never reads.
            "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
        }
        if provider.audiences:
            config["audiences"] = list(provider.audiences)
        if provider.jwks_uri is not None:
            name = jwks_cluster_name(provider.jwks_uri)
            host, port, tls = upstream_host(provider.jwks_uri)
            clusters[name] = dns_cluster(name, host, port, tls)
            config["remote_jwks"] = {
                "http_uri": {
                    "uri": provider.jwks_uri,
                    "cluster": name,
                    "timeout": JWKS_FETCH_TIMEOUT,
                },
                "cache_duration": JWKS_CACHE,
                "async_fetch": {"fast_listener": False},
            }
        else:
            loaded = (
                load_jwks(project.root, provider.jwks_file)
                if provider.jwks_file is not None
                else None
            )
            if loaded is None or loaded.text is None:
                out.unsupported(
                    "B0150",
                    (
                        f"jwks file `{provider.jwks_file}` of provider `{provider.name}` became "
                        f"unusable during the build ({loaded.problem}); its tokens are rejected"
                        if loaded is not None
                        else f"provider `{provider.name}` has no jwks; its tokens are rejected"
                    ),
                    provider.span,
                    label="left out of jwt_authn",
                )
                continue
            config["local_jwks"] = {"inline_string": loaded.text}
        configs[provider.qualified] = config
    if not configs:
        return None, []
    requirements: list[dict[str, Any]] = [{"provider_name": name} for name in configs]
    requirements.append({"allow_missing": {}})
    filter_config = {
        "@type": _T + JWT_AUTHN,
        "providers": configs,
        "rules": [
            {"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": requirements}}}
        ],
    }
    return filter_config, [clusters[name] for name in sorted(clusters)]


def strip_untrusted(gateway: m.Gateway) -> dict[str, Any] | None:
    """The header_mutation filter removing trusted headers nobody outside may set."""
    names = sorted({h.header for h in gateway.trusted_headers if not h.sources})
    if not names:
        return None
    return {
        "@type": _T + HEADER_MUTATION,
        "mutations": {"request_mutations": [{"remove": name} for name in names]},
    }


def stripped_headers(gateway: m.Gateway) -> list[str]:
    return sorted({h.header for h in gateway.trusted_headers if not h.sources})
