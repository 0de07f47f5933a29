"""Several `up`/`down` policies, `select`, scale events, `predict` and KEDA's zero loop.

Worked by hand from the HPA and KEDA rules (mcpdsl.evaluate.scale); the
lowering of the new clauses and its diagnostics are checked here too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from engine_support import engine_for, write_tree

from mcpdsl.engine import Engine, ScaleError
from mcpdsl.ir import model as m
from mcpdsl.pipeline import compile_tree

SOURCE = """
service both { image "x" port 80 }
service least { image "x" port 80 }
service off { image "x" port 80 }
service ahead { image "x" port 80 }
service idle { image "x" port 80 }

scale both {
  replicas 1..100
  target cpu 50%
  up   by 4 pods every 60s
  up   by 50% every 60s stabilize 0s
  down by 4 pods every 60s stabilize 0s
  down by 10% every 60s
}

scale least {
  replicas 1..100
  target cpu 50%
  up   by 4 pods every 60s
  up   by 50% every 60s
  up   select min
  down by 4 pods every 60s stabilize 0s
  down by 10% every 60s
  down select min
}

scale off {
  replicas 1..100
  target cpu 50%
  up   select disabled
  down select disabled
}

scale ahead {
  replicas 2..50
  target cpu 70%
  target metric "queue" 10 per pod
  predict "queue" horizon 10m lookback 7d
}

scale idle {
  replicas 0..10
  target metric "jobs" 5 per pod
}
"""

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
T = NOW.timestamp()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return engine_for(tmp_path_factory.mktemp("rules"), SOURCE)


def test_max_takes_the_policy_allowing_the_largest_change(engine: Engine) -> None:
    # up from 20: +4 pods -> 24, +50% -> 30: Max allows 30 (cpu asks ceil(20 x 4) = 80)
    assert engine.scale("both", {"cpu": 2.0}, 20, now=NOW).desired == 30
    # up from 4: +4 -> 8, +50% -> 6: 8
    assert engine.scale("both", {"cpu": 2.0}, 4, now=NOW).desired == 8
    # down from 80: -4 -> 76, -10% -> 72: 72; from 30: 26 and 27: 26
    assert engine.scale("both", {"cpu": 0.01}, 80, now=NOW).desired == 72
    assert engine.scale("both", {"cpu": 0.01}, 30, now=NOW).desired == 26


def test_min_takes_the_policy_allowing_the_smallest_change(engine: Engine) -> None:
    assert engine.scale("least", {"cpu": 2.0}, 20, now=NOW).desired == 24
    assert engine.scale("least", {"cpu": 2.0}, 4, now=NOW).desired == 6
    assert engine.scale("least", {"cpu": 0.01}, 80, now=NOW).desired == 76
    assert engine.scale("least", {"cpu": 0.01}, 30, now=NOW).desired == 27


def test_disabled_directions_never_move(engine: Engine) -> None:
    d = engine.scale("off", {"cpu": 2.0}, 5, now=NOW)
    assert d.desired == 5 and d.recommendation == 20
    assert engine.scale("off", {"cpu": 0.01}, 50, now=NOW).desired == 50
    # the bounds still apply before the rules: above the maximum goes to it
    assert engine.scale("off", {"cpu": 0.01}, 200, now=NOW).desired == 100


def test_events_inside_a_period_count_against_it(engine: Engine) -> None:
    # 20 replicas, of which 10 were added 30s ago: the period started at 10, so +50% of 10
    # is 15 and +4 is 14: at most 15, below the current 20: no further scale-up
    d = engine.scale("both", {"cpu": 2.0}, 20, now=NOW, events=[(T - 30, 10)])
    assert d.desired == 20
    # the same event 61s ago is outside the 60s period
    assert engine.scale("both", {"cpu": 2.0}, 20, now=NOW, events=[(T - 61, 10)]).desired == 30
    # 8 removed 10s ago from 80: the period started at 80, so -10% allows 72 again: 72
    d = engine.scale("both", {"cpu": 0.01}, 72, now=NOW, events=[(T - 10, -8)])
    assert d.desired == 72
    # scale-downs also count for scale-up periods (the period start is current + removed)
    d = engine.scale("both", {"cpu": 2.0}, 10, now=NOW, events=[(T - 10, -10)])
    assert d.desired == 30  # start 20: +50% -> 30


def test_predict_is_a_trigger_read_from_the_request(engine: Engine) -> None:
    # the forecast of 30 per pod at 4 replicas is 120 in total, ceil(120 / 10) = 12,
    # above cpu's ceil(4 x 75/70) = 5 and the queue's 4; the default up policy allows 8
    d = engine.scale("ahead", {"cpu": 0.75, "queue": 10, "predict": 30}, 4, now=NOW)
    assert d.desired == 8 and d.recommendation == 12
    # a forecast below the current need does not pull down: the max over metrics
    d = engine.scale("ahead", {"cpu": 0.75, "queue": 25, "predict": 1}, 4, now=NOW)
    assert d.desired == 8 and d.recommendation == 10
    with pytest.raises(ScaleError, match="unknown metric `predict`"):
        engine.scale("both", {"predict": 1}, 4, now=NOW)


def test_keda_scales_from_and_to_zero(engine: Engine) -> None:
    # 0 replicas: active when the prometheus total is above 0 -> 1; else stays 0
    assert engine.scale("idle", {"jobs": 3}, 0, now=NOW).desired == 1
    assert engine.scale("idle", {"jobs": 0}, 0, now=NOW).desired == 0
    assert engine.scale("idle", {}, 0, now=NOW).desired == 0
    # running, no job: zero once the cooldown (300s since last active) is over
    assert engine.scale("idle", {"jobs": 0}, 4, now=NOW).desired == 0
    assert engine.scale("idle", {"jobs": 0}, 4, now=NOW, last_active=T - 301).desired == 0
    # within the cooldown the HPA decides, with KEDA's minimum of 1
    d = engine.scale("idle", {"jobs": 0}, 4, now=NOW, last_active=T - 100)
    assert d.desired == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"events": "x"}, "events must be"),
        ({"events": [(T, 1, 2)]}, "an event must be"),
        ({"events": [(T, True)]}, "a replica change must be"),
        ({"events": [(T, 2**40)]}, "a replica change must be"),
        ({"events": [(float("nan"), 1)]}, "must be finite"),
        ({"events": [("yesterday", 1)]}, "must be a datetime"),
        ({"last_active": float("inf")}, "must be finite"),
        ({"last_active": "now"}, "must be a datetime"),
        ({"last_active": 10**400}, "out of range"),
    ],
)
def test_hostile_events_and_last_active(
    engine: Engine, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ScaleError, match=message):
        engine.scale("both", {"cpu": 1}, 4, now=NOW, **kwargs)  # type: ignore[arg-type]


def _lower(tmp_path: Path, body: str) -> tuple[m.Project | None, list[str]]:
    tree = write_tree(tmp_path, 'service s { image "x" port 80 }\nscale s {\n' + body + "}\n")
    c = compile_tree(tree)
    return c.project, [f"{d.code} {d.message}" for d in c.diagnostics if d.is_error]


def test_lowering_of_several_policies_and_select(tmp_path: Path) -> None:
    project, errors = _lower(
        tmp_path,
        "replicas 1..9\n target cpu 50%\n up by 2 pods every 30s\n up by 20% every 1m"
        " stabilize 2m\n up select min\n down select disabled\n",
    )
    assert errors == [] and project is not None
    (scale,) = [s for s in project.scales if s.name == "s"]
    assert scale.up == m.ScaleRules(
        policies=(
            m.StepPolicy(amount=Decimal(2), unit="pods", period=Decimal(30)),
            m.StepPolicy(amount=Decimal("0.2"), unit="percent", period=Decimal(60)),
        ),
        select="min",
        stabilize=Decimal(120),
    )
    assert scale.down == m.ScaleRules(select="disabled")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            "up by 2 pods every 30s stabilize 1m\n up by 20% every 1m stabilize 2m\n",
            "E0201 conflicting `stabilize` windows for `up`",
        ),
        ("down select max\n down select min\n", "E0201 duplicate `down select` clause"),
        ("up select largest\n", "E0303 unknown policy selection `largest`"),
        ("up by 2 pods every 31m\n", "E0303 a scaling policy period is at most 30m"),
        ("down by 1 pods every 1m stabilize 2h\n", "E0303 stabilisation windows are at most 1h"),
        ("up by 2 pods every 1500ms\n", "E0303 a scaling policy period is whole seconds"),
        ("up by 2 pods every 15s stabilize 0.5s\n", "E0303 a stabilisation window is whole"),
    ],
)
def test_lowering_diagnostics(tmp_path: Path, body: str, error: str) -> None:
    _, errors = _lower(tmp_path, "replicas 1..9\n target cpu 50%\n " + body)
    assert any(e.startswith(error) for e in errors), errors


def test_issue_13_example_engine_and_scaled_object_agree() -> None:
    """`mcp-api` in policies/ at 5 replicas and 95% cpu, Wednesday 10:00 in Stockholm."""
    import yaml
    from autoscaling_model import Request, decision
    from engine_support import REPO

    from mcpdsl._version import __version__
    from mcpdsl.compile import TargetContext, kubernetes

    compilation = compile_tree(REPO / "policies")
    assert compilation.project is not None
    out = kubernetes.compile(compilation.project, TargetContext(version=__version__))
    (doc,) = [
        d
        for a in out.artifacts
        if (d := yaml.safe_load(a.content))["kind"] == "ScaledObject"
        and d["metadata"]["name"] == "mcp-api"
    ]
    now = datetime.fromisoformat("2026-11-25T10:00:00+01:00")
    metrics = {"cpu": Decimal("0.95"), "mcp_requests_per_second": Decimal(200)}
    engine = Engine.from_project(compilation.project)
    d = engine.scale("mcp-api", metrics, 5, now=now)
    # max(cron 6, ceil(5 x 95/70) = 7, requests at target 5) = 7, as the ScaledObject gives
    assert d.desired == 7 == decision(doc, Request(metrics=metrics, current=5, now=now))
    # with the forecast given too (its trigger reads `predict`), still the maximum
    metrics["predict"] = Decimal(400)  # 2000 in total over 200 per pod: 10, limited to 10
    d = engine.scale("mcp-api", metrics, 5, now=now)
    assert d.desired == 10 == decision(doc, Request(metrics=metrics, current=5, now=now))
