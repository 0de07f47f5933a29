"""The analysis inside `mcpdsl check`: exit codes, formats, limits, laziness, determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from analysis_support import CASES_DIR, REPO, run
from click.testing import CliRunner

from mcpdsl.analysis import Options
from mcpdsl.cli import main


def check(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["check", *args], env={"NO_COLOR": "1"})


def test_warnings_exit_0_errors_exit_1() -> None:
    warned = check(str(CASES_DIR / "A0102-unconditional-deny"))
    assert warned.exit_code == 0, warned.output
    assert "warning[A0102]: allow rule `ab` never takes effect" in warned.output
    failed = check(str(CASES_DIR / "A0131-replica-bigger-than-node"))
    assert failed.exit_code == 1
    assert "error[A0131]" in failed.output


def test_json_and_sarif_carry_the_witness() -> None:
    out = check("--format", "json", str(CASES_DIR / "A0104-overlap"))
    doc = json.loads(out.output)
    [finding] = [d for d in doc["diagnostics"] if d["code"] == "A0104"]
    note = finding["notes"][0]
    assert note.startswith("witness (mfa): ")
    request = json.loads(note.split(": ", 1)[1])
    assert request["context"]["geo"] in ("KP", "IR")
    sarif = json.loads(check("--format", "sarif", str(CASES_DIR / "A0104-overlap")).output)
    assert sarif["runs"][0]["results"][0]["ruleId"] == "A0104"
    assert sarif["runs"][0]["results"][0]["relatedLocations"]


def test_explain() -> None:
    out = check("--explain", "A0102")
    assert out.exit_code == 0 and "allow never takes effect" in out.output


def test_a_query_over_its_limit_is_inconclusive_never_a_hang() -> None:
    _, a = run(CASES_DIR / "A0101-contradiction", Options(timeout_ms=50, rlimit=1))
    assert [d.code for d in a.diagnostics] == ["A0199"]
    assert a.diagnostics[0].severity.value == "info"


def test_nothing_to_analyse_never_imports_z3(tmp_path: Path) -> None:
    (tmp_path / "s.mcp").write_text('package s\nservice a { image "x/a:1" port 80 stateful }\n')
    code = (
        "import sys\nfrom mcpdsl.pipeline import compile_tree\n"
        f"c = compile_tree({str(tmp_path)!r}, analyze=True)\n"
        "print('z3' in sys.modules, len(c.diagnostics))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "0"]


def test_same_output_in_fresh_processes() -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    outs = [
        subprocess.run(
            [sys.executable, "-m", "mcpdsl", "check", "--format", "json", str(REPO / "policies")],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        ).stdout
        for _ in range(2)
    ]
    assert outs[0] == outs[1] and '"A0104"' in outs[0]


def _crashing_authorize(self: object, request: dict[str, object]) -> object:
    raise ZeroDivisionError("injected engine crash")


def test_an_engine_crash_on_a_witness_surfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash is a bug: it is raised with the question and request, never read as "no"."""
    from mcpdsl.analysis.witness import WitnessCrash
    from mcpdsl.evaluate.project import PreparedProject

    monkeypatch.setattr(PreparedProject, "authorize", _crashing_authorize)
    with pytest.raises(WitnessCrash) as caught:
        run(CASES_DIR / "A0104-overlap")
    crash = caught.value
    assert isinstance(crash.error, ZeroDivisionError) and crash.__cause__ is crash.error
    assert "injected engine crash" in str(crash) and "request: {" in str(crash)
    assert crash.what


def test_check_reports_an_engine_crash_as_an_internal_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mcpdsl.evaluate.project import PreparedProject

    # An empty cache directory: a stored result of this tree would be replayed
    # without asking the engine anything (docs/sources.md, "The analysis cache").
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(PreparedProject, "authorize", _crashing_authorize)
    out = check(str(CASES_DIR / "A0104-overlap"))
    assert out.exit_code == 2, out.output
    assert "error: internal error: the engine crashed confirming a witness" in out.output
    assert "ZeroDivisionError: injected engine crash" in out.output
    assert "Traceback" not in out.output


def test_only_the_encode_package_imports_z3() -> None:
    """z3 stays behind `mcpdsl.analysis.encode`: every other module goes through it."""
    import ast

    package = REPO / "mcpdsl"
    encode = package / "analysis" / "encode"
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "z3" or n.startswith("z3.") for n in names):
                importers.add(path)
    assert importers, "the scan found no z3 import at all"
    assert {p for p in importers if encode not in p.parents} == set()
