"""The HTTP side of `mcpdsl serve`: OPA's Data API, health, readiness, status and metrics.

OPA Data API v1, the subset a decision client uses (docs/serve.md):

* `POST /v1/data/{path}` with `{"input": ...}` -> `{"result": ..., "decision_id": ...}`;
  without an `input` key the document is decided without input and the
  answer carries a `warning`, as OPA does;
* `GET /v1/data/{path}` (optionally `?input=<JSON>`) -> the same, without input;
* an undefined document -> `200 {}`;
* `?pretty` indents the answer; every other query parameter (`metrics`,
  `explain`, `provenance`, ...) is accepted and ignored;
* errors in OPA's shape `{"code": ..., "message": ...}`: `invalid_parameter`
  (400: body not JSON, not an object, nested too deeply; 413: too large; 408:
  too slow), `resource_not_found` (404: an unknown API path), `invalid_operation`
  (405, with `Allow`), `internal_error` (500; 503 when too many
  requests in flight).

The documents (`mcp/main`, one package per policy, `mcp/envoy`, `mcp/meta`)
are `documents.DocumentTree`'s; every decision goes through `ServerState`
(server-side `stats`, shared limits, decision log, metrics), and the decision
id of the answer is the one of the decision-log line.  The caller of the Data
API is trusted as OPA trusts it: `input` is the request as it claims it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcpdsl.serve.documents import Data, DocumentTree, Group, Package, descend
from mcpdsl.serve.limits import Limits
from mcpdsl.serve.metrics import CONTENT_TYPE_LATEST
from mcpdsl.serve.state import ServerState, Verdict
from mcpdsl.serve.status import PolicyStatus

if TYPE_CHECKING:
    from mcpdsl.serve.gateway import Gateway

_log = logging.getLogger("mcpdsl.serve")

#: Endpoints exempt from the in-flight limit: a platform's probes must see a busy
#: server as alive and ready, not restart it for being busy.
PROBES = frozenset({"/health", "/ready", "/metrics", "/v1/status"})
MISSING_INPUT = {"code": "api_usage_warning", "message": "the request has no `input` key"}


class RequestError(Exception):
    """A request the Data API answers with an OPA error."""

    def __init__(self, status: int, code: str, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.close = status, code, message, close


def dumps(value: Any, pretty: bool = False) -> bytes:
    """JSON as OPA sends it (UTF-8, no NaN); `pretty` indents by two spaces."""
    if pretty:
        return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False).encode() + b"\n"
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode()


def json_response(
    value: Any, status: int = 200, *, pretty: bool = False, headers: dict[str, str] | None = None
) -> Response:
    return Response(dumps(value, pretty), status, headers, media_type="application/json")


def opa_error(
    status: int, code: str, message: str, *, close: bool = False, pretty: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    """An error in OPA's shape; `close` ends the connection (the body was not read)."""
    extra = dict(headers or {})
    if close:
        extra["connection"] = "close"
    return json_response({"code": code, "message": message}, status, pretty=pretty, headers=extra)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"`{name}` is not JSON")


def parse_json(raw: bytes, what: str) -> Any:
    """Strict JSON (no NaN/Infinity); RequestError 400 for anything else."""
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise RequestError(400, "invalid_parameter", f"{what} is nested too deeply") from None
    except ValueError as exc:  # includes UnicodeDecodeError
        raise RequestError(400, "invalid_parameter", f"{what} is not JSON: {exc}") from None


async def read_body(request: Request, limits: Limits) -> bytes:
    """The body, at most `max_body_bytes`, within `request_timeout` seconds."""
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "invalid_parameter", "invalid Content-Length", close=True)
        if int(declared) > limit:
            raise RequestError(
                413, "invalid_parameter", f"request body too large (limit {limit} bytes)",
                close=True,
            )  # fmt: skip
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.request_timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError(
                        413, "invalid_parameter", f"request body too large (limit {limit} bytes)",
                        close=True,
                    )  # fmt: skip
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(
            408, "invalid_parameter",
            f"request body not received within {limits.request_timeout:g} s", close=True,
        ) from None  # fmt: skip
    return b"".join(chunks)


def decision_document(verdict: Verdict) -> dict[str, Any]:
    """The generated Rego's `decision` document for a verdict.

    Exactly the Rego's keys (`allowed`, `default_applied`, `obligations`, `risk`,
    `rules`, `refusal` when refused).  A request the server itself refused after
    the policy allowed it (a shared rate limit, the store unreachable) says
    `allowed: false` with `limited` / `unavailable`: a client enforcing
    `decision.allowed` then enforces the server's limit too.
    """
    data = verdict.decision.as_dict()
    data.pop("enforced", None)
    if verdict.limited is not None:
        data["allowed"] = False
        data["limited"] = verdict.limited
    if verdict.unavailable:
        data["allowed"] = False
        data["unavailable"] = True
    return data


def package_object(package: Package, verdict: Verdict) -> dict[str, Any]:
    """Every public document of a package, for one verdict."""
    out: dict[str, Any] = {"allow": verdict.allowed, "decision": decision_document(verdict)}
    if package.kind == "envoy":
        if verdict.request is not None:
            out["request"] = {k: v for k, v in verdict.request.items() if k != "stats"}
    else:
        out["deny"] = not verdict.allowed
    return out


class InflightLimit:
    """ASGI middleware: at most `limit` Data API requests at once; beyond, 503 at once."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in PROBES:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            response = opa_error(503, "internal_error", "too many requests in flight; retry")
            await response(scope, receive, send)
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1


def build_app(
    state: ServerState,
    *,
    status: PolicyStatus | None = None,
    limits: Limits | None = None,
    gateway: Gateway | None = None,
) -> ASGIApp:
    """The ASGI app for one server state; with `gateway`, also `/mcp` (docs/mcp.md).

    The gateway's session manager runs in the app's lifespan (the runner turns
    uvicorn's lifespan on), as the SDK requires.
    """
    lim = limits if limits is not None else Limits()
    trees: list[DocumentTree] = []  # the tree of the policy in force (rebuilt after a swap)

    def tree_for(prepared: Any) -> DocumentTree:
        if not trees or trees[0].prepared is not prepared:
            trees[:] = [DocumentTree(prepared)]
        return trees[0]

    def status_data() -> dict[str, Any]:
        snap = status.snapshot if status is not None else None
        data: dict[str, Any] = {"policy": snap.as_data() if snap is not None else None}
        upstreams = gateway.upstream_status() if gateway is not None else None
        if upstreams is not None:
            data["mcp_upstreams"] = upstreams  # the federated MCP servers (docs/mcp.md)
        return data

    async def health(_: Request) -> Response:
        return json_response({})

    async def ready(_: Request) -> Response:
        snap = status.snapshot if status is not None else None
        body: dict[str, Any] = {"ready": True}
        if snap is not None:
            body["policy"] = snap.digest
            if snap.last_error is not None:
                body["last_error"] = snap.last_error["message"]
        return json_response(body)

    async def status_view(request: Request) -> Response:
        return json_response(status_data(), pretty="pretty" in request.query_params)

    async def metrics(_: Request) -> Response:
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def data(request: Request) -> Response:
        params = request.query_params
        pretty = params.get("pretty", "false") in ("", "true")
        try:
            return await _data(request, pretty)
        except RequestError as exc:
            return opa_error(exc.status, exc.code, exc.message, close=exc.close, pretty=pretty)
        except Exception:  # a bug must not become a traceback for the client
            _log.exception("Data API request failed")
            return opa_error(500, "internal_error", "the server failed to answer", pretty=pretty)

    async def _data(request: Request, pretty: bool) -> Response:
        path = request.path_params.get("path", "")
        segments = tuple(s for s in path.split("/") if s)
        body: Any = None
        if request.method == "POST":
            raw = await read_body(request, lim)
            if raw.strip():
                body = parse_json(raw, "the request body")
                if not isinstance(body, dict):
                    raise RequestError(
                        400, "invalid_parameter",
                        "the request body must be a JSON object such as {\"input\": ...}",
                    )  # fmt: skip
        elif "input" in request.query_params:
            body = {"input": parse_json(request.query_params["input"].encode(), "`input`")}
        has_input = isinstance(body, dict) and "input" in body
        extra: dict[str, Any] = {}
        if request.method == "POST" and not has_input:
            extra["warning"] = MISSING_INPUT
        prepared = state.engine.compiled  # once: this answer sees one policy
        target = tree_for(prepared).resolve(segments)
        if target is None:
            return json_response(extra, pretty=pretty)  # an undefined document
        if isinstance(target, Group):
            raise RequestError(
                400, "invalid_parameter",
                f"`{target.path or '/'}` groups several packages: query one package or"
                " document, such as `mcp/main/allow` or `mcp/main/decision`",
            )  # fmt: skip
        if isinstance(target, Data):
            found, value = descend(target.value, target.rest)
            return json_response({"result": value, **extra} if found else extra, pretty=pretty)
        value_in = body["input"] if has_input else {}
        verdict = await _decide(target, value_in, prepared)
        whole = package_object(target, verdict)
        found, value = (
            descend(whole[target.leaf], target.rest) if target.leaf is not None else (True, whole)
        )
        if target.leaf is not None and target.leaf not in whole:
            found = False
        out: dict[str, Any] = {"decision_id": verdict.decision_id, **extra}
        if found:
            out["result"] = value
        return json_response(out, pretty=pretty)

    async def _decide(target: Package, value: Any, prepared: Any) -> Verdict:
        if target.kind == "envoy":
            return await state.check(value, "http")
        if target.kind == "main":
            return await state.authorize(value, "http", prepared=prepared)
        assert target.policy is not None
        policies = tree_for(prepared).policies(target.policy)
        if not isinstance(value, dict):
            value = {}  # the per-policy Rego reads every attribute as undefined: as `{}`
        return await state.authorize(value, "http", prepared=prepared, policies=policies)

    async def not_found(request: Request, exc: Exception) -> Response:
        return opa_error(404, "resource_not_found", f"no API at `{request.url.path}`")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        allow = ""
        if isinstance(exc, HTTPException) and exc.headers:
            allow = exc.headers.get("Allow", "")
        headers = {"allow": allow} if allow else None
        message = f"method {request.method} is not allowed at `{request.url.path}`"
        return opa_error(405, "invalid_operation", message, headers=headers)

    mcp_routes: list[Any] = []
    lifespan = None
    if gateway is not None:
        from mcpdsl.serve.gateway import METADATA_PATH, McpHttp, metadata_endpoint

        endpoint = McpHttp(gateway, lim.max_body_bytes)
        metadata = metadata_endpoint(gateway)
        mcp_routes = [
            Route(METADATA_PATH, metadata, methods=["GET"]),
            Route(METADATA_PATH + "/{path:path}", metadata, methods=["GET"]),
            Route("/mcp", endpoint, methods=["GET", "POST", "DELETE"]),
        ]

        @contextlib.asynccontextmanager
        async def lifespan(_: Any) -> AsyncIterator[None]:
            async with gateway.run(lim.max_body_bytes):
                yield

    app = Starlette(
        lifespan=lifespan,
        routes=[
            *mcp_routes,
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/v1/status", status_view, methods=["GET"]),
            Route("/v1/data", data, methods=["GET", "POST"]),
            Route("/v1/data/{path:path}", data, methods=["GET", "POST"]),
        ],
        exception_handlers={404: not_found, 405: not_allowed},
    )
    return InflightLimit(app, lim.max_inflight)
