"""The gRPC listener's own HTTP/2 server (`mcpdsl.serve.h2grpc`), frame by frame.

Well-behaved clients are covered elsewhere: grpcio's client (C-core HTTP/2)
in tests/serve/test_grpc_server.py, test_workers.py, test_lifecycle.py and
test_serve_load.py, nghttp2's h2load in benchmarks/serve.py.  Here a raw
client writes what they never send — broken prefaces, frames out of order,
bad sizes, HPACK garbage, floods, stalls — and reads every frame back, so
each protocol rule (RFC 9113, RFC 7541, gRPC over HTTP/2) is checked by
what goes over the wire: a GOAWAY or RST_STREAM with the right code, or a
gRPC status with a reason; never a traceback, never a handler call for
bytes that are not one whole message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
import pytest
from hpack import Decoder, Encoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpdsl.serve import h2grpc
from mcpdsl.serve.h2grpc import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    GrpcServer,
    frame,
)
from mcpdsl.serve.limits import Limits
from mcpdsl.serve.runner import bind_listener

SERVICE = "envoy.service.auth.v3.Authorization"
PATH = f"/{SERVICE}/Check"
LIMITS = Limits(grpc_max_message_bytes=64 * 1024, max_connections=8, grpc_max_streams=4)


def message(raw: bytes, compressed: int = 0) -> bytes:
    return bytes((compressed,)) + len(raw).to_bytes(4, "big") + raw


@dataclass
class Calls:
    """What the handler was given (the test's stand-in for the decision)."""

    seen: list[bytes] = field(default_factory=list)
    gate: asyncio.Event | None = None

    async def handle(self, raw: bytes) -> bytes:
        self.seen.append(raw)
        if self.gate is not None:
            await self.gate.wait()
        if raw == b"boom":
            raise RuntimeError("a bug")
        return b"answer:" + raw


@contextlib.asynccontextmanager
async def running(
    limits: Limits = LIMITS, *, eager: bool = True, calls: Calls | None = None
) -> AsyncIterator[tuple[GrpcServer, Calls]]:
    calls = calls if calls is not None else Calls()
    server = GrpcServer(
        calls.handle, SERVICE, "Check", limits, bind_listener("127.0.0.1", 0), eager=eager
    )
    loop = asyncio.get_running_loop()
    errors: list[Any] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    await server.start()
    try:
        yield server, calls
    finally:
        await server.stop(1.0)
    assert not errors, errors  # nothing escaped a callback


@dataclass
class Frame:
    kind: int
    flags: int
    sid: int
    payload: bytes


class Wire:
    """A raw HTTP/2 client: writes frames as given, reads frames as they come."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.encoder, self.decoder = Encoder(), Decoder()

    @classmethod
    async def open(cls, port: int, *, preface: bytes | None = None) -> Wire:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        wire = cls(reader, writer)
        wire.send(PREFACE + frame(SETTINGS, 0, 0) if preface is None else preface)
        return wire

    def send(self, *chunks: bytes) -> None:
        self.writer.write(b"".join(chunks))

    def headers(
        self,
        sid: int,
        *,
        path: str = PATH,
        method: str = "POST",
        extra: list[tuple[str, str]] | None = None,
        end_stream: bool = False,
        content_type: str = "application/grpc",
    ) -> bytes:
        fields = [(":method", method), (":scheme", "http"), (":path", path),
                  (":authority", "x"), ("content-type", content_type), ("te", "trailers")]  # fmt: skip
        block = self.encoder.encode(fields + (extra or []))
        return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, block)

    def call(self, sid: int, raw: bytes, **kw: Any) -> bytes:
        return self.headers(sid, **kw) + frame(DATA, END_STREAM, sid, message(raw))

    async def read(self, timeout: float = 5.0) -> Frame | None:
        try:
            head = await asyncio.wait_for(self.reader.readexactly(9), timeout)
            length = int.from_bytes(head[:3], "big")
            payload = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            return None
        sid = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        return Frame(head[3], head[4], sid, payload)

    async def until(self, done: Callable[[Frame], bool], timeout: float = 5.0) -> list[Frame]:
        """Frames up to and including the first for which `done` holds (or the close)."""
        out: list[Frame] = []
        while (got := await self.read(timeout)) is not None:
            out.append(got)
            if done(got):
                break
        return out

    async def answer(self, sid: int) -> dict[str, Any]:
        """One call's answer: header fields, message bytes, trailers (decoded)."""
        got: dict[str, Any] = {"headers": {}, "data": b"", "trailers": {}, "reset": None}
        for f in await self.until(lambda f: f.sid == sid and (
                f.kind == RST_STREAM or (f.kind == HEADERS and f.flags & END_STREAM))):  # fmt: skip
            if f.sid != sid:
                continue
            if f.kind == HEADERS:
                fields = dict(self.decoder.decode(f.payload))
                got["trailers" if got["headers"] or f.flags & END_STREAM else "headers"] = fields
                if not got["headers"] and f.flags & END_STREAM:
                    got["headers"] = fields  # Trailers-Only
            elif f.kind == DATA:
                got["data"] += f.payload
            elif f.kind == RST_STREAM:
                got["reset"] = int.from_bytes(f.payload, "big")
        return got

    async def goaway(self) -> int | None:
        """The error code of the GOAWAY this connection ends with (None: closed without)."""
        code = None
        while (f := await self.read()) is not None:
            if f.kind == GOAWAY:
                code = int.from_bytes(f.payload[4:8], "big")
        return code

    def close(self) -> None:
        self.writer.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())  # type: ignore[arg-type]


# ------------------------------------------------------------------ well-formed calls


def test_a_call_is_answered_with_its_message_and_status_zero() -> None:
    async def main() -> None:
        async with running() as (server, calls):
            wire = await Wire.open(server.port)
            wire.send(wire.call(1, b"hello"), wire.call(3, b"again"))
            first, second = await wire.answer(1), await wire.answer(3)
            assert first["headers"][":status"] == "200"
            assert first["headers"]["content-type"] == "application/grpc"
            assert first["data"] == message(b"answer:hello")
            assert first["trailers"] == {"grpc-status": "0"}
            assert second["data"] == message(b"answer:again")
            assert calls.seen == [b"hello", b"again"]
            wire.close()

    run(main)


@pytest.mark.parametrize("eager", [True, False])
def test_grpcio_client_round_trip_and_many_concurrent_calls(eager: bool) -> None:
    """grpcio's own client (C-core HTTP/2), 300 calls at once on one channel."""

    async def main() -> None:
        limits = replace(LIMITS, grpc_max_streams=1024)
        async with running(limits, eager=eager) as (server, _):
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
            check = channel.unary_unary(PATH)
            raws = [f"call {i}".encode() * (i % 50 + 1) for i in range(300)]
            answers = await asyncio.gather(*(check(raw) for raw in raws))
            assert answers == [b"answer:" + raw for raw in raws]
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_unary(f"/{SERVICE}/Other")(b"x")
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
            await channel.close()

    run(main)


def test_a_decision_that_waits_after_starting_outside_a_task_is_still_answered() -> None:
    """`eager` decides inside the read callback; a decision that waits goes on in a task."""

    async def main() -> None:
        gate = asyncio.Event()
        async with running(calls=Calls(gate=gate)) as (server, calls):
            wire = await Wire.open(server.port)
            wire.send(wire.call(1, b"slow"))
            await asyncio.sleep(0.1)
            assert calls.seen == [b"slow"]
            gate.set()
            assert (await wire.answer(1))["data"] == message(b"answer:slow")

    run(main)


def test_a_failing_decision_is_an_internal_error_not_a_dead_connection() -> None:
    async def main() -> None:
        for eager in (True, False):
            async with running(eager=eager) as (server, _):
                wire = await Wire.open(server.port)
                wire.send(wire.call(1, b"boom"), wire.call(3, b"fine"))
                failed = await wire.answer(1)
                assert failed["headers"]["grpc-status"] == "13"
                assert (await wire.answer(3))["data"] == message(b"answer:fine")

    run(main)


def test_padded_and_prioritised_frames_and_continuations_are_read() -> None:
    async def main() -> None:
        async with running() as (server, calls):
            wire = await Wire.open(server.port)
            block = wire.encoder.encode([(":method", "POST"), (":scheme", "http"),
                                         (":path", PATH), ("content-type", "application/grpc")])  # fmt: skip
            head = bytes((3,)) + bytes(5) + block[:4] + b"pad"  # padded, with priority
            wire.send(
                frame(HEADERS, h2grpc.PADDED | h2grpc.PRIORITY_FLAG, 1, head),
                frame(CONTINUATION, 0, 1, block[4:6]),
                frame(CONTINUATION, END_HEADERS, 1, block[6:]),
                frame(DATA, h2grpc.PADDED, 1, bytes((2,)) + message(b"ab")[:3] + b"zz"),
                frame(h2grpc.PRIORITY, 0, 1, bytes(5)),
                frame(0x42, 0, 0, b"an extension frame type: ignored"),
                frame(DATA, END_STREAM, 1, message(b"ab")[3:]),
            )
            assert (await wire.answer(1))["data"] == message(b"answer:ab")
            assert calls.seen == [b"ab"]

    run(main)


def test_flow_control_holds_the_answer_until_the_client_grants_room() -> None:
    """A client granting 3-byte windows gets the answer in 3-byte DATA frames, in order."""

    async def main() -> None:
        async with running() as (server, _):
            settings_ = (4).to_bytes(2, "big") + (3).to_bytes(4, "big")  # INITIAL_WINDOW_SIZE 3
            wire = await Wire.open(server.port, preface=PREFACE + frame(SETTINGS, 0, 0, settings_))
            wire.send(wire.call(1, b"0123456789"))
            data = b""
            expected = message(b"answer:0123456789")
            while len(data) < len(expected):
                got = await wire.until(lambda f: f.kind == DATA)
                chunk = b"".join(f.payload for f in got if f.kind == DATA)
                assert len(chunk) <= 3
                data += chunk
                wire.send(frame(WINDOW_UPDATE, 0, 1, (3).to_bytes(4, "big")))
            assert data == expected
            trailers = await wire.until(lambda f: f.kind == HEADERS and bool(f.flags & END_STREAM))
            assert wire.decoder.decode(trailers[-1].payload) == [("grpc-status", "0")]

    run(main)


def test_a_smaller_header_table_is_acknowledged_in_the_next_block() -> None:
    async def main() -> None:
        async with running() as (server, _):
            settings_ = (1).to_bytes(2, "big") + (0).to_bytes(4, "big")  # HEADER_TABLE_SIZE 0
            wire = await Wire.open(server.port, preface=PREFACE + frame(SETTINGS, 0, 0, settings_))
            wire.send(wire.call(1, b"x"))
            got = await wire.until(lambda f: f.kind == HEADERS)
            assert got[-1].payload[0] == 0x20  # a dynamic table size update to 0 comes first
            decoder = Decoder()
            decoder.header_table_size = 0
            assert dict(decoder.decode(got[-1].payload))[":status"] == "200"

    run(main)


def test_a_table_shrunk_then_grown_is_acknowledged_smallest_first() -> None:
    async def main() -> None:
        async with running() as (server, _):
            wire = await Wire.open(server.port)
            shrink = (1).to_bytes(2, "big") + (0).to_bytes(4, "big")
            grow = (1).to_bytes(2, "big") + (2048).to_bytes(4, "big")
            wire.send(frame(SETTINGS, 0, 0, shrink), frame(SETTINGS, 0, 0, grow))
            wire.send(wire.call(1, b"x"))
            got = await wire.until(lambda f: f.kind == HEADERS)
            block = got[-1].payload
            assert block[:1] == b"\x20"  # 0 first, then 2048
            assert block[1:4] == b"\x3f\xe1\x0f"
            decoder = Decoder()
            decoder.header_table_size = 2048
            assert dict(decoder.decode(block))[":status"] == "200"

    run(main)


def test_pings_are_answered_and_a_ping_flood_is_stopped() -> None:
    async def main() -> None:
        async with running() as (server, _):
            wire = await Wire.open(server.port)
            wire.send(frame(PING, 0, 0, b"12345678"))
            got = await wire.until(lambda f: f.kind == PING)
            assert got[-1].flags & 1 and got[-1].payload == b"12345678"
            wire.send(*(frame(PING, 0, 0, bytes(8)) for _ in range(5)))
            assert await wire.goaway() == h2grpc.ENHANCE_YOUR_CALM

    run(main)


# ------------------------------------------------------------------ calls that are refused


@pytest.mark.parametrize(
    ("build", "status", "grpc_status"),
    [
        (lambda w: w.call(1, b"x", path="/other.Service/Check"), "200", "12"),
        (lambda w: w.call(1, b"x", method="GET"), "405", None),
        (lambda w: w.call(1, b"x", content_type="text/plain"), "415", None),
        (lambda w: w.call(1, b"x", extra=[("grpc-encoding", "gzip")]), "200", "12"),
        (lambda w: w.headers(1) + frame(DATA, END_STREAM, 1, message(b"x", 1)), "200", "13"),
        (
            lambda w: w.headers(1) + frame(DATA, END_STREAM, 1, bytes((7,)) + message(b"x")[1:]),
            "200",
            "13",
        ),
        (lambda w: w.headers(1, end_stream=True), "200", "12"),  # no message
        (lambda w: w.headers(1) + frame(DATA, END_STREAM, 1, message(b"ab")[:4]), "200", "12"),
        (
            lambda w: w.headers(1) + frame(DATA, END_STREAM, 1, message(b"a") + message(b"b")),
            "200",
            "12",
        ),
        (
            lambda w: w.headers(1) + frame(DATA, 0, 1, bytes((0,)) + (1 << 20).to_bytes(4, "big")),
            "200",
            "8",
        ),
    ],
    ids=[
        "unknown-method",
        "get",
        "content-type",
        "gzip",
        "compressed-flag",
        "bad-prefix",
        "no-message",
        "short-message",
        "two-messages",
        "over-the-limit",
    ],
)
def test_calls_that_are_no_check_are_answered_with_a_status_and_never_decided(
    build: Callable[[Wire], bytes], status: str, grpc_status: str | None
) -> None:
    async def main() -> None:
        async with running() as (server, calls):
            wire = await Wire.open(server.port)
            wire.send(build(wire))
            got = await wire.answer(1)
            assert got["headers"][":status"] == status
            assert got["headers"].get("grpc-status") == grpc_status
            if grpc_status not in (None, "0"):
                assert got["headers"]["grpc-message"]
            assert calls.seen == []
            wire.send(wire.call(3, b"still here"))  # the connection lives on
            assert (await wire.answer(3))["data"] == message(b"answer:still here")

    run(main)


def test_malformed_requests_are_reset_with_protocol_error() -> None:
    async def main() -> None:
        async with running() as (server, calls):
            wire = await Wire.open(server.port)
            for sid, extra in ((1, [("connection", "close")]), (3, [("te", "gzip")]),
                               (5, [("X-Upper", "v")])):  # fmt: skip
                wire.send(wire.call(sid, b"x", extra=extra))
                assert (await wire.answer(sid))["reset"] == h2grpc.PROTOCOL_ERROR
            block = wire.encoder.encode([("content-type", "application/grpc"), (":path", PATH)])
            wire.send(frame(HEADERS, END_HEADERS | END_STREAM, 7, block))
            assert (await wire.answer(7))["reset"] == h2grpc.PROTOCOL_ERROR
            assert calls.seen == []

    run(main)


def test_streams_beyond_the_advertised_limit_are_refused() -> None:
    async def main() -> None:
        async with running() as (server, _):
            wire = await Wire.open(server.port)
            wire.send(*(wire.headers(sid) for sid in (1, 3, 5, 7, 9)))  # limit: 4 open
            assert (await wire.answer(9))["reset"] == h2grpc.REFUSED_STREAM
            wire.send(frame(DATA, END_STREAM, 1, message(b"one")))
            assert (await wire.answer(1))["data"] == message(b"answer:one")

    run(main)


def test_a_reset_stream_is_not_answered_and_its_late_data_is_ignored() -> None:
    async def main() -> None:
        async with running() as (server, calls):
            wire = await Wire.open(server.port)
            wire.send(wire.headers(1), frame(RST_STREAM, 0, 1, (8).to_bytes(4, "big")),
                      frame(DATA, END_STREAM, 1, message(b"late")), wire.call(3, b"next"))  # fmt: skip
            got = await wire.until(lambda f: f.sid == 3 and bool(f.flags & END_STREAM))
            assert all(f.sid in (0, 3) for f in got)
            assert calls.seen == [b"next"]

    run(main)


# ------------------------------------------------------------------ connection errors


@pytest.mark.parametrize(
    ("chunks", "code"),
    [
        (lambda w: [frame(PING, 0, 0, bytes(8))], h2grpc.PROTOCOL_ERROR),  # no SETTINGS first
        (lambda w: [frame(SETTINGS, 0, 0), frame(DATA, 0, 0, b"x")], h2grpc.PROTOCOL_ERROR),
        (lambda w: [frame(SETTINGS, 0, 0), frame(DATA, 0, 9, b"x")], h2grpc.PROTOCOL_ERROR),
        (lambda w: [frame(SETTINGS, 0, 0), w.headers(2)], h2grpc.PROTOCOL_ERROR),
        (lambda w: [frame(SETTINGS, 0, 0), w.headers(3), w.headers(1)], h2grpc.PROTOCOL_ERROR),
        (
            lambda w: [
                frame(SETTINGS, 0, 0),
                frame(HEADERS, 0, 1, b"\x82"),
                frame(PING, 0, 0, bytes(8)),
            ],
            h2grpc.PROTOCOL_ERROR,
        ),
        (
            lambda w: [frame(SETTINGS, 0, 0), frame(CONTINUATION, END_HEADERS, 1, b"")],
            h2grpc.PROTOCOL_ERROR,
        ),
        (
            lambda w: [frame(SETTINGS, 0, 0), frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff")],
            h2grpc.COMPRESSION_ERROR,
        ),
        (
            lambda w: [frame(SETTINGS, 0, 0), bytes((0, 0x40, 1, DATA, 0, 0, 0, 0, 1))],
            h2grpc.FRAME_SIZE_ERROR,
        ),
        (lambda w: [frame(SETTINGS, 0, 0, b"\x00\x04\x80\x00\x00\x00")], h2grpc.FLOW_CONTROL_ERROR),
        (lambda w: [frame(SETTINGS, 0, 0, b"\x00\x05\x00\x00\x00\x01")], h2grpc.PROTOCOL_ERROR),
        (lambda w: [frame(SETTINGS, 0, 0, b"\x00\x02\x00\x00\x00\x02")], h2grpc.PROTOCOL_ERROR),
        (lambda w: [frame(SETTINGS, 0, 0, b"\x00")], h2grpc.FRAME_SIZE_ERROR),
        (lambda w: [frame(SETTINGS, 1, 0, b"x" * 6)], h2grpc.PROTOCOL_ERROR),
        (
            lambda w: [frame(SETTINGS, 0, 0), frame(SETTINGS, 1, 0, b"x" * 6)],
            h2grpc.FRAME_SIZE_ERROR,
        ),
        (lambda w: [frame(SETTINGS, 0, 0), frame(PING, 0, 0, b"short")], h2grpc.FRAME_SIZE_ERROR),
        (
            lambda w: [frame(SETTINGS, 0, 0), frame(WINDOW_UPDATE, 0, 0, bytes(4))],
            h2grpc.PROTOCOL_ERROR,
        ),
        (
            lambda w: [frame(SETTINGS, 0, 0), frame(WINDOW_UPDATE, 0, 0, b"\x7f\xff\xff\xff")],
            h2grpc.FLOW_CONTROL_ERROR,
        ),
        (
            lambda w: [frame(SETTINGS, 0, 0), frame(RST_STREAM, 0, 5, bytes(4))],
            h2grpc.PROTOCOL_ERROR,
        ),
        (
            lambda w: [frame(SETTINGS, 0, 0), frame(h2grpc.PUSH_PROMISE, 0, 1, bytes(4))],
            h2grpc.PROTOCOL_ERROR,
        ),
    ],
    ids=[
        "no-settings",
        "data-on-0",
        "data-on-idle",
        "even-stream",
        "stream-order",
        "interrupted-block",
        "stray-continuation",
        "hpack-garbage",
        "frame-too-big",
        "window-too-big",
        "max-frame-too-small",
        "enable-push-2",
        "settings-length",
        "settings-ack-first",
        "settings-ack-payload",
        "ping-length",
        "zero-window-update",
        "window-overflow",
        "rst-on-idle",
        "push-promise",
    ],
)
def test_protocol_violations_end_the_connection_with_goaway_and_the_right_code(
    chunks: Callable[[Wire], list[bytes]], code: int
) -> None:
    async def main() -> None:
        async with running() as (server, calls):
            wire = await Wire.open(server.port, preface=PREFACE)
            wire.send(*chunks(wire))
            assert await wire.goaway() == code
            assert calls.seen == []
            again = await Wire.open(server.port)  # the server lives on
            again.send(again.call(1, b"ok"))
            assert (await again.answer(1))["data"] == message(b"answer:ok")

    run(main)


@pytest.mark.parametrize(
    "opening",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", b"\x00" * 30],
)
def test_what_is_not_http2_is_closed_with_goaway(opening: bytes) -> None:
    async def main() -> None:
        async with running() as (server, _):
            wire = await Wire.open(server.port, preface=opening)
            assert await wire.goaway() == h2grpc.PROTOCOL_ERROR

    run(main)


# ------------------------------------------------------------------ time and resource limits


def test_slow_prefaces_stalled_uploads_and_idle_connections_are_cut() -> None:
    quick = replace(LIMITS, request_timeout=0.3, grpc_max_idle_seconds=1)

    async def main() -> None:
        async with running(quick) as (server, calls):
            silent = await Wire.open(server.port, preface=b"PRI * HT")
            assert await silent.goaway() == h2grpc.PROTOCOL_ERROR
            stalled = await Wire.open(server.port)
            stalled.send(stalled.headers(1), frame(DATA, 0, 1, message(b"abc")[:4]))
            got = await stalled.answer(1)
            assert got["headers"]["grpc-status"] == "4"  # DEADLINE_EXCEEDED
            idle = await Wire.open(server.port)
            assert await idle.goaway() == h2grpc.NO_ERROR
            assert calls.seen == []

    run(main)


def test_an_answer_the_client_never_opens_its_window_for_is_cancelled() -> None:
    async def main() -> None:
        async with running(replace(LIMITS, request_timeout=0.3)) as (server, _):
            zero = (4).to_bytes(2, "big") + (0).to_bytes(4, "big")  # INITIAL_WINDOW_SIZE 0
            wire = await Wire.open(server.port, preface=PREFACE + frame(SETTINGS, 0, 0, zero))
            wire.send(wire.call(1, b"x"))
            got = await wire.answer(1)
            assert got["data"] == b"" and got["reset"] == h2grpc.CANCEL
            conn = next(iter(server.connections))
            assert not conn.pending and not conn.streams

    run(main)


def test_beyond_the_connection_cap_the_longest_idle_connection_makes_way() -> None:
    async def main() -> None:
        async with running(replace(LIMITS, max_connections=3)) as (server, _):
            wires = [await Wire.open(server.port) for _ in range(3)]
            for wire in wires:
                await wire.until(lambda f: f.kind == SETTINGS)
            newest = await Wire.open(server.port)
            assert await wires[0].goaway() == h2grpc.NO_ERROR
            newest.send(newest.call(1, b"in"))
            assert (await newest.answer(1))["data"] == message(b"answer:in")

    run(main)


def test_beyond_the_inflight_limit_calls_are_resource_exhausted() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        limits = replace(LIMITS, grpc_max_concurrent_rpcs=1)
        async with running(limits, eager=False, calls=Calls(gate=gate)) as (server, _):
            wire = await Wire.open(server.port)
            wire.send(wire.call(1, b"first"), wire.call(3, b"second"))
            assert (await wire.answer(3))["headers"]["grpc-status"] == "8"
            gate.set()
            assert (await wire.answer(1))["data"] == message(b"answer:first")

    run(main)


def test_stop_sends_goaway_and_lets_calls_in_flight_finish() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        calls = Calls(gate=gate)
        server = GrpcServer(calls.handle, SERVICE, "Check", LIMITS,
                            bind_listener("127.0.0.1", 0), eager=False)  # fmt: skip
        await server.start()
        wire = await Wire.open(server.port)
        wire.send(wire.call(1, b"in flight"))
        await asyncio.sleep(0.1)
        stopping = asyncio.create_task(server.stop(5.0))
        got = await wire.until(lambda f: f.kind == GOAWAY)
        assert int.from_bytes(got[-1].payload[:4], "big") == 1  # the last stream it will answer
        gate.set()
        assert (await wire.answer(1))["data"] == message(b"answer:in flight")
        await stopping
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", server.port)

    run(main)


def test_a_client_that_stops_reading_stops_being_read() -> None:
    """SETTINGS from a peer that never reads the acks: memory stays bounded (reading pauses)."""

    async def main() -> None:
        async with running() as (server, _):
            wire = await Wire.open(server.port)
            flood = frame(SETTINGS, 0, 0)
            # 9 MiB of SETTINGS whose 9 MiB of acks are never read: the server's write
            # buffer passes its high-water mark, it stops reading, the client's send
            # blocks; nothing grows without bound on the server.
            with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
                for _ in range(64):
                    wire.send(flood * 16000)
                    await asyncio.wait_for(wire.writer.drain(), 0.5)
            conn = next(iter(server.connections))
            assert conn.transport is not None
            assert conn.transport.get_write_buffer_size() < 8 * h2grpc.WRITE_HIGH_WATER

    run(main)


def test_frames_after_the_client_ended_a_call_waiting_for_its_decision_are_stream_closed() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        async with running(eager=False, calls=Calls(gate=gate)) as (server, _):
            wire = await Wire.open(server.port)
            wire.send(wire.call(1, b"x"))
            await asyncio.sleep(0.05)
            wire.send(frame(DATA, END_STREAM, 1, message(b"more")))
            assert await wire.goaway() == h2grpc.STREAM_CLOSED
            gate.set()

    run(main)


# ------------------------------------------------------------------ fuzz


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(
                st.tuples(
                    st.sampled_from(["x-a", "x-b", ":path", "content-type", "te", "x-long"]),
                    st.sampled_from(["1", "two", "/p", "application/grpc", "", "v" * 300]),
                    st.booleans(),  # never indexed
                ),
                min_size=1, max_size=8,
            ),
            st.booleans(),  # huffman
            st.one_of(st.none(), st.integers(0, 600)),  # a table size change first
            st.booleans(),  # send the previous block again
        ),
        min_size=1, max_size=16,
    ),
    st.integers(100, 2000),
)  # fmt: skip
def test_remembered_header_blocks_decode_as_the_decoder_does(
    steps: list[tuple[list[tuple[str, str, bool]], bool, int | None, bool]], limit: int
) -> None:
    """Blocks repeated, interleaved with blocks that add, evict and resize: same fields."""
    from hpack.struct import NeverIndexedHeaderTuple

    encoder, reference = Encoder(), Decoder(max_header_list_size=limit)
    conn = h2grpc.GrpcConnection.__new__(h2grpc.GrpcConnection)
    conn.limits = replace(LIMITS, max_header_bytes=limit)
    conn.decoder = Decoder(max_header_list_size=limit)
    conn.blocks = {}
    previous = b""
    for headers, huffman, resize, again in steps:
        if again and previous:
            block = previous
        else:
            if resize is not None:
                encoder.header_table_size = resize
            fields = [NeverIndexedHeaderTuple(n, v) if never else (n, v)
                      for n, v, never in headers]  # fmt: skip
            block = encoder.encode(fields, huffman=huffman)
        previous = block
        outcomes = []
        for decode in (lambda b: reference.decode(b, raw=True), conn._decode):
            try:
                outcomes.append([tuple(f) for f in decode(block)])
            except Exception as exc:
                outcomes.append(type(exc))
        assert outcomes[0] == outcomes[1]
        if isinstance(outcomes[0], type):
            return  # a decoding error ends the connection: nothing follows


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, 12), st.integers(0, 255), st.integers(0, 9), st.binary(max_size=40)
        ),
        max_size=12,
    )
)
def test_random_frame_sequences_never_break_the_server(
    frames: list[tuple[int, int, int, bytes]],
) -> None:
    """Any frames after a valid preface: no callback raises, and the server still answers."""

    async def main() -> None:
        async with running() as (server, calls):
            wire = await Wire.open(server.port)
            wire.send(*(frame(k, f, s, p) for k, f, s, p in frames))
            await wire.until(lambda f: False, timeout=0.05)
            wire.close()
            again = await Wire.open(server.port)
            again.send(again.call(1, b"after"))
            assert (await again.answer(1))["data"] == message(b"answer:after")
            assert all(raw == b"after" or len(raw) <= 40 for raw in calls.seen)

    run(main)


def test_a_flood_of_idle_connections_is_bounded_and_a_real_client_still_gets_in() -> None:
    """400 sockets that never speak, against a cap of 50: the server holds at most 50."""

    async def main() -> None:
        async with running(replace(LIMITS, max_connections=50)) as (server, _):
            idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(400)]
            await asyncio.sleep(0.2)
            assert len(server.connections) <= 50
            wire = await Wire.open(server.port)
            wire.send(wire.call(1, b"real"))
            assert (await wire.answer(1))["data"] == message(b"answer:real")
            for _, writer in idle:
                writer.close()

    run(main)
