"""`mcpdsl diff`: known edits of one base tree give exactly the expected changes.

`diff/base/` is a small shop; each sibling directory is the base with one
edit and `expected.json`, the changes `diff(base, edit)` must report — access
groups (direction, rule, cause), obligation changes, routing changes and
parameter rows.  Every
access witness is re-run through both engines, every routing witness
through `Engine.route` of both trees.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from analysis_support import HERE
from click.testing import CliRunner

from mcpdsl.analysis.diff import diff
from mcpdsl.cli import main
from mcpdsl.engine import Engine
from mcpdsl.ir import model as m
from mcpdsl.pipeline import compile_tree

DIFFS = HERE / "diff"
BASE = DIFFS / "base"
EDITS = sorted(p for p in DIFFS.iterdir() if p.is_dir() and p.name != "base")


def load(path: Path) -> m.Project:
    project = compile_tree(path).project
    assert project is not None
    return project


@pytest.mark.parametrize("edit", EDITS, ids=[e.name for e in EDITS])
def test_known_edit(edit: Path) -> None:
    old, new = load(BASE), load(edit)
    result = diff(old, new)
    expected = json.loads((edit / "expected.json").read_text())
    assert [[c.direction, c.group, c.cause] for c in result.access] == expected["access"]
    assert [[r.direction, r.gateway, r.route, r.cause] for r in result.routes] == expected["routes"]
    assert [[o.direction, o.policy, o.obligation] for o in result.obligations] == expected.get(
        "obligations", []
    )
    assert [[p.kind, p.name, p.field, p.old, p.new] for p in result.parameters] == expected[
        "parameters"
    ]
    assert result.unconfirmed == [] and result.inconclusive == []
    before, after = Engine.from_project(old), Engine.from_project(new)
    for c in result.access:
        w = json.loads(json.dumps(c.witness))  # the printed JSON, read back
        allowed = c.direction == "widened"
        assert before.authorize(w).allowed is not allowed
        assert after.authorize(w).allowed is allowed
    for o in result.obligations:
        x, y = before.authorize(o.witness), after.authorize(o.witness)
        assert x.allowed and y.allowed
        assert (o.obligation in y.obligations) is (o.direction == "added")
        assert (o.obligation in x.obligations) is (o.direction != "added")
    for r in result.routes:
        gw = next(g.qualified for g in new.gateways if g.name == r.gateway)
        a, b = before.route(gw, r.method, r.path), after.route(gw, r.method, r.path)
        assert (a and (a.target, a.path)) != (b and (b.target, b.path))


def test_no_change_is_empty() -> None:
    result = diff(load(BASE), load(BASE))
    assert not result.access and not result.routes and not result.parameters


def test_diff_is_deterministic() -> None:
    from mcpdsl.analysis.report import render_json

    runs = [
        render_json(diff(load(BASE), load(DIFFS / "deny-removed")), ("a", "b")) for _ in range(2)
    ]
    assert runs[0] == runs[1]


# ------------------------------------------------------------------ CLI


def cli(*args: str) -> object:
    return CliRunner().invoke(main, ["diff", *args], env={"NO_COLOR": "1"})


def test_fail_on_widen_exits_1_only_when_access_is_gained() -> None:
    widened = cli(str(BASE), str(DIFFS / "deny-removed"), "--fail-on", "widen")
    assert widened.exit_code == 1, widened.output
    assert "widened  access/db-net (removed)" in widened.output
    narrowed = cli(str(BASE), str(DIFFS / "condition-narrowed"), "--fail-on", "widen")
    assert narrowed.exit_code == 0, narrowed.output
    assert cli(str(BASE), str(DIFFS / "condition-narrowed"), "--fail-on", "narrow").exit_code == 1
    assert cli(str(BASE), str(BASE), "--fail-on", "any").exit_code == 0


@pytest.mark.parametrize("fmt", ["json", "sarif", "markdown", "text"])
def test_formats(fmt: str) -> None:
    out = cli(str(BASE), str(DIFFS / "deny-removed"), "--format", fmt)
    assert out.exit_code == 0, out.output
    text = out.output
    if fmt == "json":
        doc = json.loads(text)
        assert doc["summary"]["widened"] == 1
        assert doc["access"][0]["group"] == "access/db-net"
        assert doc["access"][0]["witness"]["resource"] == {"id": "db", "type": "service"}
    elif fmt == "sarif":
        doc = json.loads(text)
        assert doc["version"] == "2.1.0"
        results = doc["runs"][0]["results"]
        assert [r["ruleId"] for r in results] == ["access-widened"]
        assert results[0]["locations"][0]["physicalLocation"]["region"]["startLine"] == 29
    elif fmt == "markdown":
        assert text.startswith("### mcpdsl diff")
        assert "| 🔓 widened | `access/db-net` | removed |" in text
        assert "```json" in text
    else:
        assert "1 widened, 0 narrowed" in text


def test_parameter_table_and_routes_in_text() -> None:
    out = cli(str(BASE), str(DIFFS / "params-changed"))
    assert "scale  shop.api      replicas  2..20 -> 2..40" in out.output
    out = cli(str(BASE), str(DIFFS / "route-added"))
    assert 'route "/v2/**" (added)' in out.output and "witness: GET /v2" in out.output


def test_unusable_sides_exit_2(tmp_path: Path) -> None:
    assert cli(str(tmp_path / "nowhere"), str(BASE)).exit_code == 2
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.mcp").write_text("package x\nservice {\n")
    assert cli(str(BASE), str(broken)).exit_code == 2


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@x",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@x",
            "HOME": str(cwd),
            "PATH": "/usr/bin:/bin",
        },
    )
    return done.stdout


def test_git_revisions_never_touch_the_work_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / "tree").mkdir(parents=True)
    (repo / "tree" / "shop.mcp").write_text((BASE / "shop.mcp").read_text())
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    (repo / "tree" / "shop.mcp").write_text((DIFFS / "deny-removed" / "shop.mcp").read_text())
    status = _git(repo, "status", "--porcelain")
    monkeypatch.chdir(repo)
    out = cli("git:HEAD:tree", "tree", "--fail-on", "widen", "--format", "json")
    assert out.exit_code == 1, out.output
    doc = json.loads(out.output)
    assert [c["group"] for c in doc["access"]] == ["access/db-net"]
    assert doc["access"][0]["location"] == "git:HEAD:tree/shop.mcp:29"
    assert _git(repo, "status", "--porcelain") == status  # work tree and index untouched
    _git(repo, "commit", "-q", "-am", "edit")
    both = cli("git:HEAD~1:tree", "git:HEAD:tree")
    assert both.exit_code == 0 and "1 widened" in both.output
    bad = cli("git:no-such-rev:tree", "tree")
    assert bad.exit_code == 2 and "not a revision" in bad.output


def test_a_git_side_without_dir_compares_the_other_sides_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`git:REV` alone means the same directory as the other side, not the whole repository."""
    repo = tmp_path / "repo"
    (repo / "tree").mkdir(parents=True)
    (repo / "tree" / "shop.mcp").write_text((BASE / "shop.mcp").read_text())
    (repo / "other").mkdir()  # a second tree: in the whole repository its package clashes
    (repo / "other" / "shop.mcp").write_text((BASE / "shop.mcp").read_text())
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    (repo / "tree" / "shop.mcp").write_text((DIFFS / "deny-removed" / "shop.mcp").read_text())
    monkeypatch.chdir(repo)
    explicit = cli("git:HEAD:tree", "tree", "--format", "json")
    implicit = cli("git:HEAD", "tree", "--format", "json")
    assert implicit.exit_code == explicit.exit_code == 0, implicit.output
    assert [c["group"] for c in json.loads(implicit.output)["access"]] == ["access/db-net"]
    reverse = cli("tree", "git:HEAD", "--fail-on", "narrow")
    assert reverse.exit_code == 1, reverse.output
    monkeypatch.chdir(repo / "tree")  # from inside the directory, `.` works the same
    inside = cli("git:HEAD", ".", "--format", "json")
    assert inside.exit_code == 0, inside.output
    assert [c["group"] for c in json.loads(inside.output)["access"]] == ["access/db-net"]
    both = cli("git:HEAD", "git:HEAD")  # neither names a directory: the current one
    assert both.exit_code == 0 and "access: unchanged" in both.output, both.output
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shop.mcp").write_text((BASE / "shop.mcp").read_text())
    bad = cli("git:HEAD", str(outside))
    assert bad.exit_code == 2 and "outside the repository" in bad.output


def test_an_engine_crash_on_a_witness_is_an_internal_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crashing evaluator must not read as "not confirmed" (a silently lost change)."""
    from mcpdsl.evaluate.project import PreparedProject

    def crash(self: object, request: dict[str, object]) -> object:
        raise ZeroDivisionError("injected engine crash")

    monkeypatch.setattr(PreparedProject, "authorize", crash)
    out = cli(str(BASE), str(DIFFS / "deny-removed"), "--fail-on", "widen")
    assert out.exit_code == 2, out.output
    assert "error: internal error: the engine crashed confirming a witness (access" in out.output
    assert "ZeroDivisionError: injected engine crash" in out.output


@pytest.mark.parametrize("link", ["/etc/passwd", "../../../../etc/passwd", "../.."])
def test_a_committed_link_that_leaves_the_tree_is_a_side_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str
) -> None:
    """A git side whose tree holds a symlink out of it: exit 2 with the member, no traceback."""
    repo = tmp_path / "repo"
    (repo / "tree").mkdir(parents=True)
    (repo / "tree" / "shop.mcp").write_text((BASE / "shop.mcp").read_text())
    (repo / "tree" / "evil.mcp").symlink_to(link)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    (repo / "tree" / "evil.mcp").unlink()
    monkeypatch.chdir(repo)
    for args in (("git:HEAD:tree", "tree"), ("git:HEAD", "tree"), ("tree", "git:HEAD:tree")):
        out = cli(*args)
        assert out.exit_code == 2, out.output
        assert "`tree/evil.mcp` is a link that leaves the tree" in out.output
        assert out.exception is None or isinstance(out.exception, SystemExit)
