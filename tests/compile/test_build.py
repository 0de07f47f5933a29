"""`mcpdsl build` as a whole: every artifact of policies/ and examples/, determinism, atomicity.

The per-target tests validate each artifact with the real schema or engine;
here the build is exercised end to end through the CLI and the Python API.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from repo_paths import example_trees

import mcpdsl
from mcpdsl.cli import main

REPO = Path(__file__).resolve().parents[2]
TREES = [
    REPO / "policies",
    *example_trees(),
]


def _tree_id(tree: Path) -> str:
    return tree.relative_to(REPO).as_posix()


def _files(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("tree", TREES, ids=_tree_id)
def test_snapshot_of_every_artifact(tree: Path, tmp_path: Path, snapshot: Any) -> None:
    """Every artifact, as text (binary artifacts and the one-line IR dump by their sha256),
    in addition to the validators."""
    mcpdsl.build(tree, out=tmp_path / "out")
    files = _files(tmp_path / "out")
    shown = {
        path: content.decode("utf-8")
        if not path.endswith(".tar.gz") and path != "ir/project.json"
        else f"sha256:{hashlib.sha256(content).hexdigest()}"
        for path, content in files.items()
    }
    assert shown == snapshot


@pytest.mark.parametrize("tree", TREES, ids=_tree_id)
def test_two_builds_are_byte_identical(tree: Path, tmp_path: Path) -> None:
    mcpdsl.build(tree, out=tmp_path / "a")
    mcpdsl.build(tree, out=tmp_path / "b")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_manifest_lists_every_artifact_with_its_hash(tmp_path: Path) -> None:
    out = tmp_path / "out"
    mcpdsl.build(REPO / "policies", out=out)
    manifest = json.loads((out / "manifest.json").read_text())
    files = _files(out)
    listed = {e["path"]: e["sha256"] for e in manifest["artifacts"]}
    assert set(listed) == set(files) - {"manifest.json"}
    for path, digest in listed.items():
        assert hashlib.sha256(files[path]).hexdigest() == digest
    assert [e["path"] for e in manifest["artifacts"]] == sorted(listed)


def test_layout_of_the_flagship_build(tmp_path: Path) -> None:
    out = tmp_path / "out"
    mcpdsl.build(REPO / "policies", out=out)
    files = set(_files(out))
    assert any(f.startswith("kubernetes/platform/deployment-") for f in files)
    assert "envoy/public.json" in files
    assert "opa/bundle.tar.gz" in files and "opa/data.json" in files
    assert any(f.startswith("opa/platform/") and f.endswith(".rego") for f in files)


def test_a_broken_tree_leaves_the_previous_output_untouched(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(REPO / "examples" / "zero-trust", tree)
    out = tmp_path / "out"
    runner = CliRunner()
    assert runner.invoke(main, ["build", str(tree), "--out", str(out), "-q"]).exit_code == 0
    before = _files(out)
    victim = sorted(tree.glob("*.mcp"))[0]
    victim.write_text(victim.read_text() + "\nservice broken {\n")
    result = runner.invoke(main, ["build", str(tree), "--out", str(out)])
    assert result.exit_code == 1
    assert "left untouched" in result.output
    assert _files(out) == before


def test_unreadable_input_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["build", str(tmp_path / "missing")])
    assert result.exit_code == 2


def test_target_subset_and_unknown_target(tmp_path: Path) -> None:
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(
        main, ["build", str(REPO / "policies"), "--out", str(out), "--target", "envoy", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert {p.split("/")[0] for p in _files(out)} <= {"envoy", "manifest.json", "ir"}
    bad = runner.invoke(main, ["build", str(REPO / "policies"), "--target", "nginx"])
    assert bad.exit_code == 2
    assert "unknown target" in bad.output


def test_summary_names_where_each_rule_is_enforced(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["build", str(REPO / "policies"), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert "where each access rule is enforced" in result.output
    assert "zero-trust/edge-api" in result.output
