"""What a `scale` block means to the cluster: one definition for the target and the engine.

The Kubernetes target spells a `scale` as an HPA or a KEDA ScaledObject and
`Engine.scale` computes what that object makes the cluster do; both read the
choices below, so they cannot drift apart:

* the effective `behavior` of each direction (Kubernetes' defaults filled in:
  the target always writes both directions in full, so the HPA always runs its
  `behavior` code path and the engine models only that one);
* whether the scale becomes a KEDA ScaledObject, and which triggers it has
  (`during` windows become cron triggers, `predict` a Prometheus trigger on
  the forecast, which needs the per-pod target of its metric as threshold).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

from mcpdsl.ir import model as m

#: Kubernetes' defaults (`GenerateHPAScaleUpRules`/`GenerateHPAScaleDownRules`).
DEFAULT_UP = m.ScaleRules(
    policies=(
        m.StepPolicy(amount=Decimal(4), unit="pods", period=Decimal(15)),
        m.StepPolicy(amount=Decimal(1), unit="percent", period=Decimal(15)),
    ),
    select="max",
    stabilize=Decimal(0),
)
DEFAULT_DOWN = m.ScaleRules(
    policies=(m.StepPolicy(amount=Decimal(1), unit="percent", period=Decimal(15)),),
    select="max",
    stabilize=Decimal(300),
)
#: KEDA's default `cooldownPeriod`: how long all triggers must be inactive
#: before a ScaledObject with `minReplicaCount: 0` scales to zero.
KEDA_COOLDOWN = 300


#: What an HPA without `metrics` scales on (Kubernetes' default: 80% cpu).
DEFAULT_TARGET = m.Target(metric="cpu", value=Decimal("0.8"))


def scale_targets(scale: m.Scale) -> tuple[m.Target, ...]:
    """The scale's targets; a plain HPA without any gets Kubernetes' default, written out."""
    if scale.targets or uses_keda(scale):
        return scale.targets
    return (DEFAULT_TARGET,)


def effective_rules(scale: m.Scale, up: bool) -> m.ScaleRules:
    """The direction's rules with Kubernetes' defaults for whatever the source leaves out."""
    declared = scale.up if up else scale.down
    default = DEFAULT_UP if up else DEFAULT_DOWN
    if declared is None:
        return default
    return m.ScaleRules(
        policies=declared.policies or default.policies,
        select=declared.select,
        stabilize=declared.stabilize if declared.stabilize is not None else default.stabilize,
        span=declared.span,
    )


def predict_threshold(scale: m.Scale) -> Decimal | None:
    """The per-pod target of the predicted metric (the forecast trigger's threshold)."""
    if scale.predict is None:
        return None
    for target in scale.targets:
        if target.metric == "pods" and target.name == scale.predict.metric:
            return target.value
    return None


def uses_keda(scale: m.Scale) -> bool:
    """Does the scale compile to a KEDA ScaledObject (else a plain HPA)?

    KEDA is needed for time windows, forecasts and a minimum of 0, and can
    carry the scale only with a trigger, and (for a minimum of 0) with one
    that is not cpu/memory, since KEDA cannot scale from zero on those.
    """
    if not (scale.during or scale.predict is not None or scale.min_replicas == 0):
        return False
    external = (
        bool(scale.during)
        or predict_threshold(scale) is not None
        or any(t.metric == "pods" for t in scale.targets)
    )
    if scale.min_replicas > 0:
        return bool(scale.targets) or external
    return external


def hpa_min_replicas(scale: m.Scale) -> int:
    """The HPA's `minReplicas`: at least 1 (KEDA handles 0 itself; a plain HPA cannot)."""
    return max(1, scale.min_replicas)


def hpa_max_replicas(scale: m.Scale) -> int:
    return max(scale.max_replicas, hpa_min_replicas(scale))


def whole_percent(ratio: Decimal) -> int:
    """A ratio (0.7) as the whole percent Kubernetes stores (70), rounded half up, at least 1."""
    return max(1, int((ratio * 100).to_integral_value(rounding=ROUND_HALF_UP)))


def whole_seconds(value: Decimal, minimum: int) -> int:
    """Seconds rounded up (Kubernetes timing fields are whole seconds)."""
    return max(minimum, math.ceil(value))


def policy_spec(step: m.StepPolicy) -> tuple[str, int, int]:
    """A policy as the HPA stores it: (`Pods`|`Percent`, value, periodSeconds)."""
    if step.unit == "percent":
        return "Percent", whole_percent(step.amount), whole_seconds(step.period, 1)
    return "Pods", max(1, int(step.amount)), whole_seconds(step.period, 1)


def window_seconds(rules: m.ScaleRules) -> int:
    """The rules' `stabilizationWindowSeconds`."""
    return whole_seconds(rules.stabilize or Decimal(0), 0)


def cron_schedule(during: m.During) -> tuple[tuple[int, tuple[int, ...]], tuple[int, ...]]:
    """A window as KEDA's cron trigger holds it: (start minute, its days), end days.

    Days are Python weekdays (0 = Monday).  A window that ends at or before its
    start crosses midnight, so its end fires on the day after each of its days.
    """
    overnight = during.window.end <= during.window.start
    end_days = tuple(sorted({(d + 1) % 7 for d in during.days})) if overnight else during.days
    return (during.window.start, during.days), end_days


def server_scale(server: m.Server) -> m.Scale:
    """The decision server's `replicas`/`target` clauses as the `scale` block they spell.

    So that its HorizontalPodAutoscaler is written (and would be simulated) by the
    very functions above, Kubernetes' default behaviour included.
    """
    return m.Scale(
        package=server.package,
        name=server.name,
        service=m.Ref(package=server.package, name=server.name),
        min_replicas=server.min_replicas,
        max_replicas=server.max_replicas,
        targets=server.targets,
        span=server.span,
    )
