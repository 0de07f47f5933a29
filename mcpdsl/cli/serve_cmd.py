"""`mcpdsl serve DIR|BUILD`: the decision server (docs/serve.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from mcpdsl.serve.redis_store import RedisStore


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
@click.option(
    "--redis",
    "redis_url",
    default=None,
    metavar="URL",
    help="Share counters and limits with other replicas through Redis "
    "(redis://, rediss:// or unix://; password in the URL or in $MCPDSL_REDIS_PASSWORD).",
)
@click.option(
    "--redis-prefix",
    default="default",
    show_default=True,
    help="Key prefix in Redis (`mcpdsl:PREFIX:...`): policies sharing a Redis use different ones.",
)
@click.option(
    "--redis-timeout",
    type=click.FloatRange(min=0.001, max=60),
    default=0.5,
    show_default=True,
    help="Seconds to wait for Redis per connect/read before the store counts as unavailable.",
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
    redis_url: str | None,
    redis_prefix: str,
    redis_timeout: float,
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
    store = _redis_store(redis_url, redis_prefix, redis_timeout) if redis_url else None
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
    state = ServerState(engine, store=store, log=log,
                        on_unavailable=on_unavailable)  # type: ignore[arg-type]  # fmt: skip
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


def _redis_store(url: str, prefix: str, timeout: float) -> RedisStore:
    """The shared store `--redis URL` names; a URL or prefix that cannot be one is a usage error.

    The password comes from the URL or from `$MCPDSL_REDIS_PASSWORD` (so that it
    need not appear in a process listing) and is never printed.
    """
    import os

    from mcpdsl.serve.redis_store import RedisStore, check_prefix, check_url

    try:
        check_url(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--redis'") from None
    try:
        check_prefix(prefix)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--redis-prefix'") from None
    password = os.environ.get("MCPDSL_REDIS_PASSWORD") or None
    try:
        return RedisStore(url, prefix=prefix, password=password, timeout=timeout)
    except ValueError as exc:  # the URL's query names options the client cannot take
        raise click.BadParameter(str(exc), param_hint="'--redis'") from None
