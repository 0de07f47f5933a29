"""Witnesses: requests from z3 models, confirmed and minimised with the real evaluator.

Every request an analysis reports is re-run through the evaluator
(`mcpdsl.evaluate.project.PreparedProject.authorize`, the code
`mcpdsl.Engine.authorize` runs; for routes `.route`) before it is shown: a witness the engine does not
confirm is never printed (the tests treat one as a bug).  Confirmation also
drives minimisation: attributes the model set but the finding does not need
are dropped one by one while the engine still confirms, so witnesses read
like hand-written test requests.

Rule-level questions ("does rule R fire on this request?") are answered by
engines over one-policy projects that keep only the rules of R's effect:
a policy of only allows lists every allow that fired, one of only denies
every deny that fired, and risk is unchanged because it does not depend on
rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from mcpdsl.analysis import WitnessCrash
from mcpdsl.evaluate.policy import Decision
from mcpdsl.evaluate.project import PreparedProject, prepare_project
from mcpdsl.ir import model as m

Predicate = Callable[[dict[str, Any]], bool]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def authorize(engine: PreparedProject, request: dict[str, Any], what: str) -> Decision:
    """`engine.authorize(request)`; a crash is raised as `WitnessCrash`, never a "no".

    The engine must answer every request (hostile input is a deny with a reason),
    so an exception here is a bug in the engine or the analysis.  Reading it as
    "not confirmed" would silently drop a finding (or, in a minimisation, keep
    attributes), which is why it surfaces with the request that caused it.
    """
    try:
        return engine.authorize(request)
    except Exception as exc:
        raise WitnessCrash(what, request, exc) from exc


class Confirmer:
    """Engines for one project, built lazily and cached."""

    def __init__(self, project: m.Project) -> None:
        self.project = project
        self._full: PreparedProject | None = None
        self._engines: dict[tuple[Any, ...], PreparedProject] = {}

    @property
    def full(self) -> PreparedProject:
        if self._full is None:
            self._full = prepare_project(self.project)
        return self._full

    def _policy_engine(
        self, pi: int, effect: str | None, requires: tuple[int, ...] | None = None
    ) -> PreparedProject:
        key = (pi, effect, requires)
        found = self._engines.get(key)
        if found is None:
            policy = self.project.policies[pi]
            rules = tuple(r for r in policy.rules if effect is None or r.effect == effect)
            reqs = (
                policy.requires if requires is None else tuple(policy.requires[i] for i in requires)
            )
            one = policy.model_copy(update={"rules": rules, "requires": reqs})
            # `fast`: a tuple of one Policy is what validation would return; building
            # Project's validator (every IR model) would cost more than the check.
            found = prepare_project(m.Project.fast(policies=(one,)))
            self._engines[key] = found
        return found

    def rule_key(self, pi: int, rule: m.Rule) -> str:
        return f"{self.project.policies[pi].name}/{rule.id}"

    def fires(self, pi: int, rule: m.Rule, request: dict[str, Any]) -> bool:
        """Does `rule` (of policy `pi`) fire on `request`, as the engine decides?"""
        key = self.rule_key(pi, rule)
        decision = authorize(
            self._policy_engine(pi, rule.effect), request, f"does rule `{key}` fire"
        )
        return key in decision.rules

    def allowed(self, request: dict[str, Any]) -> bool:
        return authorize(self.full, request, "is the request allowed").allowed

    def policy_allows(self, pi: int, request: dict[str, Any]) -> bool:
        name = self.project.policies[pi].name
        what = f"does policy `{name}` allow the request"
        return authorize(self._policy_engine(pi, None), request, what).allowed

    def obligation(self, pi: int, qi: int, request: dict[str, Any]) -> bool:
        """Does `require` clause `qi` of policy `pi` add its obligation to `request`?"""
        policy = self.project.policies[pi]
        requirement = policy.requires[qi]
        what = f"does policy `{policy.name}` require `{requirement.obligation}`"
        decision = authorize(self._policy_engine(pi, None, (qi,)), request, what)
        return decision.allowed and requirement.obligation in decision.obligations

    def risk_counts(self, pi: int, ti: int, request: dict[str, Any]) -> bool:
        """Does risk term `ti` of policy `pi` count on `request` (fires or errors)?"""
        from mcpdsl.evaluate.closures import prepare_expr
        from mcpdsl.evaluate.values import MISSING

        term = self.project.policies[pi].risk[ti]
        v = prepare_expr(term.condition).fn(request, Decimal(0))
        return v is not False and v is not MISSING


def _copy(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts, lists, scalars): `copy.deepcopy`, faster."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def minimise(
    request: dict[str, Any], keep: Predicate, *, pinned: tuple[str, ...] = ("now",)
) -> dict[str, Any]:
    """Drop attributes `keep` does not need, deepest first, in a fixed order."""
    current = _copy(request)
    if not keep(current):
        return current
    for path in sorted(_leaf_paths(current), key=lambda p: (-len(p), p)):
        if path[0] in pinned:
            continue
        trial = _copy(current)
        if not _delete(trial, path):
            continue
        if keep(trial):
            current = trial
    return _polish(current, keep)


def _polish(request: dict[str, Any], keep: Predicate) -> dict[str, Any]:
    """Readable values: strings without a query part, a real date on the witness's weekday."""
    from mcpdsl.ir.globs import strip_query

    for path in sorted(_leaf_paths(request)):
        value = _get(request, path)
        if isinstance(value, str) and strip_query(value) != value:
            trial = _copy(request)
            _set(trial, path, strip_query(value))
            if keep(trial):
                request = trial
        elif isinstance(value, list):
            for i in reversed(range(len(value))):
                current = _get(request, path)
                trial = _copy(request)
                _set(trial, path, current[:i] + current[i + 1 :])
                if keep(trial):
                    request = trial
    now = request.get("now")
    if isinstance(now, dict) and now.get("weekday") in WEEKDAYS:
        day = date(2026, 1, 5) + timedelta(days=WEEKDAYS.index(now["weekday"]))
        trial = _copy(request)
        trial["now"]["date"] = day.isoformat()
        if keep(trial):
            return trial
    return request


def _leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((*prefix, k))
            out.extend(_leaf_paths(v, (*prefix, k)))
    return out


def _get(node: Any, path: tuple[str, ...]) -> Any:
    for step in path:
        if not isinstance(node, dict):
            return None
        node = node.get(step)
    return node


def _set(node: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value


def _delete(node: dict[str, Any], path: tuple[str, ...]) -> bool:
    for step in path[:-1]:
        nxt = node.get(step)
        if not isinstance(nxt, dict):
            return False
        node = nxt
    if path[-1] not in node:
        return False
    del node[path[-1]]
    return True


def to_json(request: dict[str, Any]) -> str:
    """A witness as one line of JSON, keys sorted (exact numbers where JSON allows)."""
    return json.dumps(
        request, sort_keys=True, separators=(", ", ": "), default=_default, ensure_ascii=False
    )


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(type(value).__name__)
