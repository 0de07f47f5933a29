"""Attribute roots only one component of `mcpdsl serve` can decide, as the targets report them.

Two roots are filled in by the decision server alone: `stats` (its counters;
compile/server.py, B0171) and `args` (a tool call's arguments, read by its MCP
gateway; compile/tool_args.py, B0180).  A generated artifact that decides a
rule reading one of them cannot see it, so every target asks the same two
questions -- does this rule depend on the root (its condition, its risk, and
for an allow its policy's `require`), and how does it fail there -- and
reports the answer the same way.  One `Decider` per root holds what differs
(the code, the wording, and whether reading the root there is absent or an
evaluation error); the reading and the finding are written once here, so the
two contracts cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcpdsl.compile import TargetOutput
from mcpdsl.diagnostics import Enforcement, Status
from mcpdsl.ir import model as m
from mcpdsl.ir.reads import requires_root_reads, rule_root_reads
from mcpdsl.source import Span


def _names(reads: list[str]) -> str:
    return ", ".join(f"`{r}`" for r in reads)


@dataclass(frozen=True)
class Decider:
    """An attribute root only `who` can decide, and how a target reports a rule needing it.

    `error` says what reading the root is where an artifact decides: an
    evaluation error (fails closed: a deny reading it fires, an allow does not)
    or absent (a condition on it is false: a deny never fires, which fails
    open).  `reads` ends the note naming what the rule itself reads, `unit`
    is what an obligation then applies to ("request", "call"), and
    `obligations` what the message says of an allow narrowed only by its
    policy's `require` (None: nothing beyond "fails closed").
    """

    root: str
    code: str
    help: str
    who: str
    reads: str
    unit: str
    error: bool
    obligations: str | None = None

    def rule_reads(self, rule: m.Rule, policy: m.Policy) -> tuple[list[str], list[str]]:
        """What deciding `rule` reads under the root: `(its condition's and risk's, its
        obligations')`.  Obligations only narrow allow rules (a deny's firing does not
        depend on them), so a deny has none."""
        own = rule_root_reads(rule, policy, self.root)
        required = requires_root_reads(policy, self.root) if rule.effect == "allow" else []
        return own, [r for r in required if r not in own]

    def needs(self, rule: m.Rule, policy: m.Policy) -> bool:
        """Whether only `who` decides `rule` as written."""
        own, required = self.rule_reads(rule, policy)
        return bool(own or required)

    def finding(
        self,
        out: TargetOutput,
        record: Enforcement,
        rule: m.Rule,
        policy: m.Policy,
        span: Span | None,
        site: str,
        why: tuple[str, ...] = (),
    ) -> None:
        """Report `rule` (which `needs` this root) as not enforced or narrowed at `site`.

        It replaces the target's usual record for the rule: the record's status
        becomes what the rule does there, and the notes say which reads cause it.
        """
        own, required = self.rule_reads(rule, policy)
        deny = rule.effect == "deny"
        opens = deny and not self.error  # a deny that never fires
        status = Status.NOT_ENFORCED if opens else Status.NARROWED
        verb = "is not enforced" if opens else "is narrowed"
        fails = "fails open" if opens else "fails closed"
        if own:
            fires = deny and self.error
            fails += (
                f": it fires on every {self.unit} it matches" if fires else ": it never fires there"
            )
        elif self.obligations is not None:
            fails += f": {self.obligations}"
        notes: list[str] = []
        if own:
            notes.append(f"it reads {_names(own)}, {self.reads}")
        if required:
            notes.append(
                f"its policy's `require` reads {_names(required)}, so there the obligation "
                f"applies to every {self.unit}"
            )
        out.unsupported(
            self.code,
            f"{rule.effect} rule `{record.rule}` {verb} {site}: it needs {self.who} ({fails})",
            span,
            notes=(*notes, *why, f"there: {record.where}"),
            help=self.help,
            enforcement=record.model_copy(update={"status": status}),
        )


__all__ = ["Decider"]
