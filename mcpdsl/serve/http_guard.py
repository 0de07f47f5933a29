"""uvicorn's h11 protocol, hardened: a deadline for request heads and a connection cap.

uvicorn waits forever for the first request of a connection, and its
`limit_concurrency` counts idle connections too (so a flood of idle sockets
would make it answer 503 to everyone).  `GuardedH11Protocol` instead gives
every connection `Limits.request_timeout` seconds to send a complete request
head, and beyond `Limits.max_connections` closes the connection that has
waited longest without sending one (see `limits`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from mcpdsl.serve.limits import Limits


class ConnectionGuard:
    """The HTTP connections of one server that are waiting for a request head, oldest first.

    Shared by the protocol instances of one server (not global): they register
    here while waiting, so that a new connection beyond `max_connections` can
    close the longest-waiting one in O(1).
    """

    def __init__(self, limits: Limits, closed: Callable[[str], object] | None = None) -> None:
        self.limits = limits
        self.waiting: dict[GuardedH11Protocol, None] = {}  # insertion order = waiting since
        self._closed = closed

    def closed(self, reason: str) -> None:
        """Count a connection closed to protect the server (`evicted`, `head_timeout`, ...)."""
        if self._closed is not None:
            self._closed(reason)

    def protocol(self, *args: Any, **kwargs: Any) -> GuardedH11Protocol:
        """The protocol factory uvicorn calls for each accepted connection."""
        return GuardedH11Protocol(*args, guard=self, **kwargs)


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Send small writes at once (TCP_NODELAY) on an accepted connection.

    asyncio sets it only on sockets whose protocol number is IPPROTO_TCP, and a
    listening socket made by `socket.create_server` (the runner's `bind_listener`)
    says 0, so its connections kept Nagle's algorithm: a response written as
    head then body waited for the client's delayed ACK, about 40 ms on every
    keep-alive request after the first.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for request heads and a connection cap."""

    def __init__(self, *args: Any, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard
        self._deadline: asyncio.TimerHandle | None = None
        self._head = bytearray()  # the request head received so far (bounded by the limit)

    # -- the protocol's life --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)
        guard = self._guard
        if len(self.connections) > guard.limits.max_connections:
            victim = next(iter(guard.waiting), None)
            if victim is None:  # every open connection is busy: this one waits its turn
                guard.closed("refused")
                transport.close()
                return
            guard.closed("evicted")
            victim._close()
        self._sync()

    def data_received(self, data: bytes) -> None:
        if not self._busy():
            head = self._head
            head.extend(data)
            end = head.find(b"\r\n\r\n")
            size = end + 4 if end >= 0 else len(head)
            if size > self._guard.limits.max_header_bytes:
                self._refuse_head()
                return
            if end >= 0:
                head.clear()  # complete: h11 parses it; the next head counts afresh
        super().data_received(data)
        self._sync()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._sync()

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave()
        super().connection_lost(exc)

    # -- waiting for a request head --------------------------------------------------------

    def _busy(self) -> bool:
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete

    def _sync(self) -> None:
        """Register as waiting (with a deadline) or leave, after every event."""
        if self.transport.is_closing() or self._busy():
            self._leave()
        elif self not in self._guard.waiting:
            self._head.clear()
            self._guard.waiting[self] = None
            self._deadline = self.loop.call_later(
                self._guard.limits.request_timeout, self._head_timeout
            )

    def _leave(self) -> None:
        self._guard.waiting.pop(self, None)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timeout(self) -> None:
        self._deadline = None
        if not self._busy() and not self.transport.is_closing():
            self._guard.closed("head_timeout")
            self._close()

    def _refuse_head(self) -> None:
        """431 in OPA's error shape, then close: the head is larger than the limit."""
        self._guard.closed("head_too_large")
        limit = self._guard.limits.max_header_bytes
        body = (
            b'{"code":"invalid_parameter","message":"request head larger than '
            + str(limit).encode()
            + b' bytes"}'
        )
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self._close()

    def _close(self) -> None:
        self._leave()
        self.transport.close()
