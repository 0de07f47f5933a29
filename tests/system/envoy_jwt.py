"""Envoy's `envoy.filters.http.jwt_authn` as its documentation describes it (for envoy_model).

Providers (issuer, audiences, clock skew, local or remote JWKS, token
locations), requirement trees (`provider_name`, `provider_and_audiences`,
`requires_any`, `requires_all`, `allow_missing`, `allow_missing_or_failed`),
the requirement of a request (per-route `requirement_name`/`disabled`, else
the first matching rule), and what a verified token leaves behind: its payload
in dynamic metadata (`payload_in_metadata`), the token header removed unless
`forward`, `forward_payload_header` and `claim_to_headers`.  Signatures are
checked with PyJWT on the key the JWKS offers for the token's `kid` and `alg`;
`alg: none` and algorithms the key does not declare never verify.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

__all__ = ["JwtFilter", "Unsupported", "Verdict", "query_of", "verify_jwt"]


class Unsupported(ValueError):
    """The bootstrap uses configuration the models do not interpret."""


RouteMatch = Callable[[Mapping[str, Any], Mapping[str, str]], bool]
JWT_NS = "envoy.filters.http.jwt_authn"


_ALGS = {
    "RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "PS256": "RSA", "PS384": "RSA",
    "PS512": "RSA", "ES256": "EC", "ES384": "EC", "ES512": "EC", "EdDSA": "OKP",
    "HS256": "oct", "HS384": "oct", "HS512": "oct",
}  # fmt: skip
_DEFAULT_FROM = ({"name": "Authorization", "value_prefix": "Bearer "},)


@dataclass(frozen=True)
class Verdict:
    """One requirement's outcome: ok, missing (no token) or failed, with Envoy's status."""

    state: str  # "ok" | "missing" | "failed"
    status: int = 401
    reason: str = ""


_OK = Verdict("ok", 200, "")


def _b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def verify_jwt(
    token: str, provider: Mapping[str, Any], jwks: Mapping[str, Any], now: float
) -> tuple[dict[str, Any] | None, Verdict]:
    """Envoy's JwtProvider checks: form, alg, issuer, audiences, exp/nbf with skew, signature."""
    parts = token.split(".")
    if len(parts) != 3:
        return None, Verdict("failed", 401, "Jwt is not in the form of Header.Payload.Signature")
    try:
        header, payload = _b64json(parts[0]), _b64json(parts[1])
    except (ValueError, UnicodeDecodeError):
        return None, Verdict("failed", 401, "Jwt header or payload is not valid base64url JSON")
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None, Verdict("failed", 401, "Jwt header or payload is not a JSON object")
    alg = header.get("alg")
    if alg not in _ALGS:
        return None, Verdict("failed", 401, f"Jwt alg {alg!r} is not supported")
    issuer = provider.get("issuer")
    if issuer and payload.get("iss") != issuer:
        return None, Verdict("failed", 401, "Jwt issuer is not configured")
    audiences = provider.get("audiences") or []
    if audiences:
        aud = payload.get("aud")
        have = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(a in audiences for a in have):
            return None, Verdict("failed", 403, "Audiences in Jwt are not allowed")
    skew = int(provider.get("clock_skew_seconds", 60))
    for claim in ("exp", "nbf"):
        if claim in payload and (
            isinstance(payload[claim], bool) or not isinstance(payload[claim], (int, float))
        ):
            return None, Verdict("failed", 401, f"Jwt {claim} is not a number")
    if "exp" in payload and now > payload["exp"] + skew:
        return None, Verdict("failed", 401, "Jwt is expired")
    if "exp" not in payload and provider.get("require_expiration"):
        return None, Verdict("failed", 401, "Jwt has no exp")
    if "nbf" in payload and now + skew < payload["nbf"]:
        return None, Verdict("failed", 401, "Jwt not yet valid")
    for key in jwks.get("keys", []):
        if not isinstance(key, dict) or key.get("kty") != _ALGS[alg]:
            continue
        if "kid" in header and key.get("kid") not in (None, header["kid"]):
            continue
        if key.get("alg") not in (None, alg):
            continue
        try:
            jwk = jwt.PyJWK(key, algorithm=alg)
            jwt.decode(
                token,
                jwk.key,
                algorithms=[alg],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
        return payload, _OK
    return None, Verdict("failed", 401, "Jwt verification fails")


def query_of(path: str) -> dict[str, list[str]]:
    query = urllib.parse.urlsplit(path).query
    return urllib.parse.parse_qs(query, keep_blank_values=True)


def _extract(
    provider: Mapping[str, Any], headers: Mapping[str, str], path: str
) -> list[tuple[str, str | None]]:
    """(token, header it came from) for each location of the provider, in order."""
    from_headers = provider.get("from_headers")
    from_params = provider.get("from_params")
    if provider.get("from_cookies"):
        raise Unsupported("jwt_authn from_cookies")
    if from_headers is None and from_params is None:
        from_headers, from_params = list(_DEFAULT_FROM), ["access_token"]
    found: list[tuple[str, str | None]] = []
    for spec in from_headers or []:
        value = headers.get(spec["name"].lower())
        prefix = spec.get("value_prefix", "")
        if value is not None and value.startswith(prefix):
            token = value[len(prefix) :].strip()
            if token:
                found.append((token, spec["name"].lower()))
    for name in from_params or []:
        for value in query_of(path).get(name, []):
            found.append((value, None))
    return found


class JwtFilter:
    """One `JwtAuthentication` config applied to a request."""

    def __init__(
        self,
        config: Mapping[str, Any],
        jwks: Mapping[str, Any],
        now: float,
        route_match: RouteMatch,
    ) -> None:
        if config.get("filter_state_rules"):
            raise Unsupported("jwt_authn filter_state_rules")
        self.config = config
        self.providers: Mapping[str, Any] = config.get("providers", {})
        self.now = now
        self.route_match = route_match
        self.keys = {name: self._keys(p, jwks) for name, p in self.providers.items()}

    @staticmethod
    def _keys(provider: Mapping[str, Any], jwks: Mapping[str, Any]) -> Mapping[str, Any]:
        if "local_jwks" in provider:
            source = provider["local_jwks"]
            if "inline_string" in source:
                return json.loads(source["inline_string"])  # type: ignore[no-any-return]
            if "filename" in source:
                return jwks.get(source["filename"], {"keys": []})  # type: ignore[no-any-return]
            raise Unsupported(f"local_jwks {sorted(source)}")
        if "remote_jwks" in provider:
            uri = provider["remote_jwks"]["http_uri"]["uri"]
            return jwks.get(uri, {"keys": []})  # type: ignore[no-any-return]
        raise Unsupported("a jwt provider without local_jwks or remote_jwks")

    def requirement(
        self, per_route: Mapping[str, Any] | None, headers: Mapping[str, str]
    ) -> Mapping[str, Any] | None:
        """The requirement for this request: per-route name, else the first matching rule."""
        if per_route is not None:
            if per_route.get("disabled"):
                return None
            name = per_route.get("requirement_name")
            if name is not None:
                return self.config.get("requirement_map", {})[name]  # type: ignore[no-any-return]
        for rule in self.config.get("rules", []):
            if self.route_match(rule["match"], headers):
                if "requirement_name" in rule:
                    return self.config["requirement_map"][rule["requirement_name"]]  # type: ignore[no-any-return]
                return rule.get("requires")  # type: ignore[no-any-return]
        return None

    def run(
        self, requirement: Mapping[str, Any], headers: dict[str, str], metadata: dict[str, Any]
    ) -> Verdict:
        """Check `requirement`; write verified payloads and strip forwarded-off tokens."""
        self._verified: dict[str, tuple[dict[str, Any], str | None]] = {}
        self._cache: dict[str, Verdict] = {}
        verdict = self._eval(requirement, headers, headers[":path"])
        for name, (payload, header) in sorted(self._verified.items()):
            p = self.providers[name]
            if "payload_in_metadata" in p:
                metadata.setdefault(JWT_NS, {})[p["payload_in_metadata"]] = payload
            if header is not None and not p.get("forward", False):
                headers.pop(header, None)
            if "forward_payload_header" in p:
                raw = json.dumps(payload, separators=(",", ":")).encode()
                headers[p["forward_payload_header"].lower()] = (
                    base64.urlsafe_b64encode(raw).decode().rstrip("=")
                )
            for c in p.get("claim_to_headers", []):
                value = payload.get(c["claim_name"])
                if isinstance(value, (str, int, float, bool)):
                    headers[c["header_name"].lower()] = (
                        str(value).lower() if isinstance(value, bool) else str(value)
                    )
        return verdict

    def _provider(
        self,
        name: str,
        headers: Mapping[str, str],
        path: str,
        audiences: Sequence[str] | None = None,
    ) -> Verdict:
        key = f"{name}|{audiences}"
        if key in self._cache:
            return self._cache[key]
        provider = dict(self.providers[name])
        if audiences is not None:
            provider["audiences"] = list(audiences)
        tokens = _extract(provider, headers, path)
        if not tokens:
            verdict = Verdict("missing", 401, "Jwt is missing")
        else:
            token, header = tokens[0]
            payload, verdict = verify_jwt(token, provider, self.keys[name], self.now)
            if payload is not None:
                self._verified[name] = (payload, header)
        self._cache[key] = verdict
        return verdict

    def _eval(self, req: Mapping[str, Any], headers: Mapping[str, str], path: str) -> Verdict:
        if "provider_name" in req:
            return self._provider(req["provider_name"], headers, path)
        if "provider_and_audiences" in req:
            pa = req["provider_and_audiences"]
            return self._provider(pa["provider_name"], headers, path, pa.get("audiences", []))
        if "allow_missing_or_failed" in req:
            for name in self.providers:  # every provider still verifies what it finds
                self._provider(name, headers, path)
            return _OK
        if "allow_missing" in req:
            verdicts = [self._provider(n, headers, path) for n in self.providers]
            failed = [v for v in verdicts if v.state == "failed"]
            return failed[0] if failed and not any(v.state == "ok" for v in verdicts) else _OK
        if "requires_any" in req:
            children = req["requires_any"]["requirements"]
            missing_ok = any("allow_missing" in c for c in children)
            verdicts = [self._eval(c, headers, path) for c in children if "allow_missing" not in c]
            if any(v.state == "ok" for v in verdicts):
                return _OK
            failed = [v for v in verdicts if v.state == "failed"]
            if failed:
                return failed[0]
            return _OK if missing_ok else (verdicts[0] if verdicts else _OK)
        if "requires_all" in req:
            for child in req["requires_all"]["requirements"]:
                verdict = self._eval(child, headers, path)
                if verdict.state != "ok":
                    return verdict
            return _OK
        raise Unsupported(f"jwt requirement {sorted(req)}")
