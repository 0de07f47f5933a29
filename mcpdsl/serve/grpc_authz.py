"""gRPC `envoy.service.auth.v3.Authorization/Check`: Envoy ext_authz and Istio CUSTOM.

The CheckRequest arrives as protobuf; it is turned into protojson data (the
shape the OPA-Envoy plugin gives Rego as `input`, and the shape the one
mapping `mcpdsl.evaluate.checkrequest` reads), decided by `ServerState.check`,
and answered:

* allowed: `OK` with an `ok_response` carrying `x-mcpdsl-decision-id`;
* denied: `PERMISSION_DENIED` with a `denied_response`: status 403 (429 when a
  rate limit refused it, 401 when an obligation such as `require mfa` is what
  is missing), an `x-mcpdsl-reason` header and a JSON body saying why;
* store unreachable (fail closed): `UNAVAILABLE`, status 503, with the reason.

Envoy treats a failed Check call by its `failure_mode_allow`, which the
generated Bootstrap leaves false: a server that cannot answer denies.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc as pb_grpc
from envoy.type.v3 import http_status_pb2
from google.protobuf.json_format import MessageToDict
from google.rpc import code_pb2, status_pb2

from mcpdsl.serve.state import ServerState, Verdict

REASON_HEADER = "x-mcpdsl-reason"
DECISION_HEADER = "x-mcpdsl-decision-id"
#: The largest CheckRequest the server reads (gRPC refuses a bigger message).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def check_data(request: pb.CheckRequest) -> dict[str, Any]:
    """The CheckRequest as protojson data (camelCase field names, as OPA-Envoy reads it)."""
    return MessageToDict(request)


def _header(name: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=name, value=value))


def http_status(verdict: Verdict) -> int:
    """The HTTP status Envoy sends the client for a denied request."""
    d = verdict.decision
    if verdict.unavailable:
        return 503
    if verdict.limited is not None:
        return 429
    if d.allowed and not d.enforced:
        return 401  # allowed once the obligations (e.g. `require mfa`) are met
    return 403


def check_response(verdict: Verdict) -> pb.CheckResponse:
    """The CheckResponse for a verdict (see the module docstring)."""
    if verdict.allowed:
        return pb.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=pb.OkHttpResponse(headers=[_header(DECISION_HEADER, verdict.decision_id)]),
        )
    reason = verdict.reason
    status = http_status(verdict)
    body: dict[str, Any] = {"allowed": False, "reason": reason, "decision_id": verdict.decision_id}
    missing = [o for o in verdict.decision.obligations] if status == 401 else []
    if missing:
        body["required"] = missing
    code = code_pb2.UNAVAILABLE if verdict.unavailable else code_pb2.PERMISSION_DENIED
    return pb.CheckResponse(
        status=status_pb2.Status(code=code, message=reason),
        denied_response=pb.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=status),  # type: ignore[arg-type]
            headers=[
                _header(REASON_HEADER, reason[:1024]),
                _header(DECISION_HEADER, verdict.decision_id),
                _header("content-type", "application/json"),
            ],
            body=json.dumps(body, sort_keys=True),
        ),
    )


class AuthorizationService(pb_grpc.AuthorizationServicer):
    """The servicer: CheckRequest -> `ServerState.check` -> CheckResponse."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def Check(
        self, request: pb.CheckRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckResponse:
        verdict = await self.state.check(check_data(request), "grpc")
        return check_response(verdict)


def grpc_server(state: ServerState, addr: str) -> tuple[grpc.aio.Server, int]:
    """A `grpc.aio` server with the Authorization service bound to `addr`; and its port."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    pb_grpc.add_AuthorizationServicer_to_server(AuthorizationService(state), server)
    port = server.add_insecure_port(addr)
    if port == 0:
        raise OSError(f"cannot listen on {addr} (gRPC)")
    return server, port
