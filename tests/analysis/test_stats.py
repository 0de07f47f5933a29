"""`stats.principal.*` in z3: bounded non-negative integers, exact against the engine.

The encoder assumes what the decision server sends (mcpdsl.ir.stats): `stats`
and `stats.principal` objects or missing, each counter an integer in
0..stats.MAX or missing.  The engine refuses every other request of a policy
that reads the counters, so the two agree on every request the engine
evaluates: checked value by value (pinned requests), on every witness, and
for random conditions (hypothesis).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from analysis_support import check_witnesses, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpdsl.analysis.encode import Encoder, Env
from mcpdsl.evaluate.closures import prepare_expr
from mcpdsl.evaluate.project import prepare_project
from mcpdsl.evaluate.values import MISSING
from mcpdsl.ir import model as m
from mcpdsl.ir import stats

ENV = Env(("risk", 0))


def _counter(name: str) -> m.Attr:
    return m.Attr(root=stats.ROOT, path=(stats.SCOPE, name))


def _num(n: int) -> m.Literal_:
    return m.Literal_(value=Decimal(n), unit="number")


def _request(counters: dict[str, Any] | None) -> dict[str, Any]:
    request: dict[str, Any] = {"principal": {"type": "agent", "id": "a"}}
    if counters is not None:
        request["stats"] = {stats.SCOPE: counters}
    return request


def _tree(tmp: Path, rules: str) -> Path:
    (tmp / "main.mcp").write_text(f"package t\n\npolicy p {{\n{rules}\n}}\n")
    return tmp


# ------------------------------------------------------------------ the domain


@pytest.mark.parametrize(
    "value",
    [-1, Decimal("-0.5"), 0.5, stats.MAX + 1, 2**80, "3", True, None, [], {"n": 1}],
    ids=repr,
)
def test_the_encoder_admits_no_value_the_engine_refuses(value: Any) -> None:
    """A counter outside 0..MAX (or not a number) cannot be pinned: no model has it."""
    enc = Encoder([])
    cond = m.Compare(op=">=", left=_counter("calls_1m"), right=_num(0))
    counts = enc.fires_or_errors(cond, ENV)
    request = _request({"calls_1m": value})
    assert enc.solve(counts & enc.pin(request), witness=False).status == "unsat"
    assert stats.stats_problem(request) is not None


@pytest.mark.parametrize("value", [0, 1, 600, 3.0, stats.MAX], ids=repr)
def test_the_encoder_admits_every_value_the_engine_accepts(value: Any) -> None:
    enc = Encoder([])
    cond = m.Compare(op=">=", left=_counter("calls_1m"), right=_num(0))
    request = _request({"calls_1m": value})
    assert stats.stats_problem(request) is None
    assert enc.solve(enc.fires(cond, ENV) & enc.pin(request), witness=False).status == "sat"


@pytest.mark.parametrize("shape", [{"stats": "x"}, {"stats": {"principal": 3}}, {"stats": []}])
def test_stats_and_its_scope_are_objects_or_missing(shape: dict[str, Any]) -> None:
    enc = Encoder([])
    cond = m.Compare(op="<", left=_counter("calls_1h"), right=_num(5))
    not_fired = ~enc.fires(cond, ENV)
    assert enc.solve(not_fired & enc.pin(shape), witness=False).status == "unsat"
    assert stats.stats_problem(shape) is not None


# ------------------------------------------------------------- analyses


def test_dead_rules_on_counters_are_found_and_live_ones_confirmed(tmp_path: Path) -> None:
    rules = """\
  negative: deny agent any -> agent any when stats.principal.calls_1m < 0
  huge: allow agent any -> agent any when stats.principal.calls_1h > 9007199254740991
  between: allow agent any -> agent any when stats.principal.denials_1m > 5 and stats.principal.denials_1m < 6
  busy: allow agent any -> agent any when stats.principal.calls_1m <= 600
  runaway: deny agent any -> agent any unless stats.principal.calls_1m <= 500
  narrow: allow agent any -> agent any when stats.principal.calls_1m <= 400 and stats.principal.resources_1h < 3"""
    c, a = run(_tree(tmp_path, rules))
    found = {(d.code, d.message) for d in a.diagnostics}
    for rule in ("negative", "huge", "between"):
        assert any(code == "A0101" and f"`{rule}`" in msg for code, msg in found), found
    assert not any(code == "A0101" and "`busy`" in msg for code, msg in found)
    overlaps = [d for d in a.diagnostics if d.code in ("A0103", "A0104")]
    assert {d.code for d in overlaps} == {"A0103", "A0104"}
    assert c.project is not None
    for d in overlaps:
        assert check_witnesses(d, c.project) >= 1
    assert a.unconfirmed == []


def test_a_witness_carries_integer_counters(tmp_path: Path) -> None:
    """`calls_1m * 2 > 7` holds for 3.6 over the reals; the witness must be a whole count."""
    rules = """\
  busy: allow agent any -> agent any when stats.principal.calls_1m * 2 > 7
  runaway: deny agent any -> agent any when stats.principal.calls_1m < 10"""
    c, a = run(_tree(tmp_path, rules))
    overlap = next(d for d in a.diagnostics if d.code == "A0104")
    assert c.project is not None and check_witnesses(overlap, c.project) == 1
    witness = json.loads(overlap.notes[0].split(": ", 1)[1])
    count = witness["stats"]["principal"]["calls_1m"]
    assert type(count) is int and 4 <= count <= 9


def test_the_engine_refuses_what_the_analyses_exclude(tmp_path: Path) -> None:
    c, _ = run(_tree(tmp_path, "  allow agent any -> agent any when stats.principal.calls_1m < 0"))
    assert c.project is not None
    engine = prepare_project(c.project)
    decision = engine.authorize({**_request({"calls_1m": -1}), "resource": {"type": "agent"}})
    assert not decision.allowed
    assert decision.refusal is not None and "stats.principal.calls_1m" in decision.refusal
    assert decision.rules == ()


# ------------------------------------------------------- random conditions

COUNTERS = st.sampled_from(stats.FIELDS).map(_counter)
CONSTANTS = st.one_of(
    st.integers(-3, 30), st.sampled_from([stats.MAX - 1, stats.MAX, stats.MAX + 1])
).map(_num)
OPS = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


@st.composite
def _terms(draw: st.DrawFn) -> m.Node:
    kind = draw(st.sampled_from(["counter", "sum", "default", "scaled"]))
    a = draw(COUNTERS)
    if kind == "sum":
        return m.Arith(op=draw(st.sampled_from(["+", "-"])), left=a, right=draw(COUNTERS))
    if kind == "default":
        return m.Default(operand=a, fallback=draw(CONSTANTS))
    if kind == "scaled":
        return m.Arith(
            op=draw(st.sampled_from(["*", "/"])), left=a, right=_num(draw(st.integers(1, 4)))
        )
    return a


@st.composite
def _atoms(draw: st.DrawFn) -> m.Node:
    left = draw(_terms())
    right = draw(st.one_of(CONSTANTS, _terms()))
    if draw(st.booleans()):
        left, right = right, left
    return m.Compare(op=draw(OPS), left=left, right=right)


CONDITIONS = st.recursive(
    _atoms(),
    lambda inner: st.one_of(
        inner.map(lambda e: m.Not(operand=e)),
        st.lists(inner, min_size=2, max_size=3).map(lambda es: m.And(operands=tuple(es))),
        st.lists(inner, min_size=2, max_size=3).map(lambda es: m.Or(operands=tuple(es))),
    ),
    max_leaves=4,
)
COUNTS = st.one_of(st.integers(0, 12), st.sampled_from([stats.MAX - 1, stats.MAX]))
REQUESTS = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(stats.FIELDS), COUNTS, max_size=len(stats.FIELDS)),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cond=CONDITIONS, counters=st.lists(REQUESTS, min_size=1, max_size=4))
def test_engine_and_z3_agree_on_counter_conditions(
    cond: m.Node, counters: list[dict[str, Any] | None]
) -> None:
    """Pinned to any request of the domain, z3 says what the engine says; witnesses hold."""
    enc = Encoder([])
    fires = enc.fires(cond, ENV)
    counts = enc.fires_or_errors(cond, ENV)
    fn = prepare_expr(cond).fn
    for c in counters:
        request = _request(c)
        assert stats.stats_problem(request) is None
        pin = enc.pin(request)
        v = fn(request, Decimal(0))
        assert (enc.solve(fires & pin, witness=False).status == "sat") == (v is True), request
        want = v is not False and v is not MISSING
        assert (enc.solve(counts & pin, witness=False).status == "sat") == want, request
    outcome = enc.solve(fires)
    if outcome.status == "sat":
        witness = outcome.witness
        assert witness is not None and stats.stats_problem(witness) is None
        assert fn(witness, Decimal(0)) is True, witness
