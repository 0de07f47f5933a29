"""`Engine.scale`: what the emitted HPA or KEDA ScaledObject makes the cluster do.

A `scale` compiles to an autoscaling/v2 HPA or, with `during` windows, a
`predict` clause or a minimum of 0, to a KEDA ScaledObject (which owns an HPA
built from its triggers); `mcpdsl.ir.autoscaling` decides which, for both the
target and this module.  This reproduces, step by step and with the
controllers' own float64 and milli-unit arithmetic, `pkg/controller/podautoscaler`
(replica_calculator.go, horizontal.go: `normalizeDesiredReplicasWithBehaviors`)
and KEDA's scale loop (scale_scaledobjects.go, the cron and prometheus scalers):

1. KEDA only: below `minReplicaCount` -> that minimum; at 0 replicas (minimum
   0) -> 1 when a trigger is active, else 0; no trigger active and the
   cooldown (300s since `last_active`, immediately without one) over -> 0;
2. HPA: current replicas 0 -> autoscaling is off (0); above `maxReplicas`
   -> the maximum; below `minReplicas` (at least 1) -> the minimum;
3. per metric: usage ratio against its target -- cpu/memory in whole percent
   of requests, Pods metrics as the average per pod, KEDA's External metrics
   (`AverageValue`: prometheus totals, cron windows, the forecast) as
   `usage / (target x replicas)`; no change when |1 - ratio| <= 0.1, else
   ceil(ratio x current) (External: ceil(usage / target)); the maximum over
   metrics; no scale-down while a metric is missing.  A cron trigger reports
   the window's minimum while the window is active (KEDA's rule, see
   `cron_active`) and 1 otherwise;
4. stabilisation over `history` (timestamp, recommendation): scale-up takes
   the minimum of the recommendations inside its window, scale-down the
   maximum;
5. rate limits of the direction's policies, each relative to the replicas at
   the start of its period (current, minus the replicas the `events` inside
   the period added, plus those they removed),
   combined by `selectPolicy` (Max: the largest change, Min: the smallest,
   Disabled: none); Percent up `ceil(n x (1 + p))`, down `trunc(n x (1 - p))`,
   Pods `n +/- k`; never past the bounds.

Like the controller, percentages are whole percents and float64 is used for
ratios: 77% against a 70% target is outside the tolerance in float64
(|1 - 77/70| = 0.10000000000000009), so the HPA scales and so does this.
A `during` window's maximum is not applied: KEDA cannot express it (the
target reports B0107), so the cluster does not apply it either.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from mcpdsl.ir import model as m
from mcpdsl.ir.autoscaling import (
    KEDA_COOLDOWN,
    cron_schedule,
    effective_rules,
    hpa_max_replicas,
    hpa_min_replicas,
    policy_spec,
    predict_threshold,
    scale_targets,
    uses_keda,
    whole_percent,
    window_seconds,
)

TOLERANCE = 0.1
#: The request key of the forecast a `predict` trigger reads.
PREDICT_KEY = "predict"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


#: Kubernetes replica counts are int32.
MAX_REPLICAS = 2**31 - 1
#: The largest metric value `scale` accepts is 10**MAX_METRIC_DIGITS (beyond any real metric).
MAX_METRIC_DIGITS = 15


class ScaleError(ValueError):
    """Unusable scaling input (unknown metric, negative value, unknown service)."""


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    """The replica count the HPA would set, and what decided it.

    `recommendation` is the metrics' proposal before stabilisation and rate
    limits, which the HPA remembers: feed `(now, recommendation)` back as
    `history` (and `(now, desired - current)` as `events`) to simulate the
    controller over time.  None when the HPA did not get that far."""

    desired: int
    reason: str
    steps: tuple[str, ...] = ()
    recommendation: int | None = None


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def during_active(during: m.During, moment: datetime) -> bool:
    """Is `moment` inside the window (its days, start <= time < end, in its zone)?"""
    window = during.window
    zone = UTC if window.zone.upper() == "UTC" else _zone(window.zone)
    local = moment.astimezone(zone)
    minutes = local.hour * 60 + local.minute
    day = local.weekday()
    if window.start < window.end:
        return day in during.days and window.start <= minutes < window.end
    # crosses midnight (or spans 24h): starts on one of its days, ends the next day
    return (day in during.days and minutes >= window.start) or (
        (day - 1) % 7 in during.days and minutes < window.end
    )


def _next_fire(
    minute: int, days: tuple[int, ...], zone: ZoneInfo | timezone, after: datetime
) -> datetime:
    """The next instant after `after` whose wall time in `zone` is `minute` on one of `days`.

    As KEDA's cron library (robfig/cron) finds it, walking forward in time: a wall
    time that occurs twice (clocks going back) fires at the first occurrence still
    ahead; one that does not occur (clocks going forward) does not fire that day.
    """
    local = after.astimezone(zone)
    hour, minute_of_hour = divmod(minute, 60)
    for offset in range(9):
        day = local.date() + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        for fold in (0, 1):
            wall = datetime(
                day.year, day.month, day.day, hour, minute_of_hour, tzinfo=zone, fold=fold
            )
            instant = wall.astimezone(UTC)
            back = instant.astimezone(zone)
            if (back.date(), back.hour, back.minute) != (day, hour, minute_of_hour):
                continue  # in the gap of a clock change: this wall time does not exist
            if instant.timestamp() > math.floor(after.timestamp()):
                return instant
    raise AssertionError("a weekly schedule fires within 8 days")  # pragma: no cover


def cron_active(during: m.During, moment: datetime) -> bool:
    """Is the window's KEDA cron trigger active at `moment`?

    KEDA's rule: active when the next end comes no later than the next start
    (whole seconds).  On ordinary days this is `during_active`; on the days the
    clocks change it is what KEDA does (e.g. a start in the repeated hour fires
    the second time round when the first has passed).
    """
    return cron_state(during, moment)[0]


def cron_state(during: m.During, moment: datetime) -> tuple[bool, float]:
    """`cron_active` and the epoch second from which it may change (the next fire).

    Both next fires stay the same for every moment whose whole second is before
    the earlier of them, so the answer holds until then: a simulation asks once
    per transition instead of once per step.
    """
    (start, start_days), end_days = cron_schedule(during)
    zone = UTC if during.window.zone.upper() == "UTC" else _zone(during.window.zone)
    next_start = math.floor(_next_fire(start, start_days, zone, moment).timestamp())
    next_end = math.floor(_next_fire(during.window.end, end_days, zone, moment).timestamp())
    return next_end <= next_start, float(min(next_start, next_end))


def describe_during(during: m.During) -> str:
    w = during.window
    days = ",".join(DAY_NAMES[d] for d in during.days)
    return f"during {days} {m.TimeWindow.hhmm(w.start)}-{m.TimeWindow.hhmm(w.end)} {w.zone}"


def metric_key(target: m.Target) -> str:
    return target.metric if target.metric != "pods" else (target.name or "")


def _as_decimal(name: str, value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise ScaleError(f"metric `{name}` must be a number, found {_brief(value)}")
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except ArithmeticError as exc:
        raise ScaleError(f"metric `{name}` is not a number: {_brief(value)}") from exc
    if not d.is_finite() or d < 0:
        raise ScaleError(f"metric `{name}` must be a non-negative number, found {_brief(value)}")
    if d and d.adjusted() > MAX_METRIC_DIGITS:
        raise ScaleError(
            f"metric `{name}` is too large: {_brief(value)} (at most 1e{MAX_METRIC_DIGITS})"
        )
    return d


def _brief(value: object) -> str:
    """`repr` for a message, also for an integer too long to print."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _history(history: object) -> list[tuple[float, int]]:
    """(epoch seconds, recommendation) pairs, checked: a malformed entry is a ScaleError."""
    if history is None:
        return []
    if isinstance(history, (str, bytes, Mapping)):
        raise ScaleError("history must be (timestamp, recommendation) pairs")
    out: list[tuple[float, int]] = []
    try:
        entries = list(history)  # type: ignore[call-overload]
    except TypeError as exc:
        raise ScaleError("history must be (timestamp, recommendation) pairs") from exc
    for entry in entries:
        if not isinstance(entry, (tuple, list)) or len(entry) != 2:
            raise ScaleError(
                f"a history entry must be (timestamp, recommendation), found {_brief(entry)}"
            )
        ts, rec = entry
        if isinstance(rec, bool) or not isinstance(rec, int) or not 0 <= rec <= MAX_REPLICAS:
            raise ScaleError(f"a recommendation must be a replica count, found {_brief(rec)}")
        if isinstance(ts, bool) or not isinstance(ts, (datetime, int, float)):
            raise ScaleError(
                f"a history timestamp must be a datetime or epoch seconds: {_brief(ts)}"
            )
        try:
            t = timestamp(ts)
        except (OverflowError, ValueError) as exc:
            raise ScaleError(f"a history timestamp is out of range: {_brief(ts)}") from exc
        if not math.isfinite(t):
            raise ScaleError(f"a history timestamp must be finite, found {_brief(ts)}")
        out.append((t, int(rec)))
    return out


def _show_ratio(d: Decimal) -> str:
    return f"{(d * 100).normalize():f}%"


def timestamp(value: datetime | float | int) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)


def _events(events: object) -> list[tuple[float, int]]:
    """(epoch seconds, replica change) pairs of earlier scale events, checked."""
    if events is None:
        return []
    if isinstance(events, (str, bytes, Mapping)):
        raise ScaleError("events must be (timestamp, replica change) pairs")
    try:
        entries = list(events)  # type: ignore[call-overload]
    except TypeError as exc:
        raise ScaleError("events must be (timestamp, replica change) pairs") from exc
    out: list[tuple[float, int]] = []
    for entry in entries:
        if not isinstance(entry, (tuple, list)) or len(entry) != 2:
            raise ScaleError(f"an event must be (timestamp, replica change), found {_brief(entry)}")
        ts, change = entry
        if (
            isinstance(change, bool)
            or not isinstance(change, int)
            or not -MAX_REPLICAS <= change <= MAX_REPLICAS
        ):
            raise ScaleError(f"a replica change must be an int32, found {_brief(change)}")
        out.append((_checked_time("an event timestamp", ts), int(change)))
    return out


def _checked_time(what: str, ts: object) -> float:
    if isinstance(ts, bool) or not isinstance(ts, (datetime, int, float)):
        raise ScaleError(f"{what} must be a datetime or epoch seconds: {_brief(ts)}")
    try:
        t = timestamp(ts)
    except (OverflowError, ValueError) as exc:
        raise ScaleError(f"{what} is out of range: {_brief(ts)}") from exc
    if not math.isfinite(t):
        raise ScaleError(f"{what} must be finite, found {_brief(ts)}")
    return t


@dataclass(frozen=True, slots=True)
class _Proposal:
    """One metric's replica proposal (None: no value for it) and what it says."""

    key: str
    replicas: int | None
    why: str
    active: bool = False


def _within(ratio: float) -> bool:
    return math.fabs(1.0 - ratio) <= TOLERANCE


def _resource(key: str, value: Decimal, target: m.Target, current: int) -> _Proposal:
    """Resource Utilization: whole percents, as `GetResourceReplicas` computes them."""
    used = int((value * 100).to_integral_value(rounding=ROUND_DOWN))
    wanted = whole_percent(target.value)
    ratio = float(used) / float(wanted)
    shown = f"{key} {used}% vs target {wanted}%"
    if _within(ratio):
        return _Proposal(key, current, f"{shown}: ratio {ratio:.3f} within the 10% tolerance")
    this = math.ceil(ratio * float(current))
    return _Proposal(key, this, f"{shown}: ceil({current} x {ratio:.4g}) = {this}")


def _pods(key: str, value: Decimal, target: m.Target, current: int) -> _Proposal:
    """A Pods AverageValue metric: the average per pod against the target, in milli-units
    (a quantity's `MilliValue()` rounds up)."""
    used_milli = int((value * 1000).to_integral_value(rounding=ROUND_CEILING))
    wanted_milli = _milli(target.value)
    ratio = float(used_milli) / float(wanted_milli)
    shown = f"{key} {value.normalize():f} per pod vs target {target.value.normalize():f}"
    if _within(ratio):
        return _Proposal(key, current, f"{shown}: ratio {ratio:.3f} within the 10% tolerance")
    this = math.ceil(ratio * float(current))
    return _Proposal(key, this, f"{shown}: ceil({current} x {ratio:.4g}) = {this}")


def _milli(value: Decimal) -> int:
    """A quantity's `MilliValue()` (rounded up to whole milli-units), at least 1."""
    return max(1, int((value * 1000).to_integral_value(rounding=ROUND_CEILING)))


def _external(key: str, reported: float, target_milli: int, current: int, shown: str) -> _Proposal:
    """A KEDA External AverageValue metric (`GetExternalPerPodMetricReplicas`).

    KEDA reports `reported` in milli-units truncated (`int64(v * 1000)`); the
    ratio is usage / (target x replicas), the proposal ceil(usage / target).
    """
    usage = int(reported * 1000.0)
    ratio = float(usage) / (float(target_milli) * float(current))
    active = reported > 0
    if _within(ratio):
        why = f"{shown}: ratio {ratio:.3f} within the 10% tolerance"
        return _Proposal(key, current, why, active)
    this = math.ceil(float(usage) / float(target_milli))
    return _Proposal(key, this, f"{shown}: ceil({usage}m / {target_milli}m) = {this}", active)


def _proposals(
    scale: m.Scale,
    values: Mapping[str, Decimal],
    current: int,
    keda: bool,
    now: datetime | None,
) -> list[_Proposal]:
    """Every metric the HPA sees, in trigger order, with its proposal."""
    out: list[_Proposal] = []
    for target in scale_targets(scale):
        key = metric_key(target)
        value = values.get(key)
        if value is None:
            out.append(_Proposal(key, None, f"no value for `{key}`"))
        elif target.metric in ("cpu", "memory"):
            out.append(_resource(key, value, target, current))
        elif not keda:
            out.append(_pods(key, value, target, current))
        else:
            total = float(value * current)
            shown = f"{key} {value.normalize():f} per pod x {current} = {total:g} total"
            out.append(_external(key, total, _milli(target.value), current, shown))
    if keda:
        for during in scale.during:
            active = now is not None and cron_active(during, now)
            reported = float(during.min_replicas or 0) if active else 1.0
            state = "active" if active else "inactive"
            shown = f"{describe_during(during)} {state}: cron reports {reported:g}"
            proposal = _external("cron", reported, 1000, current, shown)
            out.append(_Proposal(proposal.key, proposal.replicas, proposal.why, active=active))
        threshold = predict_threshold(scale)
        if threshold is not None:
            value = values.get(PREDICT_KEY)
            if value is None:
                out.append(_Proposal(PREDICT_KEY, None, f"no value for `{PREDICT_KEY}`"))
            else:
                total = float(value * current)
                shown = f"forecast {value.normalize():f} per pod x {current} = {total:g} total"
                out.append(_external(PREDICT_KEY, total, _milli(threshold), current, shown))
    return out


def _keys(scale: m.Scale, keda: bool) -> list[str]:
    keys = [metric_key(t) for t in scale_targets(scale)]
    if keda and predict_threshold(scale) is not None:
        keys.append(PREDICT_KEY)
    return keys


def _keda_step(
    scale: m.Scale,
    proposals: list[_Proposal],
    current: int,
    now_ts: float,
    last_active: float | None,
) -> ScaleDecision | None:
    """KEDA's own scale loop, which runs before (and instead of) the HPA at the edges."""
    minimum = scale.min_replicas
    if current < minimum:
        why = f"{current} replicas are below KEDA's minReplicaCount {minimum}"
        return ScaleDecision(minimum, why, (why,))
    if minimum > 0:
        return None
    active = [p for p in proposals if p.active]
    if current == 0:
        if active:
            why = f"scaled from zero to 1: {active[0].why}"
            return ScaleDecision(1, why, tuple(p.why for p in proposals))
        why = "no trigger is active: stays at 0"
        return ScaleDecision(0, why, (*(p.why for p in proposals), why))
    if not active and (last_active is None or last_active + KEDA_COOLDOWN < now_ts):
        why = f"no trigger active for the {KEDA_COOLDOWN}s cooldown: scaled to zero"
        return ScaleDecision(0, why, (*(p.why for p in proposals), why))
    return None


def _stabilize(
    scale: m.Scale, proposal: int, current: int, history: list[tuple[float, int]], now_ts: float
) -> tuple[int, str | None]:
    """`stabilizeRecommendationWithBehaviors`: the windows over earlier recommendations."""
    up_window = window_seconds(effective_rules(scale, up=True))
    down_window = window_seconds(effective_rules(scale, up=False))
    up_rec = down_rec = proposal
    for t, rec in history:
        if t > now_ts - up_window:
            up_rec = min(up_rec, rec)
        if t > now_ts - down_window:
            down_rec = max(down_rec, rec)
    stabilized = max(current, up_rec)
    stabilized = min(stabilized, down_rec)
    if stabilized == proposal:
        return stabilized, None
    if proposal > current:
        return stabilized, (
            f"scale-up stabilisation window {up_window}s: the lowest recommendation "
            f"in the window is {stabilized}"
        )
    return stabilized, (
        f"scale-down stabilisation window {down_window}s: the highest recommendation "
        f"in the window is {stabilized}"
    )


def _changed(period: int, events: list[tuple[float, int]], now_ts: float, up: bool) -> int:
    """Replicas added (up) or removed (down) by the events inside the period."""
    cutoff = now_ts - period
    return sum(abs(c) for t, c in events if t > cutoff and c != 0 and (c > 0) == up)


def _limit(
    scale: m.Scale, current: int, events: list[tuple[float, int]], now_ts: float, up: bool
) -> tuple[int, str]:
    """`calculateScaleUpLimitWithScalingRules` / `calculateScaleDownLimitWithBehaviors`."""
    rules = effective_rules(scale, up)
    if rules.select == "disabled":
        return current, f"scaling {'up' if up else 'down'} is disabled"
    # `max` selects the largest change: the highest limit up, the lowest limit down
    want_higher = (rules.select == "max") == up
    best: int | None = None
    chosen = ""
    for step in rules.policies:
        kind, value, period = policy_spec(step)
        start = (
            current
            - _changed(period, events, now_ts, up=True)
            + _changed(period, events, now_ts, up=False)
        )
        if up:
            proposed = start + value if kind == "Pods" else math.ceil(start * (1 + value / 100))
        else:
            proposed = start - value if kind == "Pods" else int(start * (1 - value / 100))
        if best is None or (proposed > best if want_higher else proposed < best):
            best = proposed
            sign = "+" if up else "-"
            chosen = f"{sign}{value}{'%' if kind == 'Percent' else ' pods'} per {period}s"
    assert best is not None
    return best, chosen


def decide(
    scale: m.Scale,
    metrics: Mapping[str, object],
    current: int,
    history: Iterable[tuple[datetime | float | int, int]] | None,
    now: datetime | None,
    events: Iterable[tuple[datetime | float | int, int]] | None = None,
    last_active: datetime | float | int | None = None,
) -> ScaleDecision:
    """What the scale's HPA (or ScaledObject) decides (see the module docstring)."""
    if (
        isinstance(current, bool)
        or not isinstance(current, int)
        or not 0 <= current <= MAX_REPLICAS
    ):
        raise ScaleError(
            f"current replicas must be an integer in 0..{MAX_REPLICAS}, found {_brief(current)}"
        )
    current = int(current)
    if not isinstance(metrics, Mapping) or not all(isinstance(k, str) for k in metrics):
        raise ScaleError("metrics must be a mapping from metric names to numbers")
    checked_history = _history(history)
    checked_events = _events(events)
    active_ts = None if last_active is None else _checked_time("`last_active`", last_active)
    keda = uses_keda(scale)
    keys = _keys(scale, keda)
    unknown = sorted(set(metrics) - set(keys))
    if unknown:
        known = ", ".join(f"`{k}`" for k in keys) or "none"
        raise ScaleError(f"unknown metric `{unknown[0]}` for `{scale.name}` (its inputs: {known})")
    values = {k: _as_decimal(k, v) for k, v in metrics.items()}
    now_ts = timestamp(now) if now is not None else datetime.now(UTC).timestamp()
    low, high = hpa_min_replicas(scale), hpa_max_replicas(scale)
    bounds = f"replicas {low}..{high}"

    # 1. KEDA's loop, then 2. the HPA's early exits
    proposals = _proposals(scale, values, max(current, 1), keda, now)
    if keda and (early := _keda_step(scale, proposals, current, now_ts, active_ts)):
        return early
    if current == 0:
        return ScaleDecision(0, "current replicas are 0: autoscaling is disabled")
    if current > high:
        why = f"{current} replicas are above the maximum of {bounds}"
        return ScaleDecision(high, why, (why,))
    if current < low:
        why = f"{current} replicas are below the minimum of {bounds}"
        return ScaleDecision(low, why, (why,))

    # 3. metrics: the maximum of the proposals; no scale-down on partial metrics
    steps = [p.why for p in proposals]
    valid = [p for p in proposals if p.replicas is not None]
    if not valid:
        reason = "no metric values given: no change" if proposals else "no metrics: no change"
        return ScaleDecision(current, reason, (*steps, reason))
    best = max(valid, key=lambda p: p.replicas or 0)
    proposal, reason = best.replicas or 0, best.why
    if len(valid) < len(proposals) and proposal < current:
        missing = ", ".join(f"`{p.key}`" for p in proposals if p.replicas is None)
        reason = f"no value for {missing}: the HPA does not scale down on partial metrics"
        return ScaleDecision(current, reason, (*steps, reason))

    # 4. stabilisation windows over the recommendation history
    desired, window = _stabilize(scale, proposal, current, checked_history, now_ts)
    if window is not None:
        steps.append(window)
        reason = window

    # 5. rate limits and bounds (`convertDesiredReplicasWithBehaviorRate`)
    if desired > current:
        limit, chosen = _limit(scale, current, checked_events, now_ts, up=True)
        limit = max(limit, current)
        if high > limit:
            if desired > limit:
                desired = limit
                reason = f"scale-up policy {chosen} limits {current} -> {limit}"
                steps.append(reason)
        elif desired > high:
            desired = high
            reason = f"clamped to the maximum of {bounds}"
            steps.append(reason)
    elif desired < current:
        limit, chosen = _limit(scale, current, checked_events, now_ts, up=False)
        limit = min(limit, current)
        if low < limit:
            if desired < limit:
                desired = limit
                reason = f"scale-down policy {chosen} limits {current} -> {limit}"
                steps.append(reason)
        elif desired < low:
            desired = low
            reason = f"raised to the minimum of {bounds}"
            steps.append(reason)
    return ScaleDecision(desired, reason, tuple(steps), proposal)


def find_scale(scales: tuple[m.Scale, ...], service: str) -> m.Scale:
    """The `scale` block of a service (`api` or `package.api`)."""
    for s in scales:
        if service in (s.service.name, str(s.service), s.name, s.qualified):
            return s
    names = ", ".join(sorted(s.service.name for s in scales)) or "none"
    raise ScaleError(f"no `scale` block for service `{service}` (scaled services: {names})")


def parse_at(text: str) -> datetime:
    """A test's `at` moment: ISO 8601 (`2026-11-25T09:30:00+01:00`, `...Z`; naive is UTC),
    optionally followed by an IANA zone (`2026-11-25T09:30 Europe/Stockholm`)."""
    parts = text.strip().split()
    stamp = datetime.fromisoformat(parts[0])
    if len(parts) > 1:
        zone = UTC if parts[1].upper() == "UTC" else ZoneInfo(parts[1])
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=zone)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp
