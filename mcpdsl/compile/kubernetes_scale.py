"""Autoscaling: `scale` -> HorizontalPodAutoscaler (autoscaling/v2) or KEDA ScaledObject.

A plain HPA cannot change its bounds by time of day or scale ahead of a
forecast, so a `scale` with `during` windows or `predict` compiles to a KEDA
`ScaledObject` instead; KEDA then owns the HPA (it creates one named
`keda-hpa-<name>`), and the step policies travel in
`spec.advanced.horizontalPodAutoscalerConfig.behavior` unchanged.
"""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from mcpdsl.compile import TargetContext, TargetOutput
from mcpdsl.compile.kubernetes_common import (
    decimal_quantity,
    metadata,
    source_of,
)
from mcpdsl.compile.kubernetes_index import Index
from mcpdsl.compile.kubernetes_workloads import SERVICE_COMPONENT
from mcpdsl.ir import model as m
from mcpdsl.ir.autoscaling import (
    effective_rules,
    policy_spec,
    predict_threshold,
    scale_targets,
    uses_keda,
    whole_percent,
    window_seconds,
)

#: Where KEDA's prometheus triggers read metrics (README: "Autoscaling").
PROMETHEUS = "http://prometheus.monitoring:9090"
RATE_WINDOW = "2m"
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_PROMQL_WORDS = frozenset(
    {
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
        "offset", "bool", "atan2", "sum", "avg", "min", "max", "count", "stddev", "stdvar",
        "topk", "bottomk", "quantile", "count_values", "group", "limitk", "limit_ratio",
        "start", "end", "inf", "nan",
    }
)  # fmt: skip
_RESOURCE_TRIGGERS = ("cpu", "memory")


def _target_ref(name: str, service: m.Service) -> dict[str, str]:
    """The scaled workload: a StatefulSet for a `stateful` service, else a Deployment."""
    kind = "StatefulSet" if service.stateful else "Deployment"
    return {"apiVersion": "apps/v1", "kind": kind, "name": name}


#: A ratio (0.7) as the whole percent HPA expects (70), at least 1.
utilization = whole_percent


def _policy(step: m.StepPolicy) -> dict[str, Any]:
    kind, value, period = policy_spec(step)
    return {"periodSeconds": period, "type": kind, "value": value}


_SELECT = {"max": "Max", "min": "Min", "disabled": "Disabled"}


def _rules(rules: m.ScaleRules) -> dict[str, Any]:
    return {
        "policies": [_policy(p) for p in rules.policies],
        "selectPolicy": _SELECT[rules.select],
        "stabilizationWindowSeconds": window_seconds(rules),
    }


def behavior(scale: m.Scale) -> dict[str, Any]:
    """HPA `behavior`, both directions in full (Kubernetes' defaults written out).

    Written out so that the HPA always runs its `behavior` code path, the one
    `Engine.scale` models (without `behavior` the controller uses older rules).
    """
    return {
        "scaleDown": _rules(effective_rules(scale, up=False)),
        "scaleUp": _rules(effective_rules(scale, up=True)),
    }


def hpa_metric(target: m.Target) -> dict[str, Any]:
    """Resource utilisation for cpu/memory, a Pods AverageValue for custom metrics."""
    if target.metric in _RESOURCE_TRIGGERS:
        return {
            "resource": {
                "name": target.metric,
                "target": {"averageUtilization": utilization(target.value), "type": "Utilization"},
            },
            "type": "Resource",
        }
    return {
        "pods": {
            "metric": {"name": target.name},
            "target": {"averageValue": decimal_quantity(target.value), "type": "AverageValue"},
        },
        "type": "Pods",
    }


def _meta(index: Index, scale: m.Scale, service: m.Service) -> dict[str, Any]:
    return metadata(
        index.service_name(service),
        package=scale.package,
        component=SERVICE_COMPONENT,
        namespace=index.namespace(service.namespace),
        source=source_of(scale.span),
        source_name=service.name,
    )


def hpa(index: Index, scale: m.Scale, ctx: TargetContext, report: TargetOutput) -> dict[str, Any]:
    """autoscaling/v2 HorizontalPodAutoscaler for the scale's Deployment."""
    service = index.service_ref(scale.service)
    minimum = scale.min_replicas
    if minimum < 1:
        report.unsupported(
            "B0106",
            f"scale `{scale.qualified}` allows 0 replicas, which an HPA cannot express "
            "without a trigger KEDA can scale from zero on; minReplicas is 1",
            ctx.clause_span(scale.span, "replicas"),
            label="narrowed to at least 1",
            help="add a `target metric` trigger (a Prometheus query KEDA can scale from zero on)",
        )
        minimum = 1
    spec: dict[str, Any] = {
        "maxReplicas": max(scale.max_replicas, minimum),
        "minReplicas": minimum,
        "scaleTargetRef": _target_ref(index.service_name(service), service),
    }
    spec["metrics"] = [hpa_metric(t) for t in scale_targets(scale)]
    spec["behavior"] = behavior(scale)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(index, scale, service),
        "spec": spec,
    }


# --------------------------------------------------------------------- KEDA


def cron_days(days: tuple[int, ...], shift: int = 0) -> str:
    """mcpdsl days (0 = Monday) as a cron day-of-week field (0 = Sunday), compressed."""
    cron = sorted({(d + 1 + shift) % 7 for d in days})
    if len(cron) == 7:
        return "*"
    parts: list[str] = []
    run = [cron[0]]
    for day in cron[1:]:
        if day == run[-1] + 1:
            run.append(day)
        else:
            parts.append(_run(run))
            run = [day]
    parts.append(_run(run))
    return ",".join(parts)


def _run(run: list[int]) -> str:
    if len(run) == 1:
        return str(run[0])
    if len(run) == 2:
        return f"{run[0]},{run[1]}"
    return f"{run[0]}-{run[-1]}"


def cron_trigger(during: m.During, name: str) -> dict[str, Any]:
    """KEDA cron trigger holding `desiredReplicas` = the window's minimum during the window.

    A window that ends at or before its start crosses midnight: it ends on the
    day after each of its days.
    """
    window = during.window
    overnight = window.end <= window.start
    start = f"{window.start % 60} {window.start // 60} * * {cron_days(during.days)}"
    end_days = cron_days(during.days, shift=1 if overnight else 0)
    end = f"{window.end % 60} {window.end // 60} * * {end_days}"
    return {
        "metadata": {
            "desiredReplicas": str(during.min_replicas or 0),
            "end": end,
            "start": start,
            "timezone": window.zone,
        },
        "name": name,
        "type": "cron",
    }


def _quote(text: str) -> str:
    """A PromQL string literal (Go escapes; JSON's are a subset)."""
    return json.dumps(text, ensure_ascii=False)


def series(metric: str, namespace: str) -> str:
    """A PromQL selector of `metric` in the service's namespace."""
    scope = f"namespace={_quote(namespace)}"
    if _METRIC_NAME.match(metric) and metric.lower() not in _PROMQL_WORDS:
        return f"{metric}{{{scope}}}"
    return f"{{__name__={_quote(metric)}, {scope}}}"


def prom_duration(seconds: Decimal) -> str:
    """A PromQL duration in the largest whole unit (`604800` -> `7d`)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{max(1, int((seconds * 1000).to_integral_value(rounding=ROUND_HALF_UP)))}ms"


def is_counter(metric: str) -> bool:
    """Prometheus naming: counters end in `_total` and are read through `rate()`."""
    return metric.endswith("_total")


def load_query(metric: str, namespace: str) -> str:
    """The service's total load: `sum(rate(m[2m]))` for counters, `sum(m)` for gauges."""
    selector = series(metric, namespace)
    if is_counter(metric):
        return f"sum(rate({selector}[{RATE_WINDOW}]))"
    return f"sum({selector})"


def predict_query(predict: m.Predict, namespace: str) -> str:
    """The load `horizon` ahead, by `predict_linear` over `lookback` of history.

    The fit is over the service's total (a subquery of `load_query` at one
    sample a minute), not per series then summed: with one series per pod,
    fitting each pod's series separately extrapolates pods that were deleted
    within `lookback` and starts every new pod's line from nothing, so the sum
    of the fits is not the forecast of the sum.  This is also the forecast
    `mcpdsl simulate` models.
    """
    lookback = prom_duration(predict.lookback)
    horizon = decimal_quantity(predict.horizon)
    total = load_query(predict.metric, namespace)
    return f"predict_linear({total}[{lookback}:1m], {horizon})"


def _prometheus(name: str, query: str, threshold: Decimal) -> dict[str, Any]:
    return {
        "metadata": {
            "query": query,
            "serverAddress": PROMETHEUS,
            "threshold": decimal_quantity(threshold),
        },
        "metricType": "AverageValue",
        "name": name,
        "type": "prometheus",
    }


def keda_triggers(
    scale: m.Scale, namespace: str, ctx: TargetContext, report: TargetOutput
) -> list[dict[str, Any]]:
    """Every trigger of the ScaledObject: targets, `during` windows, the prediction."""
    triggers: list[dict[str, Any]] = []
    for i, target in enumerate(scale.targets, 1):
        if target.metric in _RESOURCE_TRIGGERS:
            triggers.append(
                {
                    "metadata": {"value": str(utilization(target.value))},
                    "metricType": "Utilization",
                    "name": f"{target.metric}-{i}",
                    "type": target.metric,
                }
            )
        else:
            assert target.name is not None
            query = load_query(target.name, namespace)
            triggers.append(_prometheus(f"metric-{i}", query, target.value))
    for i, during in enumerate(scale.during, 1):
        triggers.append(cron_trigger(during, f"during-{i}"))
        if during.max_replicas is not None and during.max_replicas != scale.max_replicas:
            report.unsupported(
                "B0107",
                f"scale `{scale.qualified}` window {i} sets the maximum to {during.max_replicas}; "
                f"KEDA has one maximum ({scale.max_replicas}), so neither the cluster nor "
                "`Engine.scale` applies the window's maximum",
                during.span or scale.span,
                label=f"maximum stays {scale.max_replicas}",
                help=f"write `replicas {during.min_replicas}..{scale.max_replicas}` in the window",
            )
    if scale.predict is not None and (threshold := predict_threshold(scale)) is not None:
        query = predict_query(scale.predict, namespace)
        triggers.append(_prometheus("predict", query, threshold))
    return triggers


def scaled_object(index: Index, scale: m.Scale, triggers: list[dict[str, Any]]) -> dict[str, Any]:
    """keda.sh/v1alpha1 ScaledObject replacing the HPA of this service."""
    service = index.service_ref(scale.service)
    spec: dict[str, Any] = {
        "maxReplicaCount": max(scale.max_replicas, scale.min_replicas),
        "minReplicaCount": scale.min_replicas,
        "scaleTargetRef": _target_ref(index.service_name(service), service),
        "triggers": triggers,
    }
    spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": behavior(scale)}}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta(index, scale, service),
        "spec": spec,
    }


def autoscaler(
    index: Index, scale: m.Scale, ctx: TargetContext, report: TargetOutput
) -> dict[str, Any]:
    """The HPA, or the KEDA ScaledObject when the scale needs time windows or prediction.

    KEDA is used only when it can actually carry the scale: with at least one
    trigger, and (for a minimum of 0) with a trigger that is not cpu/memory,
    since KEDA cannot scale from zero on resource metrics alone.
    """
    if scale.predict is not None and predict_threshold(scale) is None:
        report.unsupported(
            "B0108",
            f"scale `{scale.qualified}` predicts `{scale.predict.metric}` but has no "
            "per-pod target for it; the prediction has no threshold and is not compiled",
            scale.predict.span or scale.span,
            label="no trigger emitted",
            help=f"add a `target` for `{scale.predict.metric}`",
        )
    if uses_keda(scale):
        service = index.service_ref(scale.service)
        triggers = keda_triggers(scale, index.namespace(service.namespace), ctx, report)
        return scaled_object(index, scale, triggers)
    if scale.during or scale.predict is not None or scale.min_replicas == 0:
        report.report("B0109", f"scale `{scale.qualified}` compiled to a plain HPA", scale.span)
    return hpa(index, scale, ctx, report)
