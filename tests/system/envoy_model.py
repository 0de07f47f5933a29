"""An independent model of the Envoy HTTP filter chain a generated bootstrap configures.

The system-level differential (RUNTIME.md §5) needs the decision Envoy would
take for a request as it arrives at the deployed gateway.  This module reads
the generated bootstrap JSON (never the IR, never mcpdsl's target code) and
applies what Envoy's documentation says each piece does:

* the downstream TLS context of the listener's filter chain (a client
  certificate is only seen when the listener asks for one and it verifies);
* the connection manager: escaped-slash action, `normalize_path`,
  `merge_slashes` (tests/compile/envoy_matcher.py's canonicaliser), early
  header mutations, virtual hosts and first-match routing;
* `envoy.filters.http.jwt_authn` (providers, rules or per-route requirement
  names, requirement trees, token extraction, signature/alg/exp/nbf/iss/aud
  checks with PyJWT, `forward`, `payload_in_metadata`, `claim_to_headers`);
* `envoy.filters.http.rbac` (the Policy semantics: permissions and principals
  with and/or/not, header, url_path, ports, authenticated principal, IP ranges,
  dynamic metadata; ALLOW/DENY; per-route override or disable);
* `envoy.filters.http.header_mutation` (request removals and additions);
* `envoy.filters.http.ext_authz`: the CheckRequest Envoy sends (protojson, as
  the OPA-Envoy plugin reads it, with its `parsed_path`/`parsed_query`), which
  the caller evaluates in the real OPA engine.

Filters run in the order the connection manager lists them.  The chain is a
generator that yields each CheckRequest and receives OPA's answer, so that a
caller can evaluate thousands of requests in one OPA batch.  Configuration
this model does not know raises `Unsupported`: a harness must never mistake an
unmodelled knob for an allow.  Rate limiting is not an access decision and is
not modelled (the local_ratelimit filters pass).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envoy_jwt import JwtFilter, Unsupported, query_of, verify_jwt
from envoy_matcher import RequestRejected, _domain_matches, _rx, _split, normalize_path

__all__ = [
    "CheckResult",
    "EnvoyModel",
    "HttpRequest",
    "Outcome",
    "Peer",
    "Unsupported",
    "string_match",
    "verify_jwt",
]

_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ESCAPED_SLASH = re.compile(r"%2f|%5c", re.IGNORECASE)
_PASSIVE = {"LocalRateLimit", "Router", "Cors", "Compressor", "GrpcStats", "Buffer"}

#: What a CheckRequest evaluation returns: True/False, or None for an error/undefined.
CheckResult = bool | None


@dataclass(frozen=True)
class Peer:
    """The client certificate a connection presents."""

    uri_sans: tuple[str, ...] = ()
    dns_sans: tuple[str, ...] = ()
    subject: str = ""
    trusted: bool = True  # issued by a CA the listener's validation context trusts
    pem: str = ""  # the certificate, for `include_peer_certificate`


@dataclass(frozen=True)
class HttpRequest:
    """A request as it arrives at the gateway: connection facts plus the HTTP message."""

    method: str
    path: str  # the request target as sent (path and query)
    headers: tuple[tuple[str, str], ...] = ()
    source_ip: str = "203.0.113.9"
    source_port: int = 41000
    tls: bool = False  # the client opens a TLS connection
    peer: Peer | None = None  # the client certificate it presents (TLS only)
    body: bytes = b""


@dataclass(frozen=True)
class Outcome:
    """What Envoy does with the request: forward it (200) or answer it itself."""

    status: int  # 200: forwarded upstream; 0: connection refused; else Envoy's answer
    stage: str  # where it was decided: tls, hcm, route, jwt_authn, rbac, ext_authz, router
    reason: str
    route: str | None = None
    check_request: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.status == 200


# ----------------------------------------------------------------- matchers


def string_match(matcher: Mapping[str, Any], value: str) -> bool:
    """Envoy's `type.matcher.v3.StringMatcher` (safe_regex is a full match, RE2 syntax)."""
    fold: Callable[[str], str] = str.lower if matcher.get("ignore_case") else (lambda s: s)
    if "exact" in matcher:
        return fold(value) == fold(matcher["exact"])
    if "prefix" in matcher:
        return fold(value).startswith(fold(matcher["prefix"]))
    if "suffix" in matcher:
        return fold(value).endswith(fold(matcher["suffix"]))
    if "contains" in matcher:
        return fold(matcher["contains"]) in fold(value)
    if "safe_regex" in matcher:
        return _rx(matcher["safe_regex"]["regex"]).fullmatch(value) is not None
    raise Unsupported(f"string matcher {sorted(matcher)}")


_LEGACY_HEADER = {
    "exact_match": "exact",
    "prefix_match": "prefix",
    "suffix_match": "suffix",
    "contains_match": "contains",
}


def header_match(matcher: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    """`config.route.v3.HeaderMatcher` on lower-cased headers (repeated values joined by `,`)."""
    value = headers.get(matcher["name"].lower())
    invert = bool(matcher.get("invert_match"))
    if value is None and matcher.get("treat_missing_header_as_empty"):
        value = ""
    if "present_match" in matcher:
        present = (value is not None) == bool(matcher["present_match"])
        return present is not invert
    if value is None:
        return False  # an absent header never matches a value matcher, inverted or not
    if "string_match" in matcher:
        result = string_match(matcher["string_match"], value)
    elif "safe_regex_match" in matcher:
        result = _rx(matcher["safe_regex_match"]["regex"]).fullmatch(value) is not None
    elif "range_match" in matcher:
        r = matcher["range_match"]
        result = bool(re.fullmatch(r"-?\d+", value)) and int(r["start"]) <= int(value) < int(
            r["end"]
        )
    elif any(k in matcher for k in _LEGACY_HEADER):
        key = next(k for k in _LEGACY_HEADER if k in matcher)
        result = string_match({_LEGACY_HEADER[key]: matcher[key]}, value)
    else:  # only a name: the header is present
        result = True
    return result is not invert


def route_match(match: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    """`config.route.v3.RouteMatch` against a request (`:path` already normalised)."""
    full = headers[":path"]
    bare, _ = _split(full)
    sensitive = match.get("case_sensitive", True)
    cmp_full, cmp_bare = (full, bare) if sensitive else (full.lower(), bare.lower())

    def fold(s: str) -> str:
        return s if sensitive else s.lower()

    if "path" in match:
        ok = cmp_bare == fold(match["path"])
    elif "prefix" in match:
        ok = cmp_full.startswith(fold(match["prefix"]))
    elif "path_separated_prefix" in match:
        p = fold(match["path_separated_prefix"])
        ok = cmp_bare == p or cmp_bare.startswith(p + "/")
    elif "safe_regex" in match:
        ok = _rx(match["safe_regex"]["regex"]).fullmatch(bare) is not None
    else:
        raise Unsupported(f"path specifier {sorted(match)}")
    if not ok:
        return False
    if "query_parameters" in match or "grpc" in match or "dynamic_metadata" in match:
        raise Unsupported("route match on query parameters, grpc or metadata")
    return all(header_match(h, headers) for h in match.get("headers", []))


def _virtual_host(hcm: Mapping[str, Any], host: str) -> Mapping[str, Any] | None:
    """Envoy's virtual host order: exact, then suffix wildcards, prefix wildcards, `*`."""
    if hcm.get("strip_any_host_port") and not host.endswith("]") and host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    hosts = hcm["route_config"].get("virtual_hosts", [])
    for v in hosts:
        if any(d.lower() == host.lower() for d in v["domains"]):
            return v  # type: ignore[no-any-return]
    for shape in ("suffix", "prefix", "any"):
        best: tuple[int, Mapping[str, Any]] | None = None
        for v in hosts:
            for d in v["domains"]:
                kind = "any" if d == "*" else "suffix" if d.startswith("*") else "prefix"
                hit = kind == shape and d != host and _domain_matches(d, host)
                if hit and (best is None or len(d) > best[0]):  # the longest wildcard wins
                    best = (len(d), v)
        if best is not None:
            return best[1]
    return None


def _cidr(spec: Mapping[str, Any], ip: str) -> bool:
    try:
        net = ipaddress.ip_network(
            f"{spec['address_prefix']}/{spec.get('prefix_len', 0)}", strict=False
        )
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr.version == net.version and addr in net


def _value_match(matcher: Mapping[str, Any], value: Any) -> bool:
    """`type.matcher.v3.ValueMatcher` on a JSON value from dynamic metadata."""
    if "present_match" in matcher:
        return (value is not None) == bool(matcher["present_match"])
    if value is None:
        return False
    if "null_match" in matcher:
        return value is None
    if "string_match" in matcher:
        return isinstance(value, str) and string_match(matcher["string_match"], value)
    if "bool_match" in matcher:
        return value is matcher["bool_match"]
    if "double_match" in matcher:
        dm = matcher["double_match"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if "exact" in dm:
            return float(value) == float(dm["exact"])
        return float(dm["range"]["start"]) <= float(value) < float(dm["range"]["end"])
    if "list_match" in matcher:
        one_of = matcher["list_match"]["one_of"]
        return isinstance(value, list) and any(_value_match(one_of, v) for v in value)
    raise Unsupported(f"value matcher {sorted(matcher)}")


def _metadata_match(matcher: Mapping[str, Any], metadata: Mapping[str, Any]) -> bool:
    """`type.matcher.v3.MetadataMatcher`: filter namespace, key path, value matcher."""
    value: Any = metadata.get(matcher["filter"])
    for step in matcher.get("path", []):
        value = value.get(step["key"]) if isinstance(value, dict) else None
    return _value_match(matcher["value"], value) is not bool(matcher.get("invert"))


# --------------------------------------------------------------------- RBAC


@dataclass(frozen=True)
class _Facts:
    """What an RBAC matcher can see of a request."""

    headers: Mapping[str, str]
    source_ip: str
    destination_port: int
    peer: Peer | None
    metadata: Mapping[str, Any]
    sni: str = ""


def _peer_name(peer: Peer | None) -> str | None:
    """The name `authenticated.principal_name` compares: URI SAN, else DNS SAN, else subject."""
    if peer is None:
        return None
    if peer.uri_sans:
        return peer.uri_sans[0]
    if peer.dns_sans:
        return peer.dns_sans[0]
    return peer.subject


def _common(p: Mapping[str, Any], f: _Facts) -> bool:
    if "header" in p:
        return header_match(p["header"], f.headers)
    if "url_path" in p:
        return string_match(p["url_path"]["path"], _split(f.headers[":path"])[0])
    if "metadata" in p:
        return _metadata_match(p["metadata"], f.metadata)
    if "requested_server_name" in p:
        return string_match(p["requested_server_name"], f.sni)
    raise Unsupported(f"RBAC matcher {sorted(p)}")


def rbac_permission(p: Mapping[str, Any], f: _Facts) -> bool:
    """`config.rbac.v3.Permission`."""
    if p.get("any"):
        return True
    if "and_rules" in p:
        return all(rbac_permission(x, f) for x in p["and_rules"]["rules"])
    if "or_rules" in p:
        return any(rbac_permission(x, f) for x in p["or_rules"]["rules"])
    if "not_rule" in p:
        return not rbac_permission(p["not_rule"], f)
    if "destination_port" in p:
        return f.destination_port == int(p["destination_port"])
    if "destination_port_range" in p:
        r = p["destination_port_range"]
        return int(r["start"]) <= f.destination_port < int(r["end"])
    if "destination_ip" in p:
        raise Unsupported("RBAC destination_ip")
    return _common(p, f)


def rbac_principal(p: Mapping[str, Any], f: _Facts) -> bool:
    """`config.rbac.v3.Principal` (no proxy protocol, no trusted XFF hops: all IPs are the peer's)."""
    if p.get("any"):
        return True
    if "and_ids" in p:
        return all(rbac_principal(x, f) for x in p["and_ids"]["ids"])
    if "or_ids" in p:
        return any(rbac_principal(x, f) for x in p["or_ids"]["ids"])
    if "not_id" in p:
        return not rbac_principal(p["not_id"], f)
    if "authenticated" in p:
        name = _peer_name(f.peer)
        matcher = p["authenticated"].get("principal_name")
        return name is not None and (matcher is None or string_match(matcher, name))
    for key in ("direct_remote_ip", "remote_ip", "source_ip"):
        if key in p:
            return _cidr(p[key], f.source_ip)
    return _common(p, f)


def rbac_allows(rbac: Mapping[str, Any] | None, f: _Facts) -> tuple[bool, str]:
    """Apply an `RBAC` filter config: (allowed, the policy that decided or a note)."""
    if rbac is None or "rules" not in rbac:
        if rbac is not None and "matcher" in rbac:
            raise Unsupported("RBAC matcher trees")
        return True, "no rules"
    rules = rbac["rules"]
    action = rules.get("action", "ALLOW")
    hit = None
    for name in sorted(rules.get("policies", {})):
        policy = rules["policies"][name]
        if "condition" in policy or "checked_condition" in policy:
            raise Unsupported("RBAC CEL conditions")
        if any(rbac_permission(x, f) for x in policy.get("permissions", [])) and any(
            rbac_principal(x, f) for x in policy.get("principals", [])
        ):
            hit = name
            break
    if action == "ALLOW":
        return hit is not None, hit or "no ALLOW policy matched"
    if action == "DENY":
        return hit is None, hit or "no DENY policy matched"
    if action == "LOG":
        return True, "log only"
    raise Unsupported(f"RBAC action {action}")


# ----------------------------------------------------------------- the chain


def _headers(req: HttpRequest, path: str, scheme: str) -> dict[str, str]:
    """The connection manager's header map: lower-cased, repeats joined by `,`, pseudo headers."""
    out: dict[str, str] = {}
    for name, value in req.headers:
        key = name.lower()
        if key == "host":
            key = ":authority"
        out[key] = f"{out[key]},{value}" if key in out else value
    out[":method"] = req.method
    out[":path"] = path
    out[":scheme"] = scheme
    out.setdefault(":authority", "")
    out["x-forwarded-proto"] = scheme
    out.setdefault("x-request-id", "00000000-0000-4000-8000-000000000000")
    return out


def parsed_path(path: str) -> list[str]:
    """OPA-Envoy's `parsed_path`: the URL path without its leading `/`, split and unescaped."""
    bare = urllib.parse.urlsplit(path).path
    return [urllib.parse.unquote(s) for s in bare.lstrip("/").split("/")]


class EnvoyModel:
    """The HTTP filter chain of one listener of a generated bootstrap.

    `jwks` maps a remote JWKS URI (or a local JWKS file name) to the key set
    the test serves there; `now` is the clock jwt_authn checks `exp`/`nbf` on.
    """

    def __init__(
        self,
        bootstrap: Mapping[str, Any],
        *,
        listener: int = 0,
        jwks: Mapping[str, Any] | None = None,
        now: float = 0.0,
    ) -> None:
        spec = bootstrap["static_resources"]["listeners"][listener]
        chains = spec["filter_chains"]
        if len(chains) != 1 or "filter_chain_match" in chains[0]:
            raise Unsupported("listeners with several or matched filter chains")
        self.chain = chains[0]
        self.port = int(spec["address"]["socket_address"]["port_value"])
        self.address = spec["address"]["socket_address"]["address"]
        self.hcm = next(
            f["typed_config"]
            for f in self.chain["filters"]
            if f.get("typed_config", {}).get("@type", "").endswith(_HCM)
        )
        self.tls = self._tls(self.chain.get("transport_socket"))
        self.jwks = jwks or {}
        self.now = now
        # A check of the chain behind TLS terminated elsewhere: the client
        # certificate is taken as what the handshake verified (an untrusted one
        # is refused), whatever the listener's own transport socket says.
        self.assume_peer_verified = False
        if "rds" in self.hcm or "scoped_routes" in self.hcm:
            raise Unsupported("dynamic route configuration")

    @staticmethod
    def _tls(socket: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        if socket is None:
            return None
        config = socket.get("typed_config", {})
        if not config.get("@type", "").endswith("DownstreamTlsContext"):
            raise Unsupported(f"transport socket {socket.get('name')}")
        return config  # type: ignore[no-any-return]

    # -- the connection

    def _handshake(self, req: HttpRequest) -> tuple[Peer | None, Outcome | None]:
        """The peer certificate TLS verified, or the refusal of the connection."""
        if self.assume_peer_verified:
            if req.peer is not None and not req.peer.trusted:
                return None, Outcome(0, "tls", "the client certificate does not verify")
            return req.peer, None
        if self.tls is None:
            if req.tls:
                return None, Outcome(0, "tls", "a TLS client meets a plaintext listener")
            return None, None
        if not req.tls:
            return None, Outcome(0, "tls", "a plaintext client meets a TLS listener")
        common = self.tls.get("common_tls_context", {})
        validation = (
            common.get("validation_context")
            or common.get("validation_context_sds_secret_config")
            or common.get("combined_validation_context")
        )
        if validation is None:  # Envoy does not ask for a client certificate
            return None, None
        required = bool(self.tls.get("require_client_certificate"))
        if req.peer is None:
            if required:
                return None, Outcome(0, "tls", "the listener requires a client certificate")
            return None, None
        if not req.peer.trusted:
            return None, Outcome(0, "tls", "the client certificate does not verify")
        sans = (
            validation.get("match_typed_subject_alt_names")
            if isinstance(validation, dict)
            else None
        )
        if sans:
            ok = any(
                (
                    s.get("san_type") == "URI"
                    and any(string_match(s["matcher"], u) for u in req.peer.uri_sans)
                )
                or (
                    s.get("san_type") == "DNS"
                    and any(string_match(s["matcher"], d) for d in req.peer.dns_sans)
                )
                for s in sans
            )
            if not ok:
                return None, Outcome(0, "tls", "the client certificate's SAN is not accepted")
        return req.peer, None

    # -- one request

    def decide(self, req: HttpRequest) -> Generator[dict[str, Any], CheckResult, Outcome]:
        """The chain for `req`: yields each CheckRequest, receives OPA's answer, returns the outcome."""
        peer, refused = self._handshake(req)
        if refused is not None:
            return refused
        scheme = "https" if self.tls is not None else "http"
        hcm = self.hcm
        bare, _ = _split(req.path)
        action = hcm.get("path_with_escaped_slashes_action", "KEEP_UNCHANGED")
        if _ESCAPED_SLASH.search(bare):
            if action == "REJECT_REQUEST":
                return Outcome(400, "hcm", "escaped slash in the path")
            if action not in ("KEEP_UNCHANGED", "IMPLEMENTATION_SPECIFIC_DEFAULT"):
                raise Unsupported(f"path_with_escaped_slashes_action {action}")
        if not req.path.startswith("/"):
            return Outcome(400, "hcm", "the path is not absolute")
        try:
            path = normalize_path(
                req.path,
                dots=bool(hcm.get("normalize_path")),
                merge_slashes=bool(hcm.get("merge_slashes")),
            )
        except RequestRejected as exc:
            return Outcome(exc.status, "hcm", exc.reason)
        headers = _headers(req, path, scheme)
        self._early_mutations(headers)
        vhost = _virtual_host(hcm, headers[":authority"])
        if vhost is None:
            return Outcome(404, "route", "no virtual host takes the authority")
        route = next((r for r in vhost.get("routes", []) if route_match(r["match"], headers)), None)
        if route is None:
            return Outcome(404, "route", "no route matches")
        name = route.get("name")
        per_route = {
            **vhost.get("typed_per_filter_config", {}),
            **route.get("typed_per_filter_config", {}),
        }
        metadata: dict[str, Any] = {}

        def facts() -> _Facts:  # what RBAC sees now (earlier filters may have changed it)
            return _Facts(headers, req.source_ip, self.port, peer, metadata)

        for http_filter in hcm.get("http_filters", []):
            fname = http_filter["name"]
            config = http_filter.get("typed_config", {})
            kind = config.get("@type", "").rsplit(".", 1)[-1]
            override = per_route.get(fname)
            if http_filter.get("disabled") and override is None:
                continue
            if kind == "JwtAuthentication":
                jwt_filter = JwtFilter(config, self.jwks, self.now, route_match)
                requirement = jwt_filter.requirement(override, headers)
                if requirement is not None:
                    verdict = jwt_filter.run(requirement, headers, metadata)
                    if verdict.state != "ok":
                        return Outcome(
                            verdict.status, "jwt_authn", verdict.reason, name, None, metadata
                        )
            elif kind == "RBAC":
                # an RBACPerRoute without `rbac` disables the filter on its route
                rbac = override.get("rbac") if override is not None else config
                if rbac is not None:
                    if rbac.get("shadow_rules") and "rules" not in rbac:
                        continue
                    allowed, why = rbac_allows(rbac, facts())
                    if not allowed:
                        return Outcome(403, "rbac", f"{fname}: {why}", name, None, metadata)
            elif kind == "HeaderMutation":
                mutations = (override or {}).get("mutations") or config.get("mutations", {})
                self._mutate(headers, mutations.get("request_mutations", []))
            elif kind == "ExtAuthz":
                if override is not None and override.get("disabled"):
                    continue
                check = self.check_request(req, headers, peer, config, override, metadata)
                answer = yield check
                if answer is None and config.get("failure_mode_allow"):
                    answer = True
                if answer is not True:
                    status = (
                        403
                        if answer is False
                        else int(config.get("status_on_error", {}).get("code", 403))
                    )
                    return Outcome(
                        status,
                        "ext_authz",
                        "denied" if answer is False else "error",
                        name,
                        check,
                        metadata,
                    )
            elif kind in _PASSIVE:
                continue
            else:
                raise Unsupported(f"http filter {fname} ({kind})")
        if "direct_response" in route:
            return Outcome(
                int(route["direct_response"]["status"]), "router", "direct response", name
            )
        if "route" not in route:
            raise Unsupported(f"route action {sorted(route)}")
        return Outcome(200, "router", "forwarded", name, None, metadata)

    def _early_mutations(self, headers: dict[str, str]) -> None:
        for ext in self.hcm.get("early_header_mutation_extensions", []):
            config = ext.get("typed_config", {})
            if not config.get("@type", "").endswith("HeaderMutation"):
                raise Unsupported(f"early header mutation {ext.get('name')}")
            self._mutate(headers, config.get("mutations", []))

    @staticmethod
    def _mutate(headers: dict[str, str], mutations: Iterable[Mapping[str, Any]]) -> None:
        for mutation in mutations:
            if "remove" in mutation:
                headers.pop(mutation["remove"].lower(), None)
            elif "append" in mutation:
                spec = mutation["append"]["header"]
                key, value = spec["key"].lower(), spec.get("value", "")
                action = mutation["append"].get("append_action", "APPEND_IF_EXISTS_OR_ADD")
                if action == "OVERWRITE_IF_EXISTS_OR_ADD" or key not in headers:
                    headers[key] = value
                elif action == "APPEND_IF_EXISTS_OR_ADD":
                    headers[key] = f"{headers[key]},{value}"
                elif action == "OVERWRITE_IF_EXISTS":
                    headers[key] = value
            else:
                raise Unsupported(f"header mutation {sorted(mutation)}")

    def check_request(
        self,
        req: HttpRequest,
        headers: Mapping[str, str],
        peer: Peer | None,
        config: Mapping[str, Any],
        override: Mapping[str, Any] | None,
        metadata: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The CheckRequest in protojson, plus the fields the OPA-Envoy plugin adds to `input`."""
        source: dict[str, Any] = {
            "address": {"socketAddress": {"address": req.source_ip, "portValue": req.source_port}}
        }
        if peer is not None:
            name = _peer_name(peer)
            if name:
                source["principal"] = name
            if config.get("include_peer_certificate") and peer.pem:
                source["certificate"] = urllib.parse.quote(peer.pem, safe="")
        destination = {
            "address": {"socketAddress": {"address": self.address, "portValue": self.port}}
        }
        namespaces = list(config.get("metadata_context_namespaces", []))
        if config.get("typed_metadata_context_namespaces"):
            raise Unsupported("typed_metadata_context_namespaces")
        filter_metadata = {ns: metadata[ns] for ns in namespaces if ns in metadata}
        extensions = dict((override or {}).get("check_settings", {}).get("context_extensions", {}))
        path = headers[":path"]
        http = {
            "id": headers.get("x-request-id", ""),
            "method": headers[":method"],
            "headers": dict(headers),
            "path": path,
            "host": headers.get(":authority", ""),
            "scheme": headers.get(":scheme", ""),
            "protocol": "HTTP/1.1",
        }
        if req.body and config.get("with_request_body"):
            raise Unsupported("with_request_body")
        attributes: dict[str, Any] = {
            "source": source,
            "destination": destination,
            "request": {"http": http},
            "contextExtensions": extensions,
            "metadataContext": {"filterMetadata": filter_metadata} if filter_metadata else {},
        }
        query = query_of(path)
        return {
            "attributes": attributes,
            "parsed_path": parsed_path(path),
            "parsed_query": query,
            "parsed_body": None,
            "truncated_body": False,
            "version": {"encoding": "protojson", "ext_authz": "v3"},
        }


def run_all(
    model: EnvoyModel,
    requests: Sequence[HttpRequest],
    ext_authz: Callable[[list[dict[str, Any]]], list[CheckResult]],
) -> list[Outcome]:
    """Decide every request, evaluating the CheckRequests of each round in one batch."""
    outcomes: list[Outcome | None] = [None] * len(requests)
    pending: dict[int, tuple[Generator[dict[str, Any], CheckResult, Outcome], dict[str, Any]]] = {}
    for i, req in enumerate(requests):
        chain = model.decide(req)
        try:
            pending[i] = (chain, next(chain))
        except StopIteration as done:
            outcomes[i] = done.value
    while pending:
        order = sorted(pending)
        answers = ext_authz([pending[i][1] for i in order])
        nxt: dict[int, tuple[Generator[dict[str, Any], CheckResult, Outcome], dict[str, Any]]] = {}
        for i, answer in zip(order, answers, strict=True):
            chain = pending[i][0]
            try:
                nxt[i] = (chain, chain.send(answer))
            except StopIteration as done:
                outcomes[i] = done.value
        pending = nxt
    return [o for o in outcomes if o is not None]
