"""Differential: `Engine.scale` against the generated HPA / ScaledObject, read independently.

A seeded generator writes 60 `scale` blocks covering the language (cpu,
memory and custom targets, zero to three `up`/`down` policies with every
`select`, stabilisation windows, `during` windows in several zones, some
overnight, `predict`, minimums of 0); the tree is compiled once by the real
Kubernetes target, and hypothesis then draws requests (metric values around
the targets, replica counts around the bounds, moments over a year including
zone transitions, recommendation histories, scale events, KEDA's last active
time).  Each answer of the engine must equal what `autoscaling_model` (which
imports nothing from mcpdsl) computes from the YAML.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from autoscaling_model import Request, cron_active, decision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from validators import validate_kubernetes

from mcpdsl._version import __version__
from mcpdsl.compile import TargetContext, kubernetes
from mcpdsl.engine import Engine
from mcpdsl.pipeline import compile_tree

ZONES = ("UTC", "Europe/Stockholm", "America/New_York", "Asia/Kolkata", "Australia/Sydney")
DAY_SETS = ("daily", "weekdays", "weekends", "mon", "wed", "fri", "sun")
METRICS = ("rps", "queue_depth", "jobs_total", "predict")  # `predict` as a metric name too
COUNTS: dict[str, int] = {
    "requests": 0,
    "agreed": 0,
    "keda": 0,
    "hpa": 0,
    "window_active": 0,
    "changed": 0,
    "to_zero": 0,
}


def _policy(rng: random.Random, direction: str) -> str:
    if rng.random() < 0.5:
        amount = f"{rng.choice([1, 2, 3, 4, 10])} pods"
    else:
        amount = f"{rng.choice([5, 10, 12, 33, 50, 100, 150, 200])}%"
    period = rng.choice(["15s", "30s", "60s", "2m", "5m"])
    return f"  {direction} by {amount} every {period}"


def _direction(rng: random.Random, direction: str) -> list[str]:
    lines = [_policy(rng, direction) for _ in range(rng.choice([0, 1, 1, 2, 3]))]
    if lines and rng.random() < 0.6:
        lines[0] += f" stabilize {rng.choice(['0s', '30s', '1m', '5m'])}"
    if rng.random() < 0.4:
        lines.append(f"  {direction} select {rng.choice(['max', 'min', 'disabled'])}")
    return lines


def _hhmm(rng: random.Random) -> str:
    return f"{rng.randrange(24):02d}:{rng.choice([0, 15, 30, 45]):02d}"


def scale_block(rng: random.Random, name: str) -> str:
    low = rng.choice([0, 1, 1, 2, 3, 5])
    high = low + rng.choice([1, 3, 9, 20, 40])
    lines = [f"scale {name} {{", f"  replicas {low}..{high}"]
    custom: list[str] = []
    if rng.random() < 0.7:
        lines.append(f"  target cpu {rng.choice([50, 60, 65, 70, 80, 95])}%")
    if rng.random() < 0.3:
        lines.append(f"  target memory {rng.choice([60, 75, 80])}%")
    for metric in rng.sample(METRICS, rng.choice([0, 0, 1, 2])):
        value = rng.choice(["0.5", "2.5", "10", "100", "150", "1000"])
        lines.append(f'  target metric "{metric}" {value} per pod')
        custom.append(metric)
    lines += _direction(rng, "up") + _direction(rng, "down")
    used: set[tuple[str, str]] = set()
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        days, zone = rng.choice(DAY_SETS), rng.choice(ZONES)
        if (days, zone) in used:  # keep windows apart (A0120 forbids overlapping ranges)
            continue
        used.add((days, zone))
        start, end = _hhmm(rng), _hhmm(rng)
        if start == end:  # an empty window is E0302
            continue
        floor = rng.randrange(0, high + 1)
        lines.append(f'  during {days} {start}-{end} "{zone}" {{ replicas {floor}..{high} }}')
    if custom and rng.random() < 0.5:
        lines.append(f'  predict "{rng.choice(custom)}" horizon 10m lookback 7d')
    lines.append("}")
    return "\n".join(lines)


def generate(seed: int, count: int) -> str:
    rng = random.Random(seed)
    parts = ["package diff\n"]
    for i in range(count):
        name = f"svc{i}"
        parts.append(f'service {name} {{ image "x" port 80 cpu 1 memory 1Gi }}')
        parts.append(scale_block(rng, name))
    return "\n".join(parts) + "\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, dict[str, Any], list[str]]:
    tree = tmp_path_factory.mktemp("differential")
    (tree / "main.mcp").write_text(generate(20261207, 60), encoding="utf-8")
    compilation = compile_tree(tree)
    errors = [f"{d.code} {d.message}" for d in compilation.diagnostics if d.is_error]
    assert compilation.project is not None and errors == []
    out = kubernetes.compile(compilation.project, TargetContext(version=__version__))
    docs: dict[str, Any] = {}
    for artifact in out.artifacts:
        doc = yaml.safe_load(artifact.content.decode("utf-8"))
        if doc["kind"] in ("HorizontalPodAutoscaler", "ScaledObject"):
            docs[doc["metadata"]["name"]] = doc
    names = sorted(docs)
    assert len(names) == 60
    return Engine.from_project(compilation.project), docs, names


def _keys(doc: dict[str, Any]) -> list[str]:
    """The request keys a document reads (from the document: the model's view)."""
    keys: list[str] = []
    if doc["kind"] == "HorizontalPodAutoscaler":
        for metric in doc["spec"]["metrics"]:
            if metric["type"] == "Resource":
                keys.append(metric["resource"]["name"])
            else:
                keys.append(metric["pods"]["metric"]["name"])
        return keys
    for trigger in doc["spec"]["triggers"]:
        if trigger["type"] in ("cpu", "memory"):
            keys.append(trigger["type"])
        elif trigger["type"] == "prometheus":
            query = trigger["metadata"]["query"]
            if "predict_linear" in query:
                keys.append("predict")
            else:
                keys.extend(m for m in METRICS if f"({m}{{" in query or f'"{m}"' in query)
    return keys


_START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
values = st.one_of(
    st.sampled_from(["0", "0.01", "0.5", "0.63", "0.7", "0.77", "0.95", "1", "2.5", "10"]),
    st.decimals(min_value=0, max_value=5000, places=3, allow_nan=False, allow_infinity=False),
).map(Decimal)


@st.composite
def requests(draw: st.DrawFn, names: list[str], docs: dict[str, Any]) -> tuple[str, Request]:
    name = draw(st.sampled_from(names))
    doc = docs[name]
    spec = doc["spec"]
    high = spec.get("maxReplicas", spec.get("maxReplicaCount", 100))
    current = draw(st.one_of(st.integers(0, high + 3), st.sampled_from([0, 1, high])))
    metrics = {k: draw(values) for k in _keys(doc) if draw(st.booleans()) or draw(st.booleans())}
    # whole minutes (the model's cron works in minutes); a year, all zone transitions included
    now_ts = _START + 60 * draw(st.integers(0, 366 * 24 * 60))
    now = datetime.fromtimestamp(now_ts, UTC)
    ages = st.integers(0, 900)
    history = tuple(
        (now_ts - a, r)
        for a, r in draw(st.lists(st.tuples(ages, st.integers(0, high + 3)), max_size=4))
    )
    events = tuple(
        (now_ts - a, c)
        for a, c in draw(st.lists(st.tuples(ages, st.integers(-6, 6).filter(bool)), max_size=3))
    )
    last = draw(st.one_of(st.none(), st.integers(0, 900)))
    return name, Request(
        metrics=metrics,
        current=current,
        now=now,
        history=history,
        events=events,
        last_active=None if last is None else now_ts - last,
    )


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_engine_agrees_with_the_generated_autoscalers(
    world: tuple[Engine, dict[str, Any], list[str]], data: st.DataObject
) -> None:
    engine, docs, names = world
    name, req = data.draw(requests(names, docs))
    doc = docs[name]
    expected = decision(doc, req)
    got = engine.scale(
        name,
        {k: v for k, v in req.metrics.items()},
        req.current,
        history=req.history,
        now=req.now,
        events=req.events,
        last_active=req.last_active,
    )
    COUNTS["requests"] += 1
    COUNTS["keda" if doc["kind"] == "ScaledObject" else "hpa"] += 1
    triggers = doc["spec"].get("triggers", [])
    COUNTS["window_active"] += any(
        t["type"] == "cron" and cron_active(t, req.now) for t in triggers
    )
    COUNTS["changed"] += expected != req.current
    COUNTS["to_zero"] += expected == 0 < req.current
    assert got.desired == expected, (name, req, got, yaml.safe_dump(doc))
    COUNTS["agreed"] += 1


def test_the_generator_covers_the_language(world: tuple[Engine, dict[str, Any], list[str]]) -> None:
    _, docs, _ = world
    kinds = {d["kind"] for d in docs.values()}
    assert kinds == {"HorizontalPodAutoscaler", "ScaledObject"}
    triggers = {
        t["type"]
        for d in docs.values()
        if d["kind"] == "ScaledObject"
        for t in d["spec"]["triggers"]
    }
    assert triggers >= {"cpu", "memory", "cron", "prometheus"}
    selects = {
        rules["selectPolicy"]
        for d in docs.values()
        for rules in (
            d["spec"].get("behavior")
            or d["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        ).values()
    }
    assert selects == {"Max", "Min", "Disabled"}
    assert any(d["spec"].get("minReplicaCount") == 0 for d in docs.values())
    # and everything generated is accepted by the real schemas and the strict KEDA model
    assert [e for d in docs.values() for e in validate_kubernetes(d)] == []
    assert any("predict_linear" in str(d) for d in docs.values())


def test_zz_counts() -> None:
    """Runs after the differential (file order): report and check the counts."""
    print(f"\nscale differential: {COUNTS}")
    if COUNTS["requests"]:
        assert COUNTS["agreed"] == COUNTS["requests"] >= 1000
        assert COUNTS["keda"] > 0 and COUNTS["hpa"] > 0
        assert COUNTS["window_active"] > 0 and COUNTS["changed"] > 0 and COUNTS["to_zero"] > 0


DST_SOURCE = """package dst
service a { image "x" port 80 }
scale a {
  replicas 1..20
  target cpu 50%
  during daily 02:30-04:00 "Europe/Stockholm" { replicas 6..20 }
}
service b { image "x" port 80 }
scale b {
  replicas 1..20
  target cpu 50%
  during daily 01:30-02:30 "America/New_York" { replicas 6..20 }
}
service c { image "x" port 80 }
scale c {
  replicas 1..20
  target cpu 50%
  during weekends 23:30-02:45 "Europe/Stockholm" { replicas 6..20 }
}
"""


def test_clock_changes_minute_by_minute(tmp_path: Path) -> None:
    """Windows with a boundary in the hour a clock change skips or repeats, every minute of
    the four days around each change: the engine answers as KEDA's cron library does."""
    (tmp_path / "main.mcp").write_text(DST_SOURCE, encoding="utf-8")
    compilation = compile_tree(tmp_path)
    assert compilation.project is not None
    out = kubernetes.compile(compilation.project, TargetContext(version=__version__))
    docs = {
        d["metadata"]["name"]: d
        for d in (yaml.safe_load(a.content) for a in out.artifacts)
        if d["kind"] == "ScaledObject"
    }
    engine = Engine.from_project(compilation.project)
    checked = active = 0
    for name, zone_days in (
        ("a", (datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 10, 23, tzinfo=UTC))),
        ("b", (datetime(2026, 3, 6, tzinfo=UTC), datetime(2026, 10, 30, tzinfo=UTC))),
        ("c", (datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 10, 23, tzinfo=UTC))),
    ):
        for start in zone_days:
            for minute in range(0, 4 * 24 * 60, 5):
                now = start + timedelta(minutes=minute)
                metrics = {"cpu": Decimal("0.5")}
                got = engine.scale(name, metrics, 5, now=now).desired
                assert got == decision(docs[name], Request(metrics, 5, now)), (name, now)
                checked += 1
                active += got == 6
    print(f"\nclock changes: {checked} moments, {active} inside a window")
    assert checked == 3 * 2 * 1152 and active > 0
