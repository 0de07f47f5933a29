"""An independent model of Istio's request authorization at a sidecar, from its documentation.

Inputs are the Kubernetes documents an Istio target would generate
(`PeerAuthentication`, `RequestAuthentication`, `AuthorizationPolicy`, as
dicts) and a request as it reaches the workload.  Order, as Istio documents it:

1. PeerAuthentication: the workload's mode (a selector policy in its
   namespace, else its namespace's policy, else the root namespace's); STRICT
   refuses a plaintext connection.
2. RequestAuthentication: a token that does not verify against a matching
   `jwtRules` entry is a 401; no token is no request principal
   (`iss/sub`); a valid token's claims become `request.auth.claims`.
3. AuthorizationPolicy: CUSTOM (the ext_authz provider is asked when one
   matches), then DENY (any match denies), then ALLOW (when any ALLOW policy
   applies, one must match; none applying allows).

Matching follows the reference: fields of a source/operation are ANDed,
values of a field ORed, `from`/`to` entries ORed, `when` conditions ANDed;
strings match exactly, as `prefix*`, `*suffix` or `*` (present); paths also
as templates with `{*}` (one segment) and `{**}` (the rest); a value the
request lacks never matches a positive field, and always satisfies a `not*`
field.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envoy_model import verify_jwt

__all__ = ["IstioRequest", "IstioResult", "decide"]

ROOT_NAMESPACE = "istio-system"


@dataclass(frozen=True)
class IstioRequest:
    """A request at the destination workload's sidecar."""

    namespace: str  # the destination workload's
    labels: Mapping[str, str] = field(default_factory=dict)
    mtls: bool = True
    peer: str | None = None  # source principal, `td/ns/N/sa/S` (only with mTLS)
    source_ip: str = "10.0.0.1"
    remote_ip: str | None = None  # X-Forwarded-For derived; defaults to source_ip
    method: str = "GET"
    host: str = ""
    port: int = 8080
    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names


@dataclass(frozen=True)
class IstioResult:
    status: int  # 200 allowed, 0 connection refused, 401, 403
    reason: str

    @property
    def allowed(self) -> bool:
        return self.status == 200


def _applies(doc: Mapping[str, Any], req: IstioRequest) -> bool:
    meta = doc.get("metadata", {})
    ns = meta.get("namespace", "default")
    if ns not in (req.namespace, ROOT_NAMESPACE):
        return False
    selector = doc.get("spec", {}).get("selector", {}).get("matchLabels")
    return selector is None or all(req.labels.get(k) == v for k, v in selector.items())


def _string(pattern: str, value: str | None, *, fold: bool = False) -> bool:
    if value is None:
        return False
    if fold:
        pattern, value = pattern.lower(), value.lower()
    if pattern == "*":
        return value != ""
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def _path(pattern: str, value: str) -> bool:
    if "{*}" not in pattern and "{**}" not in pattern:
        return _string(pattern, value)
    parts = []
    for seg in pattern.split("/"):
        parts.append("[^/]+" if seg == "{*}" else ".*" if seg == "{**}" else re.escape(seg))
    return re.fullmatch("/".join(parts), value) is not None


def _ip(cidrs: Sequence[str], value: str | None) -> bool:
    if value is None:
        return False
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return False
    for c in cidrs:
        net = ipaddress.ip_network(c, strict=False)
        if addr.version == net.version and addr in net:
            return True
    return False


def _field(spec: Mapping[str, Any], name: str, test: Callable[[str], bool]) -> bool:
    """A positive field (any value matches) and its `not` twin (no value matches)."""
    if name in spec and not any(test(v) for v in spec[name]):
        return False
    negated = "not" + name[0].upper() + name[1:]
    return not (negated in spec and any(test(v) for v in spec[negated]))


@dataclass(frozen=True)
class _Facts:
    req: IstioRequest
    request_principal: str | None
    claims: Mapping[str, Any] | None

    @property
    def namespace(self) -> str | None:
        parts = (self.req.peer or "").split("/")
        return parts[2] if len(parts) == 5 and parts[1] == "ns" else None


def _source(s: Mapping[str, Any], f: _Facts) -> bool:
    peer = f.req.peer if f.req.mtls else None
    remote = f.req.remote_ip or f.req.source_ip
    return (
        _field(s, "principals", lambda v: _string(v, peer))
        and _field(s, "requestPrincipals", lambda v: _string(v, f.request_principal))
        and _field(s, "namespaces", lambda v: _string(v, f.namespace if peer else None))
        and _field(s, "ipBlocks", lambda v: _ip([v], f.req.source_ip))
        and _field(s, "remoteIpBlocks", lambda v: _ip([v], remote))
    )


def _operation(o: Mapping[str, Any], f: _Facts) -> bool:
    bare = f.req.path.split("?", 1)[0]
    return (
        _field(o, "hosts", lambda v: _string(v, f.req.host, fold=True))
        and _field(o, "ports", lambda v: v == str(f.req.port))
        and _field(o, "methods", lambda v: _string(v, f.req.method))
        and _field(o, "paths", lambda v: _path(v, bare))
    )


def _claim(key: str, claims: Mapping[str, Any] | None) -> list[str] | None:
    names = re.findall(r"\[([^\]]+)\]", key[len("request.auth.claims") :])
    value: Any = claims
    for name in names:
        value = value.get(name) if isinstance(value, dict) else None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return None


def _values(key: str, f: _Facts) -> list[str] | None:
    req = f.req
    if key.startswith("request.headers["):
        value = req.headers.get(key[len("request.headers[") : -1].lower())
        return None if value is None else [value]
    if key.startswith("request.auth.claims["):
        return _claim(key, f.claims)
    simple = {
        "source.ip": req.source_ip,
        "remote.ip": req.remote_ip or req.source_ip,
        "source.namespace": f.namespace if req.mtls else None,
        "source.principal": req.peer if req.mtls else None,
        "request.auth.principal": f.request_principal,
        "destination.port": str(req.port),
    }
    if key in simple:
        value = simple[key]
        return None if value is None else [value]
    if key == "request.auth.audiences" and f.claims is not None:
        aud = f.claims.get("aud")
        return [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
    raise ValueError(f"unsupported condition key {key}")


def _condition(c: Mapping[str, Any], f: _Facts) -> bool:
    have = _values(c["key"], f)
    ip = c["key"] in ("source.ip", "remote.ip")

    def test(v: str) -> bool:
        if have is None:
            return False
        return any(_ip([v], h) if ip else _string(v, h) for h in have)

    return _field(c, "values", test)


def _rule(rule: Mapping[str, Any], f: _Facts) -> bool:
    froms = rule.get("from", [])
    tos = rule.get("to", [])
    return (
        (not froms or any(_source(x.get("source", {}), f) for x in froms))
        and (not tos or any(_operation(x.get("operation", {}), f) for x in tos))
        and all(_condition(c, f) for c in rule.get("when", []))
    )


def _matches(policy: Mapping[str, Any], f: _Facts) -> bool:
    return any(_rule(r, f) for r in policy.get("spec", {}).get("rules", []))


def _peer_mode(docs: Sequence[Mapping[str, Any]], req: IstioRequest) -> str:
    peers = [d for d in docs if d.get("kind") == "PeerAuthentication"]
    ranked = sorted(
        (d for d in peers if _applies(d, req)),
        key=lambda d: (
            "selector" not in d.get("spec", {}),
            d["metadata"].get("namespace") == ROOT_NAMESPACE,
        ),
    )
    for d in ranked:
        mode = d.get("spec", {}).get("mtls", {}).get("mode", "UNSET")
        if mode != "UNSET":
            return str(mode)
    return "PERMISSIVE"


def decide(
    docs: Sequence[Mapping[str, Any]],
    req: IstioRequest,
    *,
    jwks: Mapping[str, Any],
    now: float,
    ext_authz: Callable[[IstioRequest], bool] | None = None,
) -> IstioResult:
    """The sidecar's answer to `req` under the Istio documents `docs`."""
    if _peer_mode(docs, req) == "STRICT" and not req.mtls:
        return IstioResult(0, "PeerAuthentication STRICT: plaintext refused")
    principal, claims = None, None
    rules = [
        r
        for d in docs
        if d.get("kind") == "RequestAuthentication" and _applies(d, req)
        for r in d.get("spec", {}).get("jwtRules", [])
    ]
    auth = req.headers.get("authorization", "")
    if rules and auth.startswith("Bearer "):
        token = auth[len("Bearer ") :]
        for rule in rules:
            provider = {"issuer": rule["issuer"], "audiences": rule.get("audiences", [])}
            inline = rule.get("jwks")
            keys = json.loads(inline) if inline else jwks.get(rule.get("jwksUri", ""), {"keys": []})
            payload, _ = verify_jwt(token, provider, keys, now)
            if payload is not None:
                claims = payload
                principal = f"{payload.get('iss')}/{payload.get('sub')}"
                break
        else:
            return IstioResult(401, "RequestAuthentication: the token does not verify")
    facts = _Facts(req, principal, claims)
    policies = [d for d in docs if d.get("kind") == "AuthorizationPolicy" and _applies(d, req)]
    by_action: dict[str, list[Mapping[str, Any]]] = {}
    for p in policies:
        by_action.setdefault(p.get("spec", {}).get("action", "ALLOW"), []).append(p)
    custom = [p for p in by_action.get("CUSTOM", []) if _matches(p, facts)]
    if custom and (ext_authz is None or not ext_authz(req)):
        return IstioResult(403, "CUSTOM: the ext_authz provider denied")
    if any(_matches(p, facts) for p in by_action.get("DENY", [])):
        return IstioResult(403, "DENY policy matched")
    allows = by_action.get("ALLOW", [])
    if allows and not any(_matches(p, facts) for p in allows):
        return IstioResult(403, "no ALLOW policy matched")
    return IstioResult(200, "allowed")
