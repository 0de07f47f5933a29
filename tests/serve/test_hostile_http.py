"""Hostile HTTP clients against the real `mcpdsl serve` process.

Huge bodies (declared and streamed), huge heads, deep nesting, slow heads and
bodies (slowloris), a flood of idle connections, and more requests in flight
than allowed: each gets a bounded answer or a closed connection, and the
server keeps answering `/health` and real decisions throughout.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ALLOWED, write_gate
from prometheus_client.parser import text_string_to_metric_families
from server_process import ServerProcess, start_server

TIMEOUT = 2.0  # --request-timeout of the server under attack, seconds


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tree = write_gate(tmp_path_factory.mktemp("tree"))
    started = start_server(
        tree, "--max-body", "4096", "--request-timeout", str(TIMEOUT), "--keep-alive", "1",
        "--max-connections", "300", "--max-inflight", "4",
    )  # fmt: skip
    yield started
    assert started.stop(20) == 0


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(server.host_port, timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    return sock


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything until the server closes (or `timeout`)."""
    sock.settimeout(timeout)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return out


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` within `seconds` without sending anything."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def healthy(server: ServerProcess) -> bool:
    status, _ = server.request("GET", "/health")
    decided, body = server.json("POST", "/v1/data/mcp/main/allow", {"input": ALLOWED})
    return status == 200 and decided == 200 and body["result"] is True


def test_declared_huge_body_is_refused_without_reading_it(server: ServerProcess) -> None:
    sock = connect(server)
    sock.sendall(
        b"POST /v1/data/mcp/main/allow HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{"
    )
    raw = read_all(sock)
    assert status_of(raw) == 413
    body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert body["code"] == "invalid_parameter" and "too large" in body["message"]
    assert healthy(server)


def test_streamed_huge_body_is_cut_at_the_limit(server: ServerProcess) -> None:
    sock = connect(server)
    sock.sendall(
        b"POST /v1/data/mcp/main/allow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"1000\r\n" + b" " * 0x1000 + b"\r\n"
    try:
        for _ in range(64):  # 256 KiB offered, 4 KiB allowed
            sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed before reading it all
    assert status_of(read_all(sock)) == 413
    assert healthy(server)


def test_huge_head_is_refused(server: ServerProcess) -> None:
    sock = connect(server)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    raw = read_all(sock)
    assert status_of(raw) == 431
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["code"] == "invalid_parameter"
    assert healthy(server)


def test_deep_but_parseable_input_is_decided(server: ServerProcess) -> None:
    nested: Any = ALLOWED
    for _ in range(400):
        nested = {"a": nested}
    request = dict(ALLOWED, context=nested)
    body = json.dumps({"input": request}).encode()
    assert len(body) < 4096
    status, data = server.json("POST", "/v1/data/mcp/main/allow", {"input": request})
    assert status == 200 and isinstance(data["result"], bool)


def test_slow_head_is_cut_off(server: ServerProcess) -> None:
    silent = connect(server)
    partial = connect(server)
    partial.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    trickle = connect(server)
    start = time.monotonic()
    closed_at = None
    trickle.settimeout(0.2)
    for byte in b"X-Slow: " + b"y" * 200:  # one byte every 0.1 s: a slowloris
        try:
            trickle.sendall(bytes([byte]))
            if trickle.recv(1) == b"":
                closed_at = time.monotonic()
                break
        except TimeoutError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            closed_at = time.monotonic()
            break
        time.sleep(0.1)
    assert closed_at is not None and closed_at - start < TIMEOUT + 5
    assert closed_within(silent, TIMEOUT + 5)
    assert closed_within(partial, TIMEOUT + 5)
    assert healthy(server)


def test_slow_body_gets_408(server: ServerProcess) -> None:
    sock = connect(server)
    sock.sendall(
        b"POST /v1/data/mcp/main/allow HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n{"
    )
    raw = read_all(sock, TIMEOUT + 10)
    assert status_of(raw) == 408
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["code"] == "invalid_parameter"
    assert healthy(server)


def test_requests_beyond_the_inflight_limit_get_503_and_probes_still_answer(
    server: ServerProcess,
) -> None:
    holders = []
    for _ in range(4):  # --max-inflight 4: four Data API requests waiting for their bodies
        sock = connect(server)
        sock.sendall(
            b"POST /v1/data/mcp/main/allow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Length: 50\r\n\r\n{"
        )
        holders.append(sock)
    time.sleep(0.3)
    status, body = server.json("POST", "/v1/data/mcp/main/allow", {"input": ALLOWED})
    assert status == 503 and body["code"] == "internal_error"
    assert server.request("GET", "/health")[0] == 200
    assert server.request("GET", "/ready")[0] == 200
    for sock in holders:  # finish them: each is decided
        sock.sendall(b'"input": {}}' + b" " * 37)
    for sock in holders:
        assert status_of(read_all(sock)) == 200
        sock.close()
    assert healthy(server)


def healthy_soon(server: ServerProcess, attempts: int = 5) -> bool:
    """`healthy`, retried: during an accept burst a new connection may be evicted before
    its first bytes are read (it is then one of the longest-waiting); a retry gets in."""
    for _ in range(attempts):
        try:
            return healthy(server)
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            time.sleep(0.5)
    return False


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_ten_thousand_idle_connections(tmp_path: Path) -> None:
    """10,000 idle sockets against a server capped at 1,000: it keeps answering.

    The cap closes the longest-idle connection to make room, the head deadline
    closes the rest; the server's open files stay bounded by the cap.
    """
    wanted = 10_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + 200
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the open-files hard limit ({hard}) is below {need}")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    server = start_server(
        write_gate(tmp_path / "tree"), "--max-connections", "1000", "--request-timeout", "4",
        "--max-inflight", "64",
    )  # fmt: skip
    sockets: list[socket.socket] = []
    try:
        for _ in range(wanted):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(server.host_port)
            sockets.append(s)
        assert len(sockets) == wanted
        # while the flood is open: the server answers probes and decisions
        assert healthy_soon(server)
        peak = _open_files(server.pid)
        assert peak < 1000 + 200, peak
        # every idle socket is closed by the server (evicted, or after the head deadline)
        sel = selectors.DefaultSelector()
        for s in sockets:
            sel.register(s, selectors.EVENT_READ)
        open_ = set(sockets)
        deadline = time.monotonic() + 4 + 30
        while open_ and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(1)
                except (ConnectionResetError, ConnectionRefusedError, BlockingIOError):
                    data = b""
                if data == b"":
                    sel.unregister(sock)
                    open_.discard(sock)
        sel.close()
        assert not open_, f"{len(open_)} idle connections still open"
        assert healthy(server)
        assert _open_files(server.pid) < 200
        exposition = server.request("GET", "/metrics")[1].decode()
        closed = {
            s.labels["reason"]: s.value
            for f in text_string_to_metric_families(exposition)
            for s in f.samples
            if s.name == "mcpdsl_http_connections_closed_total"
        }
        # every idle socket was closed by the server: evicted or timed out
        assert closed.get("evicted", 0) + closed.get("head_timeout", 0) >= wanted, closed
        print(f"idle flood: peak {peak} open files; closed {closed}")
    finally:
        for s in sockets:
            s.close()
        assert server.stop(30) == 0
