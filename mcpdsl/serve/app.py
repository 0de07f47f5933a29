"""The HTTP side of `mcpdsl serve`: OPA's Data API, health, readiness and metrics (starlette).

OPA Data API subset (what OPA clients call; errors in OPA's shape
`{"code": ..., "message": ...}`):

* `POST /v1/data/{path}` with `{"input": ...}` -> `{"result": ..., "decision_id": ...}`;
* `GET /v1/data/{path}` (no input) -> the document as OPA would give it without input.

Documents: `mcp/main/{decision,allow,deny}` decide a canonical request
(`input` as OPA would pass it: the caller is a trusted PEP);
`mcp/envoy/{decision,allow}` decide a CheckRequest (the OPA-Envoy input).
An undefined document answers `{}` (no `result`), as OPA does.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcpdsl.serve.metrics import CONTENT_TYPE_LATEST
from mcpdsl.serve.state import ServerState, Verdict

#: The largest request body the Data API reads.
MAX_BODY_BYTES = 1024 * 1024


def opa_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _document(path: str, verdict: Verdict) -> Any:
    leaf = path.rsplit("/", 1)[-1]
    if leaf == "allow":
        return verdict.allowed
    if leaf == "deny":
        return not verdict.allowed
    data = verdict.decision.as_dict()
    data["enforced"] = verdict.allowed
    if verdict.reason:
        data["reason"] = verdict.reason
    return data


DOCUMENTS = {
    "mcp/main/decision": "authorize",
    "mcp/main/allow": "authorize",
    "mcp/main/deny": "authorize",
    "mcp/envoy/decision": "check",
    "mcp/envoy/allow": "check",
}


def build_app(state: ServerState) -> Starlette:
    """The ASGI app for one server state."""

    async def health(_: Request) -> Response:
        return JSONResponse({})

    async def ready(_: Request) -> Response:
        return JSONResponse({}) if state.engine.compiled else JSONResponse({}, status_code=503)

    async def metrics(_: Request) -> Response:
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def data(request: Request) -> Response:
        path = request.path_params["path"].strip("/")
        kind = DOCUMENTS.get(path)
        if kind is None:
            return JSONResponse({})  # undefined document
        body: Any = None
        if request.method == "POST":
            raw = await request.body()
            if len(raw) > MAX_BODY_BYTES:
                return opa_error(413, "invalid_parameter", "request body too large")
            if raw.strip():
                try:
                    body = json.loads(raw)
                except (ValueError, RecursionError) as exc:
                    return opa_error(400, "invalid_parameter", f"body is not JSON: {exc}")
                if not isinstance(body, dict):
                    return opa_error(400, "invalid_parameter", "body must be a JSON object")
        if body is None or "input" not in body:
            return JSONResponse({})  # undefined without input
        if kind == "check":
            verdict = await state.check(body["input"], "http")
        else:
            verdict = await state.authorize(body["input"], "http")
        return JSONResponse(
            {"result": _document(path, verdict), "decision_id": verdict.decision_id}
        )

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/v1/data/{path:path}", data, methods=["GET", "POST"]),
        ]
    )
