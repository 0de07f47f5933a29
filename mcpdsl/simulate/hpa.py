"""A prepared, allocation-light copy of `mcpdsl.evaluate.scale.decide` for the step loop.

`decide` checks every input and works in `Decimal`; called 40,320 times a week
per service it dominates a simulation (about 150 us a call).  `Prepared` reads
the same definitions (`mcpdsl.ir.autoscaling`: effective rules, bounds, KEDA
triggers, whole percents, milli-units) once per scale and then runs the same
five steps on integers the simulator has already quantised:

* Resource metrics (cpu, memory) arrive as whole percents, exactly what `decide`
  derives from `percent / 100`;
* Pods metrics and KEDA per-pod values arrive as whole milli-units `m`, exactly
  what `decide` derives from `m / 1000`; KEDA's total `float(m/1000 x n)` is the
  correctly rounded `(m x n) / 1000`, which Python's integer true division is too.

So the result is `decide`'s, not an approximation of it: `Simulation(verify=True)`
calls both on every sync and fails on the first difference, and the tests run
the whole seed and random traces that way (tests/simulate/test_hpa_equivalence.py).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from mcpdsl.evaluate.scale import TOLERANCE
from mcpdsl.ir import model as m
from mcpdsl.ir.autoscaling import (
    KEDA_COOLDOWN,
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

RESOURCE, PODS, EXTERNAL = 0, 1, 2


def _milli(value: object) -> int:
    from decimal import ROUND_CEILING, Decimal

    assert isinstance(value, Decimal)
    return max(1, int((value * 1000).to_integral_value(rounding=ROUND_CEILING)))


@dataclass(frozen=True, slots=True)
class Rules:
    select: str  # max | min | disabled
    policies: tuple[tuple[bool, int, int], ...]  # (is_pods, value, period)


def _rules(scale: m.Scale, up: bool) -> Rules:
    r = effective_rules(scale, up)
    out = []
    for step in r.policies:
        kind, value, period = policy_spec(step)
        out.append((kind == "Pods", value, period))
    return Rules(r.select, tuple(out))


class Prepared:
    """One scale block's HPA (or ScaledObject), ready to run on quantised metrics.

    `kinds[i]` says how input `i` is read (whole percent, milli per pod, KEDA
    milli per pod); `cron` are the `during` windows (KEDA cron triggers) and
    `predict` the forecast trigger's threshold in milli-units, if any.
    """

    __slots__ = (
        "cron_min",
        "down",
        "down_window",
        "high",
        "horizon",
        "keda",
        "keys",
        "kinds",
        "low",
        "max_period",
        "min_replicas",
        "predict_milli",
        "scale",
        "up",
        "up_window",
        "wanted",
    )

    def __init__(self, scale: m.Scale) -> None:
        self.scale = scale
        self.keda = uses_keda(scale)
        kinds, wanted, keys = [], [], []
        for target in scale_targets(scale):
            keys.append(target.metric if target.metric != "pods" else (target.name or ""))
            if target.metric in ("cpu", "memory"):
                kinds.append(RESOURCE)
                wanted.append(whole_percent(target.value))
            else:
                kinds.append(EXTERNAL if self.keda else PODS)
                wanted.append(_milli(target.value))
        self.kinds = tuple(kinds)
        self.wanted = tuple(wanted)
        self.keys = tuple(keys)
        self.cron_min = tuple(float(d.min_replicas or 0) for d in scale.during) if self.keda else ()
        threshold = predict_threshold(scale) if self.keda else None
        self.predict_milli = _milli(threshold) if threshold is not None else None
        self.horizon = float(scale.predict.horizon) if scale.predict is not None else 0.0
        self.low, self.high = hpa_min_replicas(scale), hpa_max_replicas(scale)
        self.min_replicas = scale.min_replicas
        self.up, self.down = _rules(scale, True), _rules(scale, False)
        self.up_window = window_seconds(effective_rules(scale, up=True))
        self.down_window = window_seconds(effective_rules(scale, up=False))
        periods = [p for _, _, p in self.up.policies + self.down.policies]
        self.max_period = max(periods, default=0)

    def decide(
        self,
        inputs: tuple[int | None, ...],
        predict: int | None,
        cron: tuple[bool, ...],
        current: int,
        history: deque[tuple[float, int]],
        events: deque[tuple[float, int]],
        now: float,
        last_active: float | None,
    ) -> tuple[int, int | None, bool]:
        """(desired, recommendation or None, any KEDA trigger active), as `decide` finds them.

        `inputs[i]`: whole percent (Resource) or milli-units per pod (Pods, External),
        None when the metric has no value."""
        cur1 = current if current > 0 else 1
        best: int | None = None
        missing = False
        active = False
        for kind, want, value in zip(self.kinds, self.wanted, inputs, strict=True):
            if value is None:
                missing = True
                continue
            if kind == EXTERNAL:
                this, on = _external(value * cur1, want, cur1)
                active = active or on
            else:
                ratio = float(value) / float(want)
                this = cur1 if math.fabs(1.0 - ratio) <= TOLERANCE else math.ceil(ratio * cur1)
            if best is None or this > best:
                best = this
        if self.keda:
            for minimum, on in zip(self.cron_min, cron, strict=True):
                reported = minimum if on else 1.0
                usage = int(reported * 1000.0)
                ratio = float(usage) / (1000.0 * float(cur1))
                this = cur1 if math.fabs(1.0 - ratio) <= TOLERANCE else math.ceil(usage / 1000)
                active = active or on
                if best is None or this > best:
                    best = this
            if self.predict_milli is not None:
                if predict is None:
                    missing = True
                else:
                    this, on = _external(predict * cur1, self.predict_milli, cur1)
                    active = active or on
                    if best is None or this > best:
                        best = this
            # KEDA's own loop first
            if current < self.min_replicas:
                return self.min_replicas, None, active
            if self.min_replicas == 0:
                if current == 0:
                    return (1 if active else 0), None, active
                if not active and (last_active is None or last_active + KEDA_COOLDOWN < now):
                    return 0, None, active
        if current == 0:
            return 0, None, active
        if current > self.high:
            return self.high, None, active
        if current < self.low:
            return self.low, None, active
        if best is None:
            return current, None, active
        proposal = best
        if missing and proposal < current:
            return current, None, active
        # stabilisation
        up_rec = down_rec = proposal
        up_cut, down_cut = now - self.up_window, now - self.down_window
        for t, rec in history:
            if t > up_cut and rec < up_rec:
                up_rec = rec
            if t > down_cut and rec > down_rec:
                down_rec = rec
        desired = min(max(current, up_rec), down_rec)
        if desired > current:
            limit = max(_limit(self.up, current, events, now, True), current)
            if self.high > limit:
                desired = min(desired, limit)
            elif desired > self.high:
                desired = self.high
        elif desired < current:
            limit = min(_limit(self.down, current, events, now, False), current)
            if self.low < limit:
                desired = max(desired, limit)
            elif desired < self.low:
                desired = self.low
        return desired, proposal, active


def _external(total_milli_x1000: int, target_milli: int, cur1: int) -> tuple[int, bool]:
    """`_external` of scale.py for a per-pod value of m milli-units: total = m x n / 1000."""
    reported = total_milli_x1000 / 1000  # float(Decimal(m/1000) * n), correctly rounded
    usage = int(reported * 1000.0)
    ratio = float(usage) / (float(target_milli) * float(cur1))
    if math.fabs(1.0 - ratio) <= TOLERANCE:
        return cur1, reported > 0
    return math.ceil(float(usage) / float(target_milli)), reported > 0


def _limit(
    rules: Rules, current: int, events: deque[tuple[float, int]], now: float, up: bool
) -> int:
    if rules.select == "disabled":
        return current
    want_higher = (rules.select == "max") == up
    best: int | None = None
    for is_pods, value, period in rules.policies:
        cutoff = now - period
        added = removed = 0
        for t, c in events:
            if t > cutoff:
                if c > 0:
                    added += c
                elif c < 0:
                    removed -= c
        start = current - added + removed
        if up:
            proposed = start + value if is_pods else math.ceil(start * (1 + value / 100))
        else:
            proposed = start - value if is_pods else int(start * (1 - value / 100))
        if best is None or (proposed > best if want_higher else proposed < best):
            best = proposed
    assert best is not None
    return best
