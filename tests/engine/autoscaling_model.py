"""An independent model of what Kubernetes and KEDA do with a generated autoscaler.

It reads only the generated YAML (an autoscaling/v2 HorizontalPodAutoscaler
or a keda.sh/v1alpha1 ScaledObject) and applies the documented behaviour of
the two controllers; it imports nothing from mcpdsl, so a shared mistake in
`mcpdsl.ir.autoscaling` or `mcpdsl.evaluate.scale` cannot hide here.

Sources of the semantics (written down from the documentation and the
controllers' code, in our own words):

* HPA (Kubernetes "Horizontal Pod Autoscaling", algorithm details and
  "Configurable scaling behavior"): per metric, ratio = current value /
  target value; within 10% of 1 nothing changes, else ceil(ratio x current
  replicas); the largest proposal wins; when some metric cannot be read the
  HPA never scales down.  Resource utilisation is an integer percent of the
  requests.  External `AverageValue` metrics: the total divided by the target
  gives the replicas.  Quantities are compared in milli-units (rounded up).
  Stabilisation: the largest recommendation within the down window, the
  smallest within the up window.  Policies: each relative to the replica
  count at the start of its period; `selectPolicy` Max takes the policy
  allowing the largest change, Min the smallest, Disabled none.  0 current
  replicas: the HPA does nothing.
* KEDA ("Scaling Deployments", the cron and prometheus scalers): the
  ScaledObject owns an HPA whose minimum is `minReplicaCount` (at least 1)
  and whose metrics are the triggers; cpu/memory are Resource metrics, every
  other trigger an External `AverageValue` metric.  A cron trigger reports
  `desiredReplicas` between a start and the following end (the next end
  comes no later than the next start, in whole seconds), else 1, against a
  target of 1; the next times are those of KEDA's cron library, robfig/cron,
  ported below over Go's time arithmetic (which decides what happens on the
  days the clocks change).  A
  prometheus trigger reports the query's value and is active above 0.  KEDA
  itself raises a workload below `minReplicaCount` to it, activates a
  workload at 0 to 1 when a trigger is active, and scales to 0 when
  `minReplicaCount` is 0 and no trigger has been active for `cooldownPeriod`
  (300 s by default; immediately if none ever was).

The request is the engine's: `cpu`/`memory` as utilisation ratios, custom
metrics (and `predict`, the forecast) as the average per pod; this model plays
Prometheus by answering a `sum(...)` query with average x replicas (at least 1).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any
from zoneinfo import ZoneInfo

TOLERANCE = 0.1
DEFAULT_BEHAVIOR = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 300,
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    },
}


@dataclass(frozen=True)
class Request:
    metrics: dict[str, Decimal]
    current: int
    now: datetime
    history: tuple[tuple[float, int], ...] = ()
    events: tuple[tuple[float, int], ...] = ()
    last_active: float | None = None
    notes: list[str] = field(default_factory=list, compare=False)


def milli(quantity: str | Decimal | int) -> int:
    """A Kubernetes quantity's MilliValue (plain decimals and the `m` suffix; rounded up)."""
    text = str(quantity)
    value = Decimal(text[:-1]) / 1000 if text.endswith("m") else Decimal(text)
    return int((value * 1000).to_integral_value(rounding=ROUND_CEILING))


# ----------------------------------------------------------------- metrics


def _ratio_proposal(ratio: float, current: int) -> int:
    if abs(1.0 - ratio) <= TOLERANCE:
        return current
    return math.ceil(ratio * current)


def resource(value: Decimal | None, target_percent: int, current: int) -> int | None:
    if value is None:
        return None
    percent = int((value * 100).to_integral_value(rounding=ROUND_FLOOR))
    return _ratio_proposal(percent / target_percent, current)


def pods(value: Decimal | None, target: str, current: int) -> int | None:
    if value is None:
        return None
    return _ratio_proposal(milli(value) / milli(target), current)


def external(reported: float | None, target: str, current: int) -> int | None:
    """An External AverageValue metric; `reported` as KEDA hands it over (milli, truncated)."""
    if reported is None:
        return None
    usage = int(reported * 1000)
    per_pod_target = milli(target)
    if abs(1.0 - usage / (per_pod_target * current)) <= TOLERANCE:
        return current
    return math.ceil(usage / per_pod_target)


def cron_active(trigger: dict[str, Any], now: datetime) -> bool:
    """KEDA's cron rule: active when the next end comes no later than the next start."""
    meta = trigger["metadata"]
    zone = ZoneInfo(meta["timezone"])
    current = int(now.timestamp())
    return robfig_next(meta["end"], zone, current) <= robfig_next(meta["start"], zone, current)


# A port of robfig/cron v3 `SpecSchedule.Next` (KEDA's cron library) for the
# five-field specs KEDA takes, over Go's time arithmetic: instants are Unix
# seconds, wall-clock fields are read in the zone, `time.Date` resolves a wall
# time like Go does (see `go_date`), and `Add` moves in absolute time.


def _field(text: str, low: int, high: int) -> set[int]:
    if text == "*":
        return set(range(low, high + 1))
    out: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        out.update(range(int(first), int(last or first) + 1))
    return out


def _wall(ts: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ts, zone)


def _offset(ts: int, zone: ZoneInfo) -> int:
    offset = _wall(ts, zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def go_date(y: int, mo: int, d: int, h: int, mi: int, zone: ZoneInfo) -> int:
    """Go's `time.Date` in `zone`: the wall time's offset, looked up as Go looks it up
    (normalising overflowing fields, then guessing with the offset at the wall time
    read as UTC and correcting it once)."""
    unix = int(
        (datetime(y, mo, 1) + timedelta(days=d - 1, hours=h, minutes=mi))
        .replace(tzinfo=ZoneInfo("UTC"))
        .timestamp()
    )
    guess = _offset(unix, zone)
    return unix - _offset(unix - guess, zone)


def robfig_next(spec: str, zone: ZoneInfo, now: int) -> int:
    minute_s, hour_s, dom_s, month_s, dow_s = spec.split()
    minutes, hours = _field(minute_s, 0, 59), _field(hour_s, 0, 23)
    doms, months = _field(dom_s, 1, 31), _field(month_s, 1, 12)
    dows = {d % 7 for d in _field(dow_s, 0, 7)}
    star = dom_s == "*" or dow_s == "*"
    t = now + 1  # the upcoming second
    added = False
    for _ in range(10000):
        w = _wall(t, zone)
        if w.month not in months:
            if not added:
                added, t = True, go_date(w.year, w.month, 1, 0, 0, zone)
            w = _wall(t, zone)
            t = (
                go_date(w.year, w.month + 1, w.day, w.hour, w.minute, zone)
                if w.month < 12
                else (go_date(w.year + 1, 1, w.day, w.hour, w.minute, zone))
            )
            continue
        go_weekday = (w.weekday() + 1) % 7
        day_ok = (
            (w.day in doms and go_weekday in dows)
            if star
            else (w.day in doms or go_weekday in dows)
        )
        if not day_ok:
            if not added:
                added, t = True, go_date(w.year, w.month, w.day, 0, 0, zone)
            w = _wall(t, zone)
            t = go_date(w.year, w.month, w.day + 1, w.hour, w.minute, zone)
            w = _wall(t, zone)
            if w.hour != 0:  # DST moved midnight
                t += (24 - w.hour) * 3600 if w.hour > 12 else -w.hour * 3600
            continue
        if w.hour not in hours:
            if not added:
                added, t = True, go_date(w.year, w.month, w.day, w.hour, 0, zone)
            t += 3600
            continue
        if w.minute not in minutes:
            if not added:
                added, t = True, t - t % 60
            t += 60
            continue
        if w.second != 0:
            if not added:
                added = True
            t += 1
            continue
        return t
    raise AssertionError(f"no next time for {spec!r}")


def prometheus_answer(query: str, req: Request) -> float | None:
    """What our stand-in Prometheus answers: the per-pod value times the replicas."""
    if "predict_linear(" in query:
        key = "predict"
    elif (quoted := re.search(r'__name__=("(?:[^"\\]|\\.)*")', query)) is not None:
        key = json.loads(quoted.group(1))
    else:
        found = re.search(r"(?:sum\(|rate\()([a-zA-Z_:][a-zA-Z0-9_:]*)\{", query)
        assert found is not None, query
        key = found.group(1)
    value = req.metrics.get(key)
    if value is None:
        return None
    return float(value * max(req.current, 1))


# ----------------------------------------------------------------- the HPA


def _in_window(t: float, now: float, seconds: int) -> bool:
    return t > now - seconds


def _period_start(rules_period: int, req: Request) -> int:
    now = req.now.timestamp()
    added = sum(c for t, c in req.events if c > 0 and _in_window(t, now, rules_period))
    removed = sum(-c for t, c in req.events if c < 0 and _in_window(t, now, rules_period))
    return req.current - added + removed


def _limit(rules: dict[str, Any], req: Request, up: bool) -> int:
    if rules["selectPolicy"] == "Disabled":
        return req.current
    proposals = []
    for policy in rules["policies"]:
        start = _period_start(policy["periodSeconds"], req)
        if policy["type"] == "Pods":
            proposals.append(start + policy["value"] if up else start - policy["value"])
        elif up:
            proposals.append(math.ceil(start * (1 + policy["value"] / 100)))
        else:
            proposals.append(int(start * (1 - policy["value"] / 100)))
    # the largest change: the highest ceiling up, the lowest floor down
    largest_change = max(proposals) if up else min(proposals)
    smallest_change = min(proposals) if up else max(proposals)
    return largest_change if rules["selectPolicy"] == "Max" else smallest_change


def hpa(spec: dict[str, Any], proposals: list[int | None], req: Request) -> int:
    """The HPA controller's decision for one sync."""
    low, high = spec.get("minReplicas", 1), spec["maxReplicas"]
    current = req.current
    if current == 0:
        return 0
    if current > high:
        return high
    if current < low:
        return low
    valid = [p for p in proposals if p is not None]
    if not valid:
        return current
    wanted = max(valid)
    if len(valid) < len(proposals) and wanted < current:
        return current
    behavior = spec.get("behavior") or DEFAULT_BEHAVIOR
    up_rules = behavior.get("scaleUp") or DEFAULT_BEHAVIOR["scaleUp"]
    down_rules = behavior.get("scaleDown") or DEFAULT_BEHAVIOR["scaleDown"]
    now = req.now.timestamp()
    up_window = [
        r for t, r in req.history if _in_window(t, now, up_rules["stabilizationWindowSeconds"])
    ]
    down_window = [
        r for t, r in req.history if _in_window(t, now, down_rules["stabilizationWindowSeconds"])
    ]
    floor_ = min([wanted, *up_window])
    ceiling = max([wanted, *down_window])
    stabilized = min(max(current, floor_), ceiling)
    if stabilized > current:
        allowed = max(_limit(up_rules, req, up=True), current)
        return min(stabilized, min(allowed, high))
    if stabilized < current:
        allowed = min(_limit(down_rules, req, up=False), current)
        return max(stabilized, max(allowed, low))
    return stabilized


def hpa_decision(doc: dict[str, Any], req: Request) -> int:
    spec = doc["spec"]
    proposals: list[int | None] = []
    for metric in spec.get("metrics") or [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"averageUtilization": 80}}}
    ]:
        if metric["type"] == "Resource":
            name = metric["resource"]["name"]
            target = metric["resource"]["target"]["averageUtilization"]
            proposals.append(resource(req.metrics.get(name), target, req.current or 1))
        else:
            assert metric["type"] == "Pods", metric
            name = metric["pods"]["metric"]["name"]
            target = metric["pods"]["target"]["averageValue"]
            proposals.append(pods(req.metrics.get(name), target, req.current or 1))
    return hpa(spec, proposals, req)


# ----------------------------------------------------------------- KEDA


def keda_decision(doc: dict[str, Any], req: Request) -> int:
    spec = doc["spec"]
    minimum = spec.get("minReplicaCount", 0)
    maximum = spec.get("maxReplicaCount", 100)
    n = max(req.current, 1)
    proposals: list[int | None] = []
    active = False
    for trigger in spec["triggers"]:
        kind = trigger["type"]
        if kind in ("cpu", "memory"):
            assert trigger["metricType"] == "Utilization"
            target = int(trigger["metadata"]["value"])
            proposals.append(resource(req.metrics.get(kind), target, n))
        elif kind == "cron":
            on = cron_active(trigger, req.now)
            active = active or on
            reported = float(int(trigger["metadata"]["desiredReplicas"])) if on else 1.0
            proposals.append(external(reported, "1", n))
        else:
            assert kind == "prometheus" and trigger["metricType"] == "AverageValue"
            answer = prometheus_answer(trigger["metadata"]["query"], req)
            active = active or (answer is not None and answer > 0)
            proposals.append(external(answer, trigger["metadata"]["threshold"], n))
    if req.current < minimum:
        return minimum
    if req.current == 0:
        return 1 if active else 0
    if minimum == 0 and not active:
        cooldown = spec.get("cooldownPeriod", 300)
        if req.last_active is None or req.last_active + cooldown < req.now.timestamp():
            return 0
    advanced = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {})
    owned = {
        "minReplicas": max(minimum, 1),
        "maxReplicas": maximum,
        "behavior": advanced.get("behavior"),
    }
    return hpa(owned, proposals, req)


def decision(doc: dict[str, Any], req: Request) -> int:
    if doc["kind"] == "ScaledObject":
        return keda_decision(doc, req)
    assert doc["kind"] == "HorizontalPodAutoscaler", doc["kind"]
    return hpa_decision(doc, req)
