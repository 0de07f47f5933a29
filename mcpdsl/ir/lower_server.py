"""Lower `server NAME { ... }`: the decision server that enforces the tree.

A server is a deployment of `mcpdsl serve`, not a rule: it takes the clauses
a `service` and a `scale` already have (`image`, `namespace`, `cpu`, `memory`,
`replicas`, `target`), lowered by the same functions (`clauses.py`), plus the
store its replicas share (`redis`), what to decide when that store cannot
answer (`on redis down`) and its MCP gateway (`mcp resource ... accept [...]`,
lowered in `lower_upstream.py`).  What a cluster would refuse, or what would put a
credential in a manifest, is refused here rather than at apply time.
"""

from __future__ import annotations

import re
from typing import Any, cast
from urllib.parse import urlsplit

from lark import Token, Tree

from mcpdsl.ir import limits
from mcpdsl.ir import model as m
from mcpdsl.ir.clauses import (
    Clauses,
    clause_value,
    decl_name,
    lower_image,
    lower_replicas,
    lower_targets,
)
from mcpdsl.ir.common import Context, first_token
from mcpdsl.ir.lower_upstream import lower_mcp_endpoint

#: URL schemes the server's Redis client accepts across a network (TLS or not).
REDIS_SCHEMES = ("redis", "rediss")
#: A ConfigMap/Secret data key (the API server's rule).
_DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


def lower_server(ctx: Context, decl: Tree[Token]) -> m.Server | None:
    name = decl_name(decl)
    c = Clauses(ctx, decl)
    image = lower_image(ctx, c.require("image_clause", "image", name))
    replicas_clause = c.require("replicas_clause", "replicas", name)
    bounds = lower_replicas(ctx, replicas_clause)
    if bounds is not None and bounds[0] < 1:
        ctx.error(
            "E0303",
            "a decision server needs at least 1 replica",
            clause_value(replicas_clause),
            label="no replica: every ext_authz check fails, so every request is denied",
            help=f"write `replicas 1..{max(bounds[1], 1)}` or more",
        )
        bounds = None
    targets = lower_targets(ctx, c)
    cpu = ctx.read(clause_value(c.one("cpu_clause")), limits.read_cpu)
    memory = ctx.read(clause_value(c.one("memory_clause")), limits.read_memory)
    namespace = ctx.string(clause_value(c.one("namespace_clause"))) or ctx.package
    redis = _redis(ctx, c)
    mcp = lower_mcp_endpoint(ctx, c, name)
    on_down = "deny"
    if (down := c.one("store_down_clause")) is not None:
        on_down = "allow" if first_token(down, "ALLOW") is not None else "deny"
    if image is None or bounds is None:
        return None
    if bounds[1] >= 2 and redis is None and not _redis_failed(c):
        ctx.error(
            "W0112",
            f"server `{name}` runs up to {bounds[1]} replicas without a shared store: rate "
            "limits and per-principal counters are per replica",
            c.one("replicas_clause"),
            label="several replicas, each counting on its own",
            help='add `redis secret "NAME" key "url"` (or `redis "redis://HOST:6379/0"`), '
            "or run one replica",
            notes=(
                "a limit of N per second becomes N per second per replica, and a principal's "
                "calls spread over replicas are never added up",
            ),
        )
    values: dict[str, Any] = {}
    if cpu is not None:
        values["cpu"] = cpu
    if memory is not None:
        values["memory"] = memory
    return m.Server(
        package=ctx.package,
        name=name,
        image=image,
        namespace=namespace,
        min_replicas=bounds[0],
        max_replicas=bounds[1],
        targets=targets,
        redis=redis,
        on_store_down=cast(Any, on_down),
        mcp=mcp,
        span=ctx.span(decl),
        **values,
    )


def _redis_failed(c: Clauses) -> bool:
    """A `redis` clause was written (but refused): its error says enough."""
    return bool(c.all("redis_url") or c.all("redis_secret"))


def _redis(ctx: Context, c: Clauses) -> m.RedisStore | None:
    """`redis "URL"` or `redis secret "NAME" key "KEY"`, at most one of them."""
    urls, secrets = c.all("redis_url"), c.all("redis_secret")
    if urls and secrets:
        ctx.error(
            "E0201",
            "a server has one `redis` store",
            secrets[0],
            label="second store",
            secondary=((urls[0], "first store"),),
            help="keep `redis secret ...` (the URL then lives in the Secret)",
        )
        return None
    if urls:
        tok = clause_value(urls[0])
        url = ctx.string(tok)
        if url is None or not _url_ok(ctx, url, tok):
            return None
        return m.RedisStore(url=url, span=ctx.span(urls[0]))
    if secrets:
        secret_tok, key_tok = clause_value(secrets[0], 0), clause_value(secrets[0], 1)
        secret, key = ctx.string(secret_tok), ctx.string(key_tok)
        ok = True
        if secret is not None and not limits.is_dns_subdomain(secret):
            ctx.error(
                limits.NOT_ACCEPTED,
                f"`{secret}` is not a Secret name",
                secret_tok,
                label="not a Kubernetes object name",
                help="lowercase letters, digits, `-` and `.` (at most 253 characters)",
            )
            ok = False
        if key is not None and not _DATA_KEY.match(key):
            ctx.error(
                limits.NOT_ACCEPTED,
                f"`{key}` is not a Secret key",
                key_tok,
                label="not a data key",
                help="letters, digits, `-`, `_` and `.` (at most 253 characters)",
            )
            ok = False
        if secret is None or key is None or not ok:
            return None
        return m.RedisStore(secret=secret, secret_key=key, span=ctx.span(secrets[0]))
    return None


def _url_ok(ctx: Context, url: str, tok: Any) -> bool:
    """A `redis://` or `rediss://` URL with a host and no password (E1002, E1003)."""
    problem = redis_url_problem(url)
    if problem is None:
        return True
    if problem == "credentials":
        ctx.error(
            "E1003",
            "the redis URL carries a password",
            tok,
            label="a credential in the policy",
            help='put the URL in a Secret and write `redis secret "NAME" key "url"`',
            notes=(
                "the policy tree, its build and the generated manifests are not secret: "
                "credentials must come from a Secret",
            ),
        )
        return False
    ctx.error(
        "E1002",
        f"invalid redis URL: {problem}",
        tok,
        label="not a redis URL",
        help='write `redis "redis://HOST:6379/0"` (or `rediss://` for TLS)',
    )
    return False


def redis_url_problem(url: str) -> str | None:
    """Why `url` cannot name the servers' shared Redis ("credentials" for a password)."""
    if not url or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "it is empty or holds spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in REDIS_SCHEMES:
        shown = f"`{parts.scheme}://`" if parts.scheme else "no scheme"
        return f"the scheme is {shown}, not `redis://` or `rediss://`"
    if parts.password is not None:
        return "credentials"
    if not parts.hostname:
        return "it names no host"
    if port == 0:
        return "port 0 is not a port"
    if parts.path not in ("", "/") and not re.fullmatch(r"/[0-9]{1,5}", parts.path):
        return f"the path `{parts.path}` is not a database number like `/0`"
    if parts.fragment:
        return "it has a `#fragment`"
    return None
