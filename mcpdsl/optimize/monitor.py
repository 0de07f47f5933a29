"""The carbon monitor: Prometheus rules that turn Kepler energy counters into gCO2e.

    prometheus/rules.yaml

Three rule groups:

- `mcpdsl-carbon-facts`: the carbon blocks as series —
  `mcpdsl:grid_intensity_g_per_kwh` and `mcpdsl:pue` per region (labels
  `region`, `carbon`), `mcpdsl:carbon_budget_g_per_month` per carbon block.
  The intensity is the region's annual average, or, where the block has
  `intensity from "FILE"`, the forecast folded into an hourly profile (see
  `intensity_expr`) that the rule picks by the hour Prometheus evaluates it at;
- `mcpdsl-carbon-energy`: watts per region (and per namespace) from Kepler's
  counters — `kepler_container_joules_total` (Kepler before 0.10) or the
  `kepler_container_cpu_joules_total` / `kepler_pod_cpu_joules_total` names of
  Kepler ≥ 0.10 (RAPL zones `package` and `dram`) — and
  `mcpdsl:carbon_emissions_g_per_second` = watts × PUE × intensity / 3.6e6;
- `mcpdsl-carbon-budget`: the month-to-date emissions per carbon block and two
  alerts, `McpdslCarbonBurnAheadOfBudget` (the month's burn runs ahead of the
  budget's linear pace) and `McpdslCarbonBudgetExhausted`.

The Kepler series must carry a `region` label: in a global view (Thanos,
Mimir, Cortex) it is each cluster's `external_labels.region`; in a single
cluster add it with a relabelling rule (`targets/prometheus/README.md`).  A
region listed by several carbon blocks is counted for the first of them by
qualified name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from mcpdsl.ir import model as m
from mcpdsl.optimize.accounting import budget_kg_per_month
from mcpdsl.optimize.coefficients import provider_of
from mcpdsl.optimize.intensity import IntensityTable, load

FACTS = "mcpdsl-carbon-facts"
ENERGY = "mcpdsl-carbon-energy"
BUDGET = "mcpdsl-carbon-budget"

RATE_WINDOW = "5m"
#: Kepler >= 0.10 reports RAPL zones; package (cores + uncore) plus dram is the whole CPU socket
#: and its memory without counting `core` twice.
ZONES = 'zone=~"package|dram"'

WATTS_BY_REGION = (
    f"sum by (region) (rate(kepler_container_joules_total[{RATE_WINDOW}]))\n"
    f"or\n"
    f"sum by (region) (rate(kepler_container_cpu_joules_total{{{ZONES}}}[{RATE_WINDOW}]))"
)
WATTS_BY_NAMESPACE = (
    "sum by (region, namespace) (label_replace("
    f"rate(kepler_container_joules_total[{RATE_WINDOW}]), "
    '"namespace", "$1", "container_namespace", "(.*)"))\n'
    "or\n"
    "sum by (region, namespace) (label_replace("
    f"rate(kepler_pod_cpu_joules_total{{{ZONES}}}[{RATE_WINDOW}]), "
    '"namespace", "$1", "pod_namespace", "(.*)"))'
)
G_PER_JOULE = "(mcpdsl:grid_intensity_g_per_kwh * on (region, carbon) mcpdsl:pue) / 3600000"
MONTH_START = "vector(time()) - ((day_of_month() - 1) * 86400 + hour() * 3600 + minute() * 60)"
MONTH_ELAPSED = "(vector(time()) - mcpdsl:month_start_seconds) / (days_in_month() * 86400)"
MONTH_TO_DATE = (
    "sum_over_time((\n"
    "  sum by (carbon) (mcpdsl:carbon_emissions_g_per_second)\n"
    "  and on () (vector(time()) >= on () (mcpdsl:month_start_seconds @ end()))\n"
    ")[31d:5m]) * 300"
)


def owners(project: m.Project) -> dict[str, m.Carbon]:
    """Each region's carbon block: the first by qualified name that lists it."""
    out: dict[str, m.Carbon] = {}
    for carbon in sorted(project.carbons, key=lambda c: c.qualified):
        for region in carbon.regions:
            out.setdefault(region.region, carbon)
    return dict(sorted(out.items()))


def rules(project: m.Project) -> dict[str, Any] | None:
    """The rule file as a dict (None when the tree has no carbon block)."""
    if not project.carbons:
        return None
    facts: list[dict[str, Any]] = []
    tables: dict[str, IntensityTable | None] = {}
    for region, carbon in owners(project).items():
        entry = next(r for r in carbon.regions if r.region == region)
        labels = {"carbon": carbon.qualified, "region": region}
        pue = entry.pue if entry.pue is not None else provider_of(region).pue
        if carbon.qualified not in tables:
            tables[carbon.qualified] = _forecast(project, carbon)
        table = tables[carbon.qualified]
        profile = hourly_profile(table, region) if table is not None else None
        facts.append(
            {
                "record": "mcpdsl:grid_intensity_g_per_kwh",
                "expr": intensity_expr(profile)
                if profile
                else f"vector({_number(entry.intensity)})",
                "labels": labels,
            }
        )
        facts.append({"record": "mcpdsl:pue", "expr": f"vector({_number(pue)})", "labels": labels})
    for carbon in project.carbons:
        if carbon.budget is None:
            continue
        grams = Decimal(repr(budget_kg_per_month(carbon.budget))) * 1000
        facts.append(
            {
                "record": "mcpdsl:carbon_budget_g_per_month",
                "expr": f"vector({_number(grams.quantize(Decimal('0.001')))})",
                "labels": {"carbon": carbon.qualified},
            }
        )
    energy = [
        {"record": "mcpdsl:kepler_power_watts:by_region", "expr": WATTS_BY_REGION},
        {"record": "mcpdsl:kepler_power_watts:by_region_namespace", "expr": WATTS_BY_NAMESPACE},
        {
            "record": "mcpdsl:carbon_emissions_g_per_second",
            "expr": (
                "mcpdsl:kepler_power_watts:by_region\n"
                f"* on (region) group_left (carbon) {G_PER_JOULE}"
            ),
        },
        {
            "record": "mcpdsl:carbon_emissions_g_per_second:by_namespace",
            "expr": (
                "mcpdsl:kepler_power_watts:by_region_namespace\n"
                f"* on (region) group_left (carbon) {G_PER_JOULE}"
            ),
        },
    ]
    budget: list[dict[str, Any]] = [
        {"record": "mcpdsl:month_start_seconds", "expr": MONTH_START},
        {"record": "mcpdsl:month_elapsed_ratio", "expr": MONTH_ELAPSED},
        {"record": "mcpdsl:carbon_emissions_g:month_to_date", "expr": MONTH_TO_DATE},
    ]
    if any(c.budget is not None for c in project.carbons):
        budget += [
            {
                "alert": "McpdslCarbonBurnAheadOfBudget",
                "expr": (
                    "mcpdsl:carbon_emissions_g:month_to_date\n"
                    "> on (carbon) (mcpdsl:carbon_budget_g_per_month "
                    "* on () group_left () mcpdsl:month_elapsed_ratio)"
                ),
                "for": "1h",
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": "carbon budget of {{ $labels.carbon }} burns ahead of its pace",
                    "description": (
                        "{{ $labels.carbon }} emitted {{ $value | humanize }}g CO2e this month, "
                        "more than its monthly budget's pace allows so far "
                        "(location-based, from Kepler energy and the policy's grid intensity)."
                    ),
                },
            },
            {
                "alert": "McpdslCarbonBudgetExhausted",
                "expr": (
                    "mcpdsl:carbon_emissions_g:month_to_date\n"
                    "> on (carbon) mcpdsl:carbon_budget_g_per_month"
                ),
                "labels": {"severity": "critical"},
                "annotations": {
                    "summary": "carbon budget of {{ $labels.carbon }} is used up for this month",
                    "description": (
                        "{{ $labels.carbon }} emitted {{ $value | humanize }}g CO2e this month, "
                        "more than its whole monthly budget."
                    ),
                },
            },
        ]
    return {
        "groups": [
            {"name": FACTS, "interval": "5m", "rules": facts},
            {"name": ENERGY, "interval": "1m", "rules": energy},
            {"name": BUDGET, "interval": "5m", "rules": budget},
        ]
    }


# ------------------------------------------------------------------ the forecast over time


@dataclass(frozen=True)
class Profile:
    """A forecast folded onto the hours of a UTC day (24 slots) or week (168 slots).

    Prometheus evaluates rules without access to the forecast file, and there
    is no exporter to serve it; so the build bakes the forecast into the rule
    as constants and PromQL's own clock functions pick the constant of the
    current hour.  A forecast spanning at least a week keeps its weekly shape
    (slot = `day_of_week() * 24 + hour()`, Sunday 0 as in PromQL), a shorter
    one its daily shape; an hour-slot seen several times takes the mean, a slot
    the forecast never covers the annual average.  The profile repeats until
    the next build: a daily forecast refresh means a daily rebuild.
    """

    slots: int  # 24 or 168
    values: tuple[float, ...]  # g/kWh per slot, rounded to 3 decimals


def _forecast(project: m.Project, carbon: m.Carbon) -> IntensityTable | None:
    """The block's forecast table, None without one or when it does not load.

    A forecast that does not load is reported by the carbon analysis
    (E0701-E0706) and fails the build before any target runs; here it only
    means falling back to the annual average.
    """
    if carbon.intensity_file is None:
        return None
    loaded = load(project, carbon)
    return None if loaded.diagnostics or not loaded.table.series else loaded.table


def hourly_profile(table: IntensityTable, region: str) -> Profile | None:
    """The region's forecast as a daily or weekly hourly profile, None without one."""
    segments = table.series.get(region)
    if not segments:
        return None
    first = math.ceil(segments[0].start / 3600) * 3600
    last = math.floor(segments[-1].end / 3600) * 3600
    if last <= first:
        return None
    slots = 168 if last - first >= 7 * 86400 else 24
    sums = [0.0] * slots
    counts = [0] * slots
    for hour in range(first, last, 3600):
        moment = datetime.fromtimestamp(hour, UTC)
        slot = moment.hour if slots == 24 else (moment.isoweekday() % 7) * 24 + moment.hour
        sums[slot] += table.average(region, hour, hour + 3600)
        counts[slot] += 1
    annual = table.regions[region].intensity
    values = tuple(round(sums[k] / counts[k] if counts[k] else annual, 3) for k in range(slots))
    return Profile(slots, values)


def slot_ranges(profile: Profile) -> list[tuple[int, int, float]]:
    """Runs of equal consecutive slots, [lo, hi) with their value: one PromQL term each."""
    runs: list[tuple[int, int, float]] = []
    for k, value in enumerate(profile.values):
        if runs and runs[-1][2] == value:
            runs[-1] = (runs[-1][0], k + 1, value)
        else:
            runs.append((k, k + 1, value))
    return runs


def intensity_expr(profile: Profile) -> str:
    """PromQL for the profile's value at the evaluation time, without any exporter.

    One term per run of equal slots, `vector(V) and on () (SLOT >= lo < hi)`,
    joined by `or`: the clock comparison keeps a sample in exactly one term,
    so exactly one constant comes out (`and`/`or` on label-less vectors).
    """
    slot = "hour()" if profile.slots == 24 else "(day_of_week() * 24 + hour())"
    runs = slot_ranges(profile)
    if len(runs) == 1:
        return f"vector({_float(runs[0][2])})"
    terms = []
    for lo, hi, value in runs:
        if hi - lo == 1:
            test = f"{slot} == {lo}"
        elif lo == 0:
            test = f"{slot} < {hi}"
        elif hi == profile.slots:
            test = f"{slot} >= {lo}"
        else:
            test = f"{slot} >= {lo} < {hi}"
        terms.append(f"vector({_float(value)}) and on () ({test})")
    return "\nor ".join(terms)


def _float(value: float) -> str:
    return _number(Decimal(repr(value)))


def expressions(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(rule name, PromQL) for every rule of a rule file, for validators."""
    out = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            out.append((rule.get("record") or rule.get("alert"), rule["expr"]))
    return out


def _number(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text
