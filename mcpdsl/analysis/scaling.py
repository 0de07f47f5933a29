"""Scaling: `scale` blocks whose ranges, targets and `during` windows contradict each other.

- `A0120` two `during` windows active at one moment with different ranges.
  Decided exactly over a reference year (2026, all zone transitions
  included): two half-open intervals overlap iff one starts inside the other,
  so checking every window start against `mcpdsl.evaluate.scale.during_active`
  (the engine's own test) finds an overlap when there is one.  The witness
  is that moment, confirmed by the same function;
- `A0121` one metric with two targets; `A0122` a cpu/memory utilisation
  target on a service without that request; `A0123` a service's fixed
  `replicas` outside its scaling range; `A0124` `predict` of a metric the
  block does not scale on.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from mcpdsl.ir import model as m
from mcpdsl.ir.spans import clause

if TYPE_CHECKING:
    from mcpdsl.analysis import Analysis

REFERENCE_YEAR = 2026


def scaling(a: Analysis) -> None:
    services = {(s.package, s.name): s for s in a.project.services}
    for scale in a.project.scales:
        service = services.get((scale.service.package or scale.package, scale.service.name))
        _windows(a, scale)
        _targets(a, scale, service)
        fixed = service.replicas if service is not None else None
        if service is not None and fixed is not None:
            _fixed(a, scale, service, fixed)
        if scale.predict is not None:
            names = {t.name for t in scale.targets if t.metric == "pods"}
            if scale.predict.metric not in names:
                a.report(
                    "A0124",
                    f"`predict` forecasts `{scale.predict.metric}`, which `scale "
                    f"{scale.service.name}` does not target",
                    scale.predict.span,
                    label="the forecast cannot change the replica count",
                    help='add `target metric "' + scale.predict.metric + '" N per pod`'
                    if not names
                    else "targets: " + ", ".join(f"`{n}`" for n in sorted(n for n in names if n)),
                )


def _fixed(a: Analysis, scale: m.Scale, service: m.Service, fixed: int) -> None:
    if scale.min_replicas <= fixed <= scale.max_replicas:
        return
    a.report(
        "A0123",
        f"service `{service.name}` sets `replicas {fixed}` outside "
        f"`replicas {scale.min_replicas}..{scale.max_replicas}` of its scale block",
        clause(a, service.span, "replicas"),
        label="the autoscaler overrides this",
        secondary=((clause(a, scale.span, "replicas"), "the scaling range"),),
        help="remove the fixed count or widen the range",
    )


def _targets(a: Analysis, scale: m.Scale, service: m.Service | None) -> None:
    seen: dict[str, m.Target] = {}
    for target in scale.targets:
        key = target.metric if target.metric != "pods" else f"metric `{target.name}`"
        first = seen.get(key)
        if first is not None and first.value != target.value:
            a.report(
                "A0121",
                f"`scale {scale.service.name}` has two targets for {key}: "
                f"{_show(first)} and {_show(target)}",
                target.span,
                label="second target for the same metric",
                secondary=((first.span, "first target"),),
                help="keep one target per metric",
            )
        seen.setdefault(key, target)
        if service is not None and target.metric in ("cpu", "memory"):
            request = service.cpu if target.metric == "cpu" else service.memory
            if request is None:
                a.report(
                    "A0122",
                    f"`target {target.metric}` needs a {target.metric} request, and service "
                    f"`{service.name}` declares none",
                    target.span,
                    label="utilisation is a percentage of the request",
                    secondary=((service.span, "no `" + target.metric + "` here"),),
                    help=f"add `{target.metric} ...` to the service or scale on a metric",
                )


def _show(t: m.Target) -> str:
    if t.metric in ("cpu", "memory"):
        return f"{t.value * 100:g}%"
    return f"{t.value:g} per pod"


def _windows(a: Analysis, scale: m.Scale) -> None:
    from mcpdsl.evaluate.scale import during_active

    for j, second in enumerate(scale.during):
        for first in scale.during[:j]:
            if (first.min_replicas, first.max_replicas) == (
                second.min_replicas,
                second.max_replicas,
            ):
                continue
            moment = overlap(first, second)
            if moment is None:
                continue
            if not (during_active(first, moment) and during_active(second, moment)):
                a.unconfirmed_witness("during overlap", {"at": moment.isoformat()})
                continue
            a.report(
                "A0120",
                f"`during` windows of `scale {scale.service.name}` overlap with different ranges "
                f"({first.min_replicas}..{first.max_replicas} and "
                f"{second.min_replicas}..{second.max_replicas})",
                second.span,
                label="active at the same time as an earlier window",
                secondary=((first.span, "overlaps this window"),),
                notes=(
                    f"witness: both are active at {moment.isoformat().replace('+00:00', 'Z')}",
                    "while both are active the range is the larger minimum to the larger maximum",
                ),
                help="make the windows disjoint or give them the same range",
            )


def overlap(first: m.During, second: m.During) -> datetime | None:
    """The earliest moment of the reference year when both windows are active, or None."""
    from mcpdsl.evaluate.scale import during_active

    candidates: list[datetime] = []
    day = date(REFERENCE_YEAR, 1, 1)
    while day.year == REFERENCE_YEAR:
        for w in (first, second):
            if day.weekday() in w.days:
                candidates.append(_start(w, day))
        day += timedelta(days=1)
    for moment in sorted(candidates):
        if during_active(first, moment) and during_active(second, moment):
            return moment
    return None


def _start(d: m.During, day: date) -> datetime:
    zone = UTC if d.window.zone.upper() == "UTC" else ZoneInfo(d.window.zone)
    local = datetime(
        day.year, day.month, day.day, d.window.start // 60, d.window.start % 60, tzinfo=zone
    )
    return local.astimezone(UTC)
