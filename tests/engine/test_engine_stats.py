"""The evaluator reads `stats.principal.*` like any attribute, and refuses forged shapes.

Absent counters are MISSING (a comparison is false, an `unless` fires); a
request of a policy reading the counters whose `stats` is not what the
decision server sends is refused (a deny with a reason), never evaluated and
never a crash -- the z3 analyses assume exactly that domain
(tests/analysis/test_stats.py).  A policy that reads no counter ignores `stats`.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from engine_support import engine_for
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpdsl.engine import Engine
from mcpdsl.evaluate.interp import evaluate
from mcpdsl.evaluate.values import MISSING
from mcpdsl.ir import stats

POLICY = """package t

policy agents {
  default allow
  runaway: deny agent any -> tool any unless stats.principal.calls_1m <= 60
  noisy: deny agent any -> tool any when stats.principal.denials_1m >= 5
  risk {
    0.5 when stats.principal.resources_1h > 10
  }
  require mfa when risk >= 0.5
}
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return engine_for(tmp_path_factory.mktemp("stats"), POLICY, prelude=False)


def call(counters: Any = MISSING, **stats_keys: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "principal": {"type": "agent", "id": "bot"},
        "action": "invoke",
        "resource": {"type": "tool", "id": "search"},
    }
    if counters is not MISSING:
        request["stats"] = {"principal": counters, **stats_keys}
    return request


@pytest.mark.parametrize(
    ("counters", "allowed", "rules"),
    [
        ({"calls_1m": 1}, True, ()),
        ({"calls_1m": 60}, True, ()),
        ({"calls_1m": 61}, False, ("agents/runaway",)),
        ({"calls_1m": 3, "denials_1m": 5}, False, ("agents/noisy",)),
        ({"calls_1m": 3.0}, True, ()),  # a whole float is the integer it spells
        ({"calls_1m": Decimal("3")}, True, ()),
        ({"calls_1m": stats.MAX}, False, ("agents/runaway",)),
        ({"calls_1m": 3, "other_counter": "x"}, True, ()),  # unknown keys are ignored
        ({}, False, ("agents/runaway",)),  # nobody counted: `unless` refuses
        (MISSING, False, ("agents/runaway",)),
    ],
)
def test_counters_decide(engine: Engine, counters: Any, allowed: bool, rules: tuple[str]) -> None:
    d = engine.authorize(call(counters))
    assert (d.allowed, d.rules, d.refusal) == (allowed, rules, None)


def test_a_counter_in_a_risk_term_and_a_require(engine: Engine) -> None:
    d = engine.authorize(call({"calls_1m": 1, "resources_1h": 11}))
    assert d.allowed and d.risk == Decimal("0.5") and d.obligations == ("mfa",)
    assert not d.enforced


@pytest.mark.parametrize(
    ("request_stats", "reason"),
    [
        ("many", "`stats` is a string, not an object"),
        ([], "`stats` is a list, not an object"),
        (None, "`stats` is null, not an object"),
        ({"principal": 5}, "`stats.principal` is 5, not an object"),
        ({"principal": {"calls_1m": -1}}, "`stats.principal.calls_1m` is -1, not an integer"),
        ({"principal": {"calls_1m": 2.5}}, "`stats.principal.calls_1m` is 2.5, not an integer"),
        ({"principal": {"calls_1h": "7"}}, "`stats.principal.calls_1h` is a string"),
        ({"principal": {"denials_1m": True}}, "`stats.principal.denials_1m` is a boolean"),
        ({"principal": {"denials_1m": None}}, "`stats.principal.denials_1m` is null"),
        ({"principal": {"resources_1m": [1]}}, "`stats.principal.resources_1m` is a list"),
        ({"principal": {"resources_1h": stats.MAX + 1}}, "is 9007199254740992, not an integer"),
        ({"principal": {"calls_1m": 10**30}}, "is a number out of range, not an integer"),
        ({"principal": {"calls_1m": Decimal("1E+999999")}}, "beyond a float's range"),
        ({"principal": {"calls_1m": float("inf")}}, "NaN and infinities are not JSON"),
        ({"principal": {"calls_1m": Decimal("NaN")}}, "NaN and infinities are not JSON"),
    ],
)
def test_forged_counters_are_refused(engine: Engine, request_stats: Any, reason: str) -> None:
    request = call()
    request["stats"] = request_stats
    d = engine.authorize(request)
    assert not d.allowed and d.rules == () and d.refusal is not None
    assert reason in d.refusal, d.refusal
    assert "request refused" in d.explain()


def test_subclasses_are_read_as_plain_values(engine: Engine) -> None:
    class Counters(dict[str, Any]):
        pass

    class Count(int):
        pass

    d = engine.authorize(call(Counters(calls_1m=Count(61))))
    assert (d.allowed, d.rules, d.refusal) == (False, ("agents/runaway",), None)
    d = engine.authorize(call(Counters(calls_1m=Count(1))))
    assert d.allowed and d.refusal is None


def test_a_policy_without_counters_ignores_stats(tmp_path: Path) -> None:
    plain = engine_for(tmp_path, "package t\n\npolicy p {\n  default allow\n}\n", prelude=False)
    request = call()
    request["stats"] = "anything"
    assert plain.authorize(request).allowed


def test_the_tree_walker_agrees(engine: Engine) -> None:
    """`explain()`'s evaluator reads counters as the closures do (MISSING included)."""
    rule = engine.project.policies[0].rules[0]
    assert rule.condition is not None
    for counters in ({"calls_1m": 61}, {"calls_1m": 2}, {}):
        request = call(counters)
        inner = rule.condition.operand  # type: ignore[attr-defined]
        value = evaluate(inner, request, Decimal(0))
        assert value is (counters["calls_1m"] <= 60 if counters else False)
    explained = engine.authorize(call({"calls_1m": 61})).explain()
    assert "stats.principal.calls_1m" in explained and "61" in explained


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
STATS = st.one_of(
    JSON,
    st.dictionaries(st.sampled_from(["principal", "x"]), JSON),
    st.fixed_dictionaries(
        {"principal": st.dictionaries(st.sampled_from([*stats.FIELDS, "x"]), JSON, max_size=4)}
    ),
)


@settings(max_examples=120, deadline=None)
@given(value=STATS)
def test_any_stats_is_decided_or_refused_never_raised(engine: Engine, value: Any) -> None:
    request = call()
    request["stats"] = value
    d = engine.authorize(request)
    problem = stats.stats_problem(request) if isinstance(value, dict) else "not an object"
    if d.refusal is not None:
        assert not d.allowed and d.rules == ()
    else:
        assert problem is None, (value, d)
