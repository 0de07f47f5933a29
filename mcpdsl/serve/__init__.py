"""`mcpdsl serve`: the decision server (docs/serve.md).

One asyncio process serves one policy (a tree or a signed build) to the
enforcement points that cannot embed `mcpdsl.Engine`:

* gRPC `envoy.service.auth.v3.Authorization/Check` (`grpc_authz`) for Envoy's
  ext_authz filter and Istio's CUSTOM action, mapped to the canonical request
  by the one CheckRequest mapping (`mcpdsl.evaluate.checkrequest`), served by
  the server's own HTTP/2 listener (`h2grpc`; grpcio's with `--grpc-server
  grpcio`);
* OPA's Data API (`POST/GET /v1/data/{path}`) for clients written for OPA (`app`),
  over the generated Rego packages' documents (`documents`);
* `/health`, `/ready`, `/v1/status`, `/metrics` for the platform (`app`, `metrics`,
  `status`: reloads and why one was refused);
* the MCP gateway at `/mcp` (`gateway`, docs/mcp.md) for agents: bearer tokens
  verified as an OAuth resource server (`oauth`), tools listed and called under
  the policy, REST upstreams (`upstream`) and federated MCP upstreams
  (`federation`: the tools of the MCP servers that `upstream mcp` integrations
  name, discovered, namespaced and proxied; their schemas applied by `schemas`),
  one circuit breaker semantics for both (`breaker`).

`limits` (with `http_guard`, uvicorn's h11 protocol hardened, and `h2grpc`'s
own checks) bound what a hostile client can hold: body, head and message
sizes, slow heads and bodies, idle connections, requests in flight.

`state.ServerState` is the one place a decision is made: it reads the engine's
prepared project once per request, adds the server-side behaviour signals and
shared limits (`store`), decides, logs and counts.  The transports only
translate.  `runner.serve` runs both transports in one event loop.
"""

from __future__ import annotations
