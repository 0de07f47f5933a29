"""The `args` attribute root: the arguments of a tool call, typed by the tool's `input`.

The MCP gateway of `mcpdsl serve` authorizes every `tools/call` on the
canonical request with the call's arguments as `args` (an object, `{}` for a
call without arguments) beside `principal`, `action` (`invoke`) and
`resource` (`{"type": "tool", "id": NAME}`).  The integration that
`expose`s the tool declares their types (`input { customer_id: string }`).

Reading rules (docs/semantics.md, "Tool arguments"), the same in every
evaluator (the engine, the Rego, the z3 encoding):

* `args.f` is the argument `f`, MISSING when the call has no such argument
  (an optional field left out), as every absent attribute;
* on a request about a tool whose `args` is absent or not an object, every
  `args.*` read is ERROR: nobody read that call's arguments (an Envoy or
  Istio door, which never sees them, or a caller that left them out), so a
  deny reading them fires, an allow reading them does not, a risk term
  counts and a `require` applies -- it fails closed;
* on a request about anything else (a service, ...) `args.*` is MISSING.

A tool of a federated MCP server (`upstream mcp ... prefix "P"`, named `P.x`)
is discovered at run time: no `input` declares its arguments at build time,
so a rule about it reads them **untyped** (any value, no unknown-argument
error), and a rule about any tool reads any argument untyped when the
project federates a server (docs/mcp.md, "Rules about federated tools").

One module owns those facts so that the typechecker (which arguments a rule
may read, and their types), the evaluator, the z3 encoding, the Rego and the
targets that cannot see arguments read the same ones.  Pure data and
functions, in `ir` because all of those layers may import `ir`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from mcpdsl.ir import model as m
from mcpdsl.ir.reads import (
    policies_read_root,
    reads_root,
    requires_root_reads,
    root_reads,
    rule_root_reads,
)

ROOT: Final = "args"
#: The resource type whose requests carry arguments.
TOOL: Final = "tool"
#: The types an `input` field may declare, as the JSON Schema of `tools/list` names them.
INPUT_TYPES: Final = ("string", "number", "boolean", "object", "array")


@dataclass(frozen=True)
class ToolInput:
    """One exposed tool's arguments: field -> declared type, and the optional ones."""

    tool: str
    fields: dict[str, str]
    optional: tuple[str, ...] = ()


def tool_inputs(integrations: Iterable[m.Integration]) -> dict[str, ToolInput]:
    """Every exposed tool by name (the first integration exposing a name wins; sorted)."""
    out: dict[str, ToolInput] = {}
    for integration in integrations:
        if integration.tool is not None and integration.tool not in out:
            out[integration.tool] = ToolInput(
                integration.tool, dict(integration.input), tuple(integration.optional)
            )
    return dict(sorted(out.items()))


def federated_prefixes(integrations: Iterable[m.Integration]) -> frozenset[str]:
    """The prefixes of the federated MCP servers (`upstream mcp`): their tools are `P.x`."""
    return frozenset(i.prefix for i in integrations if i.upstream == "mcp" and i.prefix is not None)


def federated_under(tool: str, prefixes: Iterable[str]) -> str | None:
    """The prefix `P` when `tool` is `P.x` of a federated server, else None (longest first).

    The front end keeps prefixes from nesting (E1111), so at most one matches in
    a valid project; the longest wins otherwise.
    """
    found = [p for p in prefixes if len(tool) > len(p) + 1 and tool.startswith(p + ".")]
    return max(found, key=len) if found else None


def tool_integration(integrations: Iterable[m.Integration], tool: str) -> m.Integration | None:
    """The integration behind `tool`: the one exposing it, else the federated server named by
    its prefix (the first declared in either case); None for a tool nobody provides."""
    federated: list[m.Integration] = []
    for integration in integrations:
        if integration.tool == tool:
            return integration
        if integration.upstream == "mcp" and integration.prefix is not None:
            federated.append(integration)
    prefix = federated_under(tool, [i.prefix for i in federated if i.prefix is not None])
    return next((i for i in federated if i.prefix == prefix), None) if prefix else None


@dataclass(frozen=True)
class Scope:
    """Which arguments an expression may read, given the resource it is about.

    `tools` are the tools the expression can be about (all exposed tools for
    `any`, `tool any`, a risk term or a `require`); `every` says whether an
    argument must be declared by each of them (an explicit list of tools) or
    by at least one (a pattern covering every tool, where the others simply
    lack it: MISSING).  `problem` is set when no argument can be read at all.
    """

    tools: tuple[ToolInput, ...]
    every: bool
    what: str  # "tool `docs.search`", "every tool" (for messages)
    problem: tuple[str, str, str | None] | None = None  # (code, message, help)
    unknown: bool = False  # names a tool no integration exposes (reported by resolve)
    federated: bool = False  # also about tools discovered at run time (untyped arguments)

    def fields(self) -> tuple[str, ...]:
        """The argument names some tool of the scope declares (sorted)."""
        return tuple(sorted({f for t in self.tools for f in t.fields}))

    def types(self, name: str) -> dict[str, str]:
        """tool -> declared type of argument `name`, for the tools declaring it."""
        return {t.tool: t.fields[name] for t in self.tools if name in t.fields}

    def lacking(self, name: str) -> list[str]:
        """The tools of the scope that do not declare `name`."""
        return [t.tool for t in self.tools if name not in t.fields]


def scope_of(
    pattern: m.EntityPattern | None,
    tools: dict[str, ToolInput],
    federated: frozenset[str] = frozenset(),
) -> Scope:
    """The argument scope of a rule about `pattern` (None: a risk term or a `require`).

    `federated` are the prefixes of the project's federated MCP servers
    (`federated_prefixes`): a named tool `P.x` under one of them is known, with
    arguments unknown until run time.
    """
    every_tool = tuple(tools.values())
    if pattern is None or pattern.type is None or (pattern.type == TOOL and pattern.ids is None):
        return Scope(every_tool, every=False, what="any tool", federated=bool(federated))
    if pattern.type != TOOL:
        return Scope(
            (),
            every=True,
            what=pattern.describe(),
            problem=(
                "E0331",
                f"`{ROOT}` is read in a rule about `{pattern.describe()}`: only tool calls "
                "have arguments",
                'write the rule about the tool (`-> tool "NAME"`), or read `request` or '
                "`context` instead",
            ),
        )
    assert pattern.ids is not None
    run_time = [i for i in pattern.ids if i not in tools and federated_under(i, federated)]
    if any(i not in tools and i not in run_time for i in pattern.ids):
        return Scope((), every=True, what=pattern.describe(), unknown=True)  # E0402 (resolve)
    what = (
        f"tool `{pattern.ids[0]}`"
        if len(pattern.ids) == 1
        else "tools " + ", ".join(f"`{i}`" for i in pattern.ids)
    )
    static = tuple(tools[i] for i in dict.fromkeys(pattern.ids) if i in tools)
    return Scope(static, every=True, what=what, federated=bool(run_time))


# ------------------------------------------------------------------ reads


def args_reads(e: m.Node | None) -> list[str]:
    """The `args.*` attributes an expression reads (dotted, each once, in source order)."""
    return root_reads(e, ROOT)


def reads_args(e: m.Node | None) -> bool:
    return reads_root(e, ROOT)


def rule_args(rule: m.Rule, policy: m.Policy) -> list[str]:
    """The `args.*` attributes deciding `rule` reads: its condition's, and its risk's."""
    return rule_root_reads(rule, policy, ROOT)


def requires_args(policy: m.Policy) -> list[str]:
    """The `args.*` attributes deciding the policy's obligations read (directly or by risk)."""
    return requires_root_reads(policy, ROOT)


def project_reads_args(policies: Iterable[m.Policy]) -> bool:
    """Whether any condition, risk term or `require` of the policies reads `args`."""
    return policies_read_root(policies, ROOT)


# ---------------------------------------------------------- the request


def about_tool(request: Any) -> bool:
    """Whether a (JSON) request names a tool as its resource (`resource.type == "tool"`).

    Exact types only: a `str` subclass is compared by its string value, and
    nothing here calls a foreign object's `__eq__`.
    """
    resource = request.get("resource") if isinstance(request, dict) else None
    if not isinstance(resource, dict):
        return False
    kind = dict.get(resource, "type")
    return isinstance(kind, str) and str.__eq__(kind, TOOL) is True


def unread(request: Any) -> bool:
    """Whether `args.*` is ERROR on this request: about a tool, without an `args` object."""
    if not isinstance(request, dict):
        return False
    return not isinstance(dict.get(request, ROOT), dict) and about_tool(request)


__all__ = [
    "INPUT_TYPES",
    "ROOT",
    "TOOL",
    "Scope",
    "ToolInput",
    "about_tool",
    "args_reads",
    "federated_prefixes",
    "federated_under",
    "project_reads_args",
    "reads_args",
    "requires_args",
    "rule_args",
    "scope_of",
    "tool_inputs",
    "tool_integration",
    "unread",
]
