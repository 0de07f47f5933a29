"""Run the HTTP app and the gRPC server in one event loop; stop both gracefully.

SIGTERM/SIGINT: both listeners stop accepting at once, in-flight HTTP requests
and Checks finish (up to `grace` seconds; idle keep-alive connections are
closed), then the store is closed and the decision log flushed and closed.
A second signal during the drain stops waiting.  The limits against hostile
clients are `limits.Limits`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import uvicorn

from mcpdsl.serve.app import build_app
from mcpdsl.serve.grpc_authz import SERVICE, AuthorizationService
from mcpdsl.serve.grpc_authz import grpc_server as authz_server
from mcpdsl.serve.h2grpc import GrpcServer
from mcpdsl.serve.http_guard import ConnectionGuard
from mcpdsl.serve.limits import Limits
from mcpdsl.serve.state import ServerState
from mcpdsl.serve.status import PolicyStatus

if TYPE_CHECKING:
    from mcpdsl.serve.gateway import Gateway


@dataclass(frozen=True)
class Addresses:
    http: str = "127.0.0.1:8181"
    grpc: str = "127.0.0.1:9191"


@dataclass(frozen=True)
class Bound:
    """Where the server listens once bound (`HOST:PORT`, IPv6 as `[::1]:PORT`)."""

    http: str
    grpc: str


def split_addr(addr: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) -> (host, port); ValueError for anything else."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"`{addr}` is not HOST:PORT")
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is out of range")
    return host.strip("[]"), number


def join_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(addr: str) -> bool:
    """Whether `addr` listens on this machine's loopback only (127.0.0.0/8, ::1, localhost)."""
    host = split_addr(addr)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve anywhere
        return False


class _Server(uvicorn.Server):
    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()  # the runner owns the signals


def bind_listener(
    host: str, port: int, *, reuse_port: bool = False, what: str = "", backlog: int = 2048
) -> socket.socket:
    """A listening socket (IPv6 for an IPv6 host); OSError, said with `what`, when it cannot bind.

    The HTTP listener and the own gRPC listener bind the same way; only the
    gRPC one of a `--workers N` worker shares its port (`reuse_port`).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server(
            (host, port), family=family, backlog=backlog, reuse_port=reuse_port
        )
    except OSError as exc:
        where = join_addr(host, port) + (f" ({what})" if what else "")
        raise OSError(f"cannot listen on {where}: {exc.strerror or exc}") from None


#: Which gRPC server answers Check: the server's own HTTP/2 listener, or grpcio's.
GrpcImpl = Literal["native", "grpcio"]


class GrpcListener(Protocol):
    """What the runner needs of either gRPC server."""

    async def start(self) -> None: ...

    async def stop(self, grace: float | None) -> object: ...


def grpc_server(
    state: ServerState, addr: str, limits: Limits, impl: GrpcImpl = "native"
) -> tuple[GrpcListener, int]:
    """The Authorization service on `addr` with the limits; and its port.

    `native` is `h2grpc` (docs/performance.md says why); `grpcio` is
    `grpc.aio` with the same limits.
    """
    if impl == "grpcio":
        return authz_server(
            state,
            addr,
            options=limits.grpc_options(),
            maximum_concurrent_rpcs=limits.grpc_max_concurrent_rpcs,
        )
    host, port = split_addr(addr)
    service = AuthorizationService(state)
    server = GrpcServer(
        service.answer,
        SERVICE,
        "Check",
        limits,
        bind_listener(host, port, reuse_port=limits.grpc_reuse_port, what="gRPC"),
        eager=state.never_waits,
    )
    return server, server.port


async def serve(
    state: ServerState,
    addrs: Addresses,
    *,
    grace: float = 10.0,
    limits: Limits | None = None,
    status: PolicyStatus | None = None,
    on_listening: Callable[[Bound], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
    gateway: Gateway | None = None,
    listener: socket.socket | None = None,
    grpc_impl: GrpcImpl = "native",
) -> None:
    """Serve until SIGTERM/SIGINT; `on_listening(Bound)` once both listeners are bound.

    `listener` is an HTTP socket already listening (a worker of `--workers N`
    inherits its supervisor's, so that every worker accepts on one port);
    without it `addrs.http` is bound here.
    """
    lim = limits if limits is not None else Limits()
    host, port = split_addr(addrs.http)
    guard = ConnectionGuard(lim, lambda reason: state.metrics.http_closed.labels(reason).inc())
    config = uvicorn.Config(
        build_app(state, status=status, limits=lim, gateway=gateway),
        host=host,
        port=port,
        http=guard.protocol,  # type: ignore[arg-type]
        ws="none",
        log_level="warning",
        access_log=False,
        lifespan="on" if gateway is not None else "off",  # the MCP session manager's
        timeout_keep_alive=lim.keep_alive,  # type: ignore[arg-type]
        h11_max_incomplete_event_size=lim.max_header_bytes,
        timeout_graceful_shutdown=grace,  # type: ignore[arg-type]
    )
    http = _Server(config)
    if listener is None:
        listener = bind_listener(host, port)  # bound here: a busy port is an OSError, said cleanly
    try:
        grpc_srv, grpc_port = grpc_server(state, addrs.grpc, lim, grpc_impl)
    except BaseException:
        listener.close()
        raise
    await grpc_srv.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def signalled() -> None:
        if stop.is_set():
            http.force_exit = True  # a second signal: stop waiting for the drain
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled)
    task = asyncio.create_task(http.serve(sockets=[listener]))
    while not http.started and not task.done():
        await asyncio.sleep(0.01)
    if task.done():  # pragma: no cover - the socket is already bound
        await grpc_srv.stop(0)
        raise OSError(f"cannot serve HTTP on {addrs.http}")
    bound = listener.getsockname()[1]
    if on_listening is not None:
        on_listening(Bound(join_addr(host, bound), join_addr(split_addr(addrs.grpc)[0], grpc_port)))
    await stop.wait()
    if on_stopping is not None:
        on_stopping()
    http.should_exit = True
    await asyncio.gather(task, grpc_srv.stop(grace))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    try:
        await state.store.close()
    finally:
        if state.log is not None:
            state.log.close()
