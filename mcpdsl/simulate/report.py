"""The simulation report: one self-contained HTML page of a `mcpdsl simulate` run.

    render_html(result.to_data()) -> str

Plots over the simulated time (demand against capacity and replicas per
service, nodes and cost per pool, grid intensity and emissions) and the
figures as tables.  The charts are the inline SVG of `mcpdsl.optimize.charts`,
the engine the sustainability report uses: no scripts, no fonts or files
fetched, nothing outside the page.  A week at 15-second steps is 40,320
points a series, so every series is cut into at most `BUCKETS` consecutive
buckets first (the peak of a bucket for demand and capacity, so a spike is not
averaged away; the mean for rates).  No clock is read: the same data gives the
same bytes.  Every string of the data (service, pool, job names, the policy
and trace labels) is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from mcpdsl.optimize import charts
from mcpdsl.optimize.charts import esc

#: Points a plotted series is reduced to (a 720-unit-wide chart shows no more).
BUCKETS = 600

_SERVICE_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("scale_up_s", "scale-up", "s"),
    ("predict_mape", "predict MAPE", "%"),
    ("predict_within_10pct", "predict within 10 %", "%"),
    ("utilisation_requested", "utilisation (requested)", "%"),
    ("utilisation_used", "utilisation (used)", "%"),
    ("availability", "availability", "%4"),
    ("slo_violations", "SLO violations", "n"),
)
_POOL_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("utilisation", "utilisation", "%"),
    ("node_hours", "node-hours", "n"),
    ("cost_usd", "cost", "$"),
    ("energy_kwh", "energy (kWh)", "n"),
)
_TOTALS: tuple[tuple[str, str, str], ...] = (
    ("requests", "requests offered", "n"),
    ("served", "requests served", "n"),
    ("availability", "availability", "%4"),
    ("cost_usd", "cost", "$"),
    ("energy_kwh", "energy (kWh)", "n"),
    ("carbon_g", "carbon (g CO2e)", "n"),
    ("carbon_g_per_1k_requests", "g CO2e per 1000 requests", "n"),
    ("renewable_share", "renewable share", "%"),
    ("energy_vs_baseline", "energy vs baseline", "%"),
)


def render_html(data: Mapping[str, Any]) -> str:
    """The report page of one simulation result (`Result.to_data()`)."""
    view = _View(data)
    title = f"Simulation: {_text(data.get('policy'))} under {_text(data.get('trace'))}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>{charts.CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="note">{esc(view.span_note())}</p>',
        _cards(_mapping(_mapping(data.get("figures")).get("totals"))),
    ]
    services = _mapping(data.get("services"))
    if services:
        parts.append("<h2>Services</h2>")
        parts.append(
            _figure_table(
                "service", _mapping(_mapping(data.get("figures")).get("services")), _SERVICE_FIGURES
            )
        )
        for name in sorted(services, key=str):
            series = _mapping(services[name])
            parts.append(f"<h3>{esc(name)}</h3>")
            parts.append(view.demand_chart(str(name), series))
            parts.append(view.replicas_chart(str(name), series))
    pools = _mapping(data.get("pools"))
    if pools:
        parts.append("<h2>Pools</h2>")
        parts.append(
            _figure_table(
                "pool", _mapping(_mapping(data.get("figures")).get("pools")), _POOL_FIGURES
            )
        )
        parts.append(view.pools_chart(pools, "nodes", "Nodes per pool", "nodes", step=True))
        parts.append(view.pools_chart(pools, "cost_per_h", "Cost per pool", "$ / h", step=True))
        parts.append(view.pools_chart(pools, "power_w", "Power per pool", "W", step=False))
    carbon = _mapping(data.get("carbon"))
    if carbon:
        parts.append("<h2>Carbon</h2>")
        parts.append(view.carbon_charts(carbon))
    jobs = data.get("jobs")
    if isinstance(jobs, list) and jobs:
        parts.append("<h2>Batch jobs</h2>")
        parts.append(_jobs_table(jobs, view))
    parts.append(
        '<p class="note">Simulated, not measured: demand from the trace, pods and nodes by the '
        "policy's scaling rules, energy by the Cloud Carbon Footprint method and carbon from "
        "the hourly intensity (location-based). Method: docs/simulate.md and docs/carbon.md. "
        f"Charts show at most {BUCKETS} points a series (peak per bucket for demand and "
        "capacity, mean for rates).</p>"
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)


# ------------------------------------------------------------------ the time axis


class _View:
    """The data's time axis and the charts drawn on it."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        raw_t = data.get("t")
        self.t: list[float] = [
            v
            for v in (charts.finite(x) for x in (raw_t if isinstance(raw_t, list) else []))
            if v is not None
        ]
        self.step = charts.finite(data.get("step_s")) or 0.0
        self.start = _parse_start(data.get("start"))

    def span_note(self) -> str:
        if not self.t:
            return "No simulated steps."
        steps = len(self.t)
        first = self.label(self.t[0], full=True)
        last = self.label(self.t[-1] + self.step, full=True)
        return f"{steps:,} steps of {tick(self.step)} s, {first} to {last}."

    def label(self, seconds: float, full: bool = False) -> str:
        if self.start is None:
            hours = seconds / 3600
            return f"{hours:g} h" if not full else f"{seconds:g} s from the start"
        moment = self.start + timedelta(seconds=seconds)
        if full:
            return moment.strftime("%a %Y-%m-%d %H:%M %Z").strip()
        span = (self.t[-1] - self.t[0]) if len(self.t) > 1 else 0.0
        if span > 2 * 86400:
            return moment.strftime("%a %m-%d")
        return moment.strftime("%a %H:%M")

    def x_ticks(self) -> list[float]:
        if len(self.t) < 2:
            return []
        lo, hi = self.t[0], self.t[-1]
        span = hi - lo
        every = next(
            (s for s in (900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400) if span / s <= 8),
            86400 * math.ceil(span / (8 * 86400)),
        )
        offset = 0.0
        if self.start is not None:  # ticks on round wall-clock times
            since = self.start.timestamp() + lo
            offset = (every - since % every) % every
        first = lo + offset
        return [first + k * every for k in range(int((hi - first) // every) + 1)]

    def _series(self, values: object, how: str) -> tuple[list[float], list[float | None]]:
        ys = values if isinstance(values, list) else []
        return charts.downsample(self.t, ys, BUCKETS, how)

    def _chart(
        self,
        title: str,
        unit: str,
        series: Sequence[tuple[str, str, object, str]],  # label, colour, values, how
        *,
        step: bool,
        dashed: Sequence[str] = (),
    ) -> str:
        xs: list[float] = []
        drawn: list[charts.Series] = []
        for label, stroke, values, how in series:
            if not isinstance(values, list) or not any(
                charts.finite(v) is not None for v in values
            ):
                continue
            xs, ys = self._series(values, how)
            drawn.append((label, stroke, ys))
        if not drawn:
            return f'<p class="note">{esc(title)}: no data.</p>'
        return charts.line_chart(
            title,
            xs,
            drawn,
            unit=unit,
            x_label=self.label,
            x_ticks=self.x_ticks(),
            step=step,
            dashed=dashed,
        )

    def demand_chart(self, name: str, series: Mapping[str, Any]) -> str:
        return self._chart(
            f"{name}: demand against capacity",
            "requests / s",
            [
                ("offered", "#c62828", series.get("offered"), "max"),
                ("served", "#2e7d32", series.get("served"), "max"),
                ("capacity", "#1565c0", series.get("capacity"), "max"),
                ("predicted", "#6a1b9a", series.get("predicted"), "max"),
            ],
            step=False,
            dashed=("predicted",),
        )

    def replicas_chart(self, name: str, series: Mapping[str, Any]) -> str:
        return self._chart(
            f"{name}: replicas",
            "pods",
            [
                ("replicas", "#1565c0", series.get("replicas"), "max"),
                ("ready", "#2e7d32", series.get("ready"), "min"),
            ],
            step=True,
        )

    def pools_chart(
        self, pools: Mapping[str, Any], key: str, title: str, unit: str, *, step: bool
    ) -> str:
        series = [
            (str(name), charts.colour(i), _mapping(pools[name]).get(key), "max" if step else "mean")
            for i, name in enumerate(sorted(pools, key=str))
        ]
        return self._chart(title, unit, series, step=step)

    def carbon_charts(self, carbon: Mapping[str, Any]) -> str:
        intensity = self._chart(
            "Grid carbon intensity",
            "g CO2e / kWh",
            [("intensity", "#555555", carbon.get("intensity_g_per_kwh"), "mean")],
            step=False,
        )
        grams = carbon.get("grams")
        rate: list[float | None] = []
        if isinstance(grams, list) and self.step > 0:
            for g in grams:
                value = charts.finite(g)
                rate.append(None if value is None else value * 3600 / self.step)
        emitted = self._chart(
            "Emissions", "g CO2e / h", [("emissions", "#2e7d32", rate, "mean")], step=False
        )
        share = carbon.get("renewable_share")
        percent: list[float | None] = []
        if isinstance(share, list):
            for s in share:
                value = charts.finite(s)
                percent.append(None if value is None else value * 100)
        renewable = self._chart(
            "Renewable share", "%", [("renewable", "#f9a825", percent, "mean")], step=False
        )
        return intensity + "\n" + emitted + "\n" + renewable


def _parse_start(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


# ------------------------------------------------------------------ tables


def tick(value: float) -> str:
    return charts.tick(value)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str:
    return "?" if value is None else str(value)


def _fmt(value: object, kind: str) -> str:
    """A figure for a table cell; `–` where it is undefined."""
    number = charts.finite(value)
    if number is None:
        return "–" if value is None or isinstance(value, int | float) else str(value)
    if kind == "%":
        return f"{number * 100:.1f} %"
    if kind == "%4":
        return f"{number * 100:.3f} %"
    if kind == "$":
        return f"${number:,.2f}"
    if kind == "s":
        return f"{number:,.0f} s"
    if isinstance(value, int) or abs(number) >= 1000:
        return f"{number:,.0f}"
    if abs(number) >= 1 or number == 0:
        return f"{number:.2f}"
    return f"{number:.4f}"


def _figure_table(
    kind: str, figures: Mapping[str, Any], columns: tuple[tuple[str, str, str], ...]
) -> str:
    if not figures:
        return ""
    known = {key for key, _, _ in columns}
    extra = sorted(
        {str(k) for row in figures.values() for k in _mapping(row) if str(k) not in known}
    )
    every = [*columns, *((key, key.replace("_", " "), "n") for key in extra)]
    head = "".join(f"<th>{esc(label)}</th>" for _, label, _ in every)
    body = []
    for name in sorted(figures, key=str):
        row = _mapping(figures[name])
        cells = "".join(f"<td>{esc(_fmt(row.get(key), unit))}</td>" for key, _, unit in every)
        body.append(f"<tr><td>{esc(name)}</td>{cells}</tr>")
    return (
        f'<div style="overflow-x:auto"><table><thead><tr><th>{esc(kind)}</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _cards(totals: Mapping[str, Any]) -> str:
    if not totals:
        return ""
    parts = ['<div class="cards">']
    for key, label, unit in _TOTALS:
        if key in totals:
            parts.append(
                f'<div class="card">{esc(label)}<b>{esc(_fmt(totals[key], unit))}</b></div>'
            )
    parts.append("</div>")
    return "".join(parts)


def _jobs_table(jobs: list[Any], view: _View) -> str:
    head = "".join(
        f"<th>{esc(h)}</th>" for h in ("job", "pool", "region", "start", "end", "kWh", "g CO2e")
    )
    body = []
    for job in jobs:
        row = _mapping(job)
        start, end = charts.finite(row.get("start_s")), charts.finite(row.get("end_s"))
        cells = [
            _text(row.get("name")),
            _text(row.get("pool")),
            _text(row.get("region")),
            "–" if start is None else view.label(start, full=True),
            "–" if end is None else view.label(end, full=True),
            _fmt(row.get("energy_kwh"), "n"),
            _fmt(row.get("grams"), "n"),
        ]
        body.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
