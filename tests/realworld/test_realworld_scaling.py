"""Public scaling examples, retold as mcpdsl sources, with the outcomes their documentation gives.

* `hpa_walkthrough/`: Kubernetes' HorizontalPodAutoscaler walkthrough
  (php-apache, 200m CPU request, 50% target, 1..10 pods): under the load the
  walkthrough applies (305% of one pod's request) the Deployment settles at 7
  replicas; once the load stops it returns to 1 after the 5-minute
  scale-down stabilisation window.
* `hpa_policies/`: the scaling-policy examples of the HPA documentation: two
  scale-down policies (4 pods or 10% per minute; from 80 replicas 8 go, then
  8 again at 72, and 4 at a time at 40 or fewer), `selectPolicy: Min`,
  `Disabled`, and at most one pod per 10 minutes.
* `keda_cron/`: KEDA's cron scaler example (10 replicas from 06:00 to 20:00
  in Asia/Kolkata): 10 inside the window, 0 outside it.

Every case is checked three ways: the sources' own `test` blocks (the engine),
the generated artifacts (validated by the real schemas, and their decisions
computed by the independent model in tests/engine/autoscaling_model.py), and
simulations of the controllers over time that feed back history and events.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "engine"))

import itertools

from autoscaling_model import Request, cron_active, decision
from validators import validate_kubernetes

from mcpdsl._version import __version__
from mcpdsl.compile import TargetContext, kubernetes
from mcpdsl.engine import Engine
from mcpdsl.evaluate.testing import run_tests
from mcpdsl.pipeline import compile_tree

HERE = Path(__file__).resolve().parent
TREES = ("hpa_walkthrough", "hpa_policies", "keda_cron")


@dataclass(frozen=True)
class World:
    engine: Engine
    docs: dict[str, dict[str, Any]]
    project: Any


def world(name: str) -> World:
    compilation = compile_tree(HERE / name)
    errors = [f"{d.code} {d.message}" for d in compilation.diagnostics if d.is_error]
    assert compilation.project is not None and errors == []
    out = kubernetes.compile(compilation.project, TargetContext(version=__version__))
    docs: dict[str, dict[str, Any]] = {}
    for artifact in out.artifacts:
        doc = yaml.safe_load(artifact.content.decode("utf-8"))
        assert validate_kubernetes(doc) == [], artifact.path
        if doc["kind"] in ("HorizontalPodAutoscaler", "ScaledObject"):
            docs[doc["metadata"]["name"]] = doc
    assert [d.code for d in out.diagnostics if d.code.startswith("B01") and d.is_error] == []
    return World(Engine.from_project(compilation.project), docs, compilation.project)


@pytest.fixture(scope="module", params=TREES)
def tree(request: pytest.FixtureRequest) -> tuple[str, World]:
    return request.param, world(request.param)


def test_the_sources_own_tests_pass(tree: tuple[str, World]) -> None:
    _name, w = tree
    outcomes = run_tests(w.engine._compiled)
    assert outcomes and all(o.passed for o in outcomes), [
        (o.name, o.message) for o in outcomes if not o.passed
    ]


def test_the_artifacts_give_the_documented_outcomes(tree: tuple[str, World]) -> None:
    """Each `test` block's expectation, computed by the independent model from the YAML."""
    _, w = tree
    checked = 0
    for test in w.project.tests:
        given = test.scale
        if given is None:
            continue
        at = given.at or "2026-11-28T12:00:00Z"
        now = datetime.fromisoformat(at.replace("Z", "+00:00"))
        req = Request(metrics=dict(given.metrics), current=given.replicas, now=now)
        (expectation,) = test.expect
        assert decision(w.docs[given.service.name], req) == expectation.replicas, test.name
        checked += 1
    assert checked >= 3


# --------------------------------------------------------------- simulations


@dataclass
class Cluster:
    """One workload under its autoscaler, synced every `step` seconds."""

    w: World
    service: str
    replicas: int
    now: datetime
    history: list[tuple[float, int]]
    events: list[tuple[float, int]]
    last_active: float | None = None

    def sync(self, metrics: dict[str, Decimal]) -> int:
        ts = self.now.timestamp()
        d = self.w.engine.scale(
            self.service,
            metrics,
            self.replicas,
            history=self.history,
            now=self.now,
            events=self.events,
            last_active=self.last_active,
        )
        req = Request(
            metrics=metrics,
            current=self.replicas,
            now=self.now,
            history=tuple(self.history),
            events=tuple(self.events),
            last_active=self.last_active,
        )
        assert d.desired == decision(self.w.docs[self.service], req), (self.now, d)
        if d.recommendation is not None:
            self.history.append((ts, d.recommendation))
        if d.desired != self.replicas:
            self.events.append((ts, d.desired - self.replicas))
        self.replicas = d.desired
        return d.desired

    def wait(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)


START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def per_pod(total_percent: int, replicas: int) -> dict[str, Decimal]:
    """Utilisation per pod of a fixed total load (whole percents, as the HPA reads it)."""
    return {"cpu": Decimal(total_percent // max(replicas, 1)) / 100}


def test_walkthrough_settles_at_seven_and_returns_to_one() -> None:
    w = world("hpa_walkthrough")
    cluster = Cluster(w, "php-apache", 1, START, [], [])
    seen = []
    for _ in range(20):  # five minutes of load, one sync every 15s
        seen.append(cluster.sync(per_pod(305, cluster.replicas)))
        cluster.wait(15)
    assert seen[:3] == [5, 7, 7] and set(seen[2:]) == {7}  # the walkthrough's 7
    # the load stops: the 5-minute scale-down window keeps 7 until the last
    # recommendation of 7 is older than 300s, then the default policy (-100%) goes to 1
    stopped = cluster.now
    while cluster.sync({"cpu": Decimal(0)}) == 7:
        cluster.wait(15)
    assert cluster.replicas == 1
    assert timedelta(seconds=285) <= cluster.now - stopped <= timedelta(seconds=300)


def test_two_scale_down_policies_walk_from_80_to_10() -> None:
    w = world("hpa_policies")
    cluster = Cluster(w, "app", 80, START, [], [])
    counts = [80]
    while cluster.replicas > 10:
        counts.append(cluster.sync(per_pod(500, cluster.replicas)))  # 10 pods' worth at 50%
        cluster.wait(60)
    removed = [a - b for a, b in itertools.pairwise(counts)]
    assert removed[:2] == [8, 8]  # 10% of 80, then 10% of 72 (7.2) rounded up to 8
    # above 40 pods the 10% policy removes more than 4; at 40 or fewer, the 4-pod policy
    assert all(r > 4 for c, r in zip(counts, removed, strict=False) if c > 40)
    assert all(r == 4 for c, r in zip(counts, removed, strict=False) if 14 <= c <= 40)
    assert counts[-1] == 10


def test_one_pod_per_ten_minutes() -> None:
    w = world("hpa_policies")
    cluster = Cluster(w, "slow", 20, START, [], [])
    for _ in range(120):  # 30 minutes, one sync every 15s, load for 1 pod
        cluster.sync(per_pod(50, cluster.replicas))
        cluster.wait(15)
    assert cluster.replicas == 17  # removals at 0, 10 and 20 minutes
    assert [c for _, c in cluster.events] == [-1, -1, -1]


def test_cron_window_holds_ten_replicas_and_zero_outside() -> None:
    w = world("keda_cron")
    # 00:00 Kolkata on 2026-11-25 is 18:30 UTC the day before
    midnight = datetime(2026, 11, 24, 18, 30, tzinfo=UTC)
    cluster = Cluster(w, "reports", 0, midnight, [], [])
    zone = "Asia/Kolkata"
    timeline: dict[str, int] = {}
    for _ in range(24 * 60):  # a day, one sync a minute
        trigger = w.docs["reports"]["spec"]["triggers"][0]
        if cron_active(trigger, cluster.now):
            cluster.last_active = cluster.now.timestamp()
        cluster.sync({})
        local = cluster.now.astimezone(ZoneInfo(zone))
        timeline[local.strftime("%H:%M")] = cluster.replicas
        cluster.wait(60)
    assert timeline["05:59"] == 0
    assert timeline["06:00"] == 1  # activated from zero
    assert timeline["06:02"] == 10  # 1 -> 5 -> 10 under the default scale-up policy
    assert all(timeline[f"{h:02d}:{m:02d}"] == 10 for h in range(7, 20) for m in range(60))
    # the window closes at 20:00: the HPA's 300s scale-down window keeps 10 while the
    # recommendation of 10 made at 19:59 is in it; KEDA's 300s cooldown since 19:59 then ends
    assert timeline["20:03"] == 10
    assert timeline["20:04"] == 1
    assert timeline["20:05"] == 0
    assert all(timeline[f"{h:02d}:00"] == 0 for h in (21, 22, 23, 0, 1, 2, 3, 4, 5))


def test_the_cron_trigger_is_the_documented_one() -> None:
    w = world("keda_cron")
    spec = w.docs["reports"]["spec"]
    assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] == 20
    assert spec["triggers"] == [
        {
            "metadata": {
                "desiredReplicas": "10",
                "end": "0 20 * * *",
                "start": "0 6 * * *",
                "timezone": "Asia/Kolkata",
            },
            "name": "during-1",
            "type": "cron",
        }
    ]


def test_the_walkthrough_hpa_is_the_documented_one() -> None:
    w = world("hpa_walkthrough")
    spec = w.docs["php-apache"]["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 10)
    assert spec["metrics"] == [
        {
            "resource": {
                "name": "cpu",
                "target": {"averageUtilization": 50, "type": "Utilization"},
            },
            "type": "Resource",
        }
    ]
    assert spec["behavior"]["scaleUp"]["policies"] == [
        {"periodSeconds": 15, "type": "Pods", "value": 4},
        {"periodSeconds": 15, "type": "Percent", "value": 100},
    ]
