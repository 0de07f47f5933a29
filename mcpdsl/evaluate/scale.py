"""`Engine.scale`: the Kubernetes HPA v2 replica calculation plus `during` windows.

This reproduces `pkg/controller/podautoscaler` (replica_calculator.go and
horizontal.go, `normalizeDesiredReplicasWithBehaviors`) step by step, with
the controller's own float64 arithmetic so that a `test` block predicts what
the cluster does, boundary cases included:

1. bounds: `replicas LOW..HIGH`, replaced by the bounds of an active `during`
   window (days and HH:MM in the window's zone, `zoneinfo`);
2. current replicas 0 -> autoscaling is off (0); above the maximum -> the
   maximum; below the minimum -> the minimum;
3. per metric: usage ratio = current / target (cpu/memory in whole percent of
   requests as the HPA computes them, Pods metrics as the average per pod);
   no change when |1 - ratio| <= 0.1, else ceil(ratio x current); the maximum
   over metrics; no scale-down while a metric is missing;
4. stabilisation over `history` (timestamp, recommendation): scale-up takes
   the minimum of the recommendations inside its window, scale-down the
   maximum (defaults 0s and 5m);
5. rate limits of the `up`/`down` policies (defaults: max(+4 pods, +100%) and
   -100% per 15s): Percent up `ceil(n x (1 + p))`, down `trunc(n x (1 - p))`,
   Pods `n +/- k`, never past the bounds.

Like the controller, percentages are whole percents and float64 is used for
ratios: 77% against a 70% target is outside the tolerance in float64
(|1 - 77/70| = 0.10000000000000009), so the HPA scales and so does this.
Without scale events the period limit is applied to the current replicas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from mcpdsl.ir import model as m

TOLERANCE = 0.1
DEFAULT_UP_WINDOW = 0
DEFAULT_DOWN_WINDOW = 300
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


#: Kubernetes replica counts are int32.
MAX_REPLICAS = 2**31 - 1
#: The largest metric value `scale` accepts is 10**MAX_METRIC_DIGITS (beyond any real metric).
MAX_METRIC_DIGITS = 15


class ScaleError(ValueError):
    """Unusable scaling input (unknown metric, negative value, unknown service)."""


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    """The replica count the HPA would set, and what decided it."""

    desired: int
    reason: str
    steps: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Policy:
    kind: str  # "Pods" | "Percent"
    value: int
    period: int


def whole_percent(ratio: Decimal) -> int:
    """A ratio as the whole percent Kubernetes stores (the compiler's rounding), at least 1."""
    return max(1, int((ratio * 100).to_integral_value(rounding=ROUND_HALF_UP)))


def _policies(step: m.StepPolicy | None, up: bool) -> tuple[_Policy, ...]:
    if step is None:
        if up:
            return (_Policy("Pods", 4, 15), _Policy("Percent", 100, 15))
        return (_Policy("Percent", 100, 15),)
    if step.unit == "percent":
        return (_Policy("Percent", whole_percent(step.amount), int(step.period)),)
    return (_Policy("Pods", max(1, int(step.amount)), int(step.period)),)


def _window(step: m.StepPolicy | None, default: int) -> int:
    if step is None or step.stabilize is None:
        return default
    return int(step.stabilize)


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


def decide(
    scale: m.Scale,
    metrics: Mapping[str, object],
    current: int,
    history: Iterable[tuple[datetime | float | int, int]] | None,
    now: datetime | None,
) -> ScaleDecision:
    """The HPA decision for one `scale` declaration (see the module docstring)."""
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
    keys = {metric_key(t): t for t in scale.targets}
    unknown = sorted(set(metrics) - set(keys))
    if unknown:
        known = ", ".join(f"`{k}`" for k in keys) or "none"
        raise ScaleError(f"unknown metric `{unknown[0]}` for `{scale.name}` (its targets: {known})")
    values = {k: _as_decimal(k, v) for k, v in metrics.items()}
    steps: list[str] = []

    # 1. bounds, with `during` windows
    low, high = scale.min_replicas, scale.max_replicas
    bound_source = f"replicas {low}..{high}"
    if now is not None:
        active = [d for d in scale.during if during_active(d, now)]
        if active:
            best = max(active, key=lambda d: d.min_replicas or 0)
            if best.min_replicas is not None:
                low = best.min_replicas
            maxes = [d.max_replicas for d in active if d.max_replicas is not None]
            if maxes:
                high = max(maxes)
            high = max(high, low)
            bound_source = f"{describe_during(best)} (replicas {low}..{high})"
            steps.append(f"{bound_source} is active")

    # 2. the controller's early exits
    if current == 0 and low != 0:
        return ScaleDecision(0, "current replicas are 0: autoscaling is disabled", tuple(steps))
    if current > high:
        steps.append(f"{current} replicas are above the maximum of {bound_source}")
        return ScaleDecision(high, steps[-1], tuple(steps))
    if current < low:
        steps.append(f"{current} replicas are below the minimum of {bound_source}")
        return ScaleDecision(low, steps[-1], tuple(steps))

    # 3. metrics
    proposal, reason = current, "no metric values given: no change"
    missing = [k for k in keys if k not in values]
    best_proposal: int | None = None
    for key, target in keys.items():
        if key not in values:
            continue
        value = values[key]
        if target.metric in ("cpu", "memory"):
            used = int((value * 100).to_integral_value(rounding=ROUND_DOWN))
            wanted = whole_percent(target.value)
            ratio = float(used) / float(wanted)
            shown = f"{key} {used}% vs target {wanted}%"
        else:
            used_milli = int((value * 1000).to_integral_value(rounding=ROUND_HALF_UP))
            wanted_milli = int((target.value * 1000).to_integral_value(rounding=ROUND_HALF_UP))
            ratio = float(used_milli) / float(max(wanted_milli, 1))
            shown = f"{key} {value.normalize():f} per pod vs target {target.value.normalize():f}"
        if math.fabs(1.0 - ratio) <= TOLERANCE:
            this, why = current, f"{shown}: ratio {ratio:.3f} within the 10% tolerance, {current}"
        else:
            this = math.ceil(ratio * float(current))
            why = f"{shown}: ceil({current} x {ratio:.4g}) = {this}"
        steps.append(why)
        if best_proposal is None or this > best_proposal:
            best_proposal, reason = this, why
    if best_proposal is not None:
        proposal = best_proposal
        if missing and proposal < current:
            steps.append(
                f"no value for {', '.join(f'`{k}`' for k in missing)}: "
                "the HPA does not scale down on partial metrics"
            )
            proposal, reason = current, steps[-1]
    elif missing:
        steps.append(reason)

    # 4. stabilisation windows over the recommendation history
    now_ts = timestamp(now) if now is not None else datetime.now(UTC).timestamp()
    up_window = _window(scale.up, DEFAULT_UP_WINDOW)
    down_window = _window(scale.down, DEFAULT_DOWN_WINDOW)
    up_rec = down_rec = proposal
    for t, rec in checked_history:
        if t > now_ts - up_window:
            up_rec = min(up_rec, rec)
        if t > now_ts - down_window:
            down_rec = max(down_rec, rec)
    stabilized = current
    if stabilized < up_rec:
        stabilized = up_rec
    if stabilized > down_rec:
        stabilized = down_rec
    if stabilized != proposal:
        if proposal > current:
            why = (
                f"scale-up stabilisation window {up_window}s: the lowest recommendation "
                f"in the window is {stabilized}"
            )
        else:
            why = (
                f"scale-down stabilisation window {down_window}s: the highest recommendation "
                f"in the window is {stabilized}"
            )
        steps.append(why)
        reason = why

    # 5. rate limits and bounds
    desired = stabilized
    if desired > current:
        limit = -(2**31)
        chosen = ""
        for p in _policies(scale.up, up=True):
            if p.kind == "Pods":
                proposed = current + p.value
            else:
                proposed = math.ceil(float(current) * (1 + float(p.value) / 100))
            if proposed > limit:
                limit, chosen = (
                    proposed,
                    f"+{p.value}{'%' if p.kind == 'Percent' else ' pods'} per {p.period}s",
                )
        limit = max(limit, current)
        if high > limit:
            if desired > limit:
                desired = limit
                reason = f"scale-up policy {chosen} limits {current} -> {limit}"
                steps.append(reason)
        elif desired > high:
            desired = high
            reason = f"clamped to the maximum of {bound_source}"
            steps.append(reason)
    elif desired < current:
        limit = 2**31
        chosen = ""
        for p in _policies(scale.down, up=False):
            if p.kind == "Pods":
                proposed = current - p.value
            else:
                proposed = int(float(current) * (1 - float(p.value) / 100))
            if proposed < limit:
                limit, chosen = (
                    proposed,
                    f"-{p.value}{'%' if p.kind == 'Percent' else ' pods'} per {p.period}s",
                )
        limit = min(limit, current)
        if low < limit:
            if desired < limit:
                desired = limit
                reason = f"scale-down policy {chosen} limits {current} -> {limit}"
                steps.append(reason)
        elif desired < low:
            desired = low
            reason = f"raised to the minimum of {bound_source}"
            steps.append(reason)
    return ScaleDecision(desired, reason, tuple(steps))


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
