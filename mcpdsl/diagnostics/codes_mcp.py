"""Codes of the MCP gateway's clauses (E1101-E1111, W0120-W0123).

An integration's `auth`, `breaker`, `idempotent` and `upstream mcp`, and a
server's `mcp resource ... accept [...]` (docs/language.md, "The MCP gateway").
Kept apart from `codes.py` only for size; `CODES` holds them all.
"""

from __future__ import annotations

from mcpdsl.diagnostics.model import Code, Severity

_E = Severity.ERROR
_W = Severity.WARNING

MCP_TABLE: tuple[Code, ...] = (
    Code(
        "E1101",
        _E,
        "invalid environment variable name",
        'The name in `auth ... env "NAME"` is not one a container can set: an\n'
        "environment variable name is letters, digits and `_`, not starting with a digit.\n"
        "The gateway reads the upstream credential from this variable of its own\n"
        "process when it calls the upstream.\n\n"
        '    auth bearer env "CRM_API_TOKEN"\n',
    ),
    Code(
        "E1102",
        _E,
        "secret file path is not absolute",
        'The path in `auth ... file "PATH"` must be absolute and in normal form (no\n'
        "`//`, `.` or `..` segments, not a directory): the server reads it when it calls\n"
        "the upstream, whatever its working directory, typically where a Kubernetes\n"
        "Secret is mounted. The file is read on every call, so a rotated secret is used\n"
        "without a restart.\n\n"
        '    auth header "X-Api-Key" file "/var/run/secrets/crm/key"\n',
    ),
    Code(
        "E1103",
        _E,
        "header cannot carry an upstream credential",
        'The header of `auth header "NAME" ...` is not an HTTP token, or is one the\n'
        "gateway's HTTP client owns: hop-by-hop headers (`connection`, `keep-alive`,\n"
        "`te`, `trailer`, `transfer-encoding`, `upgrade`, `proxy-authorization`, ...)\n"
        "are not forwarded by proxies, and `host` and `content-length` are set by the\n"
        "client. Name the header the upstream reads its key from (`x-api-key`), or write\n"
        "`auth bearer ...` for `authorization: Bearer <secret>`. Names are sent\n"
        "lower-cased.\n",
    ),
    Code(
        "E1104",
        _E,
        "secret written in the policy",
        'An upstream credential is written in the tree: `auth bearer "s3cret"`, or a\n'
        "user and password in an `upstream mcp` URL. The policy tree, its build, the IR\n"
        "in the server's ConfigMap and the decision log are not secret: they are\n"
        "reviewed, diffed, stored in git and in CI logs. Name where the server reads the\n"
        "secret instead:\n\n"
        '    auth bearer env "CRM_API_TOKEN"                 # the server\'s environment\n'
        '    auth bearer file "/var/run/secrets/crm/token"   # a mounted file\n\n'
        "On Kubernetes, the team creates the Secret and the server's Deployment reads it\n"
        "(docs/serve-kubernetes.md).\n",
    ),
    Code(
        "E1105",
        _E,
        "circuit breaker out of bounds",
        "`breaker N failures open T` opens the circuit after N consecutive failed calls\n"
        "(after retries) and keeps it open for T, then lets one probe through. N is\n"
        "1..1000 and T a positive duration.\n\n"
        "    breaker 5 failures open 30s\n",
    ),
    Code(
        "E1106",
        _E,
        "clause not allowed in a federated integration",
        'An integration with `upstream mcp "URL"` federates another MCP server: its\n'
        "tools, their input schemas and their results come from that server (discovered\n"
        "at start and on `notifications/tools/list_changed`). The clauses that declare\n"
        "them for one REST call, `call`, `expose tool ... input { ... }` and `map`, are\n"
        "therefore errors. `auth`, `timeout`, `retry`, `limit`, `breaker` and\n"
        "`description` apply to the federated server.\n",
    ),
    Code(
        "E1107",
        _E,
        "invalid MCP upstream URL",
        'The URL of `upstream mcp "URL"` is not an MCP Streamable HTTP endpoint the\n'
        "gateway can call: it must be `http://` or `https://`, name a host, have a valid\n"
        "port and no `#fragment`.\n\n"
        '    upstream mcp "http://docs-mcp.tools.svc:8000/mcp" prefix "docs"\n',
    ),
    Code(
        "E1108",
        _E,
        "invalid tool-name prefix",
        "The tools of a federated MCP server are exposed as `PREFIX.TOOL`. The prefix\n"
        '(`prefix "P"`, by default the integration\'s name) is letters, digits, `-` and\n'
        "`_`, in `.`-separated parts, at most 64 characters, so that every federated\n"
        "name is a valid MCP tool name.\n",
    ),
    Code(
        "E1109",
        _E,
        "invalid MCP resource identifier",
        "The `resource` of a server's `mcp resource \"URL\"` is the gateway's resource\n"
        "identifier (RFC 8707, RFC 9728): the URL clients ask tokens for and the audience\n"
        "the gateway requires. It is an absolute `https://` URL with a host and no\n"
        "`#fragment` (plain `http://` only for a loopback host, W0122), without a user or\n"
        "password.\n\n"
        '    mcp resource "https://mcp.example.com/mcp" accept [agent-sessions]\n',
    ),
    Code(
        "E1110",
        _E,
        "no identity provider for the MCP endpoint",
        "A server's `mcp` clause names no provider in `accept [...]`. Every MCP request\n"
        "carries a bearer token that the gateway verifies against the providers it\n"
        "accepts (issuer, keys, audience = the resource); with none, every request is\n"
        "refused. Name at least one declared `provider`.\n",
    ),
    Code(
        "E1111",
        _E,
        "federated tool prefix collides",
        'The prefix of a federated MCP server (`upstream mcp ... prefix "P"`) is also\n'
        "the name, or the first dotted part, of a tool another integration exposes, or the\n"
        "prefix of another federated server: a name `P.x` could then mean either tool,\n"
        "and rules written for one would govern the other. Give each federated server a\n"
        "prefix of its own.\n",
    ),
    Code(
        "W0120",
        _W,
        "redundant `idempotent`",
        "`idempotent` lets the MCP gateway retry a call whose method is not idempotent\n"
        "(POST, PATCH). GET, HEAD, PUT and DELETE are idempotent by definition (RFC 9110),\n"
        "so on them the clause says nothing; remove it.\n",
    ),
    Code(
        "W0121",
        _W,
        "retry the MCP gateway will not make",
        "An integration calls a method that is not idempotent (POST, PATCH, or a\n"
        "federated `tools/call`), is not marked `idempotent`, and retries on conditions\n"
        "other than `connect-failure` and `refused-stream` (or on the default ones). A\n"
        "retried call may run twice upstream, so the gateway retries such a call only\n"
        "when it provably never reached the upstream; the other conditions are not\n"
        "retried. Add `idempotent` if a repeated call is harmless, or retry only\n"
        "`on [connect-failure, refused-stream]`.\n",
    ),
    Code(
        "W0122",
        _W,
        "plain-http MCP resource",
        'A server\'s `mcp resource "http://localhost..."` is plain `http`. It is accepted\n'
        "for a loopback host (local development) only: bearer tokens sent to it travel\n"
        "unencrypted. Use `https://` for anything reachable from another machine.\n",
    ),
    Code(
        "W0123",
        _W,
        "provider does not accept the MCP resource as audience",
        "A provider the MCP endpoint accepts lists `audiences`, and the endpoint's\n"
        "resource is not among them. Tokens for this resource (RFC 8707) carry it as\n"
        "their audience, so the provider's own audience check refuses them at every\n"
        "enforcement point that uses the declaration. Add the resource to the\n"
        "provider's `audiences`:\n\n"
        '    audiences ["https://api.example.com", "https://mcp.example.com/mcp"]\n',
    ),
)
