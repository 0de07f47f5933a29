"""`mcpdsl serve --workers N` as real processes: one pair of ports, N deciders, one supervisor.

* two workers answer on the same ports, and their decisions equal the engine's
  in process (Check over gRPC and the Data API);
* SIGTERM to the supervisor drains every worker; each worker's decision log
  (`FILE.wN`) verifies on its own;
* with Redis shared, a limit admits exactly its capacity across the workers;
* without it, a policy that reads `stats` or declares a `limit` is refused
  (E1130), as is `--decision-log -` (E1131);
* hostile: a worker killed with SIGKILL is replaced and the ports keep
  answering; a worker that keeps dying makes the supervisor stop, not spin;
* in process: the counters nobody reads are not kept, and a split store
  refuses a policy that needs shared counters, request by request.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import ALLOWED, write_gate
from envoy.service.auth.v3 import external_auth_pb2 as pb
from redis_support import RedisServer, redis_server, write_policy
from server_process import ServerProcess, listening_line
from test_grpc_server import (
    CHECK,
    _disagreements,
    as_messages,
    drawn_checks,
    post_all,
    send_all,
    without_limits,
)
from test_redis_serve import edge_check

from mcpdsl.engine import Engine
from mcpdsl.serve.state import STORE_SPLIT, ServerState
from mcpdsl.serve.store import MemoryStore

REPO = Path(__file__).resolve().parents[2]
__all__ = ["redis_server"]  # the fixture, imported for pytest
DECISION = "/v1/data/mcp/main/decision"


def _events(server: ServerProcess) -> list[dict[str, Any]]:
    out = []
    for line in server.stderr().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _workers(server: ServerProcess) -> list[int]:
    line = next(listening_line(x) for x in server.stderr().splitlines() if listening_line(x))
    assert line is not None
    pids: list[int] = line["workers"]
    return pids


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet has stopped running)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return False
    state = next((x for x in status.splitlines() if x.startswith("State:")), "")
    return "Z" not in state.split()[1:2]


def _prefixes_over_fresh_channels(target: str, raw: bytes, channels: int) -> set[str]:
    """The decision ids' per-process prefixes seen over `channels` new gRPC connections."""

    async def go() -> set[str]:
        seen: set[str] = set()
        for _ in range(channels):
            async with grpc.aio.insecure_channel(target) as channel:
                call = channel.unary_unary(
                    CHECK, request_serializer=lambda b: b,
                    response_deserializer=pb.CheckResponse.FromString,
                )  # fmt: skip
                response = await call(raw)
                ident = next(
                    h.header.value
                    for h in (*response.ok_response.headers, *response.denied_response.headers)
                    if h.header.key == "x-mcpdsl-decision-id"
                )
                seen.add(ident[:19])
            if len(seen) > 1:
                break
        return seen

    return asyncio.run(go())


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return without_limits(REPO / "policies", tmp_path)


def test_two_workers_share_the_ports_and_agree_with_the_engine(
    serve: Any, tree: Path, tmp_path: Path
) -> None:
    log = tmp_path / "decisions.jsonl"
    server = serve(tree, "--no-watch", "--workers", "2", "--decision-log", str(log), timeout=180)
    pids = _workers(server)
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    engine = Engine.load(tree)
    # both workers answer on the one gRPC port (connections spread by SO_REUSEPORT)
    probe = edge_check("10.0.0.1").SerializeToString()
    assert len(_prefixes_over_fresh_channels(server.grpc, probe, 64)) == 2
    # Check: the same answers as the evaluator in process
    messages = as_messages(drawn_checks(engine, 300, seed=21))
    responses = asyncio.run(send_all(server.grpc, [m.SerializeToString() for m in messages]))
    problems = _disagreements(engine, messages, responses)
    assert not problems, "\n".join(problems[:5])
    assert len(messages) >= 200
    # the Data API, too
    sys.path.insert(0, str(REPO / "tests/engine"))
    from request_vocabulary import make_request, vocabulary

    rnd = random.Random(21)
    vocab = vocabulary(engine.project)
    inputs = [make_request(rnd, vocab) for _ in range(300)]
    answers = asyncio.run(post_all(server.url, DECISION, [{"input": i} for i in inputs]))
    for request, response in zip(inputs, answers, strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["result"]["allowed"] == engine.authorize(request).allowed
    # SIGTERM drains every worker; each worker's log is a chain of its own
    server.signal(signal.SIGTERM)
    assert server.wait(60) == 0
    assert not any(_alive(p) for p in pids)
    assert "mcpdsl serve: stopped" in server.stderr()
    files = sorted(tmp_path.glob("decisions.jsonl.w*"))
    assert [f.name for f in files] == ["decisions.jsonl.w0", "decisions.jsonl.w1"]
    records = 0
    for f in files:
        verified = subprocess.run([sys.executable, "-m", "mcpdsl", "logs", "verify", str(f)],
                                  capture_output=True, text=True, timeout=120)  # fmt: skip
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "chain intact" in verified.stdout + verified.stderr
        records += len(f.read_text(encoding="utf-8").splitlines())
    assert records >= len(messages) + len(inputs)


def test_the_limit_is_exact_across_workers_with_redis(
    serve: Any,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    policy = write_policy(tmp_path)  # balance api: 20 tokens, no refill within the test
    server = serve(policy, "--no-watch", "--workers", "2", "--redis", redis_server.url, timeout=180)
    body = {"input": ALLOWED}

    async def go() -> list[bool]:
        out = []
        for _ in range(10):  # new connections: both workers take part
            answers = await post_all(server.url, DECISION, [body] * 5)
            out += [a.json()["result"]["allowed"] for a in answers]
        return out

    allowed = asyncio.run(go())
    assert sum(allowed) == 20 and len(allowed) == 50


def test_shared_counters_need_redis(tree: Path, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mcpdsl", "serve", *args, "--addr", "127.0.0.1:0",
             "--grpc-addr", "127.0.0.1:0", "--workers", "2"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    stats = cli(str(REPO / "policies"), "--no-watch")
    assert stats.returncode == 2 and "error[E1130]" in stats.stderr
    assert "reads `stats`" in stats.stderr and "Traceback" not in stats.stderr
    limits = cli(str(write_policy(tmp_path)), "--no-watch")
    assert limits.returncode == 2 and "error[E1130]" in limits.stderr
    assert "declares a `limit`" in limits.stderr
    stdout_log = cli(str(tree), "--no-watch", "--decision-log", "-")
    assert stdout_log.returncode == 2 and "error[E1131]" in stdout_log.stderr


def test_a_killed_worker_is_replaced_and_the_ports_keep_answering(serve: Any, tree: Path) -> None:
    server = serve(tree, "--no-watch", "--workers", "2", timeout=180)
    first, second = _workers(server)
    os.kill(first, signal.SIGKILL)
    server.wait_for_stderr(lambda t: '"worker-started"' in t, 60)
    events = _events(server)
    exited = next(e for e in events if e.get("event") == "worker-exited")
    assert exited["pid"] == first and exited["code"] == -signal.SIGKILL
    started = next(e for e in events if e.get("event") == "worker-started")
    assert started["worker"] == exited["worker"] and started["pid"] != first
    assert _alive(second) and server.proc.poll() is None
    probe = edge_check("10.0.0.1").SerializeToString()
    deadline = time.monotonic() + 60
    while len(_prefixes_over_fresh_channels(server.grpc, probe, 64)) < 2:  # the new one too
        assert time.monotonic() < deadline, "the replacement worker never answered"
        time.sleep(0.5)
    status, _ = server.json("GET", "/health")
    assert status == 200
    server.signal(signal.SIGTERM)
    assert server.wait(60) == 0
    assert not _alive(started["pid"]) and not _alive(second)


def test_a_worker_that_keeps_dying_stops_the_supervisor(serve: Any, tree: Path) -> None:
    from mcpdsl.serve.workers import MAX_RESTARTS

    server = serve(tree, "--no-watch", "--workers", "2", timeout=180)
    victims = list(_workers(server))
    os.kill(victims[0], signal.SIGKILL)
    for n in range(MAX_RESTARTS):
        deadline = time.monotonic() + 60
        while True:
            started = [e for e in _events(server) if e.get("event") == "worker-started"]
            if len(started) > n:
                break
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.05)
        pid = started[n]["pid"]
        victims.append(pid)
        os.kill(pid, signal.SIGKILL)
    assert server.wait(60) == 1
    assert any(e.get("event") == "giving-up" for e in _events(server))
    assert not any(_alive(p) for p in victims)


# ------------------------------------------------------------------ in process


def test_unread_counters_are_not_kept_and_forged_stats_are_dropped(tmp_path: Path) -> None:
    store = MemoryStore()
    state = ServerState(Engine.load(write_gate(tmp_path / "gate")), store=store)
    assert not state.prepared.policies.reads_stats
    forged = {**ALLOWED, "stats": {"principal": {"calls_1m": 10**9}}}
    verdict = asyncio.run(state.authorize(forged))
    assert verdict.allowed
    assert verdict.request is not None and "stats" not in verdict.request
    assert not store._windows  # nothing counted


def test_read_counters_are_kept(tmp_path: Path) -> None:
    store = MemoryStore()
    state = ServerState(Engine.load(REPO / "policies"), store=store)
    assert state.prepared.policies.reads_stats
    request = {"principal": {"type": "agent", "id": "a"}, "resource": {"type": "tool",
               "id": "crm.lookup"}, "action": "invoke"}  # fmt: skip
    verdict = asyncio.run(state.authorize(request))
    assert verdict.request is not None
    assert verdict.request["stats"]["principal"]["calls_1m"] == 1
    assert len(store._windows) == 1


def test_a_split_store_refuses_what_needs_shared_counters(tmp_path: Path) -> None:
    for tree in (REPO / "policies", write_policy(tmp_path)):
        state = ServerState(Engine.load(tree), workers=2)
        verdict = asyncio.run(state.authorize(dict(ALLOWED)))
        assert not verdict.allowed
        assert verdict.decision.refusal == STORE_SPLIT
    ok = ServerState(Engine.load(write_gate(tmp_path / "gate")), workers=2)
    assert asyncio.run(ok.authorize(dict(ALLOWED))).allowed


def test_workers_do_not_outlive_a_killed_supervisor(serve: Any, tree: Path) -> None:
    server = serve(tree, "--no-watch", "--workers", "2", timeout=180)
    pids = _workers(server)
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(30)
    deadline = time.monotonic() + 60
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, "a worker outlived its supervisor"
        time.sleep(0.1)
