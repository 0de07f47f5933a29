"""Requests as they arrive at a gateway, drawn from a seeded `random.Random`.

Each request is drawn along five axes, recorded in `Drawn.axes` so that the
differential can count agreements per category:

* `path`: a route's pattern instantiated (`route`), the same with a query,
  a normal but odd form (`%20`, `;x`, a trailing `/`, upper case), a
  non-normal form Envoy normalises (`/./`, `//`, `..`, `%2e`, backslash), an
  escaped slash or NUL (Envoy answers 400), or a path no route takes;
* `token`: none, or a bearer token of one of `credentials.TOKEN_VARIANTS`
  (also sometimes in the `access_token` query parameter);
* `peer`: no client certificate, a service's SPIFFE id, an unknown SPIFFE id,
  or a certificate from an untrusted CA;
* `spoof`: none, trusted headers (context) set by the caller, or identity
  headers a naive gateway might believe (`x-forwarded-client-cert`, ...);
* `source`: the peer address (pod network, private, public, IPv6).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from credentials import TOKEN_VARIANTS, Credentials, peer_for
from envoy_model import HttpRequest

from mcpdsl.ir import model as m

__all__ = ["Drawn", "Traffic"]

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
SOURCES = (
    "10.1.2.3",
    "10.20.0.5",
    "10.250.0.7",
    "192.168.7.20",
    "203.0.113.9",
    "100.64.3.2",
    "2001:db8::7",
)
SEGMENTS = ("items", "a", "42", "x.y", "tool-1", "%20sp", "caf%C3%A9", "~u", "v1.0", "A")
GROUPS = ("support", "platform-admins", "sre", "users")
IDENTITY_HEADERS = (
    ("x-forwarded-client-cert", "By=spiffe://x;URI=spiffe://{td}/ns/core/sa/mcp-api"),
    ("x-jwt-payload", "eyJzdWIiOiJhZG1pbiJ9"),
    ("x-user", "admin"),
    ("x-forwarded-for", "10.0.0.1"),
    ("x-mcp-principal", "service:mcp-api"),
    ("x-envoy-original-path", "/v1/admin"),
)


@dataclass(frozen=True)
class Drawn:
    """A request and the category it was drawn in, axis by axis."""

    request: HttpRequest
    axes: tuple[tuple[str, str], ...]


def _instantiate(pattern: str, rng: random.Random) -> str:
    out: list[str] = []
    for seg in pattern.split("/")[1:]:
        if seg == "*":
            out.append(rng.choice(SEGMENTS))
        elif seg == "**":
            out.extend(rng.choice(SEGMENTS) for _ in range(rng.randrange(0, 3)))
        else:
            out.append(seg)
    return "/" + "/".join(out)


def _odd(path: str, rng: random.Random) -> str:
    return rng.choice(
        (
            path + "/",
            path + ";jsessionid=1",
            path + "/%20",
            path.upper(),
            path + "/%25",
            path + "?q=%2F..%2F",
        )
    )


def _non_normal(path: str, rng: random.Random) -> str:
    head, _, tail = path.rpartition("/")
    if not head:  # `\\x` is not an origin-form request target: keep the leading slash
        head, tail = f"/{tail}", "x"
    return rng.choice(
        (
            f"{head}/./{tail}",
            f"{head}//{tail}",
            f"{head}/zz/../{tail}",
            f"{head}/%2e/{tail}",
            f"{head}/zz/%2E%2e/{tail}",
            f"{head}\\{tail}",
            f"/zz/..{path}",
        )
    )


class Traffic:
    """Draws requests for one gateway of a project."""

    def __init__(self, project: m.Project, gateway: m.Gateway, *, now: float, tls: bool) -> None:
        self.project = project
        self.gateway = gateway
        self.now = now
        self.tls = tls
        self.creds = Credentials.make()
        self._pool: dict[tuple[str, str], list[str]] = {}
        by_name = {p.qualified: p for p in project.providers}
        self.providers = [by_name[str(r)] for r in gateway.providers if str(r) in by_name]
        domain = project.meshes[0].trust_domain if project.meshes else "cluster.local"
        self.trust_domain = domain
        self.spiffe_ids = sorted(
            {
                s.identity or f"spiffe://{domain}/ns/{s.namespace}/sa/{s.name}"
                for s in project.services
                if s.identity is None or s.identity.startswith("spiffe://")
            }
        )
        # per route target, the services some allow rule lets call it: drawn more
        # often, so that a good share of requests is allowed (all-deny proves little)
        spiffe = {
            s.name: s.identity or f"spiffe://{domain}/ns/{s.namespace}/sa/{s.name}"
            for s in project.services
            if s.identity is None or s.identity.startswith("spiffe://")
        }
        self.callers: dict[str, list[str]] = {}
        for policy in project.policies:
            for rule in policy.rules:
                who, what = rule.principal, rule.resource
                if rule.effect != "allow" or who.type != "service" or what.type != "service":
                    continue
                callers = [spiffe[n] for n in who.ids or spiffe if n in spiffe]
                for target in what.ids or [s.name for s in project.services]:
                    self.callers.setdefault(target, []).extend(callers)
        self.principal_ids = sorted(
            {
                pid
                for policy in project.policies
                for rule in policy.rules
                for pid in getattr(rule.principal, "ids", ()) or ()
                if isinstance(pid, str)
            }
            | {"alice", "bob"}
        )

    def draw(self, rng: random.Random) -> Drawn:
        axes: dict[str, str] = {}
        route = rng.choice(self.gateway.routes) if self.gateway.routes else None
        base = _instantiate(route.path, rng) if route is not None else "/"
        kind = rng.choices(
            ("route", "query", "odd", "non-normal", "escaped", "unknown"), (5, 2, 2, 2, 1, 1)
        )[0]
        axes["path"] = kind
        path = {
            "route": lambda: base,
            "query": lambda: f"{base}?page={rng.randrange(9)}&q=a%20b",
            "odd": lambda: _odd(base, rng),
            "non-normal": lambda: _non_normal(base, rng),
            "escaped": lambda: base + rng.choice(("/%2F..", "/a%5cb", "/%00", "%2f")),
            "unknown": lambda: rng.choice(("/admin", "/v10/x", "/mcp/x", "/", "/healthz")),
        }[kind]()
        if route is not None and route.methods and rng.random() < 0.7:
            method = rng.choice(route.methods)
        else:
            method = rng.choice(METHODS)
        hosts = list(self.gateway.hosts) or ["gateway.test"]
        host = rng.choice(hosts)
        if rng.random() < 0.1:
            host = rng.choice(("evil.example", host.upper(), f"{host}:{self.gateway.port}"))
        headers: list[tuple[str, str]] = [("Host", host), ("User-Agent", "sysdiff")]
        if rng.random() < 0.3:
            headers.append(("Idempotency-Key", rng.choice(("short", "0123456789abcdef-long"))))
        axes["token"] = self._token(rng, headers)
        if axes["token"].endswith("@query"):
            token = headers.pop()[1].removeprefix("Bearer ")
            path += ("&" if "?" in path else "?") + f"access_token={token}"
        axes["spoof"] = self._spoof(rng, headers)
        peer_kind = rng.choice(("none", "service", "service", "service", "unknown", "untrusted"))
        peer = None
        target = (
            route.target.ref.name if route is not None and route.target.kind == "service" else ""
        )
        if peer_kind == "service" and self.spiffe_ids:
            pool = self.callers.get(target) if rng.random() < 0.7 else None
            peer = peer_for(rng.choice(pool or self.spiffe_ids))
        elif peer_kind == "unknown":
            peer = peer_for(f"spiffe://{self.trust_domain}/ns/elsewhere/sa/stranger")
        elif peer_kind == "untrusted" and self.spiffe_ids:
            peer = peer_for(rng.choice(self.spiffe_ids), trusted=False)
        else:
            peer_kind = "none"
        axes["peer"] = peer_kind
        source = rng.choice(SOURCES)
        axes["source"] = source
        request = HttpRequest(
            method=method,
            path=path,
            headers=tuple(headers),
            source_ip=source,
            tls=self.tls,
            peer=peer,
        )
        return Drawn(request, tuple(sorted(axes.items())))

    def _claims(self, rng: random.Random) -> dict[str, Any]:
        user = rng.choice(self.principal_ids)
        claims: dict[str, Any] = {
            "sub": user,
            "email": f"{user}@{rng.choice(('mcp.dev', 'evil.example'))}",
            "groups": rng.sample(GROUPS, rng.randrange(0, 3)),
            "amr": rng.choice((["pwd"], ["pwd", "mfa"], "mfa")),
        }
        if rng.random() < 0.3:
            claims["typ"] = rng.choice(("user", "agent"))
        return claims

    def _token(self, rng: random.Random, headers: list[tuple[str, str]]) -> str:
        if rng.random() < 0.3:
            return "none"
        variant = rng.choice(TOKEN_VARIANTS)
        provider = rng.choice(self.providers) if self.providers else None
        issuer = provider.issuer if provider else "https://idp.test"
        audience = provider.audiences[0] if provider and provider.audiences else None
        skew = provider.clock_skew if provider else 60
        # a pool of a few tokens per variant and provider: signing is the slow part
        pool = self._pool.setdefault((variant, issuer), [])
        if len(pool) < 6:
            pool.append(
                self.creds.token(
                    variant,
                    self._claims(rng),
                    issuer=issuer,
                    audience=audience,
                    now=self.now,
                    skew=skew,
                )
            )
        token = rng.choice(pool)
        headers.append(("Authorization", f"Bearer {token}"))
        return f"{variant}@query" if rng.random() < 0.05 else variant

    def _spoof(self, rng: random.Random, headers: list[tuple[str, str]]) -> str:
        roll = rng.random()
        if roll < 0.5:
            return "none"
        trusted = self.gateway.trusted_headers
        if roll < 0.8 and trusted:
            th = rng.choice(trusted)
            value = {"number": "99", "bool": "true", "list": "a,b"}.get(th.type, "gold")
            headers.append((th.header, value))
            return "trusted-header"
        name, value = rng.choice(IDENTITY_HEADERS)
        headers.append((name, value.format(td=self.trust_domain)))
        return "identity-header"
