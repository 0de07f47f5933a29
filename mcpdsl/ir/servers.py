"""Whole-tree facts about the decision server (`server` blocks), without the parser.

Kept apart from `lower_server` (which reads lark trees) so that `check` on a
tree whose files all come from the front-end cache never imports lark.
"""

from __future__ import annotations

from mcpdsl.diagnostics import Diagnostic, Label, make
from mcpdsl.ir import model as m


def check_servers(project: m.Project) -> list[Diagnostic]:
    """E1001 (one decision server per tree) and W0123 (providers of its MCP endpoint).

    Every Envoy and Istio ext_authz of the build points at *the* server; two would
    leave which one enforces the tree to the order of files.
    """
    found = [d for server in project.servers for d in _mcp_audiences(project, server)]
    if len(project.servers) < 2:
        return found
    first = project.servers[0]
    secondary = [Label(span=first.span, message="first server")] if first.span else []
    return found + [
        make(
            "E1001",
            f"a tree declares one decision server; `{other.qualified}` is a second one "
            f"(`{first.qualified}` is the first)",
            other.span,
            label="second server",
            secondary=secondary,
            help="keep one `server` block; it scales out with `replicas`",
        )
        for other in project.servers[1:]
    ]


def _mcp_audiences(project: m.Project, server: m.Server) -> list[Diagnostic]:
    """W0123: an accepted provider whose `audiences` leave out the MCP resource.

    A client asks for a token for the resource (RFC 8707), so the token's audience
    is the resource; a provider that lists other audiences only refuses it, at the
    gateway and wherever else the declaration is compiled.
    """
    if server.mcp is None:
        return []
    providers = {(p.package, p.name): p for p in project.providers}
    out = []
    for ref in server.mcp.providers:
        provider = providers.get((ref.package or server.package, ref.name))
        if provider is None or not provider.audiences:
            continue
        if server.mcp.resource in provider.audiences:
            continue
        secondary = [Label(span=provider.span, message="its audiences")] if provider.span else []
        shown = ", ".join(f"`{a}`" for a in provider.audiences)
        out.append(
            make(
                "W0123",
                f"provider `{ref.name}` does not accept the MCP resource "
                f"`{server.mcp.resource}` as an audience",
                ref.span,
                label="tokens for this resource would be refused",
                secondary=secondary,
                help=f'add "{server.mcp.resource}" to the `audiences` of `{ref.name}`',
                notes=(f"its audiences are {shown}",),
            )
        )
    return out
