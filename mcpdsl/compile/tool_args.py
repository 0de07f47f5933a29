"""Rules only the MCP gateway can decide as written: they read tool arguments (B0180).

`args.*` (mcpdsl.ir.args) are the arguments of a tool call, which only the
MCP gateway of `mcpdsl serve` (`/mcp`, `tools/call`) reads and puts in the
request.  An Envoy gateway routing to a tool's integration, and whatever it
delegates to through ext_authz (OPA, or `mcpdsl serve` itself: a CheckRequest
carries headers, not the body), never has them.  There every `args.*` read is
an evaluation error (a call about a tool without an `args` object), which
fails closed wherever it is read: a deny reading them fires on every call it
matches, an allow reading them never fires, a risk term reading them always
counts and a `require` reading them always applies.  So such a rule is
*narrowed* at that gateway -- never widened -- and each target that routes
tool calls reports it with `GATEWAY.finding` (compile/deciders.py) instead of its usual
record.
"""

from __future__ import annotations

from mcpdsl.compile.deciders import Decider
from mcpdsl.ir.args import ROOT

CODE = "B0180"
#: The tool call's arguments, as every target routing tool calls reports a rule reading them.
GATEWAY = Decider(
    root=ROOT,
    code=CODE,
    help=(
        "let agents call the tool through the MCP gateway of `mcpdsl serve` (`/mcp`), which "
        "reads the arguments, or decide on what the gateway sees "
        "(`mcpdsl check --explain B0180`)"
    ),
    who="the MCP gateway",
    reads=(
        "the tool call's arguments, which only the MCP gateway (`mcpdsl serve`, `/mcp`) "
        "reads; there they are an evaluation error"
    ),
    unit="call",
    error=True,  # an evaluation error where an artifact decides: fails closed
    obligations="its policy's obligations always apply",
)

__all__ = ["CODE", "GATEWAY"]
