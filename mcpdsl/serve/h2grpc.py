"""The gRPC listener's own HTTP/2 server: one unary method, answered in the reading callback.

Why not only `grpc.aio`: measured on the reference 2-core machine
(docs/performance.md), a `grpc.aio` server that answers every Check with a
constant costs 330 µs of CPU per call and 0.55 ms per call one at a time,
before any decision is made, which alone misses the decision server's goals
(≥ 5,000 Checks/s, ≤ 0.5 ms p50).  The Python layers of grpcio (a task, a
completion queue round trip and several Cython-to-Python hops per call) are
the cost, not HTTP/2 itself.  The server `mcpdsl serve` offers is one unary
method on cleartext HTTP/2, so this module serves exactly that:

* frames are read and written by hand (RFC 9113 §4, §6), header blocks are
  decoded by `hpack` (the field's HPACK library, Huffman and dynamic table
  included), and the few response header blocks are encoded once, with
  literals that never enter the peer's dynamic table, so that they can be
  replayed byte for byte on any connection;
* the decision runs inside `data_received` when the store never waits (the
  in-memory one): no task, no extra loop turn, and every answer of one read is
  written with one `write`.  A store that waits (Redis) gets one task per call;
* the rules of the protocol that matter against a hostile or broken peer are
  kept: stream-id order, CONTINUATION sequencing, frame sizes, flow control in
  both directions, SETTINGS validation and acknowledgement, PING replies,
  GOAWAY on connection errors, RST_STREAM on stream errors, HPACK size limits;
* the limits of `Limits` apply as they did with grpcio: message size
  (RESOURCE_EXHAUSTED), concurrent calls, ping strikes, idle connections, plus
  a preface deadline, a body deadline, a connection cap and write
  back-pressure (a peer that stops reading stops being read).

`--grpc-server grpcio` keeps grpcio's server (`grpc_authz.grpc_server`);
both are held to the same tests (a real grpcio client, h2load, and a raw
frame-level client for what well-behaved clients never send).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hpack import Decoder, Encoder, HPACKError
from hpack.hpack import encode_integer
from hpack.struct import NeverIndexedHeaderTuple

from mcpdsl.serve.limits import Limits

log = logging.getLogger("mcpdsl.serve.h2grpc")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types (RFC 9113 §6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0, 1, 2, 3, 4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 5, 6, 7, 8, 9
# flags
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
# error codes (RFC 9113 §7)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL = 5, 6, 7, 8
COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 9, 11
# settings (RFC 9113 §6.5.2)
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS = 1, 2, 3
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 4, 5, 6

MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65_535
#: The largest frame this server accepts (the protocol's default; it never raises it).
FRAME_LIMIT = 16_384
#: The windows this server grants: one large message needs no round trip per 64 KiB.
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 1 << 24
#: Header blocks remembered per connection, and the largest remembered (`_decode`).
BLOCK_MEMO_ENTRIES, BLOCK_MEMO_BYTES = 16, 512
#: Bytes a peer may leave unread in the socket before this server stops reading it.
WRITE_HIGH_WATER = 1 << 20

# gRPC status codes (grpc/doc/statuscodes.md)
GRPC_OK, GRPC_CANCELLED, GRPC_INTERNAL, GRPC_UNIMPLEMENTED = 0, 1, 13, 12
GRPC_RESOURCE_EXHAUSTED, GRPC_UNAVAILABLE, GRPC_DEADLINE_EXCEEDED = 8, 14, 4

#: Headers that HTTP/2 forbids in a request (RFC 9113 §8.2.2).
CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
PSEUDO = frozenset((b":method", b":scheme", b":path", b":authority"))


NO_TABLE_CHANGE = (1 << 32, 1 << 32)


def _size_update(size: int) -> bytes:
    """An HPACK dynamic table size update (RFC 7541 §6.3)."""
    encoded = encode_integer(size, 5)
    encoded[0] |= 0x20
    return bytes(encoded)


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame: 9-byte header (length, type, flags, stream id) and payload."""
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload
    )


def _block(headers: list[tuple[str, str]]) -> bytes:
    """A header block that leaves the peer's HPACK dynamic table as it was.

    `:status 200` is a static-table reference; every other field is a literal
    never indexed, so the block can be sent again, on any connection, at any
    point of its HPACK state.
    """
    fields = [h if h[0] == ":status" else NeverIndexedHeaderTuple(*h) for h in headers]
    return bytes(Encoder().encode(fields, huffman=False))


RESPONSE_HEADERS = _block([(":status", "200"), ("content-type", "application/grpc")])
OK_TRAILERS = _block([("grpc-status", "0")])


def grpc_message(text: str, limit: int = 512) -> str:
    """`grpc-message`: percent-encoded as gRPC says, cut to `limit` characters first."""
    return quote(text[:limit], safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


def trailers_only(code: int, message: str) -> bytes:
    """The block of a call answered by its status alone (gRPC's Trailers-Only)."""
    return _block(
        [
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", str(code)),
            ("grpc-message", grpc_message(message)),
        ]
    )


def status_only(status: int) -> bytes:
    """The block of a request that is not a gRPC call (wrong method or content type)."""
    return _block([(":status", str(status))])


def message_problem(body: bytearray, declared: int, limit: int) -> tuple[int, str] | None:
    """Why a unary call's body so far cannot be its one message, as a gRPC status; or None.

    `declared` is the length its 5-byte prefix gave (-1: not arrived yet).
    """
    if declared < 0:
        return None
    if body[0] == 1:
        return GRPC_INTERNAL, "a compressed message without a grpc-encoding"
    if body[0] != 0:
        return GRPC_INTERNAL, "a bad message prefix"
    if declared > limit:
        return (
            GRPC_RESOURCE_EXHAUSTED,
            f"a {declared}-byte message is over the limit of {limit} bytes",
        )
    if len(body) > declared + 5:
        return GRPC_UNIMPLEMENTED, "a unary call with more than one message"
    return None


class ConnectionError_(Exception):
    """A connection error (RFC 9113 §5.4.1): GOAWAY with `code`, then close."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


Handler = Callable[[bytes], Coroutine[Any, Any, bytes]]


@dataclass
class _Stream:
    """A request stream: its header block, its body so far, its windows."""

    sid: int
    ok: bool = True  # headers named the method, and nothing refused the call yet
    body: bytearray | None = None
    declared: int = -1  # the gRPC message's declared length, once its prefix arrived
    started: float = 0.0
    recv_window: int = STREAM_WINDOW
    answered: bool = False
    ended: bool = False  # the client sent END_STREAM
    task: asyncio.Future[bytes] | None = None


@dataclass
class _Pending:
    """An answer's DATA that the peer's flow-control windows did not let out yet."""

    data: bytes
    trailers: bytes
    window: int  # the stream's send window
    since: float = 0.0


class GrpcConnection(asyncio.Protocol):
    """One client connection: HTTP/2 framing, flow control, and the calls on it."""

    def __init__(self, server: GrpcServer) -> None:
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.preface = False
        self.settled = False  # the client's first SETTINGS arrived
        self.decoder = Decoder(max_header_list_size=self.limits.max_header_bytes)
        self.streams: dict[int, _Stream] = {}
        self.last_sid = 0
        self.header_sid = 0  # the stream whose CONTINUATION frames are awaited
        self.header_end_stream = False
        self.header_parts: list[bytes] = []
        self.header_size = 0
        self.send_window = DEFAULT_WINDOW
        self.recv_window = DEFAULT_WINDOW
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = FRAME_LIMIT
        #: The dynamic table sizes owed to the peer's decoder: the smallest since the last
        #: block sent, and the last (`NO_TABLE_CHANGE`: none).
        self.table_sizes = NO_TABLE_CHANGE
        self.recv_unacked = 0
        self.pending: dict[int, _Pending] = {}
        self.blocks: dict[bytes, tuple[Any, int, int, Any]] = {}
        #: Streams this server ended before the client did (their late frames are ignored).
        self.ended_early: dict[int, None] = {}
        self.opened = time.monotonic()
        self.last_active = self.opened
        self.ping_strikes = 0
        self.last_ping = 0.0
        self.going_away = False
        self.closed = False
        self.out: list[bytes] = []

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not a TCP socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.server.admit(self):
            transport.abort()
            return
        settings = b"".join(
            key.to_bytes(2, "big") + value.to_bytes(4, "big")
            for key, value in (
                (MAX_CONCURRENT_STREAMS, self.limits.grpc_max_streams),
                (INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                (MAX_HEADER_LIST_SIZE, self.limits.max_header_bytes),
                (ENABLE_PUSH, 0),
            )
        )
        transport.write(
            frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, (CONNECTION_WINDOW - DEFAULT_WINDOW).to_bytes(4, "big"))
        )
        self.recv_window = CONNECTION_WINDOW

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for stream in self.streams.values():
            if stream.task is not None:
                stream.task.cancel()
        self.streams.clear()
        self.pending.clear()
        self.server.forget(self)

    def pause_writing(self) -> None:
        """The peer stopped reading: stop reading it (its PINGs and SETTINGS want answers)."""
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_active = time.monotonic()
        buf = self.buf + data if self.buf else data
        try:
            if not self.preface:
                if len(buf) < len(PREFACE):
                    if not PREFACE.startswith(buf):
                        raise ConnectionError_(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                    self.buf = buf
                    return
                if not buf.startswith(PREFACE):
                    raise ConnectionError_(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                buf = buf[len(PREFACE) :]
                self.preface = True
            self.buf = self._frames(buf)
        except ConnectionError_ as exc:
            self._fail(exc.code, str(exc))
            return
        self._flush()

    # ------------------------------------------------------------------ frames in

    def _frames(self, buf: bytes) -> bytes:
        """Handle every whole frame of `buf`; return the incomplete rest."""
        at, size = 0, len(buf)
        while size - at >= 9:
            length = int.from_bytes(buf[at : at + 3], "big")
            if length > FRAME_LIMIT:
                raise ConnectionError_(FRAME_SIZE_ERROR, f"a {length}-byte frame")
            end = at + 9 + length
            if end > size:
                break
            kind, flags = buf[at + 3], buf[at + 4]
            sid = int.from_bytes(buf[at + 5 : at + 9], "big") & MAX_WINDOW
            payload = buf[at + 9 : end]
            at = end
            if self.header_sid and kind != CONTINUATION:
                raise ConnectionError_(PROTOCOL_ERROR, "a header block was interrupted")
            if not self.settled:
                if kind != SETTINGS or flags & ACK:
                    raise ConnectionError_(PROTOCOL_ERROR, "the first frame was not SETTINGS")
                self.settled = True
            if kind == DATA:
                self._data(sid, flags, payload)
            elif kind == HEADERS:
                self._headers(sid, flags, payload)
            elif kind == CONTINUATION:
                self._continuation(sid, flags, payload)
            elif kind == SETTINGS:
                self._settings(sid, flags, payload)
            elif kind == WINDOW_UPDATE:
                self._window_update(sid, payload)
            elif kind == PING:
                self._ping(sid, flags, payload)
            elif kind == RST_STREAM:
                self._rst_stream(sid, payload)
            elif kind == PRIORITY:
                if sid == 0:
                    raise ConnectionError_(PROTOCOL_ERROR, "PRIORITY on stream 0")
                if len(payload) != 5:
                    self._reset(sid, FRAME_SIZE_ERROR)
            elif kind == GOAWAY:
                if sid != 0:
                    raise ConnectionError_(PROTOCOL_ERROR, "GOAWAY on a stream")
                self.going_away = True
                self._close_if_done()
            elif kind == PUSH_PROMISE:
                raise ConnectionError_(PROTOCOL_ERROR, "a client sent PUSH_PROMISE")
            # other types are extensions: ignored (RFC 9113 §5.5)
        return buf[at:]

    @staticmethod
    def _unpad(flags: int, payload: bytes) -> bytes:
        if flags & PADDED:
            if not payload:
                raise ConnectionError_(PROTOCOL_ERROR, "a padded frame without its pad length")
            pad = payload[0]
            if pad >= len(payload):
                raise ConnectionError_(PROTOCOL_ERROR, "padding longer than the frame")
            return payload[1 : len(payload) - pad]
        return payload

    def _headers(self, sid: int, flags: int, payload: bytes) -> None:
        if sid == 0:
            raise ConnectionError_(PROTOCOL_ERROR, "HEADERS on stream 0")
        block = self._unpad(flags, payload)
        if flags & PRIORITY_FLAG:
            if len(block) < 5:
                raise ConnectionError_(FRAME_SIZE_ERROR, "HEADERS too short for its priority")
            if int.from_bytes(block[:4], "big") & MAX_WINDOW == sid:
                raise ConnectionError_(PROTOCOL_ERROR, "a stream that depends on itself")
            block = block[5:]
        self.header_end_stream = bool(flags & END_STREAM)
        if flags & END_HEADERS:
            self._header_block(sid, block)
        else:
            self.header_sid, self.header_parts, self.header_size = sid, [block], len(block)

    def _continuation(self, sid: int, flags: int, payload: bytes) -> None:
        if not self.header_sid or sid != self.header_sid:
            raise ConnectionError_(PROTOCOL_ERROR, "CONTINUATION out of sequence")
        self.header_size += len(payload)
        if self.header_size > 2 * self.limits.max_header_bytes:
            raise ConnectionError_(ENHANCE_YOUR_CALM, "a header block over the size limit")
        self.header_parts.append(payload)
        if flags & END_HEADERS:
            block = b"".join(self.header_parts)
            self.header_sid, self.header_parts, self.header_size = 0, [], 0
            self._header_block(sid, block)

    def _header_block(self, sid: int, block: bytes) -> None:
        """A whole header block: decode it (always: HPACK state), then open or end a stream."""
        try:
            fields = self._decode(block)
        except HPACKError as exc:
            raise ConnectionError_(COMPRESSION_ERROR, f"HPACK: {exc}") from None
        end_stream = self.header_end_stream
        stream = self.streams.get(sid)
        if stream is not None:  # trailers of a request: they end it
            if stream.ended:
                raise ConnectionError_(STREAM_CLOSED, f"HEADERS after the end of stream {sid}")
            if not end_stream:
                raise ConnectionError_(PROTOCOL_ERROR, "a second header block without END_STREAM")
            self._end(stream)
            return
        if sid % 2 == 0:
            raise ConnectionError_(PROTOCOL_ERROR, f"a client opened even stream {sid}")
        if sid <= self.last_sid:
            if sid in self.ended_early:
                return  # the client's end of a stream reset or answered early (§5.1)
            raise ConnectionError_(PROTOCOL_ERROR, f"stream {sid} opened out of order")
        self.last_sid = sid
        if self.going_away:
            self._reset(sid, REFUSED_STREAM)
            return
        if len(self.streams) + len(self.pending) >= self.limits.grpc_max_streams:
            self._reset(sid, REFUSED_STREAM)
            return
        stream = _Stream(sid, started=self.last_active)
        self.streams[sid] = stream
        self._route(stream, fields)
        if end_stream:
            self._end(stream)
        elif stream.answered:
            self._reset(sid, NO_ERROR)  # answered from its headers: stop its upload

    def _decode(self, block: bytes) -> Iterable[tuple[Any, Any]]:
        """A header block's fields (raw bytes), decoded by `hpack`, remembered when that is sound.

        A proxy calling Check sends the same header block call after call
        (Envoy's and nghttp2's encoders index what repeats, and send `:path`
        as the same literal each time): decoding it again costs a fifth of a
        call in pure Python.  Decoding is a function of the block and the
        dynamic table; a block whose decoding left the table as it was (no
        entry added, none evicted, no size update) decodes to the same fields
        for as long as the table stays so.  The table only changes by adding
        an entry at its front (a new object) or dropping entries from its end,
        so its front entry (held here, so that its identity cannot be reused),
        its length and its maximum size say whether it is still the same.
        """
        table = self.decoder.header_table
        entries = table.dynamic_entries
        front = entries[0] if entries else None
        count, maxsize = len(entries), table.maxsize
        known = self.blocks.get(block)
        if known is not None and known[0] is front and known[1] == count and known[2] == maxsize:
            return known[3]
        fields = self.decoder.decode(block, raw=True)
        if (
            len(block) <= BLOCK_MEMO_BYTES
            and block[0] & 0xE0 != 0x20  # no table size update
            and (entries[0] if entries else None) is front
            and len(entries) == count
            and table.maxsize == maxsize
        ):
            if len(self.blocks) >= BLOCK_MEMO_ENTRIES:
                self.blocks.clear()
            self.blocks[block] = (front, count, maxsize, fields)
        return fields

    def _route(self, stream: _Stream, fields: Iterable[tuple[Any, Any]]) -> None:
        """Check the request's header fields; answer at once those that are no Check call."""
        method = path = content_type = None
        regular = False
        encoding = b"identity"
        for name, value in fields:
            if name[:1] == b":":
                if regular or name not in PSEUDO:
                    return self._malformed(stream)
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
            else:
                regular = True
                if name == b"content-type":
                    content_type = value
                elif name == b"grpc-encoding":
                    encoding = value
                elif (
                    name in CONNECTION_SPECIFIC
                    or (name == b"te" and value != b"trailers")
                    or name.lower() != name
                ):
                    return self._malformed(stream)
        if method is None or path is None:
            return self._malformed(stream)
        if method != b"POST":
            return self._answer_now(stream, status_only(405))
        if content_type is None or not content_type.startswith(b"application/grpc"):
            return self._answer_now(stream, status_only(415))
        if path != self.server.path:
            return self._answer_now(
                stream,
                trailers_only(GRPC_UNIMPLEMENTED, f"unknown method {path.decode('latin-1')}"),
            )
        if encoding != b"identity":
            return self._answer_now(
                stream,
                trailers_only(GRPC_UNIMPLEMENTED, "message compression is not supported"),
            )
        stream.body = bytearray()

    def _malformed(self, stream: _Stream) -> None:
        """A malformed request (RFC 9113 §8.1.1): a stream error, PROTOCOL_ERROR."""
        self._reset(stream.sid, PROTOCOL_ERROR)

    def _data(self, sid: int, flags: int, payload: bytes) -> None:
        if sid == 0:
            raise ConnectionError_(PROTOCOL_ERROR, "DATA on stream 0")
        self.recv_window -= len(payload)
        self.recv_unacked += len(payload)
        if self.recv_window < 0:
            raise ConnectionError_(FLOW_CONTROL_ERROR, "the connection window was overrun")
        if self.recv_unacked >= CONNECTION_WINDOW // 2:
            self.out.append(frame(WINDOW_UPDATE, 0, 0, self.recv_unacked.to_bytes(4, "big")))
            self.recv_window += self.recv_unacked
            self.recv_unacked = 0
        data = self._unpad(flags, payload)
        stream = self.streams.get(sid)
        if stream is None:
            if sid > self.last_sid:
                raise ConnectionError_(PROTOCOL_ERROR, f"DATA on idle stream {sid}")
            return  # a stream reset or answered early: its data is ignored (§5.1)
        if stream.ended:
            raise ConnectionError_(STREAM_CLOSED, f"DATA after the end of stream {sid}")
        stream.recv_window -= len(payload)
        if stream.recv_window < 0:
            return self._reset(sid, FLOW_CONTROL_ERROR)
        body = stream.body
        if body is not None:
            body += data
            if stream.declared < 0 and len(body) >= 5:
                stream.declared = int.from_bytes(body[1:5], "big")
            problem = message_problem(body, stream.declared, self.limits.grpc_max_message_bytes)
            if problem is not None:
                return self._refuse(stream, *problem)
            if not flags & END_STREAM and stream.recv_window < STREAM_WINDOW // 2:
                grant = STREAM_WINDOW - stream.recv_window
                stream.recv_window = STREAM_WINDOW
                self.out.append(frame(WINDOW_UPDATE, 0, sid, grant.to_bytes(4, "big")))
        if flags & END_STREAM:
            self._end(stream)

    def _end(self, stream: _Stream) -> None:
        """The client has sent all of the call: decide it (now, or in a task)."""
        stream.ended = True
        if stream.answered:
            self._drop(stream)
            return
        body = stream.body
        if body is None:  # answered when its headers arrived; only the client's end was owed
            self._drop(stream)
            return
        if stream.declared < 0 or len(body) != stream.declared + 5:
            return self._refuse(
                stream, GRPC_UNIMPLEMENTED, "a unary call needs exactly one message"
            )
        raw = bytes(body[5:])
        stream.body = None
        coro = self.server.handler(raw)
        if self.server.eager:
            try:
                yielded = coro.send(None)
            except StopIteration as done:
                self._respond(stream, done.value)
                self._drop(stream)
                return
            except Exception:  # a bug in a decision: the call fails, not the server
                log.exception("a Check failed")
                return self._refuse(stream, GRPC_INTERNAL, "internal error")
            work: Awaitable[bytes] = _resume(coro, yielded)
        else:
            work = coro
        if not self.server.take():
            _close(work)
            return self._refuse(stream, GRPC_RESOURCE_EXHAUSTED, "too many Checks in flight")
        task: asyncio.Future[bytes] = asyncio.ensure_future(work)
        stream.task = task
        task.add_done_callback(functools.partial(self._finished, stream))

    def _finished(self, stream: _Stream, task: asyncio.Future[bytes]) -> None:
        self.server.release()
        if self.closed or task.cancelled() or self.streams.get(stream.sid) is not stream:
            return
        exc = task.exception()
        if exc is not None:
            log.error("a Check failed", exc_info=exc)
            self._refuse(stream, GRPC_INTERNAL, "internal error")
        else:
            self._respond(stream, task.result())
            self._drop(stream)
        self._flush()

    def _settings(self, sid: int, flags: int, payload: bytes) -> None:
        if sid != 0:
            raise ConnectionError_(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise ConnectionError_(FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise ConnectionError_(FRAME_SIZE_ERROR, "SETTINGS of a length not a multiple of 6")
        for at in range(0, len(payload), 6):
            key = int.from_bytes(payload[at : at + 2], "big")
            value = int.from_bytes(payload[at + 2 : at + 6], "big")
            if key == ENABLE_PUSH and value > 1:
                raise ConnectionError_(PROTOCOL_ERROR, "ENABLE_PUSH is neither 0 nor 1")
            if key == INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ConnectionError_(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for pend in self.pending.values():
                    pend.window += delta
                    if pend.window > MAX_WINDOW:
                        raise ConnectionError_(FLOW_CONTROL_ERROR, "a stream window overflowed")
            elif key == MAX_FRAME_SIZE:
                if not FRAME_LIMIT <= value <= 2**24 - 1:
                    raise ConnectionError_(PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
                self.peer_max_frame = value
            elif key == HEADER_TABLE_SIZE:
                # This server's blocks never use the dynamic table; a peer that changes
                # its size still expects the change acknowledged at the next block's
                # start, the smallest size since the last block first (RFC 7541 §4.2).
                size = min(value, 4096)
                self.table_sizes = (min(self.table_sizes[0], size), size)
        self.out.append(frame(SETTINGS, ACK, 0))
        self._unblock()

    def _window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError_(FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong length")
        increment = int.from_bytes(payload, "big") & MAX_WINDOW
        if sid == 0:
            if increment == 0:
                raise ConnectionError_(PROTOCOL_ERROR, "a zero WINDOW_UPDATE")
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                raise ConnectionError_(FLOW_CONTROL_ERROR, "the connection window overflowed")
        else:
            if increment == 0:
                self._reset(sid, PROTOCOL_ERROR)
                return
            pend = self.pending.get(sid)
            if pend is not None:
                pend.window += increment
                if pend.window > MAX_WINDOW:
                    self._reset(sid, FLOW_CONTROL_ERROR)
                    return
        self._unblock()

    def _ping(self, sid: int, flags: int, payload: bytes) -> None:
        if sid != 0:
            raise ConnectionError_(PROTOCOL_ERROR, "PING on a stream")
        if len(payload) != 8:
            raise ConnectionError_(FRAME_SIZE_ERROR, "PING of the wrong length")
        if flags & ACK:
            return
        # As grpc's servers count them: a PING is a strike when it follows the last one
        # within the interval with nothing sent in between (BDP probes follow data).
        now = time.monotonic()
        if not self.streams and now - self.last_ping < self.limits.grpc_min_ping_seconds:
            self.ping_strikes += 1
            if self.ping_strikes > 2:
                raise ConnectionError_(ENHANCE_YOUR_CALM, "too_many_pings")
        self.last_ping = now
        self.out.append(frame(PING, ACK, 0, payload))

    def _rst_stream(self, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise ConnectionError_(PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if len(payload) != 4:
            raise ConnectionError_(FRAME_SIZE_ERROR, "RST_STREAM of the wrong length")
        if sid > self.last_sid:
            raise ConnectionError_(PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
        self.pending.pop(sid, None)
        stream = self.streams.get(sid)
        if stream is not None:
            if stream.task is not None:
                stream.task.cancel()
            self._drop(stream)
        self._close_if_done()

    # ------------------------------------------------------------------ frames out

    def _respond(self, stream: _Stream, message: bytes) -> None:
        """A Check's answer: headers, the length-prefixed message, `grpc-status: 0`."""
        stream.answered = True
        self.ping_strikes, self.last_ping = 0, 0.0
        data = b"\x00" + len(message).to_bytes(4, "big") + message
        self.out.append(
            frame(HEADERS, END_HEADERS, stream.sid, self._with_update(RESPONSE_HEADERS))
        )
        size = len(data)
        if (
            size <= self.send_window
            and size <= self.peer_initial_window
            and size <= self.peer_max_frame
        ):
            self.send_window -= size
            self.out.append(frame(DATA, 0, stream.sid, data))
            self.out.append(frame(HEADERS, END_HEADERS | END_STREAM, stream.sid,
                                  self._with_update(OK_TRAILERS)))  # fmt: skip
            return
        self.pending[stream.sid] = _Pending(
            data, OK_TRAILERS, self.peer_initial_window, time.monotonic()
        )
        self._unblock()

    def _answer_now(self, stream: _Stream, block: bytes) -> None:
        """A header block that ends the stream (Trailers-Only, or a bare HTTP status)."""
        stream.answered = True
        stream.body = None
        self.ping_strikes, self.last_ping = 0, 0.0
        self.out.append(frame(HEADERS, END_HEADERS | END_STREAM, stream.sid,
                              self._with_update(block)))  # fmt: skip

    def _refuse(self, stream: _Stream, code: int, message: str) -> None:
        """End a call with a gRPC status and a reason (Trailers-Only), never deciding it.

        A client still sending its message is told to stop (RST_STREAM
        NO_ERROR, as gRPC servers do); one that had finished is simply done.
        """
        self._answer_now(stream, trailers_only(code, message))
        if stream.ended:
            self._drop(stream)
        else:
            self._reset(stream.sid, NO_ERROR)

    def _with_update(self, block: bytes) -> bytes:
        if self.table_sizes != NO_TABLE_CHANGE:
            smallest, final = self.table_sizes
            sizes = (smallest, final) if smallest < final else (final,)
            block = b"".join(_size_update(size) for size in sizes) + block
            self.table_sizes = NO_TABLE_CHANGE
        return block

    def _unblock(self) -> None:
        """Send what flow control held back, as far as the windows now allow."""
        for sid in list(self.pending):
            pend = self.pending[sid]
            while pend.data:
                size = min(len(pend.data), self.send_window, pend.window, self.peer_max_frame)
                if size <= 0:
                    break
                chunk, pend.data = pend.data[:size], pend.data[size:]
                self.send_window -= size
                pend.window -= size
                self.out.append(frame(DATA, 0, sid, chunk))
            if pend.data:
                continue
            del self.pending[sid]
            self.out.append(frame(HEADERS, END_HEADERS | END_STREAM, sid,
                                  self._with_update(pend.trailers)))  # fmt: skip
        self._close_if_done()

    def _reset(self, sid: int, code: int) -> None:
        self.out.append(frame(RST_STREAM, 0, sid, code.to_bytes(4, "big")))
        self.ended_early[sid] = None
        if len(self.ended_early) > 128:
            del self.ended_early[next(iter(self.ended_early))]
        self.pending.pop(sid, None)
        stream = self.streams.get(sid)
        if stream is not None:
            self._drop(stream)

    def _drop(self, stream: _Stream) -> None:
        """Forget a stream (its answer, if any, is written or pending)."""
        self.streams.pop(stream.sid, None)
        if not self.streams:
            self.last_active = time.monotonic()
            self._close_if_done()

    def _flush(self) -> None:
        if self.out and self.transport is not None and not self.closed:
            out, self.out = self.out, []
            self.transport.write(b"".join(out))

    def _fail(self, code: int, reason: str) -> None:
        """A connection error: GOAWAY naming the last stream seen, then close."""
        payload = self.last_sid.to_bytes(4, "big") + code.to_bytes(4, "big") + reason.encode()[:256]
        self.out.append(frame(GOAWAY, 0, 0, payload))
        self._flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def go_away(self) -> None:
        """Drain: no new streams; close once the calls on this connection are answered."""
        if self.closed or self.going_away:
            return
        self.going_away = True
        payload = self.last_sid.to_bytes(4, "big") + NO_ERROR.to_bytes(4, "big")
        self.out.append(frame(GOAWAY, 0, 0, payload))
        self._flush()
        self._close_if_done()

    def _close_if_done(self) -> None:
        if self.going_away and not self.streams and not self.pending and not self.closed:
            self._flush()
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def sweep(self, now: float) -> None:
        """The periodic checks: preface deadline, stalled uploads, idle connection."""
        if self.closed:
            return
        limit = self.limits.request_timeout
        if not self.settled:
            if now - self.opened > limit:
                self._fail(PROTOCOL_ERROR, "no connection preface in time")
            return
        for stream in list(self.streams.values()):
            if stream.task is None and not stream.answered and now - stream.started > 2 * limit:
                self._refuse(stream, GRPC_DEADLINE_EXCEEDED, "the request was not sent in time")
        for sid, pend in list(self.pending.items()):
            if now - pend.since > 2 * limit:  # a client that never opens its window
                self._reset(sid, CANCEL)
        self._close_if_done()
        if not self.streams and now - self.last_active > self.limits.grpc_max_idle_seconds:
            self.go_away()
        self._flush()


async def _resume(coro: Coroutine[Any, Any, bytes], yielded: Any) -> bytes:
    """Go on with a coroutine that was started outside a task and then waited.

    It waited on `yielded` (an asyncio future, or None for a bare yield):
    wait for it here, inside a task now, and keep driving the coroutine the
    way a task would.  Used when a decision that normally never waits did.
    """
    while True:
        if yielded is not None:
            yielded._asyncio_future_blocking = False
            try:
                await yielded
            except asyncio.CancelledError:
                coro.close()
                raise
            except BaseException:  # the coroutine reads the outcome itself
                pass
        else:
            await asyncio.sleep(0)
        try:
            yielded = coro.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def _close(work: Awaitable[bytes]) -> None:
    if isinstance(work, Coroutine):
        work.close()


class GrpcServer:
    """The listener: admits connections within the cap, drains them, sweeps them."""

    def __init__(
        self,
        handler: Handler,
        service: str,
        method: str,
        limits: Limits,
        sock: socket.socket,
        *,
        eager: bool,
    ) -> None:
        self.handler = handler
        self.path = f"/{service}/{method}".encode()
        self.limits = limits
        self.sock = sock
        self.eager = eager
        self.connections: dict[GrpcConnection, None] = {}
        self.inflight = 0
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: GrpcConnection(self), sock=self.sock, backlog=2048
        )
        self._sweep()

    def _sweep(self) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            conn.sweep(now)
        self._sweeper = asyncio.get_running_loop().call_later(1.0, self._sweep)

    def admit(self, conn: GrpcConnection) -> bool:
        """Room for `conn`: beyond the cap, the longest-idle connection makes way."""
        if len(self.connections) >= self.limits.max_connections:
            idle = [c for c in self.connections if not c.streams]
            if not idle:
                return False
            oldest = min(idle, key=lambda c: c.last_active)
            oldest._fail(NO_ERROR, "too many connections")
            self.forget(oldest)
        self.connections[conn] = None
        return True

    def forget(self, conn: GrpcConnection) -> None:
        self.connections.pop(conn, None)

    def take(self) -> bool:
        if self.inflight >= self.limits.grpc_max_concurrent_rpcs:
            return False
        self.inflight += 1
        return True

    def release(self) -> None:
        self.inflight -= 1

    async def stop(self, grace: float | None) -> None:
        """Stop accepting, GOAWAY every connection, wait up to `grace` for their calls."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.go_away()
        deadline = time.monotonic() + (grace or 0.0)
        while any(not c.closed for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        self.connections.clear()
        if self._server is not None:
            await self._server.wait_closed()
