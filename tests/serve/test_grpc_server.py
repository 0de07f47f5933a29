"""`mcpdsl serve` as a real process: hostile gRPC traffic, and the differentials.

The server is started with `python -m mcpdsl serve TREE` on free loopback
ports.  The tree is `policies/` (a gateway with two JWT providers, trusted
headers, `require mfa` obligations, risk) or `examples/identity`, each copied
with its `limit` lines removed: a rate limit would make the server deny what
the in-process decision allows, and the differential is meant to be exact.

* Check: CheckRequests built as Envoy builds them — the Envoy model of
  tests/system (generated Bootstrap, JWT filter, RBAC, ext_authz) fed with
  tests/system/traffic.py's requests, plus the mapping differential's
  generator (tests/engine/test_checkrequest_differential.py), as protobuf —
  sent concurrently by a `grpc.aio` client; OK/denied (and the denied status)
  must equal `decide(...)` in process on `MessageToDict` of the same message.
* Data API: canonical requests (tests/engine/request_vocabulary.py) through
  `POST /v1/data/mcp/main/decision`; the decision document must equal
  `Engine.authorize` in process.
* Hostile, over a raw channel: garbage bytes, a message over the receive
  limit (RESOURCE_EXHAUSTED, the server lives on), deep Structs, huge header
  maps: a deny or an error with a reason, never OK.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.service.auth.v3 import external_auth_pb2 as pb
from google.protobuf import json_format, struct_pb2
from google.rpc import code_pb2
from validators import pgv_errors

from mcpdsl.engine import Engine
from mcpdsl.evaluate.checkrequest import decide
from mcpdsl.ir.door import JWT_NAMESPACE

REPO = Path(__file__).resolve().parents[2]
for _dir in ("tests", "tests/engine", "tests/system", "tests/compile"):
    if str(REPO / _dir) not in sys.path:
        sys.path.insert(0, str(REPO / _dir))

from credentials import Credentials  # noqa: E402
from envoy_model import EnvoyModel, run_all  # noqa: E402
from harness import JWKS_URI, NOW, _bootstraps, build  # noqa: E402
from request_vocabulary import make_request, vocabulary  # noqa: E402
from server_process import ServerProcess, running  # noqa: E402
from test_checkrequest_differential import check_request  # noqa: E402
from traffic import Traffic  # noqa: E402

CHECK = "/envoy.service.auth.v3.Authorization/Check"
CONCURRENCY = 48


def without_limits(source: Path, root: Path) -> Path:
    """A copy of `source` without `limit RATE ...` lines and without rules on the counters.

    Both depend on the server's own state (buckets, `stats.principal.*`), which the
    in-process reference cannot reproduce under concurrent traffic; they are held
    to their meaning by tests/serve/test_server_counters.py and the Redis tests.
    """
    tree = root / source.name
    shutil.copytree(source, tree)
    for file in tree.rglob("*.mcp"):
        text = file.read_text(encoding="utf-8")
        text = re.sub(r"(?m)^[ \t]*limit[ \t]+\d+/.*\n", "", text)
        text = re.sub(r"(?m)^[ \t]*[\w-]+:[ \t]+(allow|deny)\b.*stats\.principal.*\n", "", text)
        file.write_text(text, encoding="utf-8")
    return tree


def serving(tree: Path, *extra: str) -> AbstractContextManager[ServerProcess]:
    """`mcpdsl serve tree --no-watch` on free loopback ports, once ready; stopped after.

    The one way the serve tests start a server (server_process.py): it binds port
    0 and reads the ports from the `listening` line, so no other process can take
    them in between, and its output stays readable (`stderr()`) for failures.
    """
    return running(tree, "--no-watch", *extra)


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trees")
    return {
        name: without_limits(REPO / rel, root)
        for name, rel in (("policies", "policies"), ("identity", "examples/identity"))
    }


@pytest.fixture(scope="module")
def policies_server(trees: dict[str, Path]) -> Iterator[ServerProcess]:
    with serving(trees["policies"]) as server:
        yield server


# ------------------------------------------------------------------ clients


def _identity(raw: bytes) -> bytes:
    return raw


async def send_all(
    target: str, messages: list[bytes], options: list[tuple[str, Any]] | None = None
) -> list[pb.CheckResponse | grpc.aio.AioRpcError]:
    """Each serialized message through Check, `CONCURRENCY` at a time; responses or errors."""
    async with grpc.aio.insecure_channel(target, options=options or []) as channel:
        call = channel.unary_unary(
            CHECK, request_serializer=_identity, response_deserializer=pb.CheckResponse.FromString
        )
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(raw: bytes) -> pb.CheckResponse | grpc.aio.AioRpcError:
            async with gate:
                try:
                    response: pb.CheckResponse = await call(raw, timeout=60)
                    return response
                except grpc.aio.AioRpcError as exc:
                    return exc

        return await asyncio.gather(*(one(m) for m in messages))


async def post_all(base: str, path: str, bodies: list[Any]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=8)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        gate = asyncio.Semaphore(8)

        async def one(body: Any) -> httpx.Response:
            async with gate:
                try:
                    return await client.post(path, json=body)
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    # a kept-alive connection the server closed as it was reused
                    # (uvicorn's keep-alive timeout on a stalled machine): once more
                    return await client.post(path, json=body)

        return await asyncio.gather(*(one(b) for b in bodies))


def run(coro: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro())  # type: ignore[arg-type]


# ------------------------------------------------------------------ CheckRequests as Envoy builds them


def envoy_checks(tree: Path, per_gateway: int, seed: int) -> list[dict[str, Any]]:
    """The CheckRequests the Envoy model (tests/system) sends for `tree`'s gateways' traffic."""
    engine, files = build(tree)
    project = engine.project
    jwks = Credentials.make().jwks()
    captured: list[dict[str, Any]] = []

    def ext_authz(batch: list[dict[str, Any]]) -> list[bool | None]:
        captured.extend(batch)
        p, doors = engine.compiled.policies, engine.compiled.doors
        return [decide(p, doors, check).enforced for check in batch]

    for key, bootstrap in sorted(_bootstraps(files).items()):
        gateway = next(g for g in project.gateways if g.qualified == key)
        uris = {p.jwks_uri: jwks for p in project.providers if p.jwks_uri}
        model = EnvoyModel(bootstrap, jwks={**uris, JWKS_URI: jwks}, now=NOW)
        traffic = Traffic(project, gateway, now=NOW, tls=gateway.tls is not None)
        rng = random.Random(f"{seed}/{key}")
        run_all(model, [traffic.draw(rng).request for _ in range(per_gateway)], ext_authz)
    return captured


def drawn_checks(engine: Engine, count: int, seed: int) -> list[dict[str, Any]]:
    """The mapping differential's CheckRequests (valid and hostile, mesh and edge)."""
    project = engine.project
    vocab = vocabulary(project)
    rnd = random.Random(seed)
    return [check_request(rnd, vocab, project) for _ in range(count)]


def as_messages(checks: list[Any]) -> list[pb.CheckRequest]:
    """Those of `checks` protobuf can carry (a wrong-typed section cannot be sent)."""
    out = []
    for check in checks:
        msg = pb.CheckRequest()
        try:
            json_format.ParseDict(check, msg, ignore_unknown_fields=True)
        except (json_format.ParseError, TypeError, AttributeError):
            continue
        out.append(msg)
    return out


def expected_status(engine: Engine, msg: pb.CheckRequest) -> tuple[bool, int]:
    """OK?, and the HTTP status of a denial, from the in-process decision (OPA-Envoy's input)."""
    check = json_format.MessageToDict(msg)
    d = decide(engine.compiled.policies, engine.compiled.doors, check)
    return d.enforced, 0 if d.enforced else 401 if d.allowed else 403


def _disagreements(
    engine: Engine, messages: list[pb.CheckRequest], responses: list[Any]
) -> list[str]:
    problems = []
    for i, (msg, response) in enumerate(zip(messages, responses, strict=True)):
        allowed, status = expected_status(engine, msg)
        if i % 50 == 0 and isinstance(response, pb.CheckResponse):
            problems += [f"invalid response: {e}" for e in pgv_errors(response)]
        if isinstance(response, grpc.aio.AioRpcError):
            problems.append(f"{response.code()}: {json_format.MessageToJson(msg)[:500]}")
            continue
        got = response.status.code == code_pb2.OK
        got_status = 0 if got else response.denied_response.status.code
        if (got, got_status) != (allowed, status):
            problems.append(
                f"server {(got, got_status)}, in process {(allowed, status)}: "
                f"{json_format.MessageToJson(msg)[:800]}"
            )
    return problems


def _check_differential(engine: Engine, tree: Path, server: ServerProcess) -> tuple[int, int]:
    """(CheckRequests sent, allowed) for `tree`; fails on any disagreement."""
    checks = envoy_checks(tree, 400, seed=14) + drawn_checks(engine, 3000, seed=14)
    messages = as_messages(checks)
    responses = run(lambda: send_all(server.grpc, [m.SerializeToString() for m in messages]))
    problems = _disagreements(engine, messages, responses)
    assert not problems, f"{len(problems)} disagreements in {tree.name}:\n" + "\n".join(
        problems[:5]
    )
    return len(messages), sum(_ok(r) for r in responses)


def test_check_agrees_with_the_evaluator_in_process(
    trees: dict[str, Path],
    policies_server: ServerProcess,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with serving(trees["identity"]) as identity:
        counts = [
            _check_differential(Engine.load(trees["identity"]), trees["identity"], identity),
            _check_differential(Engine.load(trees["policies"]), trees["policies"], policies_server),
        ]
    total, allowed = sum(c[0] for c in counts), sum(c[1] for c in counts)
    with capsys.disabled():
        print(f"\nCheck differential: {total} CheckRequests, {allowed} allowed, 0 disagreements")
    assert total >= 5000
    assert all(0 < a < t for t, a in counts)


def test_grpcio_s_server_agrees_too(trees: dict[str, Path]) -> None:
    """`--grpc-server grpcio` (grpc.aio) decides what the own HTTP/2 listener decides."""
    tree = trees["identity"]
    with serving(tree, "--grpc-server", "grpcio") as server:
        total, allowed = _check_differential(Engine.load(tree), tree, server)
        hostile = [b"\xff\xff\xff", _deep(300), _many_headers(5000, 10)]
        responses = run(lambda: send_all(server.grpc, hostile))
    assert total >= 1000 and 0 < allowed < total
    assert all(not _ok(r) and _reason(r) for r in responses)


def test_data_api_agrees_with_engine_authorize(
    trees: dict[str, Path], policies_server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = Engine.load(trees["policies"])
    vocab = vocabulary(engine.project)
    rnd = random.Random(14)
    inputs = [make_request(rnd, vocab) for _ in range(5200)]
    responses = run(
        lambda: post_all(policies_server.url, "/v1/data/mcp/main", [{"input": i} for i in inputs])
    )
    # the package object: `decision` (the Rego's keys) and `allow` (the enforced value)
    keys = ("allowed", "default_applied", "obligations", "risk", "rules", "refusal")
    problems = []
    for request, response in zip(inputs, responses, strict=True):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["decision_id"]
        theirs = {**body["result"]["decision"], "enforced": body["result"]["allow"]}
        mine = json.loads(json.dumps(engine.authorize(request).as_dict()))
        if {k: theirs.get(k) for k in (*keys, "enforced")} != {
            k: mine.get(k) for k in (*keys, "enforced")
        }:
            problems.append(f"server {theirs}, in process {mine}: {json.dumps(request)[:500]}")
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:5])
    kinds = {
        (r.json()["result"]["decision"]["allowed"], r.json()["result"]["allow"]) for r in responses
    }
    assert {(True, True), (False, False), (True, False)} <= kinds
    with capsys.disabled():
        print(f"\nData API differential: {len(inputs)} requests, 0 disagreements")


# ------------------------------------------------------------------ hostile


def _ok(response: Any) -> bool:
    return isinstance(response, pb.CheckResponse) and response.status.code == code_pb2.OK


def _reason(response: Any) -> str:
    if isinstance(response, grpc.aio.AioRpcError):
        return response.details() or ""
    return str(json.loads(response.denied_response.body)["reason"])


def _deep(depth: int) -> bytes:
    value = struct_pb2.Value(string_value="leaf")
    for _ in range(depth):
        outer = struct_pb2.Value()
        outer.struct_value.fields["k"].CopyFrom(value)
        value = outer
    msg = pb.CheckRequest()
    msg.attributes.request.http.method = "GET"
    msg.attributes.request.http.path = "/v1/x"
    msg.attributes.metadata_context.filter_metadata[JWT_NAMESPACE].fields["p"].CopyFrom(value)
    return msg.SerializeToString()


def _many_headers(count: int, size: int) -> bytes:
    msg = pb.CheckRequest()
    http = msg.attributes.request.http
    http.method, http.path = "GET", "/v1/x"
    http.headers.update({f"x-h{i}": "v" * size for i in range(count)})
    return msg.SerializeToString()


def test_hostile_messages_are_denied_with_a_reason_and_the_server_lives_on(
    policies_server: ServerProcess,
) -> None:
    garbage = [b"\xff\xff\xff", b"\x0a\x05\x0a\x03abc", b"\x0a\xff\xff\xff\xff\x0f", b"\x0b" * 9]
    hostile = [*garbage, _deep(300), _deep(20), _many_headers(5000, 10), _many_headers(3, 70000)]
    hostile += [random.Random(i).randbytes(64) for i in range(40)]
    responses = run(lambda: send_all(policies_server.grpc, hostile))
    for raw, response in zip(hostile, responses, strict=True):
        assert not _ok(response), raw[:40]
        assert _reason(response), raw[:40]
        if isinstance(response, grpc.aio.AioRpcError):  # only the transport may refuse
            pytest.fail(f"{response.code()} {response.details()} for {raw[:40]!r}")
    assert "not a valid" in _reason(responses[0])
    assert "not a valid" in _reason(responses[4])  # beyond protobuf's nesting limit
    assert "headers" in _reason(responses[6])

    # over the receive limit: gRPC refuses it before the server reads it
    big = _many_headers(2, 3 * 1024 * 1024)
    huge = run(lambda: send_all(policies_server.grpc, [big],
                                [("grpc.max_send_message_length", 64 * 1024 * 1024)]))  # fmt: skip
    assert isinstance(huge[0], grpc.aio.AioRpcError)
    assert huge[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert policies_server.proc.poll() is None
    after = run(lambda: send_all(policies_server.grpc, [pb.CheckRequest().SerializeToString()]))
    assert isinstance(after[0], pb.CheckResponse) and "refused" in _reason(after[0])


def test_the_real_listener_ends_broken_connections_and_lives_on(
    policies_server: ServerProcess,
) -> None:
    """Raw bytes at the `mcpdsl serve` process's gRPC port: a GOAWAY or a close, never a hang."""
    host, _, port = policies_server.grpc.rpartition(":")
    openings = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # HTTP/1.1 at an HTTP/2 port
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x06\x00\x00\x00\x00\x00",  # PING first
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 64,  # a frame over the size limit
        random.Random(3).randbytes(4096),
    ]
    for opening in openings:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(opening)
            received = b""
            while chunk := sock.recv(65536):  # the server closes: recv returns b""
                received += chunk
            assert b"\x07\x00\x00\x00\x00\x00" in received  # a GOAWAY frame on stream 0
    after = run(lambda: send_all(policies_server.grpc, [pb.CheckRequest().SerializeToString()]))
    assert isinstance(after[0], pb.CheckResponse) and "refused" in _reason(after[0])


def test_refused_checks_are_logged_and_counted(policies_server: ServerProcess) -> None:
    before = httpx.get(f"{policies_server.url}/metrics").text
    run(lambda: send_all(policies_server.grpc, [b"\xff\xff"] * 3))
    after = httpx.get(f"{policies_server.url}/metrics").text

    def refused(text: str) -> float:
        for line in text.splitlines():  # label order is the client library's business
            if line.startswith("mcpdsl_decisions_total{") and all(
                label in line for label in ('result="refused"', 'transport="grpc"')
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    assert refused(after) - refused(before) == 3
