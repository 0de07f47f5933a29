"""Limits against hostile clients: what one `mcpdsl serve` process accepts, and for how long.

A decision server sits in the request path of every call of a mesh: a client
that opens connections and never finishes a request (slowloris), floods it with
idle sockets, or sends a huge body must not starve the proxies' Checks.

HTTP (uvicorn + h11, hardened here):

* `max_header_bytes`: a request head larger than this is answered 400 (h11's
  incomplete-event limit);
* `max_body_bytes`: a Data API body larger than this is answered 413 without
  reading it all (`app`);
* `request_timeout`: a request head must arrive within this many seconds of the
  connection opening (or of its first byte after a keep-alive pause), and its
  body within as long again; otherwise the connection is closed (head) or
  answered 408 (body).  uvicorn alone waits forever for a first request;
* `keep_alive`: an idle keep-alive connection is closed after this many seconds;
* `max_connections`: beyond this many open HTTP connections, the connection that
  has waited longest without sending a request is closed to make room (a new
  connection is refused only when every open one is busy): a flood of idle
  sockets can therefore never lock out `/health` or a real client;
* `max_inflight`: HTTP requests handled at once; beyond it a request is answered
  503 at once rather than queued (`app`).

gRPC (the server's own HTTP/2 listener, `h2grpc`, or `grpc.aio` with
`--grpc-server grpcio`): `grpc_max_concurrent_rpcs` Checks at once (beyond: the
RPC fails with RESOURCE_EXHAUSTED, which Envoy treats by its
`failure_mode_allow`, false in the generated config: deny); a message over
`grpc_max_message_bytes` fails with RESOURCE_EXHAUSTED before it is read;
keepalive pings are answered but a client pinging more often than
`grpc_min_ping_seconds` (with no call open) is disconnected after two strikes;
connections idle for `grpc_max_idle_seconds` are closed.  The own listener also
applies `grpc_max_streams` (SETTINGS_MAX_CONCURRENT_STREAMS per connection),
`max_header_bytes` (SETTINGS_MAX_HEADER_LIST_SIZE), `request_timeout` (the
connection preface, and twice that for a call's message) and
`max_connections` (beyond it the longest-idle connection is closed).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Every limit of one server (defaults: a 2-core replica behind a mesh)."""

    max_body_bytes: int = 1024 * 1024
    max_header_bytes: int = 16 * 1024
    request_timeout: float = 10.0
    keep_alive: float = 5.0
    max_connections: int = 4096
    max_inflight: int = 1024
    grpc_max_concurrent_rpcs: int = 1024
    grpc_max_message_bytes: int = 4 * 1024 * 1024
    grpc_min_ping_seconds: int = 10
    grpc_max_idle_seconds: int = 300
    grpc_max_streams: int = 1024
    #: The workers of `--workers N` share the gRPC port (`SO_REUSEPORT`); one server does not.
    grpc_reuse_port: bool = False

    def grpc_options(self) -> list[tuple[str, int]]:
        """`grpc.aio.server(options=...)`: message size, keepalive and idle limits."""
        return [
            ("grpc.max_receive_message_length", self.grpc_max_message_bytes),
            ("grpc.max_send_message_length", self.grpc_max_message_bytes),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.http2.min_ping_interval_without_data_ms", self.grpc_min_ping_seconds * 1000),
            ("grpc.http2.max_ping_strikes", 2),
            ("grpc.max_connection_idle_ms", self.grpc_max_idle_seconds * 1000),
            # a second server on a busy port fails rather than shares it, except a worker
            ("grpc.so_reuseport", int(self.grpc_reuse_port)),
        ]


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft open-files limit toward `wanted` (never past the hard one).

    Each connection is a file descriptor: a server capped at `max_connections`
    must be allowed that many, or it fails with EMFILE before its own limit
    applies.  Returns the soft limit now in force.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft
