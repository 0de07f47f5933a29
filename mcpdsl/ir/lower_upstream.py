"""Lower the MCP gateway's clauses: how the gateway reaches an upstream, and its `/mcp`.

An integration's `auth` (where the gateway's own credential for the upstream comes
from), `breaker` (circuit breaking), `idempotent` (retries of a POST/PATCH) and
`upstream mcp` (a federated MCP server), and a server's `mcp resource ... accept
[...]`.  Everything a running gateway would only find out on the first call (an
environment variable name no shell can set, a relative secret path, a header the
HTTP stack owns, a resource identifier a client cannot match) is refused here, so
that `mcpdsl check` says it with a span instead of the gateway saying it at 3 a.m.

There is no syntax for a secret *value*: `auth bearer "s3cret"` parses only so
that E1104 can say where secrets come from.  The policy tree, its build, the IR
in the server's ConfigMap and every log are not secret (docs/language.md).
"""

from __future__ import annotations

import ipaddress
import json
import re
from decimal import Decimal
from urllib.parse import urlsplit

from lark import Token, Tree

from mcpdsl.ir import limits, units
from mcpdsl.ir import model as m
from mcpdsl.ir.clauses import Clauses
from mcpdsl.ir.common import Context, child_tree, key_text, lower_ref, trees
from mcpdsl.ir.parts import leading, part

#: Methods that are idempotent by definition (RFC 9110 §9.2.2): the gateway retries them.
IDEMPOTENT_METHODS = ("GET", "HEAD", "PUT", "DELETE")
#: Retry conditions under which the request provably never reached the upstream
#: application: safe to retry whatever the method.
UNSENT_CONDITIONS = ("connect-failure", "refused-stream")
#: Input field types of `expose tool ... input { ... }` (JSON Schema `type`s).
INPUT_TYPES = ("string", "number", "boolean", "object", "array")
#: Circuit breaker bounds: `breaker N failures open T`.
MAX_BREAKER_FAILURES = 1000

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
#: Headers an upstream credential cannot travel in: hop-by-hop (RFC 9110 §7.6.1, and
#: the legacy `proxy-connection`/`keep-alive`), and those the HTTP client sets itself.
RESERVED_HEADERS = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
        "host",
        "content-length",
    }
)
_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
#: A federated tool is exposed as `PREFIX.NAME`; MCP tool names are at most 128 characters.
MAX_PREFIX = 64
_LOOPBACK_HOSTS = ("localhost",)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


# ------------------------------------------------------------- pure checks


def env_name_problem(name: str) -> str | None:
    """Why `name` cannot be an environment variable a container sets, or None."""
    if not name:
        return "is empty"
    if len(name) > 255:
        return "is longer than 255 characters"
    if _ENV_NAME.match(name) is None:
        return "is not an environment variable name"
    return None


def secret_path_problem(path: str) -> str | None:
    """Why `path` cannot name a secret file the server reads, or None."""
    if not path:
        return "is empty"
    if _CONTROL.search(path):
        return "holds spaces or control characters"
    if not path.startswith("/"):
        return "is not an absolute path"
    segments = path.split("/")
    if any(s in (".", "..") for s in segments) or "//" in path:
        return "is not in normal form (no `//`, `.` or `..` segments)"
    if path.endswith("/"):
        return "names a directory"
    return None


def upstream_header_problem(name: str) -> str | None:
    """Why `name` cannot carry a credential to the upstream (words after the name), or None."""
    if not name:
        return "is empty"
    if len(name) > 256:
        return "is longer than 256 characters"
    if _HEADER_TOKEN.match(name) is None:
        return "is not an HTTP header name"
    if name.lower() in RESERVED_HEADERS:
        if name.lower() in ("host", "content-length"):
            return "is set by the gateway's HTTP client"
        return "is a hop-by-hop header, which a proxy does not forward"
    return None


def tool_prefix_problem(prefix: str) -> str | None:
    """Why `prefix` cannot namespace the tools of a federated MCP server, or None."""
    if not prefix:
        return "is empty"
    if len(prefix) > MAX_PREFIX:
        return f"is longer than {MAX_PREFIX} characters"
    if _PREFIX.match(prefix) is None:
        return "is not a tool-name prefix"
    return None


def http_url_problem(url: str) -> str | None:
    """Why `url` cannot be an upstream MCP server's endpoint, or None."""
    if not url or _CONTROL.search(url):
        return "it is empty or holds spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        shown = f"`{parts.scheme}://`" if parts.scheme else "no scheme"
        return f"the scheme is {shown}, not `http://` or `https://`"
    if not parts.hostname:
        return "it names no host"
    if parts.username is not None or parts.password is not None:
        return "credentials"
    if parts.fragment or url.endswith("#"):
        return "it has a `#fragment`"
    return None


def resource_problem(url: str) -> str | None:
    """Why `url` cannot be an MCP resource identifier (RFC 8707 §2), or None.

    "loopback": plain `http` to a loopback host, allowed for local development
    (a warning); "credentials": a user or password in the URL.
    """
    problem = http_url_problem(url)
    if problem is not None:
        return problem
    parts = urlsplit(url)
    if parts.scheme == "http":
        return "loopback" if is_loopback(parts.hostname or "") else "http"
    return None


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


# ------------------------------------------------------------- integrations


def lower_input(ctx: Context, node: Tree[Token] | None) -> tuple[dict[str, str], tuple[str, ...]]:
    """`input { name: type, name?: type }`: the fields' types, and which are optional."""
    schema: dict[str, str] = {}
    optional: list[str] = []
    if node is None:
        return schema, ()
    for field in trees(node):
        key_node = part(field, "key")
        key = (
            ctx.string(key_node)
            if isinstance(key_node, Token) and key_node.type == "STRING"
            else key_text(key_node)
        )
        value = part(field, "value")
        if isinstance(value, Token) and value.type in ("NAME", "STRING"):
            typ = ctx.string(value) if value.type == "STRING" else str(value)
        else:
            ctx.error(
                "E0301",
                "expected a type name",
                value,
                help="use " + ", ".join(INPUT_TYPES),
            )
            continue
        if key is None or typ is None:
            continue
        if typ not in INPUT_TYPES:
            ctx.error(
                "E0204",
                f"unknown input type `{typ}` for `{key}`",
                value,
                help="use string, number, boolean, object or array",
            )
        if key in schema:
            ctx.error("E0201", f"duplicate key `{key}`", field, label="second occurrence")
            continue
        schema[key] = typ
        if part(field, "optional") is not None:
            optional.append(key)
    return schema, tuple(optional)


def lower_auth(ctx: Context, c: Clauses) -> m.UpstreamAuth | None:
    """`auth bearer SOURCE` or `auth header "NAME" SOURCE` (at most one, E0201)."""
    clauses = c.all("auth_bearer") + c.all("auth_header")
    if not clauses:
        return None
    clauses.sort(key=lambda t: (t.meta.line, t.meta.column) if not t.meta.empty else (0, 0))
    kinds = {clauses[0].data}
    for extra in clauses[1:]:
        if extra.data in kinds:
            continue  # a second `auth bearer` (or `auth header`): reported by `Clauses`
        kinds.add(extra.data)
        ctx.error(
            "E0201",
            "duplicate `auth` clause",
            extra,
            label="second occurrence",
            secondary=((clauses[0], "first occurrence"),),
            help="an upstream takes one credential; remove one of them",
        )
    clause = clauses[0]
    header = "authorization"
    ok = True
    if clause.data == "auth_header":
        tok = part(clause, "header")
        name = ctx.string(tok)
        problem = None if name is None else upstream_header_problem(name)
        if name is None:
            ok = False
        elif problem is not None:
            ctx.error(
                "E1103",
                f"header {_shown(name)} {problem}",
                tok,
                label="cannot carry the credential",
                help="name the header the upstream reads its key from, e.g. `x-api-key`, "
                "or write `auth bearer ...` for `authorization: Bearer`",
            )
            ok = False
        else:
            header = name.lower()
    secret = lower_secret(ctx, part(clause, "secret"))
    if secret is None or not ok:
        return None
    return m.UpstreamAuth(
        scheme="bearer" if clause.data == "auth_bearer" else "header",
        header=header,
        secret=secret,
        span=ctx.span(clause),
    )


def lower_secret(ctx: Context, source: Tree[Token]) -> m.SecretRef | None:
    """`env "NAME"` or `file "/path"`; a bare string is a secret written inline (E1104)."""
    if source.data == "secret_inline":
        ctx.error(
            "E1104",
            "a secret cannot be written in the policy",
            source,
            label="an inline credential",
            help='name where the server reads it: `env "VARIABLE"` or `file "/path/to/secret"`',
            notes=(
                "the policy tree, its build, the IR in the server's ConfigMap and the decision "
                "log are not secret: upstream credentials come from the server's environment "
                "or a mounted file",
            ),
        )
        return None
    tok = part(source, "value")
    text = ctx.string(tok)
    if text is None:
        return None
    if source.data == "secret_env":
        problem = env_name_problem(text)
        if problem is not None:
            ctx.error(
                "E1101",
                f"{_shown(text)} {problem}",
                tok,
                label="not an environment variable name",
                help="letters, digits and `_`, not starting with a digit (e.g. `CRM_API_TOKEN`)",
            )
            return None
        return m.SecretRef(source="env", name=text, span=ctx.span(source))
    problem = secret_path_problem(text)
    if problem is not None:
        ctx.error(
            "E1102",
            f"secret file {_shown(text)} {problem}",
            tok,
            label="not an absolute file path",
            help='write the path the secret is mounted at, e.g. "/var/run/secrets/crm/key"',
            notes=("the server reads the file when it calls the upstream, whatever its cwd",),
        )
        return None
    return m.SecretRef(source="file", name=text, span=ctx.span(source))


def lower_breaker(ctx: Context, clause: Tree[Token] | None) -> m.Breaker | None:
    """`breaker N failures open T`: 1..1000 consecutive failures, a positive open time."""
    if clause is None:
        return None
    n_tok, t_tok = part(clause, "failures"), part(clause, "open")
    failures = ctx.read(n_tok, units.read_count)
    open_for = ctx.read(t_tok, limits.read_duration)
    ok = failures is not None and open_for is not None
    if failures is not None and not 1 <= failures <= MAX_BREAKER_FAILURES:
        ctx.error(
            "E1105",
            f"a breaker opens after 1..{MAX_BREAKER_FAILURES} failures, found `{failures}`",
            n_tok,
            label="out of bounds",
            help="count consecutive failed calls, e.g. `breaker 5 failures open 30s`",
        )
        ok = False
    if open_for is not None and open_for <= 0:
        ctx.error(
            "E1105",
            f"a breaker must stay open for a positive time, found `{t_tok}`",
            t_tok,
            label="never open",
            help="e.g. `open 30s`; without a breaker, remove the clause",
        )
        ok = False
    if not ok or failures is None or open_for is None:
        return None
    return m.Breaker(failures=int(failures), open_for=Decimal(open_for), span=ctx.span(clause))


def lower_upstream(ctx: Context, c: Clauses, name: str) -> tuple[str, str] | None:
    """`upstream mcp "URL" [prefix "P"]`: (url, prefix), or None when refused.

    A federated integration takes its tools, their schemas and their results from the
    upstream MCP server, so the clauses that declare those for one REST call are errors.
    """
    clause = c.one("upstream_clause")
    assert clause is not None
    ok = True
    for kind, what in (
        ("call_clause", "call"),
        ("expose_clause", "expose tool"),
        ("map_clause", "map"),
    ):
        other = c.one(kind)
        if other is None:
            continue
        if kind == "expose_clause" and child_tree(other, "input_schema") is not None:
            what = "expose tool ... input"
        ctx.error(
            "E1106",
            f"integration `{name}` federates an MCP server: it cannot have `{what}`",
            leading(other),
            label=f"`{what}` of a REST integration",
            secondary=((clause, "the tools, their input and results come from this server"),),
            help=f"remove `{what}`, or make `{name}` a REST integration without `upstream mcp`",
        )
        ok = False
    url_tok = part(clause, "url")
    url = ctx.string(url_tok)
    if url is not None:
        problem = http_url_problem(url)
        if problem == "credentials":
            ctx.error(
                "E1104",
                "the upstream URL carries a credential",
                url_tok,
                label="a secret in the policy",
                help='remove it from the URL and write `auth bearer env "VARIABLE"`',
            )
            url = None
        elif problem is not None:
            ctx.error(
                "E1107",
                f"invalid MCP upstream URL: {problem}",
                url_tok,
                label="not an MCP endpoint",
                help='write the server\'s Streamable HTTP endpoint, e.g. "http://HOST:8000/mcp"',
            )
            url = None
    prefix: str | None = name
    prefix_tok = part(clause, "prefix")
    if prefix_tok is not None:
        prefix = ctx.string(prefix_tok)
    if prefix is not None:
        problem = tool_prefix_problem(prefix)
        if problem is not None:
            ctx.error(
                "E1108",
                f"tool prefix {_shown(prefix)} {problem}",
                prefix_tok if prefix_tok is not None else clause,
                label="not a tool-name prefix",
                help="letters, digits, `-` and `_`, in `.`-separated parts (e.g. `docs`)",
                notes=(f"a federated tool `T` is exposed as `{prefix}.T`",),
            )
            prefix = None
    if url is None or prefix is None or not ok:
        return None
    return url, prefix


def check_retry_idempotence(
    ctx: Context, c: Clauses, method: str, retry: m.Retry | None, idempotent: bool | None
) -> None:
    """W0120 (`idempotent` on a method that is) and W0121 (a retry the gateway will not make).

    A federated integration's calls are `tools/call` POSTs: not idempotent unless declared.
    """
    call = "federated `tools/call`" if c.one("upstream_clause") is not None else method
    clause = c.one("idempotent_clause")
    if clause is not None and method in IDEMPOTENT_METHODS:
        ctx.error(
            "W0120",
            f"`idempotent` is redundant: {method} is idempotent",
            clause,
            label="says what the method already says",
            help="remove `idempotent`",
        )
    if retry is None or idempotent or method in IDEMPOTENT_METHODS:
        return
    risky = [x for x in retry.on if x not in UNSENT_CONDITIONS] if retry.on else ["(default)"]
    if not risky:
        return
    shown = ", ".join(f"`{x}`" for x in risky) if retry.on else "its default conditions"
    ctx.error(
        "W0121",
        f"the MCP gateway will not retry this {call} on {shown}",
        c.one("retry_clause"),
        label=f"a {call} is not idempotent",
        help="if a repeated call is harmless, add `idempotent`; else retry only "
        "`on [connect-failure, refused-stream]`",
        notes=(
            "a retried call may run twice upstream (two tickets, two payments); the "
            "gateway retries a non-idempotent call only when it never reached the upstream",
        ),
    )


# ------------------------------------------------------------------ servers


def lower_mcp_endpoint(ctx: Context, c: Clauses, name: str) -> m.McpEndpoint | None:
    """`mcp resource "URL" accept [providers]` of a server (E0201 for a second one)."""
    clause = c.one("mcp_clause")
    if clause is None:
        return None
    tok = part(clause, "resource")
    resource = ctx.string(tok)
    if resource is None:
        return None
    problem = resource_problem(resource)
    if problem == "loopback":
        ctx.error(
            "W0122",
            "the MCP resource is served over plain `http`",
            tok,
            label="tokens for it travel unencrypted",
            help="use `https://` outside local development",
            notes=("plain `http` is accepted only for a loopback host (`localhost`, 127.0.0.1)",),
        )
    elif problem is not None:
        why = {
            "http": "it is `http://`; an MCP resource is an `https://` URL (plain `http` only "
            "for localhost)",
            "credentials": "it carries a user or password",
        }.get(problem, problem)
        ctx.error(
            "E1109",
            f"invalid MCP resource identifier: {why}",
            tok,
            label="not a resource identifier",
            help='the gateway\'s public URL, e.g. "https://mcp.example.com/mcp"',
            notes=(
                "clients ask for tokens with this `resource` (RFC 8707) and the gateway "
                "requires it as their audience",
            ),
        )
        return None
    providers: list[m.Ref] = []
    if (ac := child_tree(clause, "accept_clause")) is not None:
        for ref_tree in (t for t in trees(ac) if t.data == "ref"):
            ref = lower_ref(ctx, ref_tree)
            if ref is not None:
                providers.append(ref)
    if not providers:
        ctx.error(
            "E1110",
            f"the MCP endpoint of server `{name}` accepts no identity provider",
            ac if ac is not None else clause,
            label="no token can be verified",
            help="name the providers whose tokens it verifies: `accept [PROVIDER, ...]`",
            notes=("every MCP request carries a bearer token; without a provider all are refused",),
        )
        return None
    return m.McpEndpoint(resource=resource, providers=tuple(providers), span=ctx.span(clause))
