"""Shared pieces of the MCP gateway tests: a test IdP key, a policy tree, tokens, an upstream.

* `TestIdp`: an RSA key pair made with `cryptography` in the test; its public half
  is written as a JWKS file into the tree, tokens are signed with PyJWT.
* `write_tree(root, upstream_url)`: a policy with two providers (agents, people),
  REST tools, rules that list tools per caller, a `require mfa` and a tight
  `limit` on one integration.
* `RecordingUpstream`: a starlette app served by uvicorn in a thread on a free
  loopback port; it answers the tools' routes and records every request's headers
  (to prove that the client's `Authorization` never reaches it).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

RESOURCE = "http://mcp.test/mcp"
AGENTS = "https://agents.test"
PEOPLE = "https://people.test"


@dataclass
class TestIdp:
    """One signing key (kid `k1`) and its JWKS."""

    __test__ = False
    key: Any = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    kid: str = "k1"

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        public.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [public]}

    def token(self, claims: dict[str, Any], *, alg: str = "RS256", key: Any = None,
              headers: dict[str, Any] | None = None) -> str:  # fmt: skip
        now = int(time.time())
        body = {"iat": now, "exp": now + 300, "aud": RESOURCE, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key if key is not None else self.key, algorithm=alg,
                          headers={"kid": self.kid, **(headers or {})})  # fmt: skip

    def agent(self, sub: str, **extra: Any) -> str:
        return self.token({"iss": AGENTS, "sub": sub, **extra})

    def person(self, sub: str, groups: list[str], mfa: bool = False, **extra: Any) -> str:
        claims = {"iss": PEOPLE, "sub": sub, "email": f"{sub}@corp.test", "groups": groups,
                  "amr": ["pwd", "mfa"] if mfa else ["pwd"], **extra}  # fmt: skip
        return self.token(claims)


POLICY = """\
package gw

provider agents {{
  issuer    "{agents}"
  jwks      file "keys/idp.jwks.json"
  audiences ["{resource}"]
  skew      30s
  type      agent
}}

provider people {{
  issuer    "{people}"
  jwks      file "keys/idp.jwks.json"
  audiences ["{resource}"]
  skew      30s
  claims    {{ id: "sub", email: "email", groups: "groups" }}
  mfa       "amr" in ["mfa"]
  type      user
}}

integration crm-lookup {{
  description "Look up a customer"
  expose      tool "crm.lookup" input {{ customer_id: string }}
  call        GET "{upstream}/customers/{{customer_id}}"
  timeout     2s
  map {{
    id    = $.id
    name  = $.first_name + " " + $.last_name
    tier  = $.segment ?? "standard"
  }}
}}

integration docs-search {{
  description "Search the docs"
  expose      tool "docs.search" input {{ query: string, limit: number }}
  call        POST "{upstream}/search"
  timeout     2s
  limit       2/s burst 2
  map {{
    hits = len($.result ?? [])
  }}
}}

integration billing-invoice {{
  description "Latest invoice"
  expose      tool "billing.invoice" input {{ customer_id: string }}
  call        GET "{upstream}/invoices/{{customer_id}}"
  timeout     2s
  map {{
    total    = $.amount_due / 100
    currency = upper($.currency)
  }}
}}

integration ops-restart {{
  description "Restart a service (nobody may)"
  expose      tool "ops.restart" input {{ service: string }}
  call        POST "{upstream}/restart"
  map {{
    ok = $.ok
  }}
}}

policy access {{
  default deny

  crm:     allow agent [alpha, gamma] -> tool "crm.lookup"
  blocked: deny agent any -> tool "crm.lookup" when args.customer_id == "c-blocked"
  docs:    allow agent any -> tool "docs.search"
  no-beta: deny agent beta -> tool "docs.search" when principal.id == "beta"
  billing: allow user any -> tool "billing.invoice" when "finance" in principal.groups
  support: allow user any -> tool "crm.lookup" when "support" in principal.groups
  runaway: deny agent any -> tool any unless stats.principal.calls_1m <= 1000

  require mfa when resource.id == "billing.invoice"
}}
"""


def write_tree(root: Path, upstream: str, idp: TestIdp) -> Path:
    """The test policy tree under `root` (its JWKS from `idp`), calling `upstream`."""
    (root / "keys").mkdir(parents=True, exist_ok=True)
    (root / "keys" / "idp.jwks.json").write_text(json.dumps(idp.jwks()))
    text = POLICY.format(agents=AGENTS, people=PEOPLE, resource=RESOURCE, upstream=upstream)
    (root / "main.mcp").write_text(text)
    return root


# ------------------------------------------------------------------ the upstream


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RecordingUpstream:
    """A loopback REST upstream in a thread that records the headers it receives."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _record(self, request: Request) -> None:
        self.seen.append({"path": request.url.path, "headers": dict(request.headers)})

    def app(self) -> Starlette:
        async def customer(request: Request) -> Response:
            self._record(request)
            cid = request.path_params["cid"]
            return JSONResponse({"id": cid, "first_name": "Ada", "last_name": "Lovelace",
                                 "ssn": "000-00-0000", "segment": "gold"})  # fmt: skip

        async def search(request: Request) -> Response:
            self._record(request)
            return JSONResponse({"result": [1, 2, 3]})

        async def invoice(request: Request) -> Response:
            self._record(request)
            return JSONResponse({"amount_due": 12345, "currency": "eur", "card": "4111"})

        return Starlette(routes=[
            Route("/customers/{cid}", customer),
            Route("/search", search, methods=["POST"]),
            Route("/invoices/{cid}", invoice),
        ])  # fmt: skip

    def __enter__(self) -> RecordingUpstream:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test upstream did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(10)
