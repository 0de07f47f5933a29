"""`Engine.scale`: the Kubernetes HPA v2 algorithm, with every number worked by hand.

2026-11-28 is a Saturday, 2026-11-25 a Wednesday; Stockholm is UTC+1 in
November and UTC+2 (CEST) in July.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from engine_support import engine_for

from mcpdsl.engine import Engine, ScaleError

SOURCE = """
service web { image "x" port 80 }
service plain { image "x" port 80 }
service slow { image "x" port 80 }
service night { image "x" port 80 }
service steps { image "x" port 80 }

scale web {
  replicas 2..20
  target cpu 70%
  target metric "rps" 100 per pod
  up   by 100% every 15s stabilize 0s
  down by 10% every 60s stabilize 5m
  during weekdays 08:00-20:00 "Europe/Stockholm" { replicas 6..30 }
}

scale plain {
  replicas 2..20
  target cpu 70%
}

scale slow {
  replicas 1..50
  target cpu 70%
  up   by 100% every 15s stabilize 1m
  down by 50% every 60s stabilize 0s
}

scale night {
  replicas 1..50
  target cpu 70%
  during weekdays 22:00-06:00 UTC { replicas 4..10 }
}

scale steps {
  replicas 1..100
  target cpu 50%
  up   by 12% every 15s
  down by 3 pods every 60s stabilize 0s
}
"""

SAT = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
WED_0900_CET = datetime.fromisoformat("2026-11-25T09:00:00+01:00")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return engine_for(tmp_path_factory.mktemp("scale"), SOURCE)


def test_within_tolerance_nothing_changes(engine: Engine) -> None:
    # 75/70 = 1.071: |1 - 1.071| <= 0.1
    assert engine.scale("web", {"cpu": 0.75}, 5, now=SAT).desired == 5
    # 63/70 = 0.9: 1 - 0.9 = 0.0999... in float64: within the tolerance
    d = engine.scale("web", {"cpu": 0.63}, 5, now=SAT)
    assert d.desired == 5 and "tolerance" in d.reason


def test_exactly_ten_percent_above_scales_like_kubernetes(engine: Engine) -> None:
    # 77/70 is 1.1000000000000001 in float64, so |1 - ratio| = 0.10000000000000009 > 0.1:
    # the HPA scales to ceil(5 x 1.1) = ceil(5.500000000000001) = 6, and so do we
    assert engine.scale("web", {"cpu": 0.77}, 5, now=SAT).desired == 6


def test_scale_out_on_cpu(engine: Engine) -> None:
    # ceil(5 x 95/70) = ceil(6.79) = 7; the up policy allows ceil(5 x 2) = 10
    d = engine.scale("web", {"cpu": 0.95}, 5, now=SAT)
    assert d.desired == 7 and d.reason.startswith("cpu 95% vs target 70%")


def test_utilisation_is_whole_percent(engine: Engine) -> None:
    # 0.959 is 95% for the HPA (integer utilisation), so the answer is still 7
    assert engine.scale("web", {"cpu": 0.959}, 5, now=SAT).desired == 7


def test_max_over_metrics(engine: Engine) -> None:
    # cpu: 7; rps: ceil(5 x 180/100) = 9: the larger wins
    d = engine.scale("web", {"cpu": 0.95, "rps": 180}, 5, now=SAT)
    assert d.desired == 9 and d.reason.startswith("rps")


def test_scale_up_policy_limits_the_step(engine: Engine) -> None:
    # rps: ceil(5 x 2.5) = 13 > the 100% policy's ceil(5 x 2) = 10
    d = engine.scale("web", {"rps": 250}, 5, now=SAT)
    assert d.desired == 10 and "scale-up policy +100% per 15s" in d.reason


def test_clamped_to_the_maximum(engine: Engine) -> None:
    # ceil(15 x 140/70) = 30, policy limit 30, the maximum 20 wins
    d = engine.scale("web", {"cpu": 1.4}, 15, now=SAT)
    assert d.desired == 20 and "maximum" in d.reason


def test_scale_down_policy(engine: Engine) -> None:
    # ceil(10 x 35/70) = 5 and ceil(10 x 50/100) = 5; `down by 10%` allows trunc(10 x 0.9) = 9
    d = engine.scale("web", {"cpu": 0.35, "rps": 50}, 10, now=SAT)
    assert d.desired == 9 and "scale-down policy -10% per 60s" in d.reason


def test_scale_down_stabilisation_takes_the_max_in_the_window(engine: Engine) -> None:
    now = SAT.timestamp()
    both = {"cpu": 0.35, "rps": 50}  # both ask for 5
    # recommendation 10 from 100s ago is inside the 5m window: no scale-down at all
    d = engine.scale("web", both, 10, history=[(now - 100, 10), (now - 400, 12)], now=now)
    assert d.desired == 10 and "stabilisation" in d.reason
    # 9 inside the window, 12 outside (400s > 300s)
    d = engine.scale("web", both, 10, history=[(now - 100, 9), (now - 400, 12)], now=now)
    assert d.desired == 9
    # a window boundary is exclusive: exactly 300s ago is outside
    d = engine.scale("web", both, 10, history=[(now - 300, 10)], now=now)
    assert d.desired == 9


def test_scale_up_stabilisation_takes_the_min_in_the_window(engine: Engine) -> None:
    now = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    # ceil(5 x 95/70) = 7, but 6 was recommended 30s ago inside the 1m up window
    hist = [(now - timedelta(seconds=30), 6), (now - timedelta(seconds=90), 5)]
    d = engine.scale("slow", {"cpu": 0.95}, 5, history=hist, now=now)
    assert d.desired == 6 and "scale-up stabilisation window 60s" in d.reason


def test_default_behaviour(engine: Engine) -> None:
    # no `up`: max(+4 pods, +100%) per 15s: ceil(2 x 350/70) = 10 limited to max(6, 4) = 6
    assert engine.scale("plain", {"cpu": 3.5}, 2, now=SAT).desired == 6
    # no `down`: -100% per 15s and a 5m window; ceil(10 x 7/70) = 1, clamped to the minimum 2
    d = engine.scale("plain", {"cpu": 0.07}, 10, now=SAT)
    assert d.desired == 2 and "minimum" in d.reason


def test_pods_and_percent_policies(engine: Engine) -> None:
    # `up by 12%`: ceil(10 x 1.12) = ceil(11.2) = 12
    assert engine.scale("steps", {"cpu": 1.0}, 10, now=SAT).desired == 12
    # in float64 25 x 1.12 is 28.000000000000004, so Kubernetes allows 29 (not 28): so do we
    assert engine.scale("steps", {"cpu": 1.0}, 25, now=SAT).desired == 29
    # `down by 3 pods`: ceil(10 x 10/50) = 2, limited to 10 - 3 = 7
    assert engine.scale("steps", {"cpu": 0.1}, 10, now=SAT).desired == 7
    # `down by 50%`: trunc(9 x 0.5) = 4; ceil(9 x 7/70) = 1 is limited to 4
    assert engine.scale("slow", {"cpu": 0.07}, 9, now=SAT).desired == 4


def test_during_window_raises_the_floor(engine: Engine) -> None:
    # Wednesday 09:00 CET: the window's range 6..30 applies and 3 replicas are below it
    d = engine.scale("web", {"cpu": 0.40, "rps": 40}, 3, now=WED_0900_CET)
    assert d.desired == 6 and "during mon,tue,wed,thu,fri 08:00-20:00 Europe/Stockholm" in d.reason
    # Saturday: no window; ceil(3 x 40/70) = 2 and ceil(3 x 0.4) = 2, `down by 10%`
    # allows trunc(3 x 0.9) = 2
    assert engine.scale("web", {"cpu": 0.40, "rps": 40}, 3, now=SAT).desired == 2


def test_during_window_uses_the_zone(engine: Engine) -> None:
    # 07:30 UTC is 08:30 in Stockholm (UTC+1 in November): inside 08:00-20:00
    assert engine.scale("web", {}, 3, now=datetime(2026, 11, 25, 7, 30, tzinfo=UTC)).desired == 6
    # 06:30 UTC is 07:30 in Stockholm: outside
    assert engine.scale("web", {}, 3, now=datetime(2026, 11, 25, 6, 30, tzinfo=UTC)).desired == 3
    # summer time: 06:30 UTC is 08:30 CEST (inside), 05:30 UTC is 07:30 (outside)
    assert engine.scale("web", {}, 3, now=datetime(2026, 7, 1, 6, 30, tzinfo=UTC)).desired == 6
    assert engine.scale("web", {}, 3, now=datetime(2026, 7, 1, 5, 30, tzinfo=UTC)).desired == 3
    # 19:59 in Stockholm is inside, 20:00 is not (the end is exclusive)
    assert engine.scale("web", {}, 3, now=datetime(2026, 11, 25, 18, 59, tzinfo=UTC)).desired == 6
    assert engine.scale("web", {}, 3, now=datetime(2026, 11, 25, 19, 0, tzinfo=UTC)).desired == 3


def test_a_window_maximum_is_not_applied_as_keda_cannot_express_it(engine: Engine) -> None:
    # the window says 6..30, but a ScaledObject has one maxReplicaCount (20; B0107):
    # the cluster keeps 25 replicas at 20 inside the window too, and so does the engine
    d = engine.scale("web", {"cpu": 1.4}, 25, now=WED_0900_CET)
    assert d.desired == 20 and "maximum of replicas 2..20" in d.reason
    assert engine.scale("web", {"cpu": 1.4}, 25, now=SAT).desired == 20


def test_a_window_is_a_cron_metric_that_the_others_can_outvote(engine: Engine) -> None:
    # issue 13: at 5 replicas and 95% cpu inside the window, the cron trigger proposes 6
    # and cpu ceil(5 x 95/70) = 7: the HPA takes the maximum, 7 (not the window's 6)
    d = engine.scale("web", {"cpu": 0.95, "rps": 100}, 5, now=WED_0900_CET)
    assert d.desired == 7 and d.reason.startswith("cpu 95%")
    # the window's minimum is a metric, so the up policy limits it: 2 -> at most 4
    d = engine.scale("web", {"cpu": 0.5, "rps": 50}, 2, now=WED_0900_CET)
    assert d.desired == 4 and "scale-up policy +100% per 15s" in d.reason
    # and like every metric it has the 10% tolerance: 6/6.5 is within it (KEDA
    # reports 6 against 1 per pod at 6 replicas: ratio 1; at 7: 6/7 = 0.857, outside)
    d = engine.scale("web", {"cpu": 0.1, "rps": 10}, 7, now=WED_0900_CET)
    assert d.desired == 6


def test_overnight_window(engine: Engine) -> None:
    fri_2300 = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    sat_0500 = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)  # the Friday window continues
    sat_0600 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    sat_2300 = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)  # Saturday is not a weekday
    mon_0500 = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)  # Sunday night is not either
    assert engine.scale("night", {}, 2, now=fri_2300).desired == 4
    assert engine.scale("night", {}, 2, now=sat_0500).desired == 4
    assert engine.scale("night", {}, 2, now=sat_0600).desired == 2
    assert engine.scale("night", {}, 2, now=sat_2300).desired == 2
    assert engine.scale("night", {}, 2, now=mon_0500).desired == 2


def test_early_exits(engine: Engine) -> None:
    assert engine.scale("plain", {"cpu": 2.0}, 0, now=SAT).desired == 0  # autoscaling disabled
    # a ScaledObject: KEDA raises 0 replicas to its minReplicaCount before the HPA runs
    assert engine.scale("web", {"cpu": 2.0}, 0, now=SAT).desired == 2
    assert engine.scale("web", {"cpu": 0.1}, 25, now=SAT).desired == 20  # above the maximum
    assert engine.scale("web", {"cpu": 0.1}, 1, now=SAT).desired == 2  # below the minimum


def test_no_scale_down_on_partial_metrics(engine: Engine) -> None:
    # cpu asks for ceil(10 x 35/70) = 5 but rps has no value: the HPA does not scale down
    d = engine.scale("web", {"cpu": 0.35}, 10, now=SAT)
    assert d.desired == 10 and "partial metrics" in d.reason
    # scaling up on the metrics it has is fine: ceil(5 x 95/70) = 7
    assert engine.scale("web", {"cpu": 0.95}, 5, now=SAT).desired == 7
    d = engine.scale("plain", {}, 10, now=SAT)
    assert d.desired == 10 and "no metric" in d.reason


def test_bad_input(engine: Engine) -> None:
    with pytest.raises(ScaleError, match="unknown metric `qps`"):
        engine.scale("web", {"qps": 1}, 3)
    with pytest.raises(ScaleError, match="non-negative"):
        engine.scale("web", {"cpu": -1}, 3)
    with pytest.raises(ScaleError, match="no `scale` block for service `nope`"):
        engine.scale("nope", {}, 3)
    with pytest.raises(ScaleError):
        engine.scale("web", {"cpu": True}, 3)


def test_scale_accepts_qualified_names_and_epoch_seconds(engine: Engine, tmp_path: Path) -> None:
    assert engine.scale("t.web", {"cpu": 0.95}, 5, now=SAT.timestamp()).desired == 7
