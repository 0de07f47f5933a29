"""Access rules: dead rules, allows that never take effect, redundancy, overlaps, obligations.

For each policy, in declaration order:

1. **liveness** — can the rule fire at all?  `A0101` when never, `A0107` for a
   deny that fires only on evaluation errors.  A satisfiable answer gives a
   *sample*: a confirmed request on which the rule fires;
2. **effect** of each live allow — is some request it fires on allowed by the
   whole tree (`A0102` when none, with the denying rules as an unsat core)?
3. **redundancy** — is a rule covered by another of the same effect (`A0103`)?
4. **overlap** — which allows does each deny override (`A0104`, info)?
5. **obligations** and **risk terms** that never trigger (`A0105`, `A0106`).

Candidate pairs come from `RuleIndex` (patterns that can match one request),
and samples settle most questions by concrete evaluation before the solver
is asked: a sample that is allowed proves an allow effective, a sample that
does not fire rule S proves S does not cover the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcpdsl.analysis.index import Entry, RuleIndex, rule_covers
from mcpdsl.analysis.witness import minimise, to_json

if TYPE_CHECKING:
    from mcpdsl.analysis import Analysis
    from mcpdsl.analysis.encode import Encoder, Env, F

MAX_WITNESS_NOTES = 3


@dataclass
class Facts:
    entry: Entry
    status: str = "unknown"  # live | dead | error-only | unknown
    samples: list[dict[str, Any]] = field(default_factory=list)
    effective: bool | None = None


def rules(a: Analysis) -> None:
    project = a.project
    enc = a.encoder
    entries = [
        Entry(pi, ri, r) for pi, p in enumerate(project.policies) for ri, r in enumerate(p.rules)
    ]
    index = RuleIndex(entries)
    envs = [enc.risk_env(("risk", pi), p) for pi, p in enumerate(project.policies)]
    facts = {e.order: Facts(e) for e in entries}
    run = _Run(a, enc, index, envs, facts)
    for e in entries:
        run.liveness(e)
    for e in entries:
        if e.rule.effect == "allow" and facts[e.order].status == "live":
            run.effect(e)
    for e in entries:
        run.redundancy(e)
    for e in entries:
        if e.rule.effect == "deny" and facts[e.order].status == "live":
            run.overlap(e)
    for pi, policy in enumerate(project.policies):
        for qi in range(len(policy.requires)):
            run.requirement(pi, qi)
        for ti in range(len(policy.risk)):
            run.risk_term(pi, ti)


class _Run:
    def __init__(
        self,
        a: Analysis,
        enc: Encoder,
        index: RuleIndex,
        envs: list[Env],
        facts: dict[tuple[int, int], Facts],
    ) -> None:
        self.a = a
        self.enc = enc
        self.conf = a.confirmer
        self.index = index
        self.envs = envs
        self.facts = facts
        self.policies = a.project.policies

    # ------------------------------------------------------------ helpers

    def fires(self, e: Entry) -> F:
        return self.enc.rule_fires(e.rule, self.envs[e.policy])

    def nice(self, *entries: Entry) -> tuple[F, ...]:
        return tuple(self.enc.well_typed(e.rule.condition, self.envs[e.policy]) for e in entries)

    def subject(self, e: Entry) -> tuple[str, Any]:
        return (f"{e.rule.effect} rule `{e.rule.id}`", e.rule.span)

    def name(self, e: Entry) -> str:
        return f"`{e.rule.id}`"

    def confirm_fires(self, e: Entry, w: dict[str, Any] | None) -> bool:
        return w is not None and self.conf.fires(e.policy, e.rule, w)

    # ------------------------------------------------------------ liveness

    def liveness(self, e: Entry) -> None:
        f = self.facts[e.order]
        rule = e.rule
        env = self.envs[e.policy]
        first = self.enc.match(rule) & self.enc.fires(rule.condition, env)
        out = self.a.solve(first, subject=self.subject(e), prefer=self.nice(e))
        if out.status == "sat":
            f.status = "live"
            self._sample(e, out.witness)
            return
        if out.status == "unknown":
            f.status = "unknown"
            return
        if rule.effect == "deny":
            errs = self.enc.match(rule) & self.enc.fires_or_errors(rule.condition, env)
            out = self.a.solve(errs, subject=self.subject(e))
            if out.status == "sat":
                f.status = "error-only"
                w = out.witness
                if not self.confirm_fires(e, w):
                    self.a.unconfirmed_witness(f"error-only deny {rule.id}", w)
                    return
                w = minimise(w or {}, lambda q: self.conf.fires(e.policy, rule, q))
                self.a.report(
                    "A0107",
                    f"deny rule `{rule.id}` fires only when its condition is an evaluation error",
                    rule.span,
                    label="its condition is never true",
                    notes=(f"witness: {to_json(w)}",),
                    help="a deny fails closed on wrong types; compare values of one type, or "
                    "write the intended test",
                )
                return
            if out.status == "unknown":
                f.status = "unknown"
                return
        f.status = "dead"
        what = "its condition is never true" if rule.condition is not None else "it never matches"
        self.a.report(
            "A0101",
            f"{rule.effect} rule `{rule.id}` never fires",
            rule.span,
            label=f"{what} for a request it matches",
            secondary=((rule.condition.span, "this condition"),) if rule.condition else (),
            help="remove the rule or fix the condition",
        )

    def exact(self, *entries: Entry) -> bool:
        """No abstraction in the firing formulas of these rules (a bad witness is then a bug)."""
        return not self.enc.approximate_in(*(self.fires(e) for e in entries))

    def _sample(self, e: Entry, w: dict[str, Any] | None) -> None:
        if not self.confirm_fires(e, w):
            if self.exact(e):
                self.a.unconfirmed_witness(f"rule {e.rule.id} fires", w)
            return
        assert w is not None
        self.facts[e.order].samples.append(
            minimise(w, lambda q: self.conf.fires(e.policy, e.rule, q))
        )

    # ------------------------------------------------------------- effect

    def effect(self, e: Entry) -> None:
        f = self.facts[e.order]
        for s in f.samples:
            if self.conf.allowed(s):
                f.effective = True
                return
        overlapping = self.index.overlapping(e.rule)
        tracked: list[tuple[Any, F]] = []
        for o in overlapping:
            same = o.policy == e.policy and o.rule.effect == "deny"
            if same and self.facts[o.order].status != "dead":
                tracked.append((("rule", o.order), ~self.fires(o)))
        for pi in range(len(self.policies)):
            if pi != e.policy:
                tracked.append((("policy", pi), self._allowed(pi, overlapping)))
        out = self.a.solve(self.fires(e), subject=self.subject(e), tracked=tuple(tracked))
        if out.status == "sat":
            w = out.witness
            if self.confirm_fires(e, w) and w is not None and self.conf.allowed(w):
                f.effective = True
                f.samples.append(w)
            else:
                f.effective = True  # not proven ineffective; never a false positive
                if self.exact(e, *(self.facts[t[1]].entry for t, _ in tracked if t[0] == "rule")):
                    self.a.unconfirmed_witness(f"allow {e.rule.id} takes effect", w)
            return
        if out.status != "unsat":
            return
        f.effective = False
        secondary: list[tuple[Any, str]] = []
        for tag in sorted(out.core, key=repr):
            if tag[0] == "rule":
                other = self.facts[tag[1]].entry.rule
                secondary.append((other.span, f"`{other.id}` denies every such request"))
            else:
                policy = self.policies[tag[1]]
                secondary.append(
                    (policy.span, f"policy `{policy.name}` refuses every such request")
                )
        notes = []
        example = next((s for s in f.samples if not self.conf.allowed(s)), None)
        if example is not None:
            notes.append(f"witness: {to_json(example)}")
        self.a.report(
            "A0102",
            f"allow rule `{e.rule.id}` never takes effect",
            e.rule.span,
            label="every request it allows is denied",
            secondary=secondary,
            notes=notes,
            help="deny overrides allow: narrow the deny or remove this rule",
        )

    def _allowed(self, pi: int, overlapping: list[Entry]) -> F:
        """Policy `pi` allows the request (only its rules that can match are encoded)."""
        from mcpdsl.analysis.encode import FALSE, TRUE, all_of, any_of

        mine = [o for o in overlapping if o.policy == pi and self.facts[o.order].status != "dead"]
        denied = any_of(self.fires(o) for o in mine if o.rule.effect == "deny")
        allows = any_of(self.fires(o) for o in mine if o.rule.effect == "allow")
        default = TRUE if self.policies[pi].default == "allow" else FALSE
        return all_of([~denied, allows | default])

    # --------------------------------------------------------- redundancy

    def redundancy(self, e: Entry) -> None:
        f = self.facts[e.order]
        if f.status not in ("live", "error-only") or f.effective is False:
            return
        for o in self.index.overlapping(e.rule):
            if (
                o.order == e.order
                or o.policy != e.policy
                or o.rule.effect != e.rule.effect
                or self.facts[o.order].status not in ("live", "error-only")
                or not rule_covers(o.rule, e.rule)
            ):
                continue
            if any(not self.conf.fires(o.policy, o.rule, s) for s in f.samples):
                continue
            out = self.a.solve(self.fires(e) & ~self.fires(o), subject=self.subject(e))
            if out.status != "unsat":
                continue
            if o.position > e.position:
                back = self.a.solve(self.fires(o) & ~self.fires(e), subject=self.subject(o))
                if back.status == "unsat":
                    continue  # equivalent: the later one is reported
            notes = []
            example = next((s for s in f.samples if self.conf.fires(o.policy, o.rule, s)), None)
            if example is not None:
                notes.append(f"witness: {to_json(example)}")
            self.a.report(
                "A0103",
                f"{e.rule.effect} rule `{e.rule.id}` is redundant",
                e.rule.span,
                label=f"every request it matches is matched by `{o.rule.id}`",
                secondary=((o.rule.span, f"`{o.rule.id}` covers it"),),
                notes=notes,
                help="remove it, or make it more specific than the rule that covers it",
            )
            return

    # ------------------------------------------------------------ overlap

    def overlap(self, d: Entry) -> None:
        pairs: list[tuple[Entry, dict[str, Any]]] = []
        for o in self.index.overlapping(d.rule):
            if o.policy != d.policy or o.rule.effect != "allow":
                continue
            fo = self.facts[o.order]
            if fo.status != "live" or fo.effective is False:
                continue
            w = self._both(d, o)
            if w is not None:
                pairs.append((o, w))
        if not pairs:
            return
        names = ", ".join(f"`{o.rule.id}`" for o, _ in pairs[:MAX_WITNESS_NOTES])
        more = len(pairs) - MAX_WITNESS_NOTES
        if more > 0:
            names += f" and {more} more"
        notes = [f"witness ({o.rule.id}): {to_json(w)}" for o, w in pairs[:MAX_WITNESS_NOTES]]
        self.a.report(
            "A0104",
            f"deny rule `{d.rule.id}` overrides {_count(len(pairs), 'allow rule')} on some requests: "
            + names,
            d.rule.span,
            label="this deny wins where both fire",
            secondary=tuple((o.rule.span, f"`{o.rule.id}` also fires") for o, _ in pairs),
            notes=notes,
        )

    def _both(self, d: Entry, o: Entry) -> dict[str, Any] | None:
        def keep(q: dict[str, Any]) -> bool:
            return self.conf.fires(d.policy, d.rule, q) and self.conf.fires(o.policy, o.rule, q)

        mine, theirs = self.facts[o.order].samples, self.facts[d.order].samples
        tries = mine + theirs
        tries += [_merge(x, y) for x in mine for y in theirs] + [
            _merge(y, x) for x in mine for y in theirs
        ]
        for s in tries:
            if keep(s):
                return minimise(s, keep)
        out = self.a.solve(
            self.fires(d) & self.fires(o), subject=self.subject(d), prefer=self.nice(d, o)
        )
        if out.status != "sat":
            return None
        if out.witness is None or not keep(out.witness):
            if self.exact(d, o):
                self.a.unconfirmed_witness(f"overlap {d.rule.id}/{o.rule.id}", out.witness)
            return None
        return minimise(out.witness, keep)

    # -------------------------------------------------------- obligations

    def requirement(self, pi: int, qi: int) -> None:
        """Does `require` clause `qi` ever add its obligation to an allowed request?

        An allowed request has a firing allow `a` and no firing deny (or falls to
        `default allow`), so the question splits by allow: one small query per
        allow, restricted to the denies that can match with it, stopping at the
        first that triggers; only a `require` that never triggers costs them all.
        """
        policy = self.policies[pi]
        q = policy.requires[qi]
        env = self.envs[pi]
        mine = [f for f in self.facts.values() if f.entry.policy == pi]
        for f in mine:
            for s in f.samples:
                if self.conf.obligation(pi, qi, s):
                    return
        trig = self.enc.fires_or_errors(q.condition, env)
        subject = (f"`require {q.obligation}`", q.span)
        cases: list[F] = []
        for f in mine:
            e = f.entry
            if e.rule.effect != "allow" or f.status != "live" or f.effective is False:
                continue
            cases.append(self.fires(e) & ~self._denied(pi, self.index.overlapping(e.rule)))
        if policy.default == "allow":
            everything = [f.entry for f in mine]
            cases.append(~self._denied(pi, everything))
        inconclusive = False
        for case in cases:
            out = self.a.solve(case & trig, subject=subject)
            if out.status == "sat":
                if not self.conf.obligation(
                    pi, qi, out.witness or {}
                ) and not self.enc.approximate_in(case & trig):
                    self.a.unconfirmed_witness(f"require {q.obligation} triggers", out.witness)
                return
            inconclusive = inconclusive or out.status == "unknown"
        if inconclusive:
            return
        alone = self.a.solve(trig, subject=subject) if q.condition is not None else None
        if alone is not None and alone.status == "unsat":
            why = "its condition is never true"
        elif q.condition is None:
            why = "the policy allows no request"
        else:
            why = "its condition holds only on requests the policy denies"
        self.a.report(
            "A0105",
            f"`require {q.obligation}` never adds its obligation",
            q.span,
            label=why,
            help="obligations apply to allowed requests only; fix the condition or remove it",
        )

    def _denied(self, pi: int, entries: list[Entry]) -> F:
        from mcpdsl.analysis.encode import any_of

        return any_of(
            self.fires(o)
            for o in entries
            if o.policy == pi and o.rule.effect == "deny" and self.facts[o.order].status != "dead"
        )

    # --------------------------------------------------------- risk terms

    def risk_term(self, pi: int, ti: int) -> None:
        from mcpdsl.analysis.encode import Env

        term = self.policies[pi].risk[ti]
        counted = self.enc.fires_or_errors(term.condition, Env(("term", pi)))
        out = self.a.solve(counted, subject=(f"risk term {ti + 1}", term.span))
        if out.status == "sat":
            if not self.conf.risk_counts(pi, ti, out.witness or {}) and not self.enc.approximate_in(
                counted
            ):
                self.a.unconfirmed_witness(f"risk term {ti + 1} counts", out.witness)
            return
        if out.status != "unsat":
            return
        self.a.report(
            "A0106",
            f"risk term `{term.weight} when ...` never counts",
            term.span,
            label="its condition is never true nor an error",
            help="fix the condition or remove the term",
        )


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over`'s attributes on top (nested objects merged): a candidate for
    a request on which two rules with independent conditions both fire."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


__all__ = ["rules"]
