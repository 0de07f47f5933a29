"""The MCP gateway as an OAuth 2.1 resource server: bearer JWTs verified against the providers.

`server X { mcp resource "URL" accept [p, ...] }` names the identity providers
whose tokens `/mcp` accepts and the gateway's resource identifier.  A token is
accepted when (PyJWT):

* its `iss` is the issuer of an accepted provider (that provider verifies it);
* it is signed by a key of that provider's JWKS (`jwks file`, read with the one
  loader `mcpdsl.ir.jwks.load_jwks`, or `jwks url`, fetched with httpx: bounded
  size and time, cached, refetched on an unknown `kid` at most once per
  `REFRESH_INTERVAL`) with an asymmetric algorithm of the key's type — never
  `none`, never an HMAC keyed with a public key;
* its `aud` holds the gateway's resource (RFC 8707), its `exp` is in the future
  and its `nbf`/`iat` not too far in it (the provider's clock skew).

The principal and `request.auth` come from the claims through the provider's
claim mapping, the very function the CheckRequest door uses
(`mcpdsl.evaluate.checkrequest.principal_reader`).  A refusal says why in a
short reason; the HTTP side answers 401 with `WWW-Authenticate` (RFC 6750 and
RFC 9728's `resource_metadata`).  The client's token is never forwarded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt

from mcpdsl.evaluate.checkrequest import principal_reader
from mcpdsl.ir import model as m
from mcpdsl.ir.door import claims as claims_of
from mcpdsl.ir.jwks import MAX_JWKS_BYTES, key_problem, load_jwks

#: Signature algorithms by JWK key type: asymmetric only.
ALGORITHMS = {
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "EC": ("ES256", "ES384", "ES512"),
    "OKP": ("EdDSA",),
}
#: A remote JWKS is refetched for an unknown `kid` at most this often (seconds).
REFRESH_INTERVAL = 30.0
#: A remote JWKS is kept this long before it is fetched again (seconds).
JWKS_TTL = 300.0
JWKS_TIMEOUT = 5.0
#: A bearer token longer than this is refused unread.
MAX_TOKEN = 16 * 1024


class TokenRejected(Exception):
    """A token that is not accepted; `str()` is the reason (safe to send to the client)."""


@dataclass(frozen=True)
class Identity:
    """Who a verified token names: principal and `request.auth`, as the door maps them."""

    principal: dict[str, Any]
    auth: dict[str, Any]
    provider: str
    issuer: str
    subject: str | None
    expires_at: int | None


@dataclass
class _KeySet:
    """The usable keys of one provider, by `kid` (None: the only key without a kid)."""

    keys: dict[str | None, jwt.PyJWK] = field(default_factory=dict)
    fetched: float = -1e18
    refreshed: float = -1e18


def parse_keys(doc: Any) -> dict[str | None, jwt.PyJWK]:
    """The usable signing keys of a JWKS document (keys with a problem are skipped)."""
    out: dict[str | None, jwt.PyJWK] = {}
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        return out
    for key in keys:
        if key_problem(key) is not None:
            continue
        kid = key.get("kid")
        try:
            out[kid if isinstance(kid, str) else None] = jwt.PyJWK(key)
        except (jwt.exceptions.PyJWKError, jwt.exceptions.InvalidKeyError, ValueError, TypeError):
            continue
    return out


Fetch = Callable[[str], Any]  # async: URL -> bytes


async def fetch_jwks(url: str) -> bytes:
    """GET a remote JWKS with httpx: at most MAX_JWKS_BYTES, within JWKS_TIMEOUT seconds."""
    import httpx

    async with (
        httpx.AsyncClient(timeout=JWKS_TIMEOUT, follow_redirects=False) as client,
        client.stream("GET", url, headers={"accept": "application/json"}) as response,
    ):
        if response.status_code != 200:
            raise OSError(f"the JWKS at {url} answered {response.status_code}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_JWKS_BYTES:
                raise OSError(f"the JWKS at {url} is larger than {MAX_JWKS_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


class Authenticator:
    """Verifies bearer tokens for one MCP endpoint (module doc)."""

    def __init__(
        self,
        resource: str,
        providers: tuple[m.Provider, ...],
        root: str,
        *,
        fetch: Fetch = fetch_jwks,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.resource = resource
        self.providers = providers
        self._by_issuer = {p.issuer: p for p in reversed(providers)}  # first declared wins
        self._root = root
        self._fetch = fetch
        self._clock = clock
        self._sets: dict[str, _KeySet] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def issuers(self) -> list[str]:
        out: list[str] = []
        for p in self.providers:
            if p.issuer not in out:
                out.append(p.issuer)
        return out

    async def _keys(self, provider: m.Provider, kid: str | None) -> jwt.PyJWK | None:
        name = provider.qualified
        keyset = self._sets.setdefault(name, _KeySet())
        if provider.jwks_file is not None:
            if not keyset.keys:
                # The keys the IR carries (read when the tree was compiled); the file
                # itself only for an IR written before it carried them.
                text = provider.jwks_keys
                if text is None:
                    text = load_jwks(self._root, provider.jwks_file).text
                if text is not None:
                    keyset.keys = parse_keys(json.loads(text))
            return _pick(keyset.keys, kid)
        if provider.jwks_uri is None:
            return None
        now = self._clock()
        found = _pick(keyset.keys, kid)
        stale = now - keyset.fetched > JWKS_TTL
        if found is not None and not stale:
            return found
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            found = _pick(keyset.keys, kid)
            if found is not None and now - keyset.fetched <= JWKS_TTL:
                return found
            if now - keyset.refreshed < REFRESH_INTERVAL and not stale:
                return found  # an unknown kid: refetched at most once per interval
            keyset.refreshed = now
            try:
                raw = await self._fetch(provider.jwks_uri)
                keys = parse_keys(json.loads(raw))
            except (OSError, ValueError, RecursionError, Exception):
                return found  # keep the last good keys
            keyset.keys, keyset.fetched = keys, now
            return _pick(keys, kid)

    async def verify(self, token: str) -> Identity:
        """The identity of a valid token; TokenRejected (with a reason) otherwise."""
        if len(token) > MAX_TOKEN:
            raise TokenRejected("the token is too long")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.exceptions.DecodeError, ValueError, TypeError, RecursionError):
            raise TokenRejected("the token is not a JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise TokenRejected("unsigned tokens (`alg: none`) are not accepted")
        issuer = unverified.get("iss") if isinstance(unverified, dict) else None
        provider = self._by_issuer.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            raise TokenRejected("the token's issuer is not accepted here")
        kid = header.get("kid")
        key = await self._keys(provider, kid if isinstance(kid, str) else None)
        if key is None:
            raise TokenRejected("no key of the issuer verifies the token")
        allowed = ALGORITHMS.get(str(key._jwk_data.get("kty")), ())
        key_alg = key._jwk_data.get("alg")
        if isinstance(key_alg, str):
            allowed = tuple(a for a in allowed if a == key_alg)
        if alg not in allowed:
            raise TokenRejected(f"the algorithm `{alg[:20]}` is not accepted for this key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(allowed),
                audience=self.resource,
                issuer=provider.issuer,
                leeway=provider.clock_skew,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.exceptions.ExpiredSignatureError:
            raise TokenRejected("the token has expired") from None
        except jwt.exceptions.ImmatureSignatureError:
            raise TokenRejected("the token is not valid yet") from None
        except jwt.exceptions.InvalidAudienceError:
            raise TokenRejected("the token was not issued for this resource") from None
        except jwt.exceptions.InvalidIssuerError:
            raise TokenRejected("the token's issuer is not accepted here") from None
        except jwt.exceptions.MissingRequiredClaimError as exc:
            raise TokenRejected(f"the token has no `{exc.claim}` claim") from None
        except jwt.exceptions.InvalidSignatureError:
            raise TokenRejected("the token's signature does not verify") from None
        except (jwt.exceptions.InvalidTokenError, ValueError, TypeError):
            raise TokenRejected("the token is not valid") from None
        principal, auth = principal_reader(claims_of(provider))(claims)
        sub = claims.get("sub")
        exp = claims.get("exp")
        return Identity(
            principal=principal,
            auth=auth,
            provider=provider.qualified,
            issuer=provider.issuer,
            subject=sub if isinstance(sub, str) else None,
            expires_at=int(exp) if isinstance(exp, (int, float)) else None,
        )


def _pick(keys: dict[str | None, jwt.PyJWK], kid: str | None) -> jwt.PyJWK | None:
    if kid is not None:
        return keys.get(kid)
    if len(keys) == 1:
        return next(iter(keys.values()))
    return keys.get(None)


def challenge(metadata_url: str, error: str | None = None, description: str | None = None) -> str:
    """A `WWW-Authenticate: Bearer ...` value (RFC 6750 section 3, RFC 9728 section 5.1)."""
    parts = [f'resource_metadata="{metadata_url}"']
    if error is not None:
        parts.append(f'error="{error}"')
    if description is not None:
        parts.append('error_description="' + description.replace('"', "'") + '"')
    return "Bearer " + ", ".join(parts)


def metadata_document(resource: str, issuers: list[str]) -> dict[str, Any]:
    """The protected-resource metadata of RFC 9728 section 2 for the gateway."""
    return {
        "resource": resource,
        "authorization_servers": issuers,
        "bearer_methods_supported": ["header"],
    }


__all__ = [
    "Authenticator",
    "Identity",
    "TokenRejected",
    "challenge",
    "metadata_document",
    "parse_keys",
]
