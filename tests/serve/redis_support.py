"""A real `redis-server` for the shared-store tests (a unique module name: tests are not packages).

The server runs on a free loopback port chosen here (never `--port 0`), without
persistence, and is killed at the end; it can be stopped and started again on
the same port to test recovery.  Without the binary the tests skip with the
reason CI turns into a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

SYSTEM_SKIP = "system component missing:"
REPO = Path(__file__).resolve().parent.parent.parent

#: A policy tree whose allow rules are rate limited by buckets that refill one
#: token an hour (nothing refills within a test): 20 for calls to `api` on the
#: mesh (`balance api`), 30 for everything through the gateway `edge`.
POLICY = """package t

service frontend { image "x" port 80 stateful }
service api { image "x" port 80 stateful }

policy open {
  default deny
  allow service frontend -> service api
  allow any -> service api on GET "/public/**"
}

balance api {
  limit 1/h burst 20
}

gateway edge {
  listen 8443
  limit  1/h burst 30
  route "/**" -> service api
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        pytest.skip(f"{SYSTEM_SKIP} redis-server (apt-get install redis-server)")
    return found


class RedisServer:
    """One redis-server process on 127.0.0.1:`port`; `stop()` and `start()` keep the port."""

    def __init__(self, binary: str, workdir: Path, *extra: str) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", str(self.workdir), *self.extra]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 30 s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """One command in RESP, the raw reply (enough for FLUSHALL, DBSIZE, KEYS, TTL)."""
        payload = f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args
        )
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(payload)
            time.sleep(0.05)
            return s.recv(1 << 20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class GarbageServer:
    """A TCP server on loopback that answers anything with bytes that are not RESP."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(10)
            if conn.recv(65536) and self.reply:
                conn.sendall(self.reply)
            while conn.recv(65536):  # hold the connection until the client gives up
                pass

    def close(self) -> None:
        self.sock.close()


def write_policy(root: Path) -> Path:
    tree = root / "policy"
    tree.mkdir()
    (tree / "t.mcp").write_text(POLICY, encoding="utf-8")
    return tree


class ServeProcess:
    """`python -m mcpdsl serve TREE --redis URL` on free loopback ports, ready once /health is."""

    def __init__(
        self, tree: Path, redis_url: str, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.http, self.grpc = free_port(), free_port()
        self.log = tree.parent / f"serve-{self.http}.log"
        cmd = [sys.executable, "-m", "mcpdsl", "serve", str(tree), "--no-watch",
               "--addr", f"127.0.0.1:{self.http}", "--grpc-addr", f"127.0.0.1:{self.grpc}",
               "--redis", redis_url, *extra]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.log.read_text(errors="replace")
                raise RuntimeError(f"mcpdsl serve exited with {self.proc.returncode}: {err}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.base}/health", timeout=2) as r,
            ):
                if r.status == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("mcpdsl serve did not become healthy within 60 s")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
