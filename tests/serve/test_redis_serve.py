"""`mcpdsl serve --redis`: real server processes sharing one real redis-server.

Two replicas enforce ONE limit (the bucket's capacity in total, whichever
replica a request reaches); an unreachable Redis makes every decision a deny
with the reason (fail closed) unless `--on-store-unavailable allow`; the
server recovers when Redis comes back.  Also `ServerState` in process, and the
CLI's usage errors.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc as pb_grpc
from google.protobuf import json_format
from google.rpc import code_pb2
from redis_support import REPO, RedisServer, ServeProcess, free_port, redis_server, write_policy

from mcpdsl.engine import Engine
from mcpdsl.serve.redis_store import RedisStore
from mcpdsl.serve.state import STORE_DOWN, ServerState

__all__ = ["redis_server"]  # the fixture, imported for pytest

#: frontend -> api: allowed by the policy, limited by `balance api` (20, no refill in a test).
INPUT = {
    "principal": {"type": "service", "id": "frontend"},
    "action": "GET",
    "resource": {"type": "service", "id": "api"},
    "request": {"path": "/v1/items"},
}


def decide(server: ServeProcess, data: dict[str, Any] = INPUT) -> dict[str, Any]:
    body = json.dumps({"input": data}).encode()
    req = urllib.request.Request(
        f"{server.base}/v1/data/mcp/main/decision",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        result: dict[str, Any] = json.load(r)["result"]
    # The Data API's `decision` is the Rego's document; a request the server
    # refused after the policy allowed it says `allowed: false` and why
    # (`limited`: the limit's source; `unavailable`).  Name both views here.
    result["enforced"] = result["allowed"] and not result["obligations"]
    if "limited" in result:
        result["reason"] = f"rate limited by {result['limited']}"
    elif result.get("unavailable"):
        result["reason"] = STORE_DOWN
    return result


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_policy(tmp_path)


def test_two_replicas_share_one_limit(redis_server: RedisServer, tree: Path) -> None:
    a = ServeProcess(tree, redis_server.url)
    try:
        b = ServeProcess(tree, redis_server.url)
        try:
            results = [decide((a, b)[i % 2]) for i in range(50)]
        finally:
            b.stop()
    finally:
        a.stop()
    allowed = [r["enforced"] for r in results]
    assert allowed == [True] * 20 + [False] * 30  # exactly the capacity, in total
    assert allowed[0:20:2] == allowed[1:20:2] == [True] * 10  # both replicas admitted
    assert {r["reason"] for r in results[20:]} == {"rate limited by balance `api`"}


def edge_check(ip: str) -> pb.CheckRequest:
    """A CheckRequest as Envoy's ext_authz filter at the gateway `edge` sends it."""
    data = {
        "attributes": {
            "source": {"address": {"socketAddress": {"address": ip, "portValue": 40000}}},
            "request": {"http": {"method": "GET", "path": "/public/x", "host": "api.test"}},
            "contextExtensions": {"mcpdsl.gateway": "t.edge", "mcpdsl.route": "0"},
        }
    }
    return json_format.ParseDict(data, pb.CheckRequest())


def test_two_replicas_share_the_gateway_limit_over_grpc(
    redis_server: RedisServer, tree: Path
) -> None:
    servers = [ServeProcess(tree, redis_server.url) for _ in range(2)]
    channels = [grpc.insecure_channel(f"127.0.0.1:{s.grpc}") for s in servers]
    try:
        stubs = [pb_grpc.AuthorizationStub(c) for c in channels]
        replies = [stubs[i % 2].Check(edge_check(f"10.0.0.{i}"), timeout=30) for i in range(45)]
    finally:
        for c in channels:
            c.close()
        for s in servers:
            s.stop()
    codes = [r.status.code for r in replies]
    assert codes == [code_pb2.OK] * 30 + [code_pb2.PERMISSION_DENIED] * 15
    assert {r.denied_response.status.code for r in replies[30:]} == {429}


def test_concurrent_requests_to_both_replicas(redis_server: RedisServer, tree: Path) -> None:
    servers = [ServeProcess(tree, redis_server.url) for _ in range(2)]
    try:

        async def go() -> list[bool]:
            sem = asyncio.Semaphore(8)

            async def one(i: int) -> bool:
                async with sem:
                    result = await asyncio.to_thread(decide, servers[i % 2])
                    return bool(result["enforced"])

            return list(await asyncio.gather(*(one(i) for i in range(60))))

        allowed = asyncio.run(go())
    finally:
        for s in servers:
            s.stop()
    assert sum(allowed) == 20


def test_unreachable_redis_fails_closed(tree: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    server = ServeProcess(tree, dead, "--redis-timeout", "0.2")
    try:
        result = decide(server)
    finally:
        server.stop()
    assert result["enforced"] is False
    assert result["reason"] == STORE_DOWN


def test_unreachable_redis_with_allow_decides_without_signals(tree: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    server = ServeProcess(tree, dead, "--redis-timeout", "0.2", "--on-store-unavailable", "allow")
    try:
        results = [decide(server) for _ in range(25)]  # no limit either: 25 > 20
    finally:
        server.stop()
    assert all(r["enforced"] for r in results)


def test_server_recovers_when_redis_comes_back(redis_server: RedisServer, tree: Path) -> None:
    server = ServeProcess(tree, redis_server.url, "--redis-timeout", "0.3")
    try:
        assert decide(server)["enforced"]
        redis_server.stop()
        assert decide(server)["reason"] == STORE_DOWN
        redis_server.start()
        assert decide(server)["enforced"]  # reconnected, scripts loaded again
    finally:
        server.stop()


# -- in process ------------------------------------------------------------------------------


def test_state_fails_closed_and_open(tree: Path) -> None:
    engine = Engine.load(tree)

    async def go(on_unavailable: str) -> Any:
        store = RedisStore(f"redis://127.0.0.1:{free_port()}", timeout=0.2)
        state = ServerState(engine, store=store, on_unavailable=on_unavailable)  # type: ignore[arg-type]
        try:
            return await state.authorize(dict(INPUT))
        finally:
            await store.close()

    try:
        closed = asyncio.run(go("deny"))
        opened = asyncio.run(go("allow"))
    finally:
        engine.close()
    assert not closed.allowed and closed.unavailable and closed.reason == STORE_DOWN
    assert opened.allowed and "stats" not in opened.request  # nobody counted it: absent


def test_state_counts_in_redis(redis_server: RedisServer, tree: Path) -> None:
    engine = Engine.load(tree)

    async def go() -> list[Any]:
        store = RedisStore(redis_server.url)
        state = ServerState(engine, store=store)
        try:
            return [await state.authorize(dict(INPUT)) for _ in range(22)]
        finally:
            await store.close()

    try:
        verdicts = asyncio.run(go())
    finally:
        engine.close()
    assert [v.allowed for v in verdicts] == [True] * 20 + [False] * 2
    last = verdicts[-1].request["stats"]["principal"]
    assert (last["calls_1m"], last["denials_1m"], last["resources_1h"]) == (22, 1, 1)


# -- the command line --------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcpdsl", "serve", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--redis", "http://user:s3cret@127.0.0.1:6379"], "is not a Redis URL"),
        (["--redis", "127.0.0.1:6379"], "is not a Redis URL"),
        (["--redis", "redis://127.0.0.1:1", "--redis-prefix", "a:b"], "invalid Redis key prefix"),
    ],
)
def test_usage_errors(tree: Path, args: list[str], message: str) -> None:
    done = cli(str(tree), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_password_from_the_environment(redis_server: RedisServer, tree: Path) -> None:
    redis_server.command("CONFIG", "SET", "requirepass", "pw-from-env")
    denied = ServeProcess(tree, redis_server.url, "--redis-timeout", "0.3")
    try:
        assert decide(denied)["reason"] == STORE_DOWN  # NOAUTH: unavailable, fail closed
    finally:
        denied.stop()
    server = ServeProcess(tree, redis_server.url, env={"MCPDSL_REDIS_PASSWORD": "pw-from-env"})
    try:
        assert decide(server)["enforced"]
    finally:
        server.stop()
    assert "pw-from-env" not in server.log.read_text(errors="replace")


def test_a_replica_killed_mid_load_loses_no_count(redis_server: RedisServer, tree: Path) -> None:
    """Every answered request is counted once in Redis; one cut off by the kill at most once."""
    victim = ServeProcess(tree, redis_server.url)
    survivor = ServeProcess(tree, redis_server.url)
    answered, cut_off = 0, 0
    lock = threading.Lock()

    def hammer() -> None:
        nonlocal answered, cut_off
        while True:
            try:
                decide(victim)
            except (OSError, http.client.HTTPException, ValueError):
                with lock:
                    cut_off += 1
                if victim.proc.poll() is not None:
                    return
                continue
            with lock:
                answered += 1

    try:
        workers = [threading.Thread(target=hammer) for _ in range(4)]
        for w in workers:
            w.start()
        while True:
            with lock:
                if answered >= 40:
                    break
            time.sleep(0.01)
        victim.proc.send_signal(signal.SIGKILL)  # mid-load: four requests in flight
        for w in workers:
            w.join(timeout=60)
        for _ in range(10):
            decide(survivor)
            answered += 1
    finally:
        victim.stop()
        survivor.stop()
    key = RedisStore(redis_server.url).keys_of("service:frontend")[0]
    counted = int(redis_server.command("ZCARD", key).strip(b":\r\n"))
    assert answered <= counted <= answered + cut_off
