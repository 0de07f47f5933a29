"""Whole-tree facts about the decision server (`server` blocks), without the parser.

Kept apart from `lower_server` (which reads lark trees) so that `check` on a
tree whose files all come from the front-end cache never imports lark.
"""

from __future__ import annotations

from mcpdsl.diagnostics import Diagnostic, Label, make
from mcpdsl.ir import model as m


def check_servers(project: m.Project) -> list[Diagnostic]:
    """E1001: a tree declares at most one decision server.

    Every Envoy and Istio ext_authz of the build points at *the* server; two would
    leave which one enforces the tree to the order of files.
    """
    if len(project.servers) < 2:
        return []
    first = project.servers[0]
    secondary = [Label(span=first.span, message="first server")] if first.span else []
    return [
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
