"""Issue 12's "done when": a user rule with MFA works at the gateway with a valid token.

policies/ `console-write` allows `POST /v1/**` on mcp-api to a user in
`platform-admins` whose token proves MFA.  Through the generated Envoy
bootstrap (jwt_authn -> RBAC -> ext_authz -> the generated Rego in the real
OPA engine), the same request is forwarded with a valid MFA token and refused
without MFA, without a token, or with a token the gateway must not trust.
"""

from __future__ import annotations

import functools

import pytest
from credentials import Credentials
from envoy_model import EnvoyModel, HttpRequest, run_all
from harness import JWKS_URI, NOW, Opa, _bootstraps, build
from test_system_differential import REPO, with_identity

ADMIN = {
    "sub": "alice",
    "typ": "user",
    "email": "alice@mcp.dev",
    "groups": ["platform-admins"],
}


def _status(token: str | None) -> int:
    engine, files = build(REPO / "policies", functools.partial(with_identity, tls=False))
    jwks = Credentials.make().jwks()
    uris = {p.jwks_uri: jwks for p in engine.project.providers if p.jwks_uri}
    [bootstrap] = [b for key, b in _bootstraps(files).items() if key == "platform.public"]
    model = EnvoyModel(bootstrap, jwks={**uris, JWKS_URI: jwks}, now=NOW)
    headers = [("Host", "api.mcp.dev")]
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    request = HttpRequest("POST", "/v1/items", tuple(headers), source_ip="203.0.113.9", tls=True)
    [outcome] = run_all(model, [request], Opa(files))
    return outcome.status


def _token(variant: str, amr: list[str]) -> str:
    return Credentials.make().token(
        variant,
        {**ADMIN, "amr": amr},
        issuer="https://idp.sysdiff.test",
        audience="https://mcp.dev",
        now=NOW,
        skew=60,
    )


@pytest.mark.parametrize(
    ("token", "status"),
    [
        pytest.param(("valid", ["pwd", "mfa"]), 200, id="valid-token-with-mfa"),
        pytest.param(("valid-ec", ["mfa"]), 200, id="valid-ec-token-with-mfa"),
        pytest.param(("valid", ["pwd"]), 403, id="valid-token-without-mfa"),
        pytest.param(None, 403, id="no-token"),
        pytest.param(("expired", ["mfa"]), 401, id="expired"),
        pytest.param(("forged", ["mfa"]), 401, id="forged"),
        pytest.param(("wrong-audience", ["mfa"]), 403, id="wrong-audience"),
        pytest.param(("alg-none", ["mfa"]), 401, id="alg-none"),
    ],
)
def test_console_write_needs_a_verified_mfa_token(
    token: tuple[str, list[str]] | None, status: int
) -> None:
    assert _status(None if token is None else _token(*token)) == status
