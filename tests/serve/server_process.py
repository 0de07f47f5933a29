"""Start the real `python -m mcpdsl serve` process on free loopback ports, for tests.

Reusable by every serve test (HTTP, gRPC, Redis): `start_server(path, *args)`
runs the CLI with `--addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0`, reads the JSON
line the server prints once both listeners are bound
(`{"event": "listening", "http": ..., "grpc": ..., "pid": ...}`), waits until
`GET /ready` answers 200, and returns a `ServerProcess`; `running(...)` is the
same as a context manager that stops it on the way out.  Standard output and
standard error are collected by reader threads (`stdout_lines`,
`stderr_lines`), so a test can wait for a line (`wait_for_stderr`) without
blocking the pipe.  Only the standard library is used here.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mcpdsl

#: Where the mcpdsl under test lives: the child imports the same package.
PACKAGE_ROOT = Path(mcpdsl.__file__).resolve().parent.parent


class ServerFailed(RuntimeError):
    """The server process exited or did not become ready; carries its output."""


@dataclass
class ServerProcess:
    """A running `mcpdsl serve` process and what it said."""

    proc: subprocess.Popen[bytes]
    http: str = ""  # HOST:PORT of the HTTP listener
    grpc: str = ""  # HOST:PORT of the gRPC listener
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.http.rpartition(":")
        return host.strip("[]"), int(port)

    def stderr(self) -> str:
        with self._lock:
            return "".join(self.stderr_lines)

    def stdout(self) -> str:
        with self._lock:
            return "".join(self.stdout_lines)

    def wait_for_stderr(self, predicate: Callable[[str], bool], timeout: float = 30.0) -> str:
        """The first stderr line satisfying `predicate` (raises ServerFailed on timeout)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            with self._lock:
                lines = self.stderr_lines[seen:]
            for line in lines:
                if predicate(line):
                    return line
            seen += len(lines)
            if self.proc.poll() is not None and not lines:
                break
            time.sleep(0.02)
        raise ServerFailed(f"no such line on stderr; stderr so far:\n{self.stderr()}")

    def request(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:  # fmt: skip
        """One HTTP request (a fresh connection); (status, body)."""
        host, port = self.host_port
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, value: Any = None, **kw: Any) -> tuple[int, Any]:
        body = None if value is None else json.dumps(value).encode()
        status, raw = self.request(method, path, body, **kw)
        return status, json.loads(raw) if raw else None

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(5)
        return code

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not exit in time. The exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.wait(timeout)


def _reader(stream: Any, sink: list[str], lock: threading.Lock) -> None:
    for raw in iter(stream.readline, b""):
        with lock:
            sink.append(raw.decode("utf-8", "replace"))
    stream.close()


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the child: this mcpdsl first on its path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def listening_line(line: str) -> dict[str, Any] | None:
    """The parsed `listening` line, or None for any other line."""
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("event") == "listening" else None


def start_server(
    path: str | os.PathLike[str],
    *args: str,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    addr: str = "127.0.0.1:0",
    grpc_addr: str = "127.0.0.1:0",
) -> ServerProcess:
    """Start `mcpdsl serve PATH ARGS...` and wait until it is listening and ready."""
    cmd: Sequence[str] = [
        sys.executable, "-m", "mcpdsl", "serve", str(path),
        "--addr", addr, "--grpc-addr", grpc_addr, *args,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=server_env(env),
        cwd=cwd,
    )
    server = ServerProcess(proc)
    for stream, sink in ((proc.stdout, server.stdout_lines), (proc.stderr, server.stderr_lines)):
        thread = threading.Thread(target=_reader, args=(stream, sink, server._lock), daemon=True)
        thread.start()
        server._threads.append(thread)
    try:
        line = server.wait_for_stderr(lambda text: listening_line(text) is not None, timeout)
    except ServerFailed:
        server.stop(5)
        raise
    data = listening_line(line)
    assert data is not None
    server.http, server.grpc = data["http"], data["grpc"]
    deadline = time.monotonic() + timeout
    while True:
        try:
            if server.request("GET", "/ready", timeout=5)[0] == 200:
                return server
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop(5)
            raise ServerFailed(f"the server did not become ready:\n{server.stderr()}")
        time.sleep(0.05)


@contextmanager
def running(path: str | os.PathLike[str], *args: str, **kw: Any) -> Iterator[ServerProcess]:
    """`start_server(path, *args, **kw)`, stopped (SIGTERM, SIGKILL after 15 s) however the
    block ends: for a test or module fixture that owns one server rather than the `serve`
    fixture's list."""
    server = start_server(path, *args, **kw)
    try:
        yield server
    finally:
        server.stop(15)
