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
tool calls reports it here instead of its usual record.
"""

from __future__ import annotations

from mcpdsl.compile import TargetOutput
from mcpdsl.diagnostics import Enforcement, Status
from mcpdsl.ir import model as m
from mcpdsl.ir.args import requires_args, rule_args
from mcpdsl.source import Span

CODE = "B0180"
HELP = (
    "let agents call the tool through the MCP gateway of `mcpdsl serve` (`/mcp`), which "
    "reads the arguments, or decide on what the gateway sees "
    "(`mcpdsl check --explain B0180`)"
)


def gateway_reads(rule: m.Rule, policy: m.Policy) -> tuple[list[str], list[str]]:
    """The arguments deciding `rule` reads: `(its condition's and risk's, its obligations')`."""
    own = rule_args(rule, policy)
    required = requires_args(policy) if rule.effect == "allow" else []
    return own, [r for r in required if r not in own]


def needs_gateway(rule: m.Rule, policy: m.Policy) -> bool:
    own, required = gateway_reads(rule, policy)
    return bool(own or required)


def _names(reads: list[str]) -> str:
    return ", ".join(f"`{r}`" for r in reads)


def gateway_finding(
    out: TargetOutput,
    record: Enforcement,
    rule: m.Rule,
    policy: m.Policy,
    span: Span | None,
    site: str,
    why: tuple[str, ...] = (),
) -> None:
    """Report `rule` (which `needs_gateway`) as narrowed at `site`, a tool route (B0180)."""
    own, required = gateway_reads(rule, policy)
    if rule.effect == "deny":
        effect = "it fires on every call it matches" if own else "its obligations always apply"
    else:
        effect = "it never fires there" if own else "its policy's obligations always apply"
    notes: list[str] = []
    if own:
        notes.append(
            f"it reads {_names(own)}, the tool call's arguments, which only the MCP gateway "
            "(`mcpdsl serve`, `/mcp`) reads; there they are an evaluation error"
        )
    if required:
        notes.append(
            f"its policy's `require` reads {_names(required)}, so there the obligation "
            "applies to every call"
        )
    out.unsupported(
        CODE,
        f"{rule.effect} rule `{record.rule}` is narrowed {site}: it needs the MCP gateway "
        f"(fails closed: {effect})",
        span,
        notes=(*notes, *why, f"there: {record.where}"),
        help=HELP,
        enforcement=record.model_copy(update={"status": Status.NARROWED}),
    )


__all__ = ["CODE", "gateway_finding", "gateway_reads", "needs_gateway"]
