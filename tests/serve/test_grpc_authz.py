"""The ext_authz translation in process: CheckRequest -> data, verdict -> CheckResponse.

* `check_data` (the direct conversion) equals protobuf's own `MessageToDict`
  on every field the mapping reads, for CheckRequests hypothesis builds field
  by field (any text, any Struct metadata) and for the CheckRequests the
  mapping's differential draws (tests/engine); and the decisions agree;
* every CheckResponse the server can send passes Envoy's PGV rules, with the
  status, headers and body each kind of verdict needs;
* hostile messages (garbage bytes, NaN in metadata, deep Structs, huge header
  maps, non-UTF-8 raw headers) are a deny with a reason, never an allow.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as pb
from google.protobuf import json_format, struct_pb2
from google.rpc import code_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from validators import pgv_errors

from mcpdsl.engine import Engine
from mcpdsl.evaluate.checkrequest import decide
from mcpdsl.evaluate.policy import Decision
from mcpdsl.ir.door import JWT_NAMESPACE, MAX_HEADERS
from mcpdsl.serve.grpc_authz import (
    MALFORMED,
    NOT_JSON,
    AuthorizationService,
    NotJson,
    check_data,
    check_response,
    response_bytes,
)
from mcpdsl.serve.state import ServerState, Verdict
from mcpdsl.serve.store import Stats, StoreUnavailable

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "engine"))

from request_vocabulary import make_request, vocabulary  # noqa: E402
from test_checkrequest_differential import check_request  # noqa: E402

POLICIES = REPO / "policies"


def read_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The part of a protojson CheckRequest the mapping and the door selection read."""
    a = data.get("attributes")
    if a is None:
        return {}
    out: dict[str, Any] = {}
    for side in ("source", "destination"):
        if side not in a:
            continue
        peer: dict[str, Any] = {}
        if "address" in a[side]:
            sock = a[side]["address"].get("socketAddress")
            peer["address"] = (
                {} if sock is None
                else {"socketAddress": {"address": sock["address"]} if "address" in sock else {}}
            )  # fmt: skip
        if "principal" in a[side]:
            peer["principal"] = a[side]["principal"]
        out[side] = peer
    if "request" in a:
        http = a["request"].get("http")
        out["request"] = (
            {} if http is None
            else {"http": {k: http[k] for k in ("method", "path", "headers") if k in http}}
        )  # fmt: skip
    if "contextExtensions" in a:
        out["contextExtensions"] = a["contextExtensions"]
    if "metadataContext" in a:
        mc = a["metadataContext"]
        out["metadataContext"] = (
            {"filterMetadata": mc["filterMetadata"]} if "filterMetadata" in mc else {}
        )
    return {"attributes": out}


# ------------------------------------------------------------------ generated CheckRequests

TEXT = st.text(max_size=12)
JSON_LEAF = st.none() | st.booleans() | TEXT | st.floats(allow_nan=False, allow_infinity=False)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s


@st.composite
def peers(draw: st.DrawFn) -> dict[str, Any]:
    peer: dict[str, Any] = {}
    if draw(st.booleans()):
        peer["principal"] = draw(st.sampled_from(["", "spiffe://a/ns/b/sa/c"]) | TEXT)
    roll = draw(st.integers(0, 3))
    if roll == 1:
        peer["address"] = {}
    elif roll == 2:
        peer["address"] = {"socketAddress": {"address": draw(TEXT), "portValue": 9}}
    elif roll == 3:
        peer["address"] = {"pipe": {"path": "/tmp/s"}}
    return peer


@st.composite
def check_requests(draw: st.DrawFn) -> pb.CheckRequest:
    """A CheckRequest, each section present or not, with any text and any metadata."""
    msg = pb.CheckRequest()
    if not draw(st.integers(0, 9)):
        return msg
    a = msg.attributes
    a.SetInParent()
    for side in ("source", "destination"):
        if draw(st.booleans()):
            json_format.ParseDict(draw(peers()), getattr(a, side))
            getattr(a, side).SetInParent()
    if draw(st.integers(0, 5)):
        a.request.SetInParent()
        if draw(st.integers(0, 5)):
            http = a.request.http
            http.SetInParent()
            http.method = draw(st.sampled_from(["", "GET", "POST"]) | TEXT)
            http.path = draw(st.sampled_from(["", "/v1/x?a=1", "/"]) | TEXT)
            http.id = draw(TEXT)
            http.host = draw(TEXT)
            http.headers.update(draw(st.dictionaries(TEXT, TEXT, max_size=4)))
    a.context_extensions.update(
        draw(st.dictionaries(st.sampled_from(["mcpdsl.gateway", "mcpdsl.route"]) | TEXT, TEXT))
    )
    if draw(st.booleans()):
        a.metadata_context.SetInParent()
        for ns, value in draw(st.dictionaries(st.just(JWT_NAMESPACE) | TEXT,
                                              st.dictionaries(TEXT, JSON, max_size=3),
                                              max_size=2)).items():  # fmt: skip
            a.metadata_context.filter_metadata[ns].CopyFrom(_struct(value))
    if draw(st.booleans()):
        a.route_metadata_context.filter_metadata["x"].CopyFrom(_struct({"k": 1}))
    return msg


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.load(POLICIES)


@settings(max_examples=150)
@given(check_requests())
def test_check_data_equals_message_to_dict_on_the_fields_read(msg: pb.CheckRequest) -> None:
    mine = check_data(msg)
    assert mine == read_fields(mine)  # nothing beyond what is read
    assert mine == read_fields(json_format.MessageToDict(msg))


def test_check_data_equals_message_to_dict_on_the_differential_s_check_requests(
    engine: Engine,
) -> None:
    """The mapping differential's CheckRequests (as protobuf can carry them): data and decisions."""
    project = engine.project
    vocab = vocabulary(project)
    rnd = random.Random(14)
    compared = 0
    for _ in range(1500):
        msg = pb.CheckRequest()
        try:
            json_format.ParseDict(
                check_request(rnd, vocab, project), msg, ignore_unknown_fields=True
            )
        except (json_format.ParseError, TypeError, AttributeError):
            continue  # a hostile shape protobuf cannot carry
        theirs = json_format.MessageToDict(msg)
        mine = check_data(msg)
        assert mine == read_fields(theirs)
        p, doors = engine.compiled.policies, engine.compiled.doors
        assert decide(p, doors, mine) == decide(p, doors, theirs)
        compared += 1
    assert compared > 500


# ------------------------------------------------------------------ responses


class _DownStore:
    async def observe(self, principal: str, resource: str, now: float) -> Stats:
        raise StoreUnavailable("down")

    async def outcome(self, principal: str, denied: bool, now: float) -> None:
        raise StoreUnavailable("down")

    async def take(self, key: str, spec: Any, now: float) -> bool:
        raise StoreUnavailable("down")

    async def close(self) -> None:
        return None


def _find(engine: Engine, wanted: Callable[[Decision], bool]) -> dict[str, Any]:
    """A request of the tree's vocabulary whose decision is `wanted`."""
    vocab = vocabulary(engine.project)
    rnd = random.Random(3)
    for _ in range(20000):
        request = make_request(rnd, vocab)
        if wanted(engine.authorize(request)):
            return request
    raise AssertionError("no request of the vocabulary has the wanted decision")


def _verdict(state: ServerState, request: dict[str, Any]) -> Verdict:
    return asyncio.run(state.authorize(request))


def _headers(response: pb.CheckResponse) -> dict[str, str]:
    which = response.ok_response if response.HasField("ok_response") else response.denied_response
    return {h.header.key: h.header.value for h in which.headers}


def test_responses_say_why_and_pass_envoy_s_validation(engine: Engine) -> None:
    state = ServerState(engine)
    allowed = _verdict(state, _find(engine, lambda d: d.enforced))
    denied = _verdict(state, {"principal": {"type": "user", "id": "x"}, "action": "DELETE"})
    refused = state.refuse("the CheckRequest is not valid")
    down = asyncio.run(ServerState(engine, store=_DownStore()).authorize({"action": "GET"}))
    cases = [(denied, code_pb2.PERMISSION_DENIED, 403), (refused, code_pb2.PERMISSION_DENIED, 403),
             (down, code_pb2.UNAVAILABLE, 503)]  # fmt: skip
    for verdict, code, status in cases:
        response = check_response(verdict)
        assert pgv_errors(response) == []
        assert response.status.code == code
        assert response.denied_response.status.code == status
        body = json.loads(response.denied_response.body)
        assert body["allowed"] is False and body["reason"] == verdict.reason != ""
        assert _headers(response)["x-mcpdsl-reason"] == verdict.reason
        assert response.status.message == verdict.reason
    assert allowed.allowed
    response = check_response(allowed)
    assert pgv_errors(response) == []
    assert response.status.code == code_pb2.OK
    assert _headers(response)["x-mcpdsl-decision-id"] == allowed.decision_id


def test_a_missing_obligation_is_a_401_naming_what_is_required(engine: Engine) -> None:
    """`require mfa` unmet: 401, a `www-authenticate` step-up challenge and the body say mfa."""
    state = ServerState(engine)
    request = _find(engine, lambda d: d.allowed and not d.enforced)
    decision = engine.authorize(request)
    verdict = _verdict(state, request)
    response = check_response(verdict)
    assert pgv_errors(response) == []
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert response.denied_response.status.code == 401
    headers = _headers(response)
    required = ", ".join(decision.obligations)
    assert "insufficient_user_authentication" in headers["www-authenticate"]
    assert f"required: {required}" in headers["www-authenticate"]
    assert headers["x-mcpdsl-required"] == required
    assert json.loads(response.denied_response.body)["required"] == list(decision.obligations)


def test_a_limited_verdict_is_a_429(engine: Engine) -> None:
    base = _verdict(ServerState(engine), {"action": "GET"})
    verdict = Verdict(base.decision, base.request, base.decision_id, limited="gateway public")
    response = check_response(verdict)
    assert pgv_errors(response) == []
    assert response.denied_response.status.code == 429
    assert "rate limited" in json.loads(response.denied_response.body)["reason"]


def test_reason_headers_stay_valid_for_any_text(engine: Engine) -> None:
    verdict = ServerState(engine).refuse("bad\nvalue é \x00" + "x" * 5000)
    assert pgv_errors(check_response(verdict)) == []


# ------------------------------------------------------------------ hostile messages


def _answer(engine: Engine, raw: bytes) -> pb.CheckResponse:
    service = AuthorizationService(ServerState(engine))
    return asyncio.run(service.check_bytes(raw, None))  # type: ignore[arg-type]


def _denied_with(response: pb.CheckResponse, text: str) -> None:
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert text in json.loads(response.denied_response.body)["reason"]
    assert pgv_errors(response) == []


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xff\xff", b"\x0a\x05\x0a\x03abc", b"\x0a\xff\xff\xff\xff\x0f", b"\x0b" * 7],
)
def test_garbage_bytes_are_a_deny_with_a_reason(engine: Engine, raw: bytes) -> None:
    _denied_with(_answer(engine, raw), MALFORMED)


def test_empty_bytes_are_an_empty_check_request_which_is_refused(engine: Engine) -> None:
    _denied_with(_answer(engine, b""), "request refused")


def _with_metadata(value: Any) -> pb.CheckRequest:
    msg = pb.CheckRequest()
    msg.attributes.request.http.method = "GET"
    msg.attributes.request.http.path = "/v1/x"
    meta = msg.attributes.metadata_context.filter_metadata[JWT_NAMESPACE]
    meta.fields["p"].CopyFrom(value)
    return msg


def test_non_finite_numbers_in_metadata_are_a_deny(engine: Engine) -> None:
    for number in (math.nan, math.inf, -math.inf):
        msg = _with_metadata(struct_pb2.Value(number_value=number))
        with pytest.raises(NotJson):
            check_data(msg)
        _denied_with(_answer(engine, msg.SerializeToString()), NOT_JSON)


def test_deeply_nested_metadata_is_a_deny(engine: Engine) -> None:
    """Nesting beyond protobuf's recursion limit does not parse: a deny, never a crash."""
    value = struct_pb2.Value(string_value="leaf")
    for _ in range(300):
        outer = struct_pb2.Value()
        outer.struct_value.fields["k"].CopyFrom(value)
        value = outer
    raw = _with_metadata(value).SerializeToString()
    _denied_with(_answer(engine, raw), MALFORMED)


def test_huge_header_maps_are_a_deny(engine: Engine) -> None:
    msg = pb.CheckRequest()
    http = msg.attributes.request.http
    http.method, http.path = "GET", "/v1/x"
    http.headers.update({f"x-h{i}": "v" * 20 for i in range(20 * MAX_HEADERS)})
    _denied_with(_answer(engine, msg.SerializeToString()), "headers")


def test_raw_header_maps_are_read_as_headers_and_non_utf8_is_refused(engine: Engine) -> None:
    """Envoy's `encode_raw_headers` sends `header_map`: read it, join repeats, refuse bad bytes."""
    msg = pb.CheckRequest()
    http = msg.attributes.request.http
    http.method, http.path = "GET", "/v1/x"
    for key, raw in (("x-a", b"1"), ("X-A", b"2"), ("x-b", b"ok")):
        http.header_map.headers.append(base_pb2.HeaderValue(key=key, raw_value=raw))
    assert check_data(msg)["attributes"]["request"]["http"]["headers"] == {
        "x-a": "1,2",
        "x-b": "ok",
    }
    http.header_map.headers.append(base_pb2.HeaderValue(key="x-c", raw_value=b"\xff"))
    _denied_with(_answer(engine, msg.SerializeToString()), "a header value is not a string")


def test_the_serialized_allow_is_the_check_response(engine: Engine) -> None:
    """The OK template with its id filled in parses to exactly `check_response`."""
    state = ServerState(engine)
    allowed = _verdict(state, _find(engine, lambda d: d.enforced))
    denied = _verdict(state, {"action": "GET"})
    for verdict in (allowed, denied):
        raw = response_bytes(verdict)
        assert pb.CheckResponse.FromString(raw) == check_response(verdict)
    assert len({_verdict(state, {"action": "GET"}).decision_id for _ in range(50)}) == 50


def test_denial_templates_are_the_check_response(engine: Engine) -> None:
    """A kept denial with its id filled in parses to exactly `check_response`, id and all.

    Rule denials, default denials, step-up (401) denials, limited, unavailable and
    refused verdicts; the second answer of each kind comes from the template.
    """
    from mcpdsl.serve.grpc_authz import DenialTemplates

    state = ServerState(engine)
    denials = DenialTemplates(limit=3)
    requests = [
        _find(engine, lambda d: not d.allowed and not d.default_applied),
        _find(engine, lambda d: d.default_applied),
        _find(engine, lambda d: d.allowed and not d.enforced),
        {"action": "GET"},
    ]
    verdicts = [_verdict(state, r) for r in requests for _ in range(2)]
    base = verdicts[0]
    verdicts += [
        Verdict(base.decision, base.request, state._decision_id(), limited="balance `api`"),
        Verdict(base.decision, base.request, state._decision_id(), unavailable=True),
    ]
    for verdict in verdicts:
        raw = denials.render(verdict)
        expected = check_response(verdict)
        assert pb.CheckResponse.FromString(raw) == expected
        assert verdict.decision_id in _headers(expected).values()
    assert len(denials._kept) == 3  # bounded
