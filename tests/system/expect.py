"""The expected decision at the Envoy edge: `Engine.authorize` on RUNTIME.md §1's canonical request.

Written from the contract, not from any target: for a request as it arrives
at gateway G,

* the connection: a gateway that declares no TLS takes plaintext only (no
  peer identity exists); one that requires client certificates refuses a
  connection without a trusted one;
* the path: what `Engine.route` does (normalise; 400 for an escaped slash or
  NUL; 404 when no route takes it); the resource is the route's target (a
  service, or the tool an integration serves);
* the principal: a bearer token verified against a provider G accepts
  (issuer, audiences, clock skew, JWKS) through the provider's claim mapping;
  a token that does not verify is a 401; otherwise the verified peer's SPIFFE
  id names a service (`workload_identity`); otherwise nobody (`{}`);
* a token in the `access_token` query parameter is no credential (OAuth 2.1
  and the MCP authorization spec forbid tokens in URIs): it names nobody;
* `request.auth.mfa` from the provider's `mfa` claim mapping;
* `source.ip` is the peer address, `source.namespace` the verified peer's;
* `context` only from G's trusted headers, and only from a peer inside the
  header's `sources` (a header with no sources is stripped from everyone).

Token verification uses PyJWT's own claim checks (the Envoy model checks them
by hand), so the two sides do not share a verifier.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from envoy_model import HttpRequest

from mcpdsl.engine import Engine
from mcpdsl.ir import model as m
from mcpdsl.ir.paths import PathRejected, normalize_request_path
from mcpdsl.ir.workload import DEFAULT_TRUST_DOMAIN, parse_spiffe, workload_identity

__all__ = ["Expectation", "Expected", "verify_token"]


@dataclass(frozen=True)
class Expected:
    """The contract's answer: allowed or not, where it was decided, the canonical request."""

    allowed: bool
    stage: str  # tls, hcm, route, jwt, policy
    why: str = ""
    canonical: dict[str, Any] | None = None
    decision: Any = None  # the engine's Decision; explained only when a report shows it

    @property
    def reason(self) -> str:
        return self.decision.explain() if self.decision is not None else self.why


def _qualified(decl: m.Decl) -> str:
    return decl.qualified


def _typed(value: str, kind: str) -> Any:
    if kind == "number":
        try:
            number = float(value)
        except ValueError:
            return None
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "bool":
        return {"true": True, "false": False}.get(value.strip().lower())
    if kind == "list":
        return [v.strip() for v in value.split(",")]
    return value


def _inside(ip: str, cidrs: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr, strict=False)
        if address.version == net.version and address in net:
            return True
    return False


def verify_token(
    token: str,
    providers: Sequence[m.Provider],
    jwks: Mapping[str, Mapping[str, Any]],
    now: float,
) -> tuple[m.Provider, dict[str, Any]] | None:
    """The provider whose issuer, audiences, clock skew and JWKS (by qualified name) accept `token`.

    `exp` and `nbf` are checked against `now`, the instant the modelled Envoy
    also uses (PyJWT would read the wall clock, which moves on during a long run).
    """
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return None
    for provider in providers:
        if unverified.get("iss") != provider.issuer:
            continue
        for key in jwks.get(provider.qualified, {}).get("keys", []):
            if key.get("kid") not in (None, header.get("kid")):
                continue
            alg = key.get("alg") or header.get("alg")
            try:
                claims = jwt.decode(
                    token,
                    jwt.PyJWK(key, algorithm=alg).key,
                    algorithms=[alg],
                    issuer=provider.issuer,
                    audience=list(provider.audiences) or None,
                    leeway=provider.clock_skew,
                    options={
                        "verify_aud": bool(provider.audiences),
                        "verify_exp": False,
                        "verify_nbf": False,
                        "require": [],
                    },
                )
            except (jwt.PyJWTError, ValueError, TypeError):
                continue
            if not _in_time(claims, now, provider.clock_skew):
                continue
            return provider, claims
    return None


def _in_time(claims: Mapping[str, Any], now: float, skew: int) -> bool:
    """RFC 7519 `exp`/`nbf` at `now` with `skew` seconds of leeway (numbers only)."""
    for name in ("exp", "nbf"):
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if exp is not None and now >= exp + skew:
        return False
    return not (nbf is not None and now < nbf - skew)


class Expectation:
    """Builds the canonical request of one gateway and asks the engine."""

    def __init__(
        self,
        engine: Engine,
        gateway: str,
        *,
        jwks: Mapping[str, Mapping[str, Any]] | None = None,
        now: float = 0.0,
        assume_mtls: bool = False,
    ) -> None:
        """`jwks` maps a provider's qualified name to the key set the test serves for it."""
        self.engine = engine
        project = engine.project
        self.gateway = next(g for g in project.gateways if gateway in (g.name, _qualified(g)))
        self.gateway_key = _qualified(self.gateway)
        by_name = {_qualified(p): p for p in project.providers}
        self.providers = [
            by_name[str(ref)] for ref in self.gateway.providers if str(ref) in by_name
        ]
        self.jwks = jwks or {}
        self.now = now
        self.assume_mtls = assume_mtls
        domain = project.meshes[0].trust_domain if project.meshes else DEFAULT_TRUST_DOMAIN
        self.services = {
            workload_identity(
                namespace=s.namespace,
                declared=s.identity,
                fallback_account=s.name,
                trust_domain=domain,
            ).spiffe_id: s
            for s in project.services
        }
        self.integrations = {_qualified(i): i for i in project.integrations}

    # -- pieces

    def _peer(self, req: HttpRequest) -> tuple[str | None, Expected | None]:
        if self.assume_mtls:
            if req.peer is not None and not req.peer.trusted:
                return None, Expected(False, "tls", "an untrusted client certificate")
            return (req.peer.uri_sans[0] if req.peer and req.peer.uri_sans else None), None
        tls = self.gateway.tls
        if tls is None or tls.client_certs == "none":
            return None, None
        if req.peer is None or not req.peer.trusted:
            if tls.client_certs == "required" or req.peer is not None:
                return None, Expected(False, "tls", "no trusted client certificate")
            return None, None
        return (req.peer.uri_sans[0] if req.peer.uri_sans else None), None

    def _token(self, headers: Mapping[str, str]) -> str | None:
        value = headers.get("authorization")
        if value is None or not value.startswith("Bearer "):
            return None
        return value[len("Bearer ") :].strip() or None

    def _verify(self, token: str) -> tuple[m.Provider, dict[str, Any]] | None:
        return verify_token(token, self.providers, self.jwks, self.now)

    @staticmethod
    def _claims_principal(
        provider: m.Provider, claims: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        # docs/runtime.md: the provider's fixed type, or the type claim's value; a
        # missing type claim leaves the principal without a type
        principal: dict[str, Any] = {}
        if provider.type_claim is None:
            principal["type"] = provider.principal_type
        elif isinstance(claims.get(provider.type_claim), str):
            principal["type"] = claims[provider.type_claim]
        if isinstance(claims.get(provider.id_claim), str):
            principal["id"] = claims[provider.id_claim]
        if provider.email_claim and provider.email_claim in claims:
            principal["email"] = claims[provider.email_claim]
        if provider.groups_claim and provider.groups_claim in claims:
            principal["groups"] = claims[provider.groups_claim]
        principal["provider"] = provider.qualified
        principal["issuer"] = provider.issuer
        auth: dict[str, Any] = {}
        if provider.mfa_claim:
            held = claims.get(provider.mfa_claim)
            values = held if isinstance(held, list) else [held]
            auth["mfa"] = any(v in provider.mfa_values for v in values if isinstance(v, str))
        return principal, auth

    def _resource(self, kind: str, target: str) -> dict[str, Any]:
        if kind == "service":
            return {"type": "service", "id": target.rsplit(".", 1)[-1]}
        integration = self.integrations.get(target)
        if integration is not None and integration.tool:
            return {"type": "tool", "id": integration.tool}
        return {"type": "integration", "id": target.rsplit(".", 1)[-1]}

    def _context(self, headers: Mapping[str, str], source_ip: str) -> dict[str, Any]:
        context: dict[str, Any] = {}
        for th in self.gateway.trusted_headers:
            value = headers.get(th.header)
            if value is None or not th.sources or not _inside(source_ip, th.sources):
                continue
            typed = _typed(value, th.type)
            if typed is None:
                continue
            node = context
            for step in th.attribute[:-1]:
                node = node.setdefault(step, {})
            node[th.attribute[-1]] = typed
        return context

    # -- the request

    def expect(self, req: HttpRequest) -> Expected:
        """The contract's decision for `req` at this gateway."""
        peer, refused = self._peer(req)
        if refused is not None:
            return refused
        headers: dict[str, str] = {}
        for name, value in req.headers:
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        try:
            found = self.engine.route(self.gateway_key, req.method, req.path, headers)
        except PathRejected as exc:
            return Expected(False, "hcm", str(exc))
        if found is None:
            return Expected(False, "route", "no route")
        principal: dict[str, Any] = {}
        auth: dict[str, Any] = {}
        token = self._token(headers) if self.providers else None
        if token is not None:
            verified = self._verify(token)
            if verified is None:
                return Expected(False, "jwt", "the bearer token does not verify")
            principal, auth = self._claims_principal(*verified)
        source: dict[str, Any] = {"ip": req.source_ip}
        if peer is not None:
            service = self.services.get(peer)
            identity = parse_spiffe(peer)
            if service is not None:
                source["namespace"] = service.namespace
                if not principal:
                    principal = {"type": "service", "id": service.name}
            elif identity is not None:
                source["namespace"] = identity.namespace
        trusted = {th.header for th in self.gateway.trusted_headers}
        dropped = trusted | ({"authorization"} if self.providers else set())
        canonical = {
            "principal": principal,
            "action": req.method,
            "resource": self._resource(found.target_kind, found.target_qualified or found.target),
            "request": {
                "path": normalize_request_path(req.path),
                "headers": {k: v for k, v in headers.items() if k not in dropped and k != "host"},
                "auth": auth,
            },
            "source": source,
            "context": self._context(headers, req.source_ip),
        }
        decision = self.engine.authorize(canonical)
        return Expected(decision.enforced, "policy", "", canonical, decision)
