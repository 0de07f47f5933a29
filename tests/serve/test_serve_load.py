"""Load through a real `mcpdsl serve` process: memory stays steady, the log loses nothing.

100,000 CheckRequests over gRPC (loopback only, bounded concurrency), then
SIGTERM.  The process's resident memory after the warm-up and after the last
decision are compared (a bounded growth, not a timing), and the decision log
must hold exactly one line per decision: every decision id a response carried
appears once, none is missing, none is duplicated, and nothing else is there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

grpc = pytest.importorskip("grpc")
pb = pytest.importorskip("envoy.service.auth.v3.external_auth_pb2")

from repo_paths import REPO as ROOT  # noqa: E402
from server_process import ServerProcess  # noqa: E402

TOTAL = 100_000
WARMUP = 10_000
CONCURRENCY = 32
#: Resident-memory growth allowed between the warm-up and the end (bytes).  The
#: exact sliding windows hold one timestamp per call of the last hour, so 90,000
#: calls may cost a few MiB; a leak per decision (a retained request, response or
#: log record: kilobytes each) would cost hundreds.
MAX_GROWTH = 48 * 1024 * 1024
CHECK = "/envoy.service.auth.v3.Authorization/Check"


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _requests() -> list[bytes]:
    """A small mix of CheckRequests (allowed and denied) as Envoy sends them, serialized."""
    out = []
    peers = [
        "spiffe://mcp.local/ns/edge/sa/api-gateway",
        "spiffe://mcp.local/ns/agents/sa/agent-runtime",
        "spiffe://elsewhere/ns/x/sa/y",
        "",
    ]
    paths = ["/v1/tools", "/v1/agents/run", "/internal/runs/7", "/admin?x=1"]
    for i, peer in enumerate(peers):
        for j, path in enumerate(paths):
            r = pb.CheckRequest()
            r.attributes.request.http.method = ("GET", "POST")[(i + j) % 2]
            r.attributes.request.http.path = path
            r.attributes.request.http.headers["user-agent"] = "load"
            r.attributes.source.principal = peer
            r.attributes.source.address.socket_address.address = f"10.0.0.{i + 1}"
            r.attributes.destination.principal = "spiffe://mcp.local/ns/core/sa/mcp-api"
            out.append(r.SerializeToString())
    return out


async def _drive(port: int, count: int, start: int, ids: list[str]) -> None:
    bodies = _requests()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        check = channel.unary_unary(
            CHECK, request_serializer=None, response_deserializer=pb.CheckResponse.FromString
        )
        queue = iter(range(start, start + count))

        async def worker() -> None:
            for n in queue:
                resp = await check(bodies[n % len(bodies)], timeout=30)
                which = resp.ok_response if resp.HasField("ok_response") else resp.denied_response
                found = [
                    h.header.value for h in which.headers if h.header.key == "x-mcpdsl-decision-id"
                ]
                ids.append(found[0])

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def test_memory_steady_and_log_complete_over_100k_decisions(
    tmp_path: Path, serve: Callable[..., ServerProcess]
) -> None:
    log = tmp_path / "decisions.jsonl"
    server = serve(ROOT / "policies", "--no-watch", "--decision-log", str(log))
    grpc_port = int(server.grpc.rpartition(":")[2])
    ids: list[str] = []
    asyncio.run(_drive(grpc_port, WARMUP, 0, ids))
    warm = _rss(server.pid)
    asyncio.run(_drive(grpc_port, TOTAL - WARMUP, WARMUP, ids))
    end = _rss(server.pid)
    assert server.stop(60) == 0
    assert len(ids) == TOTAL
    assert len(set(ids)) == TOTAL, "a decision id was given twice"
    assert end - warm < MAX_GROWTH, f"resident memory grew by {(end - warm) >> 20} MiB"
    logged = [json.loads(line)["decision_id"] for line in log.read_text().splitlines()]
    assert len(logged) == TOTAL, f"{len(logged)} log lines for {TOTAL} decisions"
    assert set(logged) == set(ids), "the log and the responses disagree on the decisions"
