"""Run the HTTP app and the gRPC server in one event loop; stop both gracefully.

SIGTERM/SIGINT: stop accepting, let in-flight requests finish (up to `grace`
seconds), then close the store and flush the decision log.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn

from mcpdsl.serve.app import build_app
from mcpdsl.serve.grpc_authz import grpc_server
from mcpdsl.serve.state import ServerState


@dataclass(frozen=True)
class Addresses:
    http: str = "127.0.0.1:8181"
    grpc: str = "127.0.0.1:9191"


def split_addr(addr: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) -> (host, port); ValueError for anything else."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"`{addr}` is not HOST:PORT")
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is out of range")
    return host.strip("[]"), number


class _Server(uvicorn.Server):
    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()  # the runner owns the signals


async def serve(
    state: ServerState,
    addrs: Addresses,
    *,
    grace: float = 10.0,
    on_listening: Callable[[str, int, int], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; `on_listening(host, http_port, grpc_port)` once bound."""
    host, port = split_addr(addrs.http)
    config = uvicorn.Config(
        build_app(state),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=int(grace),
    )
    http = _Server(config)
    grpc, grpc_port = grpc_server(state, addrs.grpc)
    await grpc.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(http.serve())
    while not http.started and not task.done():
        await asyncio.sleep(0.01)
    if task.done():
        await grpc.stop(0)
        task.result()
        raise OSError(f"cannot listen on {addrs.http}")
    bound = http.servers[0].sockets[0].getsockname()[1] if http.servers else port
    if on_listening is not None:
        on_listening(host, bound, grpc_port)
    await stop.wait()
    http.should_exit = True
    await asyncio.gather(task, grpc.stop(grace))
    await state.store.close()
    if state.log is not None:
        state.log.close()
