"""`mcpdsl serve DIR|BUILD`: the decision server (docs/serve.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from mcpdsl.serve.limits import Limits

if TYPE_CHECKING:
    from mcpdsl.serve.redis_store import RedisStore

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
    help="Open HTTP connections, and again gRPC ones; beyond, the longest-idle one is closed.",
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
@click.option(
    "--mcp-resource",
    "mcp_resource",
    default=None,
    metavar="URL",
    help="Serve the MCP gateway at /mcp with this resource identifier (the audience its"
    " bearer tokens must carry); replaces the `mcp resource` of the server block.",
)
@click.option(
    "--mcp-accept",
    "mcp_accept",
    default=None,
    metavar="PROVIDER[,PROVIDER]",
    help="Identity providers whose tokens /mcp accepts; replaces the server block's `accept`.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=256),
    default=1,
    show_default=True,
    help="Worker processes sharing the ports (one per core); with more than one, a policy"
    " that reads `stats` or declares a `limit` needs --redis, and FILE of --decision-log"
    " becomes FILE.w0 ... one per worker.",
)
@click.option(
    "--grpc-server",
    "grpc_impl",
    type=click.Choice(["native", "grpcio"]),
    default="native",
    show_default=True,
    help="What answers gRPC Check: the server's own HTTP/2 listener, or grpcio's server"
    " (slower; docs/serve.md).",
)
@click.option("--worker-index", type=int, default=None, hidden=True)
@click.option("--http-fd", type=int, default=None, hidden=True)
@click.option("--ready-fd", type=int, default=None, hidden=True)
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
    max_body: int,
    max_connections: int,
    max_inflight: int,
    request_timeout: float,
    keep_alive: float,
    grace: float,
    mcp_resource: str | None = None,
    mcp_accept: str | None = None,
    workers: int = 1,
    grpc_impl: str = "native",
    worker_index: int | None = None,
    http_fd: int | None = None,
    ready_fd: int | None = None,
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
    from mcpdsl.engine.decision_log import DEFAULT_MASK, DecisionLog, DecisionLogError
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
        grpc_reuse_port=worker_index is not None,
    )
    raise_fd_limit(2 * max_connections + max_inflight + 256)  # HTTP's and gRPC's
    metrics = Metrics()
    status = PolicyStatus(path, metrics, say=say)
    store = _redis_store(redis_url, redis_prefix, redis_timeout) if redis_url else None
    if workers > 1 and worker_index is None:  # the supervisor: checks, binds, exits
        _supervise(path, trust, addr, grpc_addr, decision_log, redis_url, workers, grace)
    try:
        engine = Engine.load(
            path, trust=trust, on_reload=status.on_reload, on_error=status.on_error
        )
    except Exception as exc:  # CompileError, TrustError: said, not a traceback
        fail(f"cannot load `{path}`: {exc}")
    status.attach(engine, f"verified with keyring {trust}" if trust else "")
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
    state = ServerState(engine, store=store, log=log, metrics=metrics,
                        on_unavailable=on_unavailable, workers=workers)  # type: ignore[arg-type]  # fmt: skip
    gateway = _gateway(state, mcp_resource, mcp_accept, say)
    if not no_watch:
        engine.start_watching()

    announce: Callable[[str], None] = say
    listener = None
    if worker_index is not None:  # a worker of `--workers N` (mcpdsl.serve.workers)
        import socket

        from mcpdsl.serve.workers import worker_announce

        if ready_fd is not None:
            announce = worker_announce(ready_fd)
        if http_fd is not None:
            listener = socket.socket(fileno=http_fd)

    def listening(bound: Bound) -> None:
        line = {"event": "listening", "http": bound.http, "grpc": bound.grpc, "pid": os.getpid()}
        announce(json.dumps(line, sort_keys=True))

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
                gateway=gateway,
                listener=listener,
                grpc_impl=grpc_impl,  # type: ignore[arg-type]
            )
        )
    except OSError as exc:
        fail(str(exc))
    finally:
        engine.close()
    say("mcpdsl serve: stopped")


def _supervise(
    path: str,
    trust: str | None,
    addr: str,
    grpc_addr: str,
    decision_log: str | None,
    redis_url: str | None,
    workers: int,
    grace: float,
) -> NoReturn:
    """`--workers N` (N > 1): check what N processes need, bind, supervise; exits.

    The policy is loaded here once, to refuse what N workers cannot serve exactly
    (E1130: counters or limits without a shared store; E1131: one decision-log
    stream written by N processes) before any of them starts.
    """
    import sys

    from mcpdsl.cli.common import fail
    from mcpdsl.engine import Engine
    from mcpdsl.serve.runner import bind_listener, split_addr
    from mcpdsl.serve.workers import Supervisor, python_argv

    if decision_log == "-":
        fail(
            f"--decision-log - with --workers {workers}: the workers' lines would"
            " interleave into a chain no one can verify; give a FILE (one FILE.wN per"
            " worker)",
            diagnostic="E1131",
        )
    try:
        engine = Engine.load(path, trust=trust)
    except Exception as exc:  # CompileError, TrustError: said, not a traceback
        fail(f"cannot load `{path}`: {exc}")
    try:
        prepared = engine.compiled
        needs = [what for what, yes in (("reads `stats`", prepared.policies.reads_stats),
                                        ("declares a `limit`", bool(prepared.limits))) if yes]  # fmt: skip
    finally:
        engine.close()
    if needs and redis_url is None:
        fail(
            f"the policy {' and '.join(needs)}: with --workers {workers} each"
            " worker would count apart; add --redis URL (one shared store) or use one"
            " worker",
            diagnostic="E1130",
        )
    try:
        host, port = split_addr(addr)
        listener = bind_listener(host, port)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    listener.set_inheritable(True)
    ctx = click.get_current_context()
    base = _worker_args(ctx, {"grpc_addr", "decision_log", "worker_index", "http_fd", "ready_fd"})

    def command(index: int, ready: int, grpc: str) -> list[str]:
        argv = [*python_argv(), "serve", *base, "--grpc-addr", grpc,
                "--worker-index", str(index), "--http-fd", str(listener.fileno()),
                "--ready-fd", str(ready)]  # fmt: skip
        if decision_log is not None:
            argv += ["--decision-log", f"{decision_log}.w{index}"]
        return argv

    def say(text: str) -> None:
        click.echo(text, err=True)

    try:
        code = Supervisor(command, workers, (listener.fileno(),), say, grpc_addr, grace).run()
    finally:
        listener.close()
    say("mcpdsl serve: stopped")
    sys.exit(code)


def _worker_args(ctx: click.Context, leave: set[str]) -> list[str]:
    """The command line of this invocation, rebuilt from its parameters (minus `leave`)."""
    out: list[str] = []
    for param in ctx.command.params:
        name = param.name
        if name is None or name in leave:
            continue
        value = ctx.params.get(name)
        if isinstance(param, click.Argument):
            out.append(str(value))
            continue
        assert isinstance(param, click.Option)
        flag = param.opts[0]
        if param.is_flag:
            if value:
                out.append(flag)
        elif param.multiple:
            for v in value or ():
                out += [flag, str(v)]
        elif value is not None:
            out += [flag, str(value)]
    return out


def _gateway(state: Any, resource: str | None, accept: str | None, say: Any) -> Any:
    """The MCP gateway when the tree's server block or `--mcp-resource` declares `/mcp`.

    Provider names of `--mcp-accept` that name no provider of the tree are a usage
    error (exit 2), as is `--mcp-accept` without a resource to serve.
    """
    import os

    from mcpdsl.cli.common import fail

    project = state.engine.compiled.project
    declared = any(s.mcp is not None for s in project.servers)
    names = tuple(n.strip() for n in (accept or "").split(",") if n.strip())
    if resource is None and not declared:
        if names:
            fail("--mcp-accept needs an MCP endpoint: --mcp-resource URL or `mcp resource` in"
                 " the server block")  # fmt: skip
        return None
    known = {p.name for p in project.providers} | {p.qualified for p in project.providers}
    unknown = [n for n in names if n not in known]
    if unknown:
        fail(f"--mcp-accept: no provider named {', '.join(unknown)} in the tree")
    from mcpdsl.serve.federation import Federation
    from mcpdsl.serve.gateway import Gateway
    from mcpdsl.serve.upstream import Upstreams

    def federate(integrations: Any, on_change: Any) -> Federation:
        return Federation(integrations, env=os.environ, on_change=on_change)

    return Gateway(
        state, resource=resource, accept=names, upstreams=Upstreams(env=os.environ),
        federate=federate,
    )  # fmt: skip


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
