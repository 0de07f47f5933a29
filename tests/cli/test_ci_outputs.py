"""CI-native outputs: `test --format json|junit --run -v`, `check --format github --severity`,
`eval --kind ... --fail/--fail-defined`, `init`, and `check`'s light start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from junitparser import Failure, JUnitXml
from repo_paths import FIXTURES, REPO

from mcpdsl.cli import main

PLAIN = {"NO_COLOR": "1", "FORCE_COLOR": ""}
POLICIES = REPO / "policies"
BROKEN = FIXTURES / "diagnostics" / "E0101-three-broken-declarations"


def cli(*args: str, stdin: str | bytes | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=PLAIN, input=stdin)


@pytest.fixture
def failing_tree(tmp_path: Path) -> Path:
    """A tree with one passing and one failing test."""
    (tmp_path / "p.mcp").write_text(
        "package p\n\n"
        'service web {\n  image "ghcr.io/x/web:1"\n  port 80\n  stateful\n}\n'
        'service api {\n  image "ghcr.io/x/api:1"\n  port 80\n  stateful\n}\n'
        "policy a {\n  default deny\n"
        '  r: allow service web -> service api on GET "/v1/**"\n}\n\n'
        'test "reads pass" {\n  request service web -> service api GET "/v1/x"\n  expect allow\n}\n\n'
        'test "writes <fail> & \\"quote\\"" {\n'
        '  request service web -> service api POST "/v1/x"\n  expect allow\n}\n',
        encoding="utf-8",
    )
    return tmp_path


# ----------------------------------------------------------------- mcpdsl test


def test_junit_output_is_parsed_by_a_real_junit_parser(failing_tree: Path, tmp_path: Path) -> None:
    result = cli("test", str(failing_tree), "--format", "junit")
    assert result.exit_code == 1
    report = tmp_path / "junit.xml"
    report.write_text(result.stdout, encoding="utf-8")
    xml = JUnitXml.fromfile(str(report))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    assert (suite.tests, suite.failures) == (2, 1)
    cases = {case.name: case for case in suite}
    assert set(cases) == {"reads pass", 'writes <fail> & "quote"'}
    assert cases["reads pass"].is_passed
    failure = cases['writes <fail> & "quote"'].result[0]
    assert isinstance(failure, Failure)
    assert "deny" in (failure.message or "") or "allow" in (failure.message or "")
    assert cases["reads pass"].classname.endswith("p.mcp")


def test_json_output_has_every_test_and_a_summary(failing_tree: Path) -> None:
    result = cli("test", str(failing_tree), "--format", "json", "--coverage")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["summary"] == {"passed": 1, "failed": 1}
    assert [t["passed"] for t in doc["tests"]] == [True, False]
    assert all(t["location"].endswith(tuple(":1")) or ":" in t["location"] for t in doc["tests"])
    assert doc["coverage"]["rules"] == 1
    assert doc["coverage"]["percent"] == 100.0


def test_run_selects_tests_by_regular_expression(failing_tree: Path) -> None:
    result = cli("test", str(failing_tree), "--run", "^reads")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "1 passed, 0 failed"
    none = cli("test", str(failing_tree), "--run", "nothing-matches")
    assert none.exit_code == 0
    assert none.output.splitlines()[-1] == "0 passed, 0 failed"
    assert "no test name matches `--run nothing-matches` (2 tests in the tree)" in none.stderr
    assert "warning" not in result.stderr


def test_run_rejects_an_invalid_expression(failing_tree: Path) -> None:
    result = cli("test", str(failing_tree), "--run", "(")
    assert result.exit_code == 2
    assert "is not a regular expression" in result.stderr
    assert "Traceback" not in result.output


def test_verbose_shows_location_and_duration(failing_tree: Path) -> None:
    result = cli("test", str(failing_tree), "-v")
    first = result.output.splitlines()[0]
    assert first.startswith("PASS reads pass (") and "p.mcp:18:1" in first and " ms)" in first


def test_junit_of_the_flagship_policies_passes() -> None:
    result = cli("test", str(POLICIES), "--format", "junit")
    assert result.exit_code == 0, result.output
    assert 'failures="0"' in result.stdout


# ---------------------------------------------------------------- mcpdsl check


def test_github_annotations_point_into_the_repository(tmp_path: Path) -> None:
    (tmp_path / "a.mcp").write_text("package a\nservice x {\n  port 99999\n}\n", encoding="utf-8")
    result = cli("check", str(tmp_path), "--format", "github", "--no-analyze")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines, result.output
    for line in lines:
        assert line.startswith("::error file=")
        head, _, message = line[2:].partition("::")
        props = dict(p.split("=", 1) for p in head.split(" ", 1)[1].split(","))
        assert props["file"] == f"{tmp_path}/a.mcp".replace(":", "%3A").replace(",", "%2C")
        assert int(props["line"]) >= 2 and int(props["col"]) >= 1
        assert props["title"].startswith("E0")
        assert "\n" not in message  # multi-line text is %0A-escaped
    assert any("%0Ahelp: " in line for line in lines)


def test_github_escapes_hostile_text() -> None:
    from mcpdsl.diagnostics import Diagnostic, Severity
    from mcpdsl.diagnostics.render import render_github
    from mcpdsl.source import Span

    d = Diagnostic(
        code="E0000",
        severity=Severity.WARNING,
        message="100% bad\n::error::forged",
        span=Span.make("a,b:c.mcp", 1, 1, 1, 2),
    )
    out = render_github([d])
    assert out.count("\n") == 1
    assert "file=a%2Cb%3Ac.mcp" in out
    assert "100%25 bad%0A::error::forged" in out


def test_severity_filters_what_is_reported_not_the_exit_code() -> None:
    everything = cli("check", str(POLICIES), "--format", "json")
    errors_only = cli("check", str(POLICIES), "--format", "json", "--severity", "error")
    assert everything.exit_code == errors_only.exit_code == 0
    levels = {d["severity"] for d in json.loads(everything.stdout)["diagnostics"]}
    assert "info" in levels
    assert json.loads(errors_only.stdout)["diagnostics"] == []
    broken = cli("check", str(BROKEN), "--severity", "error", "--no-analyze")
    assert broken.exit_code == 1


# ----------------------------------------------------------------- mcpdsl eval


@pytest.mark.parametrize(
    ("kind", "payload", "positive"),
    [
        (
            "authorize",
            {
                "principal": {"type": "service", "id": "api-gateway"},
                "action": "GET",
                "resource": {"type": "service", "id": "mcp-api"},
                "request": {"path": "/healthz"},
                "source": {"namespace": "edge"},
                "context": {"geo": "SE"},
            },
            None,
        ),
        ("authorize", {"principal": {"type": "user", "id": "x"}, "action": "GET"}, False),
        ("route", {"gateway": "public", "method": "GET", "path": "/v1/tools/crm/42"}, True),
        ("route", {"gateway": "public", "method": "PATCH", "path": "/nowhere"}, False),
        ("transform", {"integration": "tools.crm-lookup", "payload": {}}, False),
        (
            "scale",
            {
                "service": "mcp-api",
                "replicas": 5,
                "metrics": {"cpu": 0.95},
                "at": "2026-12-09T10:00Z",
            },
            True,
        ),
    ],
)
def test_eval_every_kind_with_opa_like_exit_codes(
    kind: str, payload: dict[str, object], positive: bool | None
) -> None:
    text = json.dumps(payload)
    plain = cli("eval", str(POLICIES), "--kind", kind, "--input", "-", stdin=text)
    assert plain.exit_code == 0, plain.output
    json.loads(plain.stdout)
    fail = cli("eval", str(POLICIES), "--kind", kind, "--input", "-", "--fail", stdin=text)
    defined = cli(
        "eval", str(POLICIES), "--kind", kind, "--input", "-", "--fail-defined", stdin=text
    )
    if positive is None:  # whatever the policy says; the two flags must disagree
        positive = fail.exit_code == 0
    assert fail.exit_code == (0 if positive else 1)
    assert defined.exit_code == (1 if positive else 0)


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("scale", '{"service": "mcp-api"}'),
        ("scale", '{"service": "nope", "replicas": 1}'),
        ("scale", '{"service": "mcp-api", "replicas": 1, "at": "yesterday"}'),
        ("route", '{"gateway": "nope", "method": "GET", "path": "/"}'),
        ("route", '{"gateway": "public", "method": "GET", "path": "/", "headers": {"a": 1}}'),
        ("transform", '{"integration": "tools.crm-lookup", "payload": []}'),
        ("authorize", "[1, 2]"),
        ("authorize", '{"a": ' * 5000),
        ("authorize", b'{"a": "\xff\xfe"}'),
    ],
)
def test_eval_hostile_inputs_are_input_errors(kind: str, text: str | bytes) -> None:
    result = cli("eval", str(POLICIES), "--kind", kind, "--input", "-", stdin=text)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.output


def test_eval_fail_flags_exclude_each_other() -> None:
    result = cli("eval", str(POLICIES), "--input", "-", "--fail", "--fail-defined", stdin="{}")
    assert result.exit_code == 2


# ----------------------------------------------------------------- mcpdsl init


def test_init_creates_a_tree_that_checks_tests_formats_and_builds(tmp_path: Path) -> None:
    root = tmp_path / "my-platform"
    assert cli("init", str(root)).exit_code == 0
    assert sorted(p.name for p in root.iterdir()) == ["access.mcp", "services.mcp", "tests.mcp"]
    assert "package my-platform" in (root / "services.mcp").read_text(encoding="utf-8")
    check = cli("check", str(root), "--format", "json")
    assert check.exit_code == 0
    assert json.loads(check.stdout)["diagnostics"] == []
    tests = cli("test", str(root))
    assert tests.exit_code == 0 and tests.output.splitlines()[-1] == "4 passed, 0 failed"
    assert cli("fmt", str(root), "--check").exit_code == 0
    assert cli("build", str(root), "--out", str(tmp_path / "out")).exit_code == 0


def test_init_never_replaces_anything(tmp_path: Path) -> None:
    (tmp_path / "mine.mcp").write_text("package mine\n", encoding="utf-8")
    result = cli("init", str(tmp_path))
    assert result.exit_code == 2
    assert (tmp_path / "mine.mcp").read_text(encoding="utf-8") == "package mine\n"
    other = tmp_path / "other"
    other.mkdir()
    (other / "access.mcp.bak").write_text("keep", encoding="utf-8")
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "tests.mcp").mkdir()  # a directory where a file would go
    assert cli("init", str(clash)).exit_code == 2
    afile = tmp_path / "afile"
    afile.write_text("x", encoding="utf-8")
    assert cli("init", str(afile)).exit_code == 2
    assert afile.read_text(encoding="utf-8") == "x"


# -------------------------------------------------------------------- start-up


def test_check_does_not_import_the_solver_stack() -> None:
    """`check` must start fast: OR-Tools (and pandas/numpy behind it) load only to solve."""
    code = (
        "import sys, runpy\n"
        "sys.argv = ['mcpdsl', 'check', '--no-analyze', sys.argv[1]]\n"
        "try:\n    runpy.run_module('mcpdsl', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('ortools', 'pandas', 'numpy', 'z3', 'jinja2') if m in sys.modules)\n"
        "print(','.join(heavy), file=sys.stderr)\n"
    )
    env = {**os.environ, **PLAIN}
    out = subprocess.run(
        [sys.executable, "-c", code, str(POLICIES)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.stderr.strip().splitlines()[-1:] in ([], [""]), out.stderr
