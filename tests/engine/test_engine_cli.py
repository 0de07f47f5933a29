"""`mcpdsl test` and `mcpdsl eval`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from engine_support import FIXTURES, REPO, write_tree

from mcpdsl.cli import main


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    return result.exit_code, result.output


def _trees() -> list[Path]:
    trees = [REPO / "policies", *sorted((REPO / "examples").glob("*"))]
    return [t for t in trees if t.is_dir() and any(t.rglob("*.mcp"))]


@pytest.mark.parametrize("tree", _trees(), ids=lambda p: p.name)
def test_every_test_block_passes(tree: Path) -> None:
    code, out = run("test", str(tree))
    lines = out.splitlines()
    assert code == 0, out
    assert lines[-1].endswith(" passed, 0 failed")
    assert all(line.startswith("PASS ") for line in lines[:-1])


def test_failing_fixture() -> None:
    code, out = run("test", str(FIXTURES / "failing"))
    lines = out.splitlines()
    assert code == 1
    assert lines[-1] == "2 passed, 3 failed"
    fails = [line for line in lines if line.startswith("FAIL ")]
    assert len(fails) == 3
    assert any("expected allow, got deny" in f for f in fails)
    assert any("expected 9 replicas, got 7" in f for f in fails)
    assert any("expected risk 0.3, got 0.4" in f for f in fails)
    assert all(f"{FIXTURES / 'failing' / 'tests.mcp'}:" in f for f in fails)  # file:line:col
    assert "`context.device.managed` is missing" in out  # the explanation follows


def test_coverage_and_threshold() -> None:
    code, out = run("test", str(FIXTURES / "coverage"), "--coverage")
    assert code == 0
    assert "not exercised: p/never" in out
    assert "rule coverage: 66.7% (2/3 rules)" in out
    assert out.splitlines()[-1] == "2 passed, 0 failed"
    code, out = run("test", str(FIXTURES / "coverage"), "--threshold", "60")
    assert code == 0 and "not exercised" not in out
    code, out = run("test", str(FIXTURES / "coverage"), "--threshold", "70")
    assert code == 1 and "below the threshold 70%" in out
    assert out.splitlines()[-1] == "2 passed, 0 failed"


def test_input_errors_exit_2(tmp_path: Path) -> None:
    code, _ = run("test", str(tmp_path / "absent"))
    assert code == 2
    tree = write_tree(tmp_path, "policy p {\n  allow any -> service nowhere\n}\n")
    code, out = run("test", str(tree))
    assert code == 2 and "nowhere" in out


def test_eval(tmp_path: Path) -> None:
    req = {
        "principal": {"type": "service", "id": "frontend"},
        "action": "GET",
        "resource": {"type": "service", "id": "api"},
        "request": {"path": "/v1/items", "auth": {"mfa": True}},
        "context": {"device": {"managed": True}},
    }
    file = tmp_path / "req.json"
    file.write_text(json.dumps(req))
    code, out = run("eval", str(FIXTURES / "failing"), "--input", str(file))
    assert code == 0
    assert out.index('"allowed"') < out.index('"default_applied"') < out.index('"rules"')  # sorted
    doc = json.loads(out)
    assert doc == {
        "allowed": True,
        "default_applied": False,
        "enforced": True,
        "obligations": [],
        "risk": 0,
        "rules": ["access/frontend-api"],
    }
    code, out = run(
        "eval", str(FIXTURES / "failing"), "--input", "-", "--explain", stdin=json.dumps(req)
    )
    assert code == 0
    doc = json.loads(out)
    assert any("frontend-api (allow): matched" in line for line in doc["explain"])


def test_eval_bad_input(tmp_path: Path) -> None:
    code, _ = run("eval", str(FIXTURES / "failing"), "--input", "-", stdin="not json")
    assert code == 2
    code, _ = run("eval", str(FIXTURES / "failing"), "--input", "-", stdin="[1]")
    assert code == 2
    code, _ = run("eval", str(FIXTURES / "failing"), "--input", str(tmp_path / "absent.json"))
    assert code == 2
    code, _ = run("eval", str(tmp_path / "absent"), "--input", "-", stdin="{}")
    assert code == 2
