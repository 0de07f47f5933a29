"""`mcpdsl plan` and `mcpdsl build` agree: the CronJobs run where and when the plan says."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from validators import validate_kubernetes

from mcpdsl.cli import main

REPO = Path(__file__).resolve().parents[2]
FORECAST = Path(__file__).parent / "fixtures" / "forecast"
TREES = [FORECAST, REPO / "examples" / "carbon", REPO / "policies"]


def plan_json(tree: Path) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(main, ["plan", str(tree), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def cronjobs(out: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    found = {}
    for path in sorted((out / "kubernetes").rglob("cronjob-*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        found[
            f"{doc['metadata']['labels']['app.kubernetes.io/part-of']}.{doc['metadata']['name']}"
        ] = doc
    return found


@pytest.mark.parametrize("tree", TREES, ids=[t.name for t in TREES])
def test_cronjob_schedules_equal_the_plan(tree: Path, tmp_path: Path) -> None:
    plan = plan_json(tree)
    assert plan["status"] == "optimal"
    result = CliRunner().invoke(main, ["build", str(tree), "--out", str(tmp_path / "b"), "-q"])
    assert result.exit_code == 0, result.output
    jobs = cronjobs(tmp_path / "b")
    assert set(jobs) == set(plan["jobs"])
    for name, placed in plan["jobs"].items():
        doc = jobs[name]
        hour, minute = (int(x) for x in placed["start"].split(":"))
        assert doc["spec"]["schedule"] == f"{minute} {hour} * * *"
        assert doc["spec"]["timeZone"] == placed["zone"]
        assert doc["metadata"]["annotations"]["mcpdsl.io/placement"] == "plan"
        terms = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        (term,) = terms["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        (expr,) = [
            e for e in term["matchExpressions"] if e["key"] == "topology.kubernetes.io/region"
        ]
        assert expr["values"] == [placed["region"]]
        assert validate_kubernetes(doc) == []


def test_the_forecast_moves_a_job_off_its_window_start() -> None:
    plan = plan_json(FORECAST)
    train = plan["jobs"]["green.train"]
    assert (train["region"], train["start"]) == ("eu-north-1", "03:00")
    assert train["baselines"]["window-start"]["region"] == "eu-west-1"


def test_same_input_same_plan_in_fresh_processes() -> None:
    """Fixed seed and worker count: separate processes print the same plan."""
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "mcpdsl", "plan", str(FORECAST), "--format", "json"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0])["jobs"]


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    runner = CliRunner()
    for name in ("one", "two"):
        result = runner.invoke(main, ["build", str(FORECAST), "--out", str(tmp_path / name), "-q"])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "one" / "manifest.json").read_bytes() == (
        tmp_path / "two" / "manifest.json"
    ).read_bytes()


def test_bad_forecast_keeps_window_start_and_says_why(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(FORECAST, tree)
    csv = tree / "data" / "intensity.csv"
    csv.write_text(csv.read_text(encoding="utf-8").replace(",31\n", ",-31\n", 1), encoding="utf-8")
    result = CliRunner().invoke(main, ["build", str(tree), "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "warning[B0130]: carbon schedule not applied" in result.output
    assert "error[E0706]" in result.output  # the optimiser's own finding, named in the help
    assert "jobs keep their window start" in result.output
    for doc in cronjobs(tmp_path / "b").values():
        assert doc["metadata"]["annotations"]["mcpdsl.io/placement"] == "window-start"
    strict = ["build", str(tree), "--out", str(tmp_path / "s"), "--strict"]
    result = CliRunner().invoke(main, strict)
    assert result.exit_code == 1, result.output
    assert "error[B0130]" in result.output
    assert not (tmp_path / "s").exists()
    result = CliRunner().invoke(main, ["plan", str(tree)])
    assert result.exit_code == 1
    assert "error[E0706]" in result.output


def test_plan_prints_the_table() -> None:
    result = CliRunner().invoke(main, ["plan", str(REPO / "policies")], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    for text in (
        "green schedule",
        "platform.nightly-etl",
        "window start",
        "greedy",
        "carbon accounting",
        "pool packing",
        "recommended `nodes`",
    ):
        assert text in result.output


def test_plan_of_a_missing_tree_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["plan", str(tmp_path / "nope")])
    assert result.exit_code == 2


def test_ortools_is_imported_only_by_the_commands_that_need_it() -> None:
    code = (
        "import sys, mcpdsl, mcpdsl.cli, mcpdsl.optimize, mcpdsl.optimize.plan, "
        "mcpdsl.optimize.monitor, mcpdsl.optimize.report\n"
        "from mcpdsl.pipeline import compile_tree\n"
        f"compile_tree({str(REPO / 'policies')!r})\n"
        "print('ortools' in ' '.join(sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
