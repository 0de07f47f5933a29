"""`build/prometheus/rules.yaml`: Kepler energy x grid intensity, checked by a real PromQL parser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from validators import promql_available, validate_promql

import mcpdsl
from mcpdsl.cli import main
from mcpdsl.optimize.monitor import expressions, rules

REPO = Path(__file__).resolve().parents[2]
METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
DURATION = re.compile(r"^[0-9]+[smhdwy]$")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("build")
    result = CliRunner().invoke(
        main, ["build", str(REPO / "policies"), "--out", str(out), "--target", "prometheus", "-q"]
    )
    assert result.exit_code == 0, result.output
    return yaml.safe_load((out / "prometheus" / "rules.yaml").read_text(encoding="utf-8"))


@pytest.mark.skipif(not promql_available(), reason="system component missing: promql-parser")
def test_every_expression_parses(built: dict) -> None:  # type: ignore[type-arg]
    for name, expr in expressions(built):
        assert validate_promql(expr) == [], (name, expr)


def test_rule_file_structure(built: dict) -> None:  # type: ignore[type-arg]
    names = [g["name"] for g in built["groups"]]
    assert names == [
        "mcpdsl-carbon-facts",
        "mcpdsl-carbon-energy",
        "mcpdsl-carbon-budget",
        "mcpdsl-pool-health",
    ]
    for group in built["groups"]:
        assert DURATION.match(group["interval"])
        for rule in group["rules"]:
            assert ("record" in rule) != ("alert" in rule)
            if "record" in rule:
                assert METRIC.match(rule["record"]), rule["record"]
            else:
                assert DURATION.match(rule.get("for", "0s"))
                assert rule["labels"]["severity"] in ("warning", "critical")
                assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            for key, value in rule.get("labels", {}).items():
                assert METRIC.match(key) and isinstance(value, str)


def test_both_kepler_generations_feed_the_energy(built: dict) -> None:  # type: ignore[type-arg]
    text = yaml.safe_dump(built)
    assert "kepler_container_joules_total" in text  # Kepler < 0.10
    assert "kepler_container_cpu_joules_total" in text  # Kepler >= 0.10
    assert "kepler_pod_cpu_joules_total" in text


def test_facts_come_from_the_carbon_block(built: dict) -> None:  # type: ignore[type-arg]
    facts = built["groups"][0]["rules"]
    intensity = {
        r["labels"]["region"]: r["expr"]
        for r in facts
        if r["record"] == "mcpdsl:grid_intensity_g_per_kwh"
    }
    assert intensity["eu-north-1"] == "vector(8)"
    assert intensity["us-east-1"] == "vector(415.755)"
    budget = [r for r in facts if r["record"] == "mcpdsl:carbon_budget_g_per_month"]
    assert budget == [
        {
            "record": "mcpdsl:carbon_budget_g_per_month",
            "expr": "vector(750000)",
            "labels": {"carbon": "platform.platform"},
        }
    ]
    alerts = {r["alert"] for g in built["groups"][:3] for r in g["rules"] if "alert" in r}
    assert alerts == {"McpdslCarbonBurnAheadOfBudget", "McpdslCarbonBudgetExhausted"}


def test_a_tree_without_carbon_has_no_rules() -> None:
    project = mcpdsl.load(REPO / "examples" / "zero-trust")
    assert not project.carbons
    assert rules(project) is None


# ------------------------------------------------------------------ intensity over time


FORECAST_TREE = REPO / "examples" / "carbon-forecast"


def _evaluate(expr: str, hour: int, day_of_week: int) -> list[float]:
    """What the intensity rule yields at an hour: the terms whose clock test holds.

    The expression's shape is fixed by `intensity_expr` (`vector(V) and on ()
    (SLOT op N [< M])` joined by `or`); this reads it back and evaluates the
    tests, so the rule is checked for giving exactly one value at every hour.
    """
    slot = hour if "day_of_week" not in expr else day_of_week * 24 + hour
    out = []
    for term in expr.split("\nor "):
        found = re.fullmatch(
            r"vector\(([0-9.]+)\) and on \(\) \((?:hour\(\)|\(day_of_week\(\) \* 24 \+ hour\(\)\)) "
            r"(==|<|>=) ([0-9]+)(?: < ([0-9]+))?\)",
            term,
        )
        assert found, term
        value, op, n, upper = found.groups()
        ok = {"==": slot == int(n), "<": slot < int(n), ">=": slot >= int(n)}[op]
        if upper is not None:
            ok = ok and slot < int(upper)
        if ok:
            out.append(float(value))
    return out


def _forecast_rules() -> dict[str, str]:
    doc = rules(mcpdsl.load(FORECAST_TREE))
    assert doc is not None
    return {
        r["labels"]["region"]: r["expr"]
        for r in doc["groups"][0]["rules"]
        if r["record"] == "mcpdsl:grid_intensity_g_per_kwh"
    }


def test_a_forecast_makes_the_intensity_vary_with_the_hour() -> None:
    from mcpdsl.optimize.intensity import load

    project = mcpdsl.load(FORECAST_TREE)
    carbon = project.carbons[0]
    table = load(project, carbon).table
    exprs = _forecast_rules()
    assert set(exprs) == {"europe-west3", "europe-southwest1", "europe-west4"}
    day = table.horizon
    assert day is not None
    for region, expr in exprs.items():
        assert "hour()" in expr and "day_of_week" not in expr  # one day: a daily profile
        for hour in range(24):
            expected = table.average(region, day[0] + hour * 3600, day[0] + (hour + 1) * 3600)
            got = _evaluate(expr, hour, 1)
            assert got == [pytest.approx(expected, abs=0.001)], (region, hour)
    # Madrid's solar dip at noon is below its night, Frankfurt's evening peak above its noon
    assert (
        _evaluate(exprs["europe-southwest1"], 12, 0)[0]
        < _evaluate(exprs["europe-southwest1"], 2, 0)[0]
    )
    assert _evaluate(exprs["europe-west3"], 19, 0)[0] > _evaluate(exprs["europe-west3"], 11, 0)[0]


@pytest.mark.skipif(not promql_available(), reason="system component missing: promql-parser")
def test_the_forecast_rules_parse() -> None:
    for region, expr in _forecast_rules().items():
        assert validate_promql(expr) == [], (region, expr)


def test_a_week_of_forecast_keeps_its_weekly_shape(tmp_path: Path) -> None:
    """A forecast of at least a week is folded per hour of the week (Sunday first, as PromQL)."""
    import shutil

    from mcpdsl.optimize.intensity import load
    from mcpdsl.optimize.monitor import hourly_profile, intensity_expr

    shutil.copy(REPO / "examples" / "simulate" / "week-intensity.csv", tmp_path / "week.csv")
    project = mcpdsl.load(REPO / "policies").model_copy(update={"root": str(tmp_path)})
    carbon = project.carbons[0].model_copy(update={"intensity_file": "week.csv"})
    table = load(project, carbon).table
    profile = hourly_profile(table, "us-east-1")
    assert profile is not None and profile.slots == 168
    expr = intensity_expr(profile)
    monday = table.horizon[0]  # type: ignore[index]  # 2025-06-02 is a Monday
    for day in range(7):
        for hour in range(24):
            start = monday + (day * 24 + hour) * 3600
            expected = table.average("us-east-1", start, start + 3600)
            dow = (day + 1) % 7  # PromQL: Sunday = 0
            assert _evaluate(expr, hour, dow) == [pytest.approx(expected, abs=0.001)]
    if promql_available():
        assert validate_promql(expr) == []


def test_a_broken_forecast_falls_back_to_the_annual_average(tmp_path: Path) -> None:
    shutil_tree = tmp_path / "tree"
    import shutil

    shutil.copytree(FORECAST_TREE, shutil_tree)
    (shutil_tree / "forecast.csv").write_text("region,timestamp,g_per_kwh\nnowhere,x,-1\n")
    project = mcpdsl.load(shutil_tree)
    doc = rules(project)
    assert doc is not None
    exprs = [r["expr"] for r in doc["groups"][0]["rules"] if r["record"].startswith("mcpdsl:grid")]
    assert exprs and all(e.startswith("vector(") and " or " not in e for e in exprs)


# ------------------------------------------------------------------ pool health


def test_pool_health_rules_use_kube_state_metrics(built: dict) -> None:  # type: ignore[type-arg]
    group = built["groups"][3]
    assert group["name"] == "mcpdsl-pool-health"
    records = [r["record"] for r in group["rules"] if "record" in r]
    assert records == [
        "mcpdsl:pool_requests:sum",
        "mcpdsl:pool_allocatable:sum",
        "mcpdsl:pool_requests:ratio",
        "mcpdsl:pool_nodes:count",
    ]
    alerts = [(r["alert"], r["labels"].get("pool")) for r in group["rules"] if "alert" in r]
    assert alerts == [
        ("McpdslPoolSaturated", "gpu"),
        ("McpdslPoolPodsPending", "gpu"),
        ("McpdslPoolSaturated", "standard"),
        ("McpdslPoolPodsPending", "standard"),
        ("McpdslPoolQuotaSaturated", None),
    ]
    text = "\n".join(r["expr"] for r in group["rules"])
    for metric in (  # the names kube-state-metrics v2 exports
        "kube_pod_container_resource_requests",
        "kube_node_status_allocatable",
        "kube_node_labels",
        "label_mcpdsl_io_pool",
        "kube_pod_status_phase",
        'kube_pod_info{priority_class="mcpdsl-standard"}',
        'kube_resourcequota{resourcequota=~"gpu|standard", type="used"}',
    ):
        assert metric in text, metric
    saturated = {
        r["labels"]["pool"]: r["expr"]
        for r in group["rules"]
        if r.get("alert") == "McpdslPoolSaturated"
    }
    assert ">= 12" in saturated["standard"] and ">= 4" in saturated["gpu"]  # pools.mcp maximums


def test_a_tree_with_pools_and_no_carbon_gets_pool_health_only(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "pool.mcp").write_text(
        'package p\n\npool small {\n  tier    standard\n  regions ["eu-north-1"]\n'
        "  node    { cpu 4, memory 16Gi, idle 10W, peak 40W, cost $0.1/h }\n  nodes   1..3\n}\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["build", str(tree), "--out", str(out), "--target", "prometheus", "-q"]
    )
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load((out / "prometheus" / "rules.yaml").read_text(encoding="utf-8"))
    assert [g["name"] for g in doc["groups"]] == ["mcpdsl-pool-health"]
    assert not any(r.get("alert") == "McpdslPoolQuotaSaturated" for r in doc["groups"][0]["rules"])
    for name, expr in expressions(doc):
        if promql_available():
            assert validate_promql(expr) == [], (name, expr)
