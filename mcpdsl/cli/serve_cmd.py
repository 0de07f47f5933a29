"""`mcpdsl serve DIR|BUILD`: the decision server (docs/serve.md)."""

from __future__ import annotations

import click


@click.command("serve")
@click.argument("path", type=click.Path(exists=True, path_type=str))
@click.option(
    "--addr", default="127.0.0.1:8181", show_default=True, help="HTTP address (Data API, health)."
)
@click.option(
    "--grpc-addr",
    default="127.0.0.1:9191",
    show_default=True,
    help="gRPC address (Envoy ext_authz Check).",
)
@click.option("--trust", "trust", default=None, help="Keyring: PATH must be a build signed by it.")
@click.option(
    "--decision-log",
    "decision_log",
    default=None,
    help="Append one JSON line per decision to FILE (`-`: standard output).",
)
@click.option(
    "--decision-log-max-bytes",
    "log_max_bytes",
    type=click.IntRange(min=1),
    default=100 * 1024 * 1024,
    show_default=True,
    help="Rotate the decision-log FILE before it grows beyond this size.",
)
@click.option(
    "--decision-log-keep",
    "log_keep",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Rotated decision-log files kept (FILE.1 ... FILE.N).",
)
@click.option(
    "--decision-log-mask",
    "log_mask",
    multiple=True,
    metavar="PATH",
    help="Mask this attribute path in the decision log (repeatable; default: "
    "request.headers.authorization).",
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
def serve_command(
    path: str,
    addr: str,
    grpc_addr: str,
    trust: str | None,
    decision_log: str | None,
    log_max_bytes: int,
    log_keep: int,
    log_mask: tuple[str, ...],
    on_unavailable: str,
    no_watch: bool,
) -> None:
    """Serve decisions over gRPC (Envoy ext_authz) and HTTP (OPA Data API) until SIGTERM."""
    import asyncio
    import sys

    from mcpdsl.cli.common import fail
    from mcpdsl.engine import Engine
    from mcpdsl.engine.decision_log import DEFAULT_MASK, DecisionLog, DecisionLogError
    from mcpdsl.serve.runner import Addresses, serve, split_addr
    from mcpdsl.serve.state import ServerState

    for a in (addr, grpc_addr):
        try:
            host, _ = split_addr(a)
        except ValueError as exc:
            fail(f"invalid address: {exc}")
        if host not in ("127.0.0.1", "::1", "localhost"):
            click.echo(f"note: listening on {a}, beyond this machine's loopback", err=True)
    try:
        engine = Engine.load(path, trust=trust)
    except Exception as exc:  # CompileError, TrustError: said, not a traceback
        fail(f"cannot load `{path}`: {exc}")
    log = None
    if decision_log is not None:
        mask = log_mask or DEFAULT_MASK
        try:
            log = DecisionLog((lambda line: sys.stdout.write(line + "\n")) if decision_log == "-"
                              else decision_log, mask,
                              max_bytes=log_max_bytes, keep=log_keep)  # fmt: skip
        except DecisionLogError as exc:
            engine.close()
            fail(str(exc))
    state = ServerState(engine, log=log, on_unavailable=on_unavailable)  # type: ignore[arg-type]
    if not no_watch:
        engine.start_watching()

    def listening(host: str, http_port: int, grpc_port: int) -> None:
        click.echo(f"serving {path}: http {host}:{http_port}, grpc port {grpc_port}", err=True)

    try:
        asyncio.run(serve(state, Addresses(addr, grpc_addr), on_listening=listening))
    except OSError as exc:
        fail(str(exc))
    finally:
        engine.close()
