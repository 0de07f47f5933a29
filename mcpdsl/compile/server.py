"""Rules only the decision server can decide: the `stats` counters (B0171).

`stats.principal.*` (mcpdsl.ir.stats) is counted by `mcpdsl serve` and by
nothing the build generates: the OPA bundle has no counters (and never reads
`input.stats`, which any caller could write), Envoy RBAC and Istio policies
see no such attribute, and what they delegate through ext_authz goes to OPA
unless the tree declares a `server` (then ext_authz is `mcpdsl serve`, which
counts, and the Envoy and Istio targets report such a rule as delegated to it).
So wherever a generated artifact decides, a rule that depends on the counters
never fires: a deny is `not-enforced` (fails open; an error under `--strict`),
an allow `narrowed` (fails closed).  A `require` that depends on them applies
to every request there, which narrows the policy's allow rules.  Each target
reports such a rule with `SERVER.finding` (compile/deciders.py) instead of its
usual record.
"""

from __future__ import annotations

from mcpdsl.compile.deciders import Decider
from mcpdsl.ir import model as m
from mcpdsl.ir.stats import ROOT, project_reads_stats, reads_stats, rule_stats

CODE = "B0171"
#: The counters, as every target reports a rule that depends on them.
SERVER = Decider(
    root=ROOT,
    code=CODE,
    help=(
        "let `mcpdsl serve` decide it: point ext_authz (Envoy) and the CUSTOM provider (Istio) "
        "at its gRPC address, OPA REST clients at its `/v1/data` API "
        "(`mcpdsl check --explain B0171`)"
    ),
    who="the decision server",
    reads="which only the decision server (`mcpdsl serve`) counts",
    unit="request",
    error=False,  # absent where an artifact decides: a condition on a counter is false
)


def artifact_view(project: m.Project) -> m.Project:
    """The project as the generated artifacts decide it, for the evaluator to compare with.

    Rules that depend on the counters are gone (they never fire there), a risk
    term that reads them always counts and a `require` that depends on them
    always applies (the Rego reads the counters as an evaluation error, which
    fails closed: docs/semantics.md); a `require` reading `risk` then sees the
    same risk as there.  A project that reads no counter is
    returned as it is.  The differential tests hold the OPA bundle to this.
    """
    if not project_reads_stats(project.policies):
        return project
    policies = []
    for policy in project.policies:
        rules = tuple(r for r in policy.rules if not rule_stats(r, policy))
        risk = tuple(
            t.model_copy(update={"condition": m.Literal_(value=True)})
            if reads_stats(t.condition)
            else t
            for t in policy.risk
        )
        requires = tuple(
            q.model_copy(update={"condition": None}) if reads_stats(q.condition) else q
            for q in policy.requires
        )
        policies.append(
            policy.model_copy(update={"rules": rules, "risk": risk, "requires": requires})
        )
    return project.model_copy(update={"policies": tuple(policies)})


__all__ = ["CODE", "SERVER", "artifact_view"]
