"""The engine against the generated Rego, evaluated by the real OPA engine in-process.

Hypothesis draws requests from the vocabulary of each policy tree
(request_vocabulary.py: its principals, resources, actions, paths, attribute
names, the boundary values of every comparison literal +/- small deltas,
missing attributes and wrong-typed values).  Each example is a batch of
requests evaluated by OPA in one query; every request must get the same
`allowed`, `obligations`, `rules`, `risk`, `default_applied` and enforced
`allow` from both.  In total well over 5,000 requests per run.  Every `test`
block's request is checked the same way.  Rules that need the decision
server's counters never fire in the bundle (B0171, `artifact_view`): the
engine is compared on that view.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from engine_support import FIXTURES, REPO
from hypothesis import HealthCheck, given, settings
from request_vocabulary import batches, requests, vocabulary
from validators import opa_available

from mcpdsl.compile import TargetContext, load_target
from mcpdsl.compile.server import artifact_view
from mcpdsl.engine import Engine

pytestmark = pytest.mark.skipif(
    not opa_available(),
    reason="system component missing: the OPA engine (opa-golib-python-bindings)",
)

BATCH = 25
# one Random drives a whole batch: a large example on purpose
SLACK = [HealthCheck.large_base_example, HealthCheck.too_slow, HealthCheck.data_too_large]
QUERY = (
    "out := [[d, a] | some r in input.batch; "
    "d := data.mcp.main.decision with input as r; "
    "a := data.mcp.main.allow with input as r]"
)
# tree -> hypothesis examples (each a batch of BATCH requests)
TREES = {
    "policies": (REPO / "policies", 80),
    "zero-trust": (REPO / "examples" / "zero-trust", 50),
    "carbon": (REPO / "examples" / "carbon", 20),
    "sink": (FIXTURES / "sink", 80),
    "args": (FIXTURES / "args", 60),
}


class Opa:
    """The tree's generated Rego, loaded once into one OPA engine."""

    def __init__(self, engine: Engine) -> None:
        from opa_bindings import OpaEngine

        output = load_target("opa").compile(engine.project, TargetContext(version="test"))
        files = {a.path: a.content for a in output.artifacts}
        self.opa = OpaEngine()
        for path, content in sorted(files.items()):
            if path.endswith(".rego"):
                self.opa.add_policy(path, content.decode("utf-8"))
        self.opa.add_data(json.loads(files["opa/data.json"]))

    def decide(self, batch: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bool]]:
        result = self.opa.eval_query(QUERY, {"batch": batch})
        return [(d, a) for d, a in result[0]["out"]]


@cache
def setup(name: str) -> tuple[Engine, Opa, Any]:
    tree, _ = TREES[name]
    engine = Engine.load(tree)
    return engine, Opa(engine), vocabulary(engine.project)


def disagreement(
    engine: Engine, req: dict[str, Any], theirs: dict[str, Any], allow: bool
) -> str | None:
    d = engine.authorize(req)
    mine = d.as_dict()
    problems = []
    for key in ("allowed", "obligations", "rules", "default_applied"):
        if mine[key] != theirs[key]:
            problems.append(f"{key}: engine {mine[key]!r}, OPA {theirs[key]!r}")
    if d.risk != Decimal(repr(theirs["risk"])):
        problems.append(f"risk: engine {d.risk}, OPA {theirs['risk']!r}")
    if d.enforced != allow:
        problems.append(f"enforced: engine {d.enforced}, OPA allow {allow}")
    if not problems:
        return None
    return "\n".join([json.dumps(req, sort_keys=True), *problems, d.explain()])


@cache
def bundle_view(name: str) -> Engine:
    """The engine as the bundle decides: rules needing the decision server never fire (B0171)."""
    return Engine.from_project(artifact_view(setup(name)[0].project))


def check_batch(name: str, batch: list[dict[str, Any]]) -> None:
    _, opa, _ = setup(name)
    engine = bundle_view(name)
    for req, (theirs, allow) in zip(batch, opa.decide(batch), strict=True):
        problem = disagreement(engine, req, theirs, allow)
        assert problem is None, problem


@pytest.mark.parametrize("name", sorted(TREES))
def test_engine_agrees_with_opa(name: str) -> None:
    tree, examples = TREES[name]
    if not tree.is_dir():
        pytest.skip(f"{tree} does not exist")
    engine, _, vocab = setup(name)
    assert engine.project.policies, "a differential tree needs policies"

    @settings(max_examples=examples, suppress_health_check=SLACK)
    @given(batches(vocab, BATCH))
    def run(batch: list[dict[str, Any]]) -> None:
        check_batch(name, batch)

    run()


def _request_tests() -> list[tuple[str, Path]]:
    trees = [
        REPO / "policies",
        *sorted((REPO / "examples").glob("*")),
        FIXTURES / "failing",
        FIXTURES / "coverage",
    ]
    out = []
    for tree in trees:
        if tree.is_dir() and any(tree.rglob("*.mcp")):
            out.append((tree.name, tree))
    return out


@pytest.mark.parametrize(("name", "tree"), _request_tests(), ids=[n for n, _ in _request_tests()])
def test_test_blocks_agree_with_opa(name: str, tree: Path) -> None:
    engine = Engine.load(tree)
    reqs = [t.request for t in engine.project.tests if t.request is not None]
    if not reqs or not engine.project.policies:
        pytest.skip("no request tests")
    opa = Opa(engine)
    engine = Engine.from_project(artifact_view(engine.project))  # B0171: as the bundle decides
    # the test blocks carry no `now`: pin it so that both read the same clock
    batch = [
        {**r, "now": {"hour": 12, "minute": 0, "weekday": "wed", "time": 720, "date": "2026-11-25"}}
        for r in reqs
    ]
    for req, (theirs, allow) in zip(batch, opa.decide(batch), strict=True):
        problem = disagreement(engine, req, theirs, allow)
        assert problem is None, problem


def _reach(name: str) -> tuple[set[str], set[str], set[str]]:
    """(all rule keys, rules some request matched, rules whose condition some request met)."""
    from mcpdsl.evaluate.interp import evaluate
    from mcpdsl.evaluate.values import MISSING

    engine, _, vocab = setup(name)
    policies = engine.compiled.policies
    by_key = {r.key: (p, r) for p in policies.policies for r in p.rules}
    matched: set[str] = set()
    held: set[str] = set()

    @settings(max_examples=1500, database=None, suppress_health_check=SLACK)
    @given(requests(vocab))
    def explore(req: dict[str, Any]) -> None:
        for rule in policies.matched(req):
            matched.add(rule.key)
            policy, _ = by_key[rule.key]
            risk = Decimal(0)
            for term in policy.risk:
                value = evaluate(term.ir.condition, req, Decimal(0))
                if value is not False and value is not MISSING:
                    risk += term.weight
            if rule.cond is None or rule.cond(req, min(risk, Decimal(1))) is True:
                held.add(rule.key)

    explore()
    return set(by_key), matched, held


@pytest.mark.parametrize("name", ["policies", "sink", "zero-trust"])
def test_the_vocabulary_reaches_every_rule(name: str) -> None:
    """The generator is only as good as its reach: rules are matched, and their conditions hold."""
    keys, matched, held = _reach(name)
    assert len(matched) >= 0.95 * len(keys), sorted(keys - matched)
    assert len(held) >= 0.8 * len(keys), sorted(keys - held)
