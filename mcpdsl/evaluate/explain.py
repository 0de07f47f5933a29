"""`Decision.explain()`: the slow path that says which rules matched and why.

It re-evaluates the request with the tree-walking interpreter (never the
closures), so an explanation is also a second opinion on the decision; when
the two ever disagree the text says so instead of hiding it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mcpdsl.evaluate.interp import unparse, why
from mcpdsl.evaluate.values import MISSING, now_fields, show
from mcpdsl.ir import globs
from mcpdsl.ir import model as m

if TYPE_CHECKING:
    from mcpdsl.evaluate.policy import Decision, PreparedPolicies, PreparedPolicy

MAX_NEAR_MISSES = 20


def _at(node: m.Node) -> str:
    return f" [{node.span}]" if node.span is not None else ""


def _entity_matches(pattern: m.EntityPattern, entity: Any) -> tuple[bool, str]:
    if pattern.type is None:
        return True, ""
    if not isinstance(entity, dict):
        return False, f"the request has no object there, the rule wants {pattern.describe()}"
    etype, eid = entity.get("type"), entity.get("id")
    if etype != pattern.type or not isinstance(etype, str):
        return (
            False,
            f"type is {show(etype if 'type' in entity else MISSING)}, the rule wants {pattern.describe()}",
        )
    if pattern.ids is not None and (not isinstance(eid, str) or eid not in pattern.ids):
        return (
            False,
            f"id is {show(eid if 'id' in entity else MISSING)}, the rule wants {pattern.describe()}",
        )
    return True, ""


def _outcome(value: Any) -> str:
    if value is True:
        return "true"
    if value is False or value is MISSING:
        return "false" if value is False else "missing"
    return "error"


def _indent(lines: list[str], prefix: str) -> list[str]:
    return [prefix + line for line in lines]


def explain_decision(
    policies: PreparedPolicies, request: dict[str, Any], decision: Decision
) -> str:

    from mcpdsl.evaluate.values import Refused, plain_request

    try:
        inp = plain_request(request)
    except Refused as exc:
        verdict = "allow" if decision.allowed else "deny"
        return f"decision: {verdict}\nno explanation: the request is not plain JSON data: {exc}"
    req = inp.get("request") if isinstance(inp, dict) else None
    path = req.get("path") if isinstance(req, dict) else None
    if isinstance(path, str) and ("?" in path or "#" in path):
        from mcpdsl.evaluate.target import with_split_path

        inp = with_split_path(inp, path)  # the request the decision read (docs/semantics.md)
    if policies.reads_now and "now" not in inp:
        from datetime import UTC, datetime

        inp = {**inp, "now": now_fields(datetime.now(UTC))}
    out: list[str] = []
    verdict = "allow" if decision.allowed else "deny"
    head = f"decision: {verdict}"
    if decision.default_applied:
        head += " (no rule fired; default applied)"
    out.append(head)
    out.append(f"risk: {decision.risk}")
    if decision.obligations and not decision.allowed:
        out.append(f"obligations of the allowing policies: {', '.join(decision.obligations)}")
    elif decision.obligations:
        proof = "all proven" if decision.enforced else "not all proven, so enforced as deny"
        out.append(
            f"obligations: {', '.join(decision.obligations)} ({proof} by request.auth.X == true)"
        )
    if decision.rules:
        out.append("fired: " + ", ".join(decision.rules))
    if not policies.policies:
        out.append("no policies: every request is denied")
    for pol in policies.policies:
        out.extend(_explain_policy(pol, inp))
    return "\n".join(out)


def _explain_policy(pol: PreparedPolicy, inp: dict[str, Any]) -> list[str]:
    ir = pol.ir
    lines = [f"policy {pol.name} (default {ir.default}){_at(ir)}:"]
    # risk
    risk = Decimal(0)
    term_lines: list[str] = []
    for term in ir.risk:
        value, reasons = why(term.condition, inp, Decimal(0))
        counted = value is not False and value is not MISSING
        if counted:
            risk += term.weight
        state = (
            "counted"
            if value is True
            else ("counted (error, fail closed)" if counted else "not counted")
        )
        term_lines.append(
            f"  risk +{term.weight} when {unparse(term.condition)}: {state}{_at(term)}"
        )
        term_lines.extend(_indent(reasons, "      "))
    risk = min(max(risk, Decimal(0)), Decimal(1))
    if ir.risk:
        lines.append(f"  risk = {risk} (sum of counted terms, clamped to 0..1)")
        lines.extend(term_lines)
    principal, resource = inp.get("principal"), inp.get("resource")
    action = inp.get("action", MISSING)
    req = inp.get("request")
    path = req.get("path", MISSING) if isinstance(req, dict) else MISSING
    denies: list[str] = []
    allows: list[str] = []
    unmatched = 0
    near: list[str] = []
    matched_lines: list[str] = []
    for rule in ir.rules:
        ok_p, why_p = _entity_matches(rule.principal, principal)
        ok_r, why_r = _entity_matches(rule.resource, resource)
        if not (ok_p and ok_r):
            if not (ok_p or ok_r):
                unmatched += 1
            else:
                near.append(
                    f"  {rule.id}: not matched: {'principal ' + why_p if not ok_p else 'resource ' + why_r}{_at(rule)}"
                )
            continue
        if rule.actions and action not in rule.actions:
            near.append(
                f"  {rule.id}: not matched: action is {show(action)}, the rule wants one of {', '.join(rule.actions)}{_at(rule)}"
            )
            continue
        if rule.path is not None and (
            not isinstance(path, str) or not globs.matches(rule.path, path)
        ):
            near.append(
                f'  {rule.id}: not matched: request.path is {show(path)}, the rule wants "{rule.path}"{_at(rule)}'
            )
            continue
        if rule.condition is None:
            fired = True
            matched_lines.append(
                f"  {rule.id} ({rule.effect}): matched and fired (no condition){_at(rule)}"
            )
        else:
            value, reasons = why(rule.condition, inp, risk)
            outcome = _outcome(value)
            fired = outcome in ("true", "error") if rule.effect == "deny" else outcome == "true"
            if outcome == "error":
                state = "condition is an evaluation error: " + (
                    "the deny fires (fail closed)"
                    if rule.effect == "deny"
                    else "an error never allows"
                )
            elif fired:
                state = "condition is true: fired"
            else:
                state = f"condition is {outcome}: did not fire"
            matched_lines.append(f"  {rule.id} ({rule.effect}): matched; {state}{_at(rule)}")
            matched_lines.append(f"      when {unparse(rule.condition)}")
            matched_lines.extend(_indent(reasons, "      "))
        if fired:
            (denies if rule.effect == "deny" else allows).append(rule.id)
    lines.extend(matched_lines or ["  no rule matched this principal, resource, action and path"])
    lines.extend(near[:MAX_NEAR_MISSES])
    rest = unmatched + max(0, len(near) - MAX_NEAR_MISSES)
    if rest:
        lines.append(f"  {rest} other rule(s) are for other principals, resources or actions")
    if denies:
        lines.append(f"  => deny by {', '.join(denies)} (deny overrides allow)")
        return lines
    if allows:
        lines.append(f"  => allow by {', '.join(allows)}")
    else:
        lines.append(f"  => no rule fired: default {ir.default}")
        if ir.default != "allow":
            return lines
    for req_ in ir.requires:
        if req_.condition is None:
            lines.append(f"  requires {req_.obligation} (unconditionally){_at(req_)}")
            continue
        value, reasons = why(req_.condition, inp, risk)
        state = _outcome(value)
        needed = state in ("true", "error")
        lines.append(
            f"  requires {req_.obligation} when {unparse(req_.condition)}: "
            f"{'required' if needed else 'not required'} (condition {state}){_at(req_)}"
        )
        lines.extend(_indent(reasons, "      "))
        if needed:
            proven = _auth(inp, req_.obligation)
            lines.append(
                f"      request.auth.{req_.obligation} is {show(proven)}: "
                + ("proven" if proven is True else "not proven")
            )
    return lines


def _auth(inp: dict[str, Any], name: str) -> Any:
    req = inp.get("request")
    auth = req.get("auth") if isinstance(req, dict) else None
    if not isinstance(auth, dict):
        return MISSING
    return auth.get(name, MISSING)


__all__ = ["explain_decision"]
