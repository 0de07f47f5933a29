"""The composite GitHub Action (`action.yml`): well-formed, injection-safe, and its scripts
work — run here step by step against a real git repository, as the runner would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from repo_paths import REPO

ACTION = yaml.safe_load((REPO / "action.yml").read_text(encoding="utf-8"))
STEPS = {step.get("name", step.get("uses")): step for step in ACTION["runs"]["steps"]}
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def test_the_action_is_composite_and_every_expression_names_a_declared_input() -> None:
    assert ACTION["runs"]["using"] == "composite"
    declared = set(ACTION["inputs"])
    text = (REPO / "action.yml").read_text(encoding="utf-8")
    for expression in EXPR.findall(text):
        for name in re.findall(r"inputs\.([A-Za-z0-9_-]+)", expression):
            assert name in declared, f"`inputs.{name}` is not declared"


def test_no_expression_is_substituted_into_a_script() -> None:
    """Inputs reach scripts as environment variables only (no shell injection)."""
    for step in ACTION["runs"]["steps"]:
        if "run" in step:
            assert step["shell"] == "bash"
            assert "${{" not in step["run"], step["name"]
            subprocess.run(["bash", "-n"], input=step["run"], text=True, check=True)


def _run(step: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", STEPS[step]["run"]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.fixture
def runner(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A policy repository with two commits and an `mcpdsl` on PATH, like the runner's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "mcpdsl"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mcpdsl "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    repo = tmp_path / "repo"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "NO_COLOR": "1",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    subprocess.run([sys.executable, "-m", "mcpdsl", "init", str(repo / "policies")], check=True)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    return repo, env


def test_check_and_test_steps_pass_and_write_a_junit_report(runner: tuple[Path, Any]) -> None:
    repo, env = runner
    env = {**env, "MCPDSL_PATH": "policies/", "MCPDSL_JUNIT": "report.xml"}
    assert _run("mcpdsl check", repo, env).returncode == 0
    test = _run("mcpdsl test", repo, env)
    assert test.returncode == 0, test.stderr
    assert 'failures="0"' in (repo / "report.xml").read_text(encoding="utf-8")


def test_diff_step_gates_a_widening_change(runner: tuple[Path, Any]) -> None:
    repo, env = runner
    access = repo / "policies" / "access.mcp"
    access.write_text(
        access.read_text(encoding="utf-8").replace('on GET "/v1/**"', 'on GET, POST "/v1/**"'),
        encoding="utf-8",
    )
    env = {
        **env,
        "MCPDSL_PATH": "policies/",
        "MCPDSL_BASE": "HEAD",
        "MCPDSL_FAIL_ON_WIDEN": "true",
    }
    widened = _run("mcpdsl diff", repo, env)
    assert widened.returncode == 1, widened.stdout + widened.stderr
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8")
    assert "web-api" in summary and "POST" in summary
    relaxed = _run("mcpdsl diff", repo, {**env, "MCPDSL_FAIL_ON_WIDEN": "false"})
    assert relaxed.returncode == 0
    # a branch name that tries to inject shell is only ever data
    hostile = _run("mcpdsl diff", repo, {**env, "MCPDSL_BASE": "main; touch pwned"})
    assert hostile.returncode != 0
    assert not (repo / "pwned").exists()


def test_diff_base_may_name_a_branch_the_checkout_has_only_on_origin(
    runner: tuple[Path, Any], tmp_path: Path
) -> None:
    """`diff-base: main` in a pull request's checkout, which has `origin/main` but no `main`."""
    repo, env = runner
    subprocess.run(["git", "branch", "-M", "main"], cwd=repo, env=env, check=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], env=env, check=True)
    for args in (["checkout", "-q", "-b", "feature"], ["branch", "-q", "-D", "main"]):
        subprocess.run(["git", *args], cwd=clone, env=env, check=True)
    access = clone / "policies" / "access.mcp"
    access.write_text(
        access.read_text(encoding="utf-8").replace('on GET "/v1/**"', 'on GET, POST "/v1/**"'),
        encoding="utf-8",
    )
    env = {**env, "MCPDSL_PATH": "policies/", "MCPDSL_FAIL_ON_WIDEN": "true"}
    for base in ("main", "origin/main"):
        widened = _run("mcpdsl diff", clone, {**env, "MCPDSL_BASE": base})
        assert widened.returncode == 1, widened.stdout + widened.stderr
        summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8")
        assert "git:origin/main:policies/" in summary
    missing = _run("mcpdsl diff", clone, {**env, "MCPDSL_BASE": "no-such-branch"})
    assert missing.returncode == 2
    assert "no-such-branch" in missing.stderr
