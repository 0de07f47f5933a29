"""Lower the identity declarations: `provider`, `mesh`, and a gateway's identity clauses.

A provider names who may vouch for a principal (an OIDC/JWT issuer and its
keys), a mesh names the SPIFFE trust domain of the services' certificates, and
a gateway says which providers it accepts, its downstream TLS and which
request headers it takes as `context` facts (docs/language.md, "Identity").
What one clause can say about itself is checked here; what needs the whole
tree (references, the JWKS file on disk, service identities against the mesh)
is checked by `resolve` and `identity.py`.
"""

from __future__ import annotations

import ipaddress
from typing import Any, cast
from urllib.parse import urlsplit

from lark import Token, Tree

from mcpdsl.diagnostics.wording import shown
from mcpdsl.ir import limits
from mcpdsl.ir import model as m
from mcpdsl.ir.clauses import Clauses, clause_value, decl_name, string_list
from mcpdsl.ir.common import Context, child_tree, key_text, lower_ref, tokens, trees
from mcpdsl.ir.parts import part
from mcpdsl.syntax.parser import closest

PRINCIPAL_TYPES = ("user", "agent")
CLIENT_CERTS = ("required", "optional", "none")
HEADER_TYPES = ("string", "number", "bool", "list")
CLAIM_KEYS = ("id", "email", "groups")
MAX_SKEW = 300  # seconds: more than five minutes of skew hides clock faults, not drift

# Headers the gateway itself manages, rewrites or strips: a policy cannot trust a
# value the caller sent in them, so trusting one is an error (E0908).
_MANAGED_PREFIXES = ("x-forwarded-", "x-envoy-", ":")
_MANAGED = frozenset(
    {
        "host",
        "authorization",
        "proxy-authorization",
        "x-request-id",
        "x-real-ip",
        "forwarded",
        "via",
        # hop-by-hop (RFC 9110 section 7.6.1): never forwarded as sent
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


def managed_header(name: str) -> bool:
    """Whether Envoy manages, rewrites or strips this header on the way in."""
    return name in _MANAGED or name.startswith(_MANAGED_PREFIXES)


def _choice(ctx: Context, tok: Token, choices: tuple[str, ...], what: str) -> str | None:
    text = str(tok)
    if text in choices:
        return text
    guess = closest(text, choices)
    ctx.error(
        "E0204",
        f"unknown {what} `{text}`",
        tok,
        label=f"not a {what}",
        help=f"did you mean `{guess}`?" if guess else "use one of: " + ", ".join(choices),
    )
    return None


def _https(ctx: Context, tok: Token, text: str | None) -> str | None:
    if text is None:
        return None
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # a port that is not a number in 1..65535
        parts, port_ok = urlsplit(""), False
    if (
        parts.scheme != "https"
        or not parts.hostname
        or not port_ok
        or parts.username is not None
        or any(c.isspace() or ord(c) < 0x20 for c in text)
    ):
        ctx.error(
            "E0903",
            f"jwks url `{shown(text)}` is not an https URL",
            tok,
            label="keys fetched without TLS can be replaced in transit",
            help='write it as "https://HOST/PATH", or ship the keys with `jwks file "..."`',
        )
        return None
    return text


def lower_provider(ctx: Context, decl: Tree[Token]) -> m.Provider | None:
    name = decl_name(decl)
    c = Clauses(ctx, decl)
    issuer_clause = c.one("issuer_clause")
    issuer = ctx.string(clause_value(issuer_clause))
    head = decl.children[1]
    if issuer_clause is None or (issuer is not None and not issuer.strip()):
        ctx.error(
            "E0901",
            f"provider `{name}` has no issuer",
            head if issuer_clause is None else clause_value(issuer_clause),
            label="tokens cannot be checked against an empty issuer"
            if issuer_clause is not None
            else "missing `issuer`",
            help='add `issuer "https://..."`: the exact `iss` claim of its tokens',
        )
        issuer = None
    jwks = [cl for cl in trees(decl) if cl.data in ("jwks_url", "jwks_file")]
    jwks_uri = jwks_file = None
    if len(jwks) != 1:
        ctx.error(
            "E0902",
            f"provider `{name}` has {'no' if not jwks else 'more than one'} key source",
            head if not jwks else jwks[1],
            label="exactly one `jwks` clause" if jwks else "missing `jwks`",
            secondary=((jwks[0], "first key source"),) if jwks else (),
            help='give either `jwks url "https://..."` or `jwks file "keys.json"`',
        )
    else:
        tok = clause_value(jwks[0])
        text = ctx.string(tok)
        if jwks[0].data == "jwks_url":
            jwks_uri = _https(ctx, tok, text)
        elif text is not None:
            jwks_file = _relative_file(ctx, tok, text, "jwks file")
    audiences = string_list(ctx, clause_value(c.one("audiences_clause")))
    if any(not a.strip() for a in audiences):
        ctx.error("E0206", "an audience must not be empty", clause_value(c.one("audiences_clause")))
    skew = 60
    if (sc := c.one("skew_clause")) is not None:
        value = ctx.read(clause_value(sc), limits.read_duration)
        if value is not None and not 0 <= value <= MAX_SKEW:
            ctx.error(
                "E0303",
                f"clock skew `{clause_value(sc)}` is out of bounds (0s..5m)",
                clause_value(sc),
                help="clocks of issuers and gateways agree within seconds; use e.g. `60s`",
            )
        elif value is not None:
            skew = int(value)
    claims = _claims(ctx, c.one("claims_clause"))
    mfa_claim = "amr"
    mfa_values: tuple[str, ...] = ("mfa",)
    if (mc := c.one("mfa_clause")) is not None:
        mfa_claim = ctx.string(clause_value(mc, 0)) or mfa_claim
        mfa_values = string_list(ctx, clause_value(mc, 1)) or mfa_values
    principal_type, type_claim = "user", None
    if (tc := c.one("type_fixed")) is not None:
        principal_type = _choice(ctx, clause_value(tc), PRINCIPAL_TYPES, "principal type") or "user"
    if (tf := c.one("type_from")) is not None:
        if tc is not None:
            ctx.error("E0201", "duplicate `type` clause", tf, secondary=((tc, "first one"),))
        type_claim = ctx.string(clause_value(tf))
    if issuer is None or len(jwks) != 1 or (jwks_uri is None and jwks_file is None):
        return None
    return m.Provider(
        package=ctx.package,
        name=name,
        issuer=issuer,
        jwks_uri=jwks_uri,
        jwks_file=jwks_file,
        audiences=audiences,
        clock_skew=skew,
        principal_type=principal_type,
        type_claim=type_claim,
        id_claim=claims.get("id", "sub"),
        email_claim=claims.get("email", "email"),
        groups_claim=claims.get("groups", "groups"),
        mfa_claim=mfa_claim,
        mfa_values=mfa_values,
        span=ctx.span(decl),
    )


def _relative_file(ctx: Context, tok: Token, text: str, what: str) -> str | None:
    parts = text.replace("\\", "/").split("/")
    if not text or text.startswith("/") or ".." in parts or "\x00" in text:
        ctx.error(
            "E0206",
            f"{what} `{shown(text)}` is not a path inside the policy tree",
            tok,
            help="name a file relative to the tree root, e.g. `keys/idp.jwks.json`",
        )
        return None
    return text


def _claims(ctx: Context, clause: Tree[Token] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if clause is None:
        return out
    for pair in trees(clause_value(clause)):
        key_node = part(pair, "key")
        key = key_text(key_node) if isinstance(key_node, Tree) else ctx.string(key_node)
        value_node = part(pair, "value")
        if key is None:
            continue
        if key not in CLAIM_KEYS:
            _choice(ctx, key_node if isinstance(key_node, Token) else key_node.children[0],
                    CLAIM_KEYS, "claim mapping")  # fmt: skip
            continue
        value = ctx.string(value_node)
        if value is not None and not value:
            ctx.error("E0206", f"the `{key}` claim name is empty", value_node)
        elif value is not None:
            if key in out:
                ctx.error("E0201", f"duplicate key `{key}`", pair, label="second occurrence")
            out[key] = value
    return out


def lower_mesh(ctx: Context, decl: Tree[Token]) -> m.Mesh | None:
    name = decl_name(decl)
    c = Clauses(ctx, decl)
    clause = c.require("trust_domain_clause", "trust domain", name)
    domain = ctx.string(clause_value(clause))
    if domain is not None and not _trust_domain_ok(domain):
        ctx.error(
            "E0206",
            f"`{shown(domain)}` is not a SPIFFE trust domain",
            clause_value(clause),
            help='a trust domain is lower-case letters, digits, `.`, `-` and `_`, e.g. "mcp.local"',
        )
        return None
    if domain is None:
        return None
    return m.Mesh(package=ctx.package, name=name, trust_domain=domain, span=ctx.span(decl))


def _trust_domain_ok(domain: str) -> bool:
    return (
        bool(domain)
        and len(domain) <= 255
        and all(ch in "abcdefghijklmnopqrstuvwxyz0123456789.-_" for ch in domain)
    )


# ----------------------------------------------------------------- gateways


def gateway_identity(ctx: Context, c: Clauses) -> dict[str, Any]:
    """The `tls`, `accept` and `trust header` clauses of a gateway, as Gateway fields."""
    providers: list[m.Ref] = []
    if (ac := c.one("accept_clause")) is not None:
        for ref_tree in (t for t in trees(ac) if t.data == "ref"):
            ref = lower_ref(ctx, ref_tree)
            if ref is not None:
                providers.append(ref)
    return {
        "tls": _tls(ctx, c.one("tls_clause")),
        "providers": tuple(providers),
        "trusted_headers": _trusted(ctx, c.all("trust_header_clause")),
    }


def _tls(ctx: Context, clause: Tree[Token] | None) -> m.GatewayTls | None:
    if clause is None:
        return None
    c = Clauses(ctx, clause)
    certs = c.all("cert_sds") + c.all("cert_file")
    cas = c.all("ca_sds") + c.all("ca_file")
    for items, what in ((certs, "cert"), (cas, "ca")):
        for extra in items[1:]:
            ctx.error(
                "E0201",
                f"duplicate `{what}` clause",
                extra,
                label="second occurrence",
                secondary=((items[0], "first occurrence"),),
            )
    if not certs:
        ctx.error(
            "E0910",
            "`tls` has no server certificate",
            clause.children[0],
            label="missing `cert`",
            help='add `cert sds "SECRET"` or `cert file "cert.pem" key "key.pem"`',
        )
        return None
    fields: dict[str, Any] = {}
    cert = certs[0]
    if cert.data == "cert_sds":
        fields["cert_sds"] = _nonempty(ctx, clause_value(cert), "an SDS secret name")
    else:
        fields["cert_file"] = _runtime_path(ctx, clause_value(cert, 0))
        fields["key_file"] = _runtime_path(ctx, clause_value(cert, 1))
    clients = "none"
    if (cl := c.one("clients_clause")) is not None:
        clients = _choice(ctx, clause_value(cl), CLIENT_CERTS, "client certificate mode") or "none"
    if cas:
        ca = cas[0]
        key = "client_ca_sds" if ca.data == "ca_sds" else "client_ca_file"
        if key == "client_ca_file":
            fields[key] = _runtime_path(ctx, clause_value(ca))
        else:
            fields[key] = _nonempty(ctx, clause_value(ca), "a CA")
    elif clients != "none":
        ctx.error(
            "E0910",
            f"`clients {clients}` has no CA to check client certificates against",
            cl,
            label="no `ca` clause",
            help='add `ca sds "SECRET"` or `ca file "ca.pem"`',
        )
        return None
    if any(v is None for v in fields.values()):
        return None
    return m.GatewayTls(client_certs=cast(Any, clients), span=ctx.span(clause), **fields)


def _runtime_path(ctx: Context, tok: Token) -> str | None:
    """A file path as the gateway's container sees it (absolute, or relative to its cwd)."""
    text = ctx.string(tok)
    if text is not None and (not text.strip() or any(ord(c) < 0x20 for c in text)):
        ctx.error(
            "E0206",
            "a tls file path must be non-empty and free of control characters",
            tok,
            help='write the path the gateway reads it from, e.g. "/etc/envoy/tls/cert.pem"',
        )
        return None
    return text


def _nonempty(ctx: Context, tok: Token, what: str) -> str | None:
    text = ctx.string(tok)
    if text is not None and not text.strip():
        ctx.error("E0206", f"{what} must not be empty", tok)
        return None
    return text


def _trusted(ctx: Context, clauses: list[Tree[Token]]) -> tuple[m.TrustedHeader, ...]:
    out: list[m.TrustedHeader] = []
    headers: dict[str, Tree[Token]] = {}
    attributes: dict[tuple[str, ...], Tree[Token]] = {}
    for clause in clauses:
        header_tok = clause_value(clause, 0)
        header = ctx.string(header_tok)
        path_tree = child_tree(clause, "key_path")
        assert path_tree is not None
        path = tuple(key_text(k) for k in trees(path_tree))
        type_tok = next(iter(tokens(clause, "NAME")), None)
        kind = "string"
        if type_tok is not None:
            kind = _choice(ctx, type_tok, HEADER_TYPES, "header type") or "string"
        sources = _cidrs(ctx, child_tree(clause, "list"))
        if header is None or sources is None:
            continue
        header = header.lower()
        if managed_header(header):
            ctx.error(
                "E0908",
                f"header `{shown(header)}` cannot be trusted",
                header_tok,
                label="set, rewritten or stripped by the gateway itself"
                if header != "authorization"
                else "carries the caller's credentials",
                help="carry the fact in a header of its own, e.g. `x-geo`"
                if header != "authorization"
                else "accept a `provider` to verify tokens; claims become `principal.*`",
            )
            continue
        if not header or not set(header) <= _TOKEN_CHARS:
            ctx.error(
                "E0206",
                f"`{shown(header)}` is not an HTTP header name",
                header_tok,
                label="not a token",
            )
            continue
        if len(path) < 2 or path[0] != "context":
            ctx.error(
                "E0206",
                f"a trusted header sets a `context` attribute, not `{'.'.join(path)}`",
                path_tree,
                help=f"write `as context.{path[-1]}`",
            )
            continue
        duplicate = None
        if header in headers:
            duplicate = (f"header `{shown(header)}` is trusted twice", headers[header])
        elif path[1:] in attributes:
            duplicate = (f"`{'.'.join(path)}` is set by two trusted headers", attributes[path[1:]])
        if duplicate is not None:
            ctx.error(
                "E0909",
                duplicate[0],
                clause,
                label="second occurrence",
                secondary=((duplicate[1], "first here"),),
                help="trust each header once, for one attribute",
            )
            continue
        headers[header] = attributes[path[1:]] = clause
        out.append(
            m.TrustedHeader(
                header=header,
                attribute=path[1:],
                type=cast(Any, kind),
                sources=sources,
                span=ctx.span(clause),
            )
        )
    return tuple(out)


def _cidrs(ctx: Context, node: Tree[Token] | None) -> tuple[str, ...] | None:
    """The `from [...]` networks in canonical form; None when one is not a CIDR."""
    if node is None:
        return ()
    out: list[str] = []
    ok = True
    for item in node.children:
        if item is None or (
            isinstance(item, Token) and item.type in ("LBRACKET", "RBRACKET", "COMMA")
        ):
            continue
        if not isinstance(item, Token) or item.type != "STRING":
            ctx.error("E0301", "expected a string in this list", item)
            ok = False
            continue
        text = ctx.string(item)
        if text is None:
            ok = False
            continue
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            ok = False
            ctx.error(
                "E0911",
                f"`{shown(text)}` is not a CIDR network",
                item,
                label=str(exc)[:80],
                help='write a network like "10.0.0.0/8" (host bits zero)',
            )
            continue
        out.append(str(net))
    if ok and not out:
        ctx.error(
            "E0911",
            "`from []` names no network",
            node,
            help="list the networks of the hops in front, or drop `from` to strip the header",
        )
        return None
    return tuple(out) if ok else None
