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
    assert names == ["mcpdsl-carbon-facts", "mcpdsl-carbon-energy", "mcpdsl-carbon-budget"]
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
    alerts = {r["alert"] for g in built["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == {"McpdslCarbonBurnAheadOfBudget", "McpdslCarbonBudgetExhausted"}


def test_a_tree_without_carbon_has_no_rules() -> None:
    project = mcpdsl.load(REPO / "examples" / "zero-trust")
    assert not project.carbons
    assert rules(project) is None
