"""gRPC `envoy.service.auth.v3.Authorization/Check`: Envoy ext_authz and Istio CUSTOM.

The CheckRequest arrives as protobuf bytes.  The server parses them itself (a
message that does not parse is a deny with a reason, logged like any other
decision, rather than a bare transport error), turns the message into the
protojson data the one mapping `mcpdsl.evaluate.checkrequest` reads (the
shape the OPA-Envoy plugin gives Rego as `input`), lets `ServerState.check`
decide, and answers:

* allowed: `OK` with an `ok_response` carrying `x-mcpdsl-decision-id`;
* denied: `PERMISSION_DENIED` with a `denied_response`: status 403, 429 when a
  rate limit refused it, 401 with a `www-authenticate` challenge naming what
  is required when an obligation such as `require mfa` is what is missing;
  an `x-mcpdsl-reason` header and a JSON body saying why;
* store unreachable (fail closed): `UNAVAILABLE`, status 503, with the reason.

Envoy treats a failed Check call by its `failure_mode_allow`, which the
generated Bootstrap leaves false: a server that cannot answer denies.  A
message over `MAX_MESSAGE_BYTES` is refused by gRPC itself
(`RESOURCE_EXHAUSTED`) before it is read.

`check_data` is a direct conversion, not `MessageToDict`: protobuf's JSON
printer walks every field in Python and costs more than the decision itself.
It produces exactly the fields the mapping (and the door selection) read,
with protojson's names and its rules for absence (an empty string, an empty
map or an unset message is left out), so that for those fields it equals
`MessageToDict` (tests/serve/test_grpc_authz.py proves it by property).
One deliberate addition: when Envoy sends the headers raw (`header_map`, its
`encode_raw_headers` option) instead of in `headers`, they are read as
`headers`, so that such a proxy is not denied for want of a section.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2

from mcpdsl.serve.state import ServerState, Verdict

SERVICE = "envoy.service.auth.v3.Authorization"
REASON_HEADER = "x-mcpdsl-reason"
DECISION_HEADER = "x-mcpdsl-decision-id"
REQUIRED_HEADER = "x-mcpdsl-required"
#: The largest CheckRequest the server reads (gRPC refuses a bigger message).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: The longest header value the response carries (Envoy's limit is far above it).
MAX_HEADER_VALUE = 1024

MALFORMED = "the CheckRequest is not a valid `envoy.service.auth.v3.CheckRequest` message"
NOT_JSON = "the CheckRequest's metadata holds a number JSON cannot carry (NaN or infinity)"


class NotJson(ValueError):
    """A Struct value protojson cannot print (a NaN or infinite number)."""


# ------------------------------------------------------------------ protobuf -> protojson data


def _value(v: struct_pb2.Value) -> Any:
    """A `google.protobuf.Value` as JSON data (protojson: unset and null are None)."""
    kind = v.WhichOneof("kind")
    if kind == "string_value":
        return v.string_value
    if kind == "struct_value":
        return _struct(v.struct_value)
    if kind == "bool_value":
        return v.bool_value
    if kind == "number_value":
        number = v.number_value
        if not math.isfinite(number):
            raise NotJson(NOT_JSON)
        return number
    if kind == "list_value":
        return [_value(item) for item in v.list_value.values]
    return None


def _struct(s: struct_pb2.Struct) -> dict[str, Any]:
    # keys, then item lookups: the map's `items()` is a slow Python-level view
    fields = s.fields
    return {key: _value(fields[key]) for key in fields}


def _peer(peer: Any) -> dict[str, Any]:
    """`AttributeContext.Peer`: the principal and the socket address, as protojson has them."""
    out: dict[str, Any] = {}
    if peer.HasField("address"):
        address = peer.address
        if address.HasField("socket_address"):
            ip = address.socket_address.address
            out["address"] = {"socketAddress": {"address": ip} if ip else {}}
        else:
            out["address"] = {}
    if peer.principal:
        out["principal"] = peer.principal
    return out


def _raw_headers(header_map: Any) -> dict[str, Any]:
    """`HttpRequest.header_map` (Envoy's `encode_raw_headers`) as the `headers` map.

    Envoy sends it instead of `headers` when told to; repeated headers are
    joined with `,` as Envoy joins them in `headers`.  A value that is not
    UTF-8 becomes None, which the mapping refuses (a header value that is not
    a string) rather than guessing at its characters.
    """
    headers: dict[str, Any] = {}
    for h in header_map.headers:
        value: Any = h.value
        if not value and h.raw_value:
            try:
                value = h.raw_value.decode("utf-8")
            except UnicodeDecodeError:
                value = None
        key = h.key.lower()
        old = headers.get(key)
        if key in headers:
            value = f"{old},{value}" if isinstance(old, str) and isinstance(value, str) else None
        headers[key] = value
    return headers


def _http(http: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if http.method:
        out["method"] = http.method
    if http.path:
        out["path"] = http.path
    if http.headers:
        out["headers"] = dict(http.headers)
    elif http.HasField("header_map") and http.header_map.headers:
        out["headers"] = _raw_headers(http.header_map)
    return out


def check_data(request: pb.CheckRequest) -> dict[str, Any]:
    """The CheckRequest as protojson data: the fields the mapping reads (module docstring).

    Raises `NotJson` for a metadata number protojson cannot print.
    """
    if not request.HasField("attributes"):
        return {}
    a = request.attributes
    out: dict[str, Any] = {}
    if a.HasField("source"):
        out["source"] = _peer(a.source)
    if a.HasField("destination"):
        out["destination"] = _peer(a.destination)
    if a.HasField("request"):
        r = a.request
        out["request"] = {"http": _http(r.http)} if r.HasField("http") else {}
    if a.context_extensions:
        out["contextExtensions"] = dict(a.context_extensions)
    if a.HasField("metadata_context"):
        filters = a.metadata_context.filter_metadata
        out["metadataContext"] = (
            {"filterMetadata": {ns: _struct(s) for ns, s in filters.items()}} if filters else {}
        )
    return {"attributes": out}


# ------------------------------------------------------------------ verdict -> CheckResponse


def _safe(value: str) -> str:
    """`value` as a header value PGV and every proxy accept: printable ASCII, bounded."""
    if value.isascii() and value.isprintable() and len(value) <= MAX_HEADER_VALUE:
        return value
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in value)
    return cleaned[:MAX_HEADER_VALUE]


def _header(name: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=name, value=_safe(value)))


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


def challenge(obligations: tuple[str, ...]) -> str:
    """The `www-authenticate` value for a request allowed once `obligations` hold.

    RFC 9470 (OAuth step-up) names this case `insufficient_user_authentication`;
    the description says which obligations the caller has to prove.
    """
    needed = ", ".join(obligations)
    return (
        f'Bearer error="insufficient_user_authentication", error_description="required: {needed}"'
    )


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
    headers = [
        _header(REASON_HEADER, reason),
        _header(DECISION_HEADER, verdict.decision_id),
        _header("content-type", "application/json"),
    ]
    if status == 401:
        required = verdict.decision.obligations
        body["required"] = list(required)
        headers.append(_header("www-authenticate", challenge(required)))
        headers.append(_header(REQUIRED_HEADER, ", ".join(required)))
    code = code_pb2.UNAVAILABLE if verdict.unavailable else code_pb2.PERMISSION_DENIED
    return pb.CheckResponse(
        status=status_pb2.Status(code=code, message=reason),
        denied_response=pb.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=status),  # type: ignore[arg-type]
            headers=headers,
            body=json.dumps(body, sort_keys=True),
        ),
    )


# ------------------------------------------------------------------ the service


_ID_SLOT = "#" * 36  # a decision id's length (state.ServerState._decision_id, a UUID's)


def _ok_template() -> bytes:
    response = pb.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        ok_response=pb.OkHttpResponse(headers=[_header(DECISION_HEADER, _ID_SLOT)]),
    )
    return response.SerializeToString()


_OK = _ok_template()
_SLOT = _ID_SLOT.encode()


#: Denial templates kept per service (`DenialTemplates`): rule-made denials only, bounded.
MAX_DENIAL_TEMPLATES = 4096


class DenialTemplates:
    """Serialized denials by what they say, with the decision id left as a slot.

    A denial by the policy's rules (or a limit, or the store) is one of a few
    messages per policy: its reason names rules, its status and challenge follow
    from the decision.  Only the decision id (in a header and in the body, 36
    characters both times, so no length prefix changes) differs per request.
    Refusals are not kept: their reasons quote the caller's input.
    """

    def __init__(self, limit: int = MAX_DENIAL_TEMPLATES) -> None:
        self._kept: dict[tuple[object, ...], bytes] = {}
        self._limit = limit

    def render(self, verdict: Verdict) -> bytes:
        ident = verdict.decision_id
        d = verdict.decision
        if d.refusal is not None or len(ident) != len(_ID_SLOT) or not ident.isascii():
            return check_response(verdict).SerializeToString()
        key = (d.allowed, d.enforced, d.default_applied, d.rules, d.obligations,
               verdict.limited, verdict.unavailable)  # fmt: skip
        template = self._kept.get(key)
        if template is None:
            slotted = Verdict(d, None, _ID_SLOT, verdict.limited, verdict.unavailable)
            template = check_response(slotted).SerializeToString()
            if len(self._kept) < self._limit:
                self._kept[key] = template
        return template.replace(_SLOT, ident.encode())


def response_bytes(verdict: Verdict, denials: DenialTemplates | None = None) -> bytes:
    """`check_response(verdict)`, serialized; an allow is a template with the id filled in.

    Building and serializing the OK message costs more than deciding; its bytes
    differ from request to request only in the 36-character decision id.  So do
    a rule-made denial's (`denials`).
    """
    ident = verdict.decision_id
    if verdict.allowed and len(ident) == len(_ID_SLOT) and ident.isascii():
        return _OK.replace(_SLOT, ident.encode())
    if denials is not None and not verdict.allowed:
        return denials.render(verdict)
    return check_response(verdict).SerializeToString()


class AuthorizationService:
    """Check: bytes -> CheckRequest -> `ServerState.check` -> CheckResponse."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.denials = DenialTemplates()

    async def check(self, request: pb.CheckRequest) -> Verdict:
        """Decide a parsed CheckRequest."""
        try:
            data = check_data(request)
        except NotJson as exc:
            return self.state.refuse(str(exc), "grpc")
        return await self.state.check(data, "grpc")

    async def verdict(self, raw: bytes) -> Verdict:
        """Decide a CheckRequest's bytes, parsed here so that garbage is a deny."""
        request = pb.CheckRequest()
        try:
            request.ParseFromString(raw)
        except (DecodeError, RecursionError) as exc:
            detail = str(exc) or type(exc).__name__
            return self.state.refuse(f"{MALFORMED}: {detail}", "grpc")
        return await self.check(request)

    async def check_bytes(self, raw: bytes, context: grpc.aio.ServicerContext) -> pb.CheckResponse:
        """The CheckResponse for a CheckRequest's bytes."""
        return check_response(await self.verdict(raw))

    async def answer(self, raw: bytes) -> bytes:
        """Bytes in, the serialized CheckResponse out (the own listener, `h2grpc`, calls this)."""
        return response_bytes(await self.verdict(raw), self.denials)

    async def handle(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """`answer` as grpcio's handler, which is also given a context."""
        return await self.answer(raw)


def _identity(raw: bytes) -> bytes:
    return raw


def grpc_server(
    state: ServerState,
    addr: str,
    options: Sequence[tuple[str, Any]] | None = None,
    maximum_concurrent_rpcs: int | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A `grpc.aio` server with the Authorization service bound to `addr`; and its port.

    The service is registered as a raw-bytes handler so that bytes that are no
    CheckRequest are parsed here, into a logged deny with a reason.  `options`
    default to the message-size limits; the runner passes its full set
    (`mcpdsl.serve.limits.Limits.grpc_options`).
    """
    server = grpc.aio.server(
        options=list(options)
        if options is not None
        else [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
        maximum_concurrent_rpcs=maximum_concurrent_rpcs,
    )
    service = AuthorizationService(state)
    handler = grpc.unary_unary_rpc_method_handler(
        service.handle, request_deserializer=_identity, response_serializer=_identity
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Check": handler}),)
    )
    try:
        port = server.add_insecure_port(addr)
    except RuntimeError as exc:  # newer grpcio raises where older ones returned 0
        raise OSError(f"cannot listen on {addr} (gRPC): {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {addr} (gRPC)")
    return server, port
