"""SIGTERM while requests are in flight: they complete, the process exits 0, the log is whole.

Requests are held in flight deterministically: each sends its head and the
first byte of its body, the server is sent SIGTERM, new connections must then
be refused (the listeners are closed), and only then are the bodies finished.
Every held request must be answered 200 with a decision whose id is in the
decision log, which must hold exactly one line per decision made.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ALLOWED

from mcpdsl.serve.runner import is_loopback, join_addr, split_addr


def held_request(host_port: tuple[str, int]) -> tuple[socket.socket, bytes]:
    body = json.dumps({"input": ALLOWED}).encode()
    sock = socket.create_connection(host_port, timeout=30)
    sock.sendall(
        b"POST /v1/data/mcp/main/decision HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body[:1]
    )
    return sock, body[1:]


def read_response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    raw = b""
    while chunk := sock.recv(65536):
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_sigterm_drains_in_flight_requests(serve: Any, demo_tree: Path, tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    server = serve(demo_tree, "--decision-log", str(log), "--request-timeout", "60")
    before = [server.json("POST", "/v1/data/mcp/main/allow", {"input": ALLOWED}) for _ in range(3)]
    held = [held_request(server.host_port) for _ in range(8)]
    time.sleep(0.5)  # the server has read every head: the requests are in flight
    server.signal(signal.SIGTERM)
    server.wait_for_stderr(lambda line: "stopping" in line)
    refused = False
    for _ in range(50):  # the listener closes: new connections are refused
        try:
            socket.create_connection(server.host_port, timeout=2).close()
        except (ConnectionRefusedError, ConnectionResetError):
            refused = True
            break
        time.sleep(0.05)
    assert refused, "the server still accepts connections while draining"
    answers = []
    for sock, rest in held:
        sock.sendall(rest)
    for sock, _ in held:
        answers.append(read_response(sock))
        sock.close()
    assert server.wait(30) == 0
    assert all(code == 200 and body["result"]["allowed"] for code, body in answers)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == len(before) + len(held)
    logged = {line["decision_id"] for line in lines}
    assert {body["decision_id"] for _, body in answers} <= logged
    assert {body["decision_id"] for _, body in before} <= logged
    assert "mcpdsl serve: stopped" in server.stderr()


def test_cannot_bind_is_said_not_a_traceback(serve: Any, demo_tree: Path) -> None:
    first = serve(demo_tree)
    from server_process import ServerFailed, start_server

    with pytest.raises(ServerFailed) as info:
        start_server(demo_tree, addr=first.http, timeout=30)
    assert "Traceback" not in str(info.value)
    assert "cannot listen" in str(info.value) or "address already in use" in str(info.value)


@pytest.mark.parametrize(
    ("addr", "loopback"),
    [("127.0.0.1:0", True), ("[::1]:8181", True), ("localhost:1", True), ("127.0.0.2:1", True),
     ("0.0.0.0:8181", False), ("10.1.2.3:9191", False), ("[::]:1", False)],
)  # fmt: skip
def test_loopback_addresses(addr: str, loopback: bool) -> None:
    assert is_loopback(addr) is loopback
    host, port = split_addr(addr)
    assert join_addr(host, port) == addr


@pytest.mark.parametrize("addr", ["8181", "host:", ":80", "h:99999", "h:-1"])
def test_bad_addresses(addr: str) -> None:
    with pytest.raises(ValueError):
        split_addr(addr)


def test_sigterm_under_grpc_and_http_load_loses_no_decision(
    serve: Any, demo_tree: Path, tmp_path: Path
) -> None:
    """Clients keep calling Check and the Data API while SIGTERM arrives.

    A call either gets its answer, or fails because the server no longer accepts
    it (gRPC UNAVAILABLE or CANCELLED before it is handled, an HTTP connection
    refused or closed before a response); no call is cut off after being
    decided: the decision log holds exactly one line per answer received, and
    the process exits 0.
    """
    import threading

    import grpc
    import httpx
    from envoy.service.auth.v3 import external_auth_pb2 as pb
    from envoy.service.auth.v3 import external_auth_pb2_grpc as pb_grpc

    log = tmp_path / "decisions.jsonl"
    server = serve(demo_tree, "--decision-log", str(log))
    check = pb.CheckRequest()
    check.attributes.request.http.method = "GET"
    check.attributes.request.http.path = "/v1/items"
    check.attributes.request.http.host = "api"
    answered: list[str] = []
    failures: list[str] = []
    details: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def grpc_client() -> None:
        with grpc.insecure_channel(server.grpc) as channel:
            stub = pb_grpc.AuthorizationStub(channel)
            while not stop.is_set():
                try:
                    stub.Check(check, timeout=20)
                except grpc.RpcError as exc:
                    with lock:
                        failures.append(f"grpc {exc.code().name}")  # type: ignore[attr-defined]
                        details.append(str(exc.details()))  # type: ignore[attr-defined]
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                        return
                    continue
                with lock:
                    answered.append("grpc")

    def http_client() -> None:
        with httpx.Client(base_url=server.url, timeout=20) as client:
            while not stop.is_set():
                try:
                    r = client.post("/v1/data/mcp/main/allow", json={"input": ALLOWED})
                except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                    with lock:
                        failures.append(f"http {type(exc).__name__}")
                    return
                with lock:
                    answered.append(f"http {r.status_code}")

    threads = [
        threading.Thread(target=f, daemon=True) for f in (grpc_client,) * 3 + (http_client,) * 3
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(answered) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.signal(signal.SIGTERM)
    for t in threads:
        t.join(60)
    stop.set()
    assert server.wait(30) == 0
    assert len(answered) >= 300
    assert all(a in ("grpc", "http 200") for a in answered), set(answered)
    # A call that reaches gRPC after the stop began is CANCELLED by gRPC itself,
    # undecided (the log equality above proves no decided call went unanswered).
    allowed_failures = {
        "grpc UNAVAILABLE", "grpc CANCELLED",
        "http ConnectError", "http RemoteProtocolError", "http ReadError",
    }  # fmt: skip
    lines = log.read_text().splitlines()
    assert len(lines) == len(answered), (len(lines), len(answered), failures)
    assert set(failures) <= allowed_failures, (failures, details)
