"""A real HTTP/1.1 upstream on loopback whose misbehaviour a test scripts.

Why hand-written on asyncio streams rather than starlette: the tests need what a
framework hides or refuses - the raw request target exactly as it came over the
wire (no decoding, no normalisation), every header the client sent, and
answers no framework writes: a socket reset, a hang, a body streamed until the
client gives up, a duplicate JSON key.  It runs its own event loop in a thread,
so what it sees does not depend on the client's loop.

A test gives `RawUpstream` a `script(request) -> Action`; every request is
recorded in `requests` (in arrival order) before the script runs.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Seen:
    """One request as it arrived: raw target, header list in order, body."""

    method: str
    target: bytes
    headers: tuple[tuple[str, str], ...]
    body: bytes
    connection: int  # which connection (1, 2, ...) carried it

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name.lower()]
        return values[0] if values else None

    @property
    def names(self) -> set[str]:
        return {k for k, _ in self.headers}


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


@dataclass(frozen=True)
class Hang:
    """Never answer (until the client closes the connection)."""


@dataclass(frozen=True)
class Reset:
    """Close the connection with a TCP RST, without a response."""


@dataclass(frozen=True)
class Stream:
    """A 200 whose close-delimited body is `total` bytes of JSON-looking text, sent in chunks."""

    total: int
    chunk: int = 64 * 1024
    declare_length: bool = False


Action = Reply | Hang | Reset | Stream


@dataclass
class RawUpstream:
    script: Callable[[Seen], Action] = field(default=lambda _seen: Reply())
    requests: list[Seen] = field(default_factory=list)
    streamed: list[int] = field(default_factory=list)  # bytes written per Stream action
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _connections: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RawUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0, limit=1 << 20)
            )
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            try:
                loop.run_forever()
            finally:
                server.close()
                loop.run_until_complete(server.wait_closed())
                loop.close()

        self._thread = threading.Thread(target=run, name="raw-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        number = self._connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head[:-4].split(b"\r\n")
                method, target, _version = lines[0].split(b" ", 2)
                headers = []
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers.append(
                        (name.decode("latin-1").lower(), value.strip().decode("latin-1"))
                    )
                length = int(dict(headers).get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                seen = Seen(method.decode(), target, tuple(headers), body, number)
                self.requests.append(seen)
                action = self.script(seen)
                if isinstance(action, Hang):
                    await reader.read()  # until the client gives up
                    return
                if isinstance(action, Reset):
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if isinstance(action, Stream):
                    await self._stream(writer, action)
                    return
                head_out = [f"HTTP/1.1 {action.status} X".encode()]
                head_out += [f"{k}: {v}".encode() for k, v in action.headers]
                head_out.append(f"content-length: {len(action.body)}".encode())
                writer.write(b"\r\n".join(head_out) + b"\r\n\r\n" + action.body)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter, action: Stream) -> None:
        head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        if action.declare_length:
            head += f"content-length: {action.total}\r\n"
        else:
            head += "connection: close\r\n"
        writer.write((head + "\r\n").encode())
        sent = 0
        chunk = b"[" + b"1," * (action.chunk // 2 - 1) + b"1"
        try:
            while sent < action.total and not writer.transport.is_closing():
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        except (ConnectionError, OSError):
            pass
        finally:
            self.streamed.append(sent)
