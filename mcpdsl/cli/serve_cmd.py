"""`mcpdsl serve DIR|BUILD`: the decision server (docs/serve.md)."""

from __future__ import annotations

import click

from mcpdsl.serve.limits import Limits

_DEFAULTS = Limits()


@click.command("serve")
@click.argument("path", type=click.Path(exists=True, path_type=str))
@click.option(
    "--addr",
    default="127.0.0.1:8181",
    show_default=True,
    help="HTTP address (Data API, health); port 0 picks a free port.",
)
@click.option(
    "--grpc-addr",
    default="127.0.0.1:9191",
    show_default=True,
    help="gRPC address (Envoy ext_authz Check); port 0 picks a free port.",
)
@click.option("--trust", "trust", default=None, help="Keyring: PATH must be a build signed by it.")
@click.option(
    "--decision-log",
    "decision_log",
    default=None,
    help="Append one JSON line per decision to FILE (`-`: standard output).",
)
@click.option(
    "--on-store-unavailable",
    "on_unavailable",
    type=click.Choice(["deny", "allow"]),
    default="deny",
    show_default=True,
    help="What to decide when the shared store cannot answer.",
)
@click.option("--no-watch", is_flag=True, help="Do not reload when the policy changes.")
@click.option(
    "--max-body",
    type=click.IntRange(min=1),
    default=_DEFAULTS.max_body_bytes,
    show_default=True,
    help="Largest Data API request body, in bytes (beyond: 413).",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=_DEFAULTS.max_connections,
    show_default=True,
    help="Open HTTP connections; beyond, the longest-idle one is closed.",
)
@click.option(
    "--max-inflight",
    type=click.IntRange(min=1),
    default=_DEFAULTS.max_inflight,
    show_default=True,
    help="HTTP requests handled at once (beyond: 503); also the gRPC limit.",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0.1),
    default=_DEFAULTS.request_timeout,
    show_default=True,
    help="Seconds a client has to send a request head, and again its body.",
)
@click.option(
    "--keep-alive",
    type=click.FloatRange(min=0.1),
    default=_DEFAULTS.keep_alive,
    show_default=True,
    help="Seconds an idle keep-alive HTTP connection is kept open.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds SIGTERM waits for in-flight requests.",
)
def serve_command(
    path: str,
    addr: str,
    grpc_addr: str,
    trust: str | None,
    decision_log: str | None,
    on_unavailable: str,
    no_watch: bool,
    max_body: int,
    max_connections: int,
    max_inflight: int,
    request_timeout: float,
    keep_alive: float,
    grace: float,
) -> None:
    """Serve decisions over gRPC (Envoy ext_authz) and HTTP (OPA Data API) until SIGTERM.

    Once both listeners are bound, one JSON line on standard error says where:
    `{"event": "listening", "http": "HOST:PORT", "grpc": "HOST:PORT", "pid": N}`.
    """
    import asyncio
    import json
    import os
    import sys
    from dataclasses import replace

    from mcpdsl.cli.common import fail
    from mcpdsl.engine import Engine
    from mcpdsl.engine.decision_log import DecisionLog
    from mcpdsl.serve.limits import raise_fd_limit
    from mcpdsl.serve.metrics import Metrics
    from mcpdsl.serve.runner import Addresses, Bound, is_loopback, serve
    from mcpdsl.serve.state import ServerState
    from mcpdsl.serve.status import PolicyStatus

    def say(text: str) -> None:
        click.echo(text, err=True)

    for a in (addr, grpc_addr):
        try:
            loopback = is_loopback(a)
        except ValueError as exc:
            fail(f"invalid address: {exc}")
        if not loopback:
            say(
                f"note: listening on {a}, beyond this machine's loopback: the Data API trusts"
                " its callers' input (docs/serve.md, security model)"
            )
    limits = replace(
        _DEFAULTS,
        max_body_bytes=max_body,
        max_connections=max_connections,
        max_inflight=max_inflight,
        grpc_max_concurrent_rpcs=max_inflight,
        request_timeout=request_timeout,
        keep_alive=keep_alive,
    )
    raise_fd_limit(max_connections + max_inflight + 256)
    metrics = Metrics()
    status = PolicyStatus(path, metrics, say=say)
    try:
        engine = Engine.load(
            path, trust=trust, on_reload=status.on_reload, on_error=status.on_error
        )
    except Exception as exc:  # CompileError, TrustError: said, not a traceback
        fail(f"cannot load `{path}`: {exc}")
    status.attach(engine, f"verified with keyring {trust}" if trust else "")
    log = None
    if decision_log is not None:
        log = DecisionLog((lambda line: sys.stdout.write(line + "\n")) if decision_log == "-"
                          else decision_log)  # fmt: skip
    state = ServerState(engine, log=log, metrics=metrics, on_unavailable=on_unavailable)  # type: ignore[arg-type]
    if not no_watch:
        engine.start_watching()

    def listening(bound: Bound) -> None:
        line = {"event": "listening", "http": bound.http, "grpc": bound.grpc, "pid": os.getpid()}
        say(json.dumps(line, sort_keys=True))

    def stopping() -> None:
        say(f"mcpdsl serve: stopping; draining in-flight requests (up to {grace:g} s)")

    try:
        asyncio.run(
            serve(
                state,
                Addresses(addr, grpc_addr),
                grace=grace,
                limits=limits,
                status=status,
                on_listening=listening,
                on_stopping=stopping,
            )
        )
    except OSError as exc:
        fail(str(exc))
    finally:
        engine.close()
    say("mcpdsl serve: stopped")
