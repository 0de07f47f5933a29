"""The sustainability report: one self-contained HTML file with SVG charts, and a Markdown twin.

    report/sustainability.html    inline CSS and SVG; no scripts, fonts or network
    report/sustainability.md      the same numbers as tables

Charts: emissions by region, emissions by hour of the UTC day, the budget
burn-down over a month (plan against both baselines), and each job's
emissions against both baselines.  No timestamps: the same tree gives the
same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcpdsl.ir import model as m
from mcpdsl.optimize import charts
from mcpdsl.optimize.accounting import DAYS
from mcpdsl.optimize.plan import Plan

PALETTE = {
    "plan": "#2e7d32",
    "window-start": "#c62828",
    "greedy": "#f9a825",
    "service": "#1565c0",
    "job": "#2e7d32",
    "budget": "#555555",
    "grid": charts.GRID,
}
LABELS = {"plan": "plan", "window-start": "window start", "greedy": "greedy"}


@dataclass(frozen=True)
class Report:
    html: str
    markdown: str


def render(project: m.Project, plan: Plan, title: str) -> Report:
    data = _Data.of(project, plan)
    return Report(_html(data, plan, title), _markdown(data, plan, title))


# ------------------------------------------------------------------ the numbers


@dataclass
class _Data:
    by_region: dict[str, dict[str, float]]  # region -> {"service", "job"} kg a month
    by_hour: list[dict[str, float]]  # 24 x {"service", "job"} kg a month in that UTC hour
    jobs: list[tuple[str, dict[str, float]]]  # job -> {plan, window-start, greedy} kg a month
    budgets: list[tuple[str, float, dict[str, float]]]  # carbon, budget, {scenario: kg a month}
    total: float

    @classmethod
    def of(cls, project: m.Project, plan: Plan) -> _Data:
        acc = plan.accounting
        by_region = acc.by_region() if acc else {}
        by_hour = [{"service": 0.0, "job": 0.0} for _ in range(24)]
        if acc:
            for line in acc.lines:
                if line.kind == "service":
                    for row in by_hour:
                        row["service"] += line.total_kg / 24
        jobs: list[tuple[str, dict[str, float]]] = []
        infos = plan.infos()
        for name, a in sorted(plan.assignments.items()):
            scenario = {"plan": a.grams * DAYS / 1000}
            for key, option in a.baselines.items():
                scenario[key] = option.grams * DAYS / 1000
            jobs.append((name, scenario))
            info = infos.get(name)
            if info is None:
                continue
            runs = int(info.job.runs)
            table = plan.tables.get(info.carbon.qualified)
            start = a.option.utc_minute * 60
            weights = []
            for k in range(25):
                lo = max(start, (start // 3600 + k) * 3600)
                hi = min(start + runs, (start // 3600 + k + 1) * 3600)
                if hi <= lo:
                    continue
                hour = (lo // 3600) % 24
                if table is not None and info.occurrences:
                    offset = lo - start + a.option.offset
                    mean = sum(
                        table.average(a.region, o + offset, o + offset + (hi - lo))
                        for o in info.occurrences
                    ) / len(info.occurrences)
                else:
                    mean = 1.0
                weights.append((hour, (hi - lo) * mean))
            total_weight = sum(w for _, w in weights) or 1.0
            for hour, w in weights:
                by_hour[hour]["job"] += scenario["plan"] * w / total_weight
        budgets = []
        if acc:
            for use in acc.budgets:
                services = acc.total_kg("service", use.carbon)
                scenarios = {"plan": use.used_kg}
                for key in ("window-start", "greedy"):
                    scenarios[key] = (
                        services
                        + sum(
                            s[key]
                            for name, s in jobs
                            if key in s and _carbon_of(plan, name) == use.carbon
                        )
                        + sum(
                            line.embodied_kg
                            for line in acc.lines
                            if line.kind == "job" and line.carbon == use.carbon
                        )
                    )
                budgets.append((use.carbon, use.budget_kg, scenarios))
        total = acc.total_kg() if acc else 0.0
        return cls(by_region, by_hour, jobs, budgets, total)


def _carbon_of(plan: Plan, job: str) -> str | None:
    info = plan.infos().get(job)
    return info.carbon.qualified if info else None


def _kg(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _pct(ours: float, base: float) -> str:
    return f"{(base - ours) / base:.0%}" if base > 0 else "–"


# ------------------------------------------------------------------ SVG


def _esc(text: object) -> str:
    return charts.esc(text)


def _legend(entries: list[tuple[str, str]], x: float, y: float) -> str:
    return charts.legend(entries, x, y)


def bar_chart(
    title: str,
    categories: list[str],
    series: list[tuple[str, str, list[float]]],  # (label, colour, values)
    *,
    stacked: bool,
    unit: str = "kg CO2e / month",
    width: int = 720,
    rotate: bool = False,
) -> str:
    """A bar chart of kilograms (the shared engine of `mcpdsl.optimize.charts`)."""
    return charts.bar_chart(
        title, categories, series, stacked=stacked, unit=unit, width=width, rotate=rotate, fmt=_kg
    )


_tick = charts.tick
_ticks = charts.ticks


def burn_down(carbon: str, budget: float, scenarios: dict[str, float], width: int = 720) -> str:
    """Remaining budget over a month for the plan and both baselines, against the budget's pace."""
    height = 300
    left, right, top, bottom = 64, 16, 40, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    worst = max([budget, *scenarios.values()])
    ticks = _ticks(min(0.0, budget - worst), budget)
    low, high = ticks[0], ticks[-1]
    span = high - low if high > low else 1.0

    def px(day: float) -> float:
        return left + plot_w * day / DAYS

    def py(value: float) -> float:
        return top + plot_h - plot_h * (value - low) / span

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="budget burn-down of {_esc(carbon)}">',
        f'<text x="{left}" y="20" class="title">Budget burn-down: {_esc(carbon)} '
        f"({_esc(_kg(budget))} kg a month; kg left)</text>",
    ]
    for value in ticks:
        out.append(
            f'<line x1="{left}" y1="{py(value):.1f}" x2="{left + plot_w}" y2="{py(value):.1f}" '
            f'stroke="{PALETTE["grid"]}"/><text x="{left - 6}" y="{py(value) + 4:.1f}" '
            f'class="small" text-anchor="end">{_esc(_tick(value))}</text>'
        )
    for day in (0, 5, 10, 15, 20, 25, 30):
        out.append(
            f'<text x="{px(day):.1f}" y="{top + plot_h + 16}" class="small" '
            f'text-anchor="middle">day {day}</text>'
        )
    out.append(
        f'<line x1="{left}" y1="{py(0):.1f}" x2="{left + plot_w}" y2="{py(0):.1f}" stroke="#333"/>'
    )
    out.append(
        f'<line x1="{px(0):.1f}" y1="{py(budget):.1f}" x2="{px(DAYS):.1f}" y2="{py(0):.1f}" '
        f'stroke="{PALETTE["budget"]}" stroke-dasharray="6 4"><title>the budget\'s pace</title></line>'
    )
    widths = {"window-start": 3, "greedy": 6, "plan": 3}
    for key in ("window-start", "greedy", "plan"):
        if key not in scenarios:
            continue
        used = scenarios[key]
        out.append(
            f'<line x1="{px(0):.1f}" y1="{py(budget):.1f}" x2="{px(DAYS):.1f}" '
            f'y2="{py(budget - used):.1f}" stroke="{PALETTE[key]}" stroke-width="{widths[key]}">'
            f"<title>{_esc(LABELS[key])}: {_esc(_kg(used))} kg used, "
            f"{_esc(_kg(budget - used))} kg left</title></line>"
        )
    entries = [
        (LABELS[k], PALETTE[k]) for k in ("plan", "window-start", "greedy") if k in scenarios
    ]
    out.append(_legend([*entries, ("budget pace", PALETTE["budget"])], left, height - 10))
    out.append("</svg>")
    return "".join(out)


def short_names(names: list[str]) -> list[str]:
    """`package.job` shortened to `job` when that stays unique."""
    short = [name.rsplit(".", 1)[-1] for name in names]
    return short if len(set(short)) == len(short) else names


# ------------------------------------------------------------------ HTML


_CSS = charts.CSS


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _schedule_rows(plan: Plan) -> list[list[str]]:
    rows = []
    for name, a in sorted(plan.assignments.items()):
        ours = a.grams * DAYS / 1000
        first = a.baselines["window-start"].grams * DAYS / 1000
        second = a.baselines["greedy"].grams * DAYS / 1000
        rows.append(
            [
                name,
                a.region,
                f"{a.start} {a.zone}",
                _kg(ours),
                _kg(first),
                _pct(ours, first),
                _kg(second),
                _pct(ours, second),
            ]
        )
    return rows


_SCHEDULE_HEAD = [
    "job",
    "region",
    "start",
    "kgCO2e/month",
    "window start",
    "saving",
    "greedy",
    "saving",
]


def _accounting_rows(plan: Plan) -> list[list[str]]:
    if plan.accounting is None:
        return []
    return [
        [
            line.name,
            line.kind,
            line.region,
            f"{line.facility_kwh:.1f}",
            f"{line.intensity:.1f}",
            _kg(line.total_kg),
        ]
        for line in sorted(plan.accounting.lines, key=lambda x: (x.kind, x.name, x.region))
    ]


_ACCOUNTING_HEAD = ["workload", "kind", "region", "kWh/month", "gCO2e/kWh", "kgCO2e/month"]


def _packing_rows(plan: Plan) -> list[list[str]]:
    rows: list[list[str]] = []
    if plan.packing is None:
        return rows
    for p in plan.packing.packings:
        if p.status == "infeasible":
            rows.append([p.region, p.load, "does not fit", "", "", ""])
            continue
        rows.append(
            [
                p.region,
                p.load,
                f"{p.total('before', 'nodes'):.0f} → {p.total('after', 'nodes'):.0f}",
                f"{p.total('before', 'watts'):.0f} → {p.total('after', 'watts'):.0f}",
                f"{p.total('before', 'watts') * 0.7305:.0f} → {p.total('after', 'watts') * 0.7305:.0f}",
                f"{p.total('before', 'cost'):.2f} → {p.total('after', 'cost'):.2f}",
            ]
        )
    return rows


_PACKING_HEAD = ["region", "load", "nodes", "W", "kWh/month", "$/h"]


def _recommendation_rows(plan: Plan) -> list[list[str]]:
    if plan.packing is None:
        return []
    return [
        [
            r.pool,
            r.region,
            f"{r.declared[0]}..{r.declared[1]}",
            f"{r.recommended[0]}..{r.recommended[1]}" if r.recommended else "does not fit",
        ]
        for r in plan.packing.recommendations
    ]


def _totals(data: _Data) -> dict[str, float]:
    totals = {"plan": 0.0, "window-start": 0.0, "greedy": 0.0}
    for _, scenario in data.jobs:
        for key in totals:
            totals[key] += scenario.get(key, 0.0)
    return totals


def _html(data: _Data, plan: Plan, title: str) -> str:
    totals = _totals(data)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Sustainability report: {_esc(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Sustainability report: {_esc(title)}</h1>",
        '<p class="note">Location-based averages by the Cloud Carbon Footprint method '
        "(annual grid intensity per region, hourly forecasts where the tree gives them); "
        "not marginal emissions. Jobs run once a day; a month is 30.4375 days.</p>",
        '<div class="cards">',
        f'<div class="card">total<b>{_esc(_kg(data.total))} kg</b>CO2e a month</div>',
    ]
    for carbon, budget, scenarios in data.budgets:
        used = scenarios["plan"]
        cls = "bad" if used > budget else "good"
        parts.append(
            f'<div class="card">budget {_esc(carbon)}<b class="{cls}">{used / budget:.0%}</b>'
            f"of {_esc(_kg(budget))} kg a month</div>"
            if budget
            else ""
        )
    if data.jobs:
        parts.append(
            f'<div class="card">jobs vs window start<b class="good">'
            f"{_esc(_pct(totals['plan'], totals['window-start']))}</b>"
            f"{_esc(_kg(totals['window-start'] - totals['plan']))} kg a month saved</div>"
            f'<div class="card">jobs vs greedy<b class="good">'
            f"{_esc(_pct(totals['plan'], totals['greedy']))}</b>"
            f"{_esc(_kg(totals['greedy'] - totals['plan']))} kg a month saved</div>"
        )
    parts.append("</div>")
    for d in plan.diagnostics:
        parts.append(
            f'<p class="bad">{_esc(d.severity.value)}[{_esc(d.code)}]: {_esc(d.message)}</p>'
        )

    parts.append("<h2>Emissions by region</h2>")
    regions = list(data.by_region)
    parts.append(
        bar_chart(
            "Emissions by region",
            regions,
            [
                ("services", PALETTE["service"], [data.by_region[r]["service"] for r in regions]),
                ("jobs", PALETTE["job"], [data.by_region[r]["job"] for r in regions]),
            ],
            stacked=True,
        )
    )
    parts.append("<h2>Emissions by hour of the day (UTC)</h2>")
    parts.append(
        bar_chart(
            "Emissions by hour of the UTC day",
            [f"{h:02d}" for h in range(24)],
            [
                ("services", PALETTE["service"], [h["service"] for h in data.by_hour]),
                ("jobs (planned)", PALETTE["job"], [h["job"] for h in data.by_hour]),
            ],
            stacked=True,
        )
    )
    if data.budgets:
        parts.append("<h2>Budget burn-down</h2>")
        for carbon, budget, scenarios in data.budgets:
            parts.append(burn_down(carbon, budget, scenarios))
    if data.jobs:
        parts.append("<h2>Savings against both baselines</h2>")
        names = [*short_names([name for name, _ in data.jobs]), "total"]
        series = []
        for key in ("plan", "window-start", "greedy"):
            values = [scenario.get(key, 0.0) for _, scenario in data.jobs] + [totals[key]]
            series.append((LABELS[key], PALETTE[key], values))
        parts.append(
            bar_chart(
                "Jobs: plan against both baselines",
                names,
                series,
                stacked=False,
                rotate=max(len(n) for n in names) * 7 > 720 / len(names),
            )
        )
        parts.append("<h2>Green schedule</h2>")
        parts.append(_table(_SCHEDULE_HEAD, _schedule_rows(plan)))
        parts.append(
            '<p class="note">window start: every job at its window start in its first allowed '
            "region. greedy: each job in turn takes its lowest-carbon slot that still fits.</p>"
        )
    if plan.accounting is not None and plan.accounting.lines:
        parts.append("<h2>Carbon accounting</h2>")
        parts.append(_table(_ACCOUNTING_HEAD, _accounting_rows(plan)))
    if plan.packing is not None and plan.packing.packings:
        parts.append("<h2>Pool packing</h2>")
        parts.append(_table(_PACKING_HEAD, _packing_rows(plan)))
        parts.append(
            _table(["pool", "region", "declared nodes", "recommended"], _recommendation_rows(plan))
        )
    if plan.notes:
        parts.append("<h2>Notes</h2><ul>")
        parts.extend(f"<li>{_esc(note)}</li>" for note in plan.notes)
        parts.append("</ul>")
    parts.append(
        '<p class="note">Method and coefficient sources: docs/carbon.md (Cloud Carbon Footprint: '
        "per-vCPU min/max watts, 0.000392 kWh per GB-hour, PUE, grid intensity).</p>"
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)


# ------------------------------------------------------------------ Markdown


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("| " + " | ".join("---" for _ in header) + " |")
    lines.extend("| " + " | ".join(cell(c) for c in row) + " |" for row in rows)
    return "\n".join(lines)


def _markdown(data: _Data, plan: Plan, title: str) -> str:
    totals = _totals(data)
    out = [
        f"# Sustainability report: {title}",
        "",
        "Location-based averages by the Cloud Carbon Footprint method (annual grid intensity per",
        "region, hourly forecasts where the tree gives them); not marginal emissions. Jobs run once",
        "a day; a month is 30.4375 days. Charts: `sustainability.html`.",
        "",
        f"**Total: {_kg(data.total)} kg CO2e a month.**",
        "",
    ]
    for carbon, budget, scenarios in data.budgets:
        out.append(
            f"- budget of `{carbon}`: {_kg(scenarios['plan'])} of {_kg(budget)} kg a month"
            f" ({scenarios['plan'] / budget:.0%})"
            if budget
            else f"- budget of `{carbon}`: 0 kg"
        )
    if data.jobs:
        out.append(
            f"- jobs: {_kg(totals['plan'])} kg a month; window start {_kg(totals['window-start'])} kg "
            f"(saving {_pct(totals['plan'], totals['window-start'])}), greedy {_kg(totals['greedy'])} kg "
            f"(saving {_pct(totals['plan'], totals['greedy'])})"
        )
    for d in plan.diagnostics:
        out.append(f"- **{d.severity.value}[{d.code}]**: {d.message}")
    out += ["", "## Emissions by region", ""]
    out.append(
        _md_table(
            ["region", "services kg", "jobs kg"],
            [[r, _kg(v["service"]), _kg(v["job"])] for r, v in data.by_region.items()],
        )
    )
    out += ["", "## Emissions by hour of the day (UTC)", ""]
    out.append(
        _md_table(
            ["hour", "services kg", "jobs kg"],
            [[f"{h:02d}", _kg(v["service"]), _kg(v["job"])] for h, v in enumerate(data.by_hour)],
        )
    )
    if data.budgets:
        out += ["", "## Budget burn-down", ""]
        rows = []
        for carbon, budget, scenarios in data.budgets:
            for key in ("plan", "window-start", "greedy"):
                used = scenarios.get(key, 0.0)
                rows.append([carbon, LABELS[key], _kg(budget), _kg(used), _kg(budget - used)])
        out.append(_md_table(["carbon block", "scenario", "budget kg", "used kg", "left kg"], rows))
    if data.jobs:
        out += ["", "## Green schedule", ""]
        out.append(_md_table(_SCHEDULE_HEAD, _schedule_rows(plan)))
    if plan.accounting is not None and plan.accounting.lines:
        out += ["", "## Carbon accounting", ""]
        out.append(_md_table(_ACCOUNTING_HEAD, _accounting_rows(plan)))
    if plan.packing is not None and plan.packing.packings:
        out += ["", "## Pool packing", ""]
        out.append(_md_table(_PACKING_HEAD, _packing_rows(plan)))
        out += [""]
        out.append(
            _md_table(
                ["pool", "region", "declared nodes", "recommended"], _recommendation_rows(plan)
            )
        )
    if plan.notes:
        out += ["", "## Notes", ""]
        out.extend(f"- {note}" for note in plan.notes)
    out += ["", "Method and coefficient sources: `docs/carbon.md`.", ""]
    return "\n".join(out)
