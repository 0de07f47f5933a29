"""`mcpdsl fmt`: in-place rewriting, --check, --diff, stdin and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mcpdsl.cli import main
from mcpdsl.cli.fmt_cmd import write_atomically

MESSY = 'package demo\nservice api{image "a:1"   port 8080 # http\n}\n'
CLEAN = 'package demo\n\nservice api {\n  image "a:1"\n  port  8080  # http\n}\n'
BROKEN = 'package demo\nservice api {\n  image "a:1"\n'


def run(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["fmt", *args], input=input, catch_exceptions=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "messy.mcp").write_text(MESSY)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "clean.mcp").write_text(CLEAN)
    (tmp_path / "notes.txt").write_text("not a policy")
    return tmp_path


def test_rewrites_in_place(tree: Path) -> None:
    result = run(str(tree))
    assert result.exit_code == 0, result.output
    assert (tree / "messy.mcp").read_text() == CLEAN
    assert (tree / "sub" / "clean.mcp").read_text() == CLEAN
    assert f"reformatted {tree / 'messy.mcp'}" in result.output
    assert "clean.mcp" not in result.stdout
    assert not [p.name for p in tree.iterdir() if p.name.startswith(".")]  # no temp file left
    assert run(str(tree)).exit_code == 0  # a second run has nothing to do


def test_check_lists_files_and_exits_1(tree: Path) -> None:
    result = run("--check", str(tree))
    assert result.exit_code == 1
    assert f"would reformat {tree / 'messy.mcp'}" in result.stdout
    assert "clean.mcp" not in result.stdout
    assert (tree / "messy.mcp").read_text() == MESSY  # nothing written


def test_check_passes_on_formatted_files(tree: Path) -> None:
    result = run("--check", str(tree / "sub"))
    assert result.exit_code == 0
    assert result.stdout == ""


def test_diff_prints_unified_diff_and_writes_nothing(tree: Path) -> None:
    result = run("--diff", str(tree / "messy.mcp"))
    assert result.exit_code == 0
    assert f"--- {tree / 'messy.mcp'}\t(original)" in result.stdout
    assert f"+++ {tree / 'messy.mcp'}\t(formatted)" in result.stdout
    assert "-service api{image" in result.stdout
    assert "+  port  8080  # http" in result.stdout
    assert (tree / "messy.mcp").read_text() == MESSY


def test_diff_with_check_exits_1(tree: Path) -> None:
    result = run("--diff", "--check", str(tree))
    assert result.exit_code == 1
    assert "@@" in result.stdout
    assert (tree / "messy.mcp").read_text() == MESSY


def test_syntax_error_is_reported_and_file_untouched(tree: Path) -> None:
    broken = tree / "broken.mcp"
    broken.write_text(BROKEN)
    before = broken.stat().st_mtime_ns
    result = run(str(tree))
    assert result.exit_code == 1
    assert "error[E0104]" in result.output
    assert "broken.mcp` has syntax errors; left unchanged" in result.output
    assert broken.read_text() == BROKEN
    assert broken.stat().st_mtime_ns == before
    assert (tree / "messy.mcp").read_text() == CLEAN  # the other files are still formatted


def test_non_utf8_file_is_untouched(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mcp"
    bad.write_bytes(b"package p\n\xff\n")
    result = run(str(bad))
    assert result.exit_code == 1
    assert "E0105" in result.output
    assert bad.read_bytes() == b"package p\n\xff\n"


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_directory_without_policies_is_a_usage_error(tmp_path: Path) -> None:
    result = run(str(tmp_path))
    assert result.exit_code == 2


def test_no_arguments_is_a_usage_error() -> None:
    assert run().exit_code == 2


def test_unreadable_file_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked.mcp"
    locked.write_text(MESSY)
    import mcpdsl.reader as reader

    def read_bounded(fd: int, limit: int) -> bytes:  # root can read a chmod-000 file
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(reader, "_read_bounded", read_bounded)
    result = run(str(locked))
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_unwritable_file_exits_2(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mcpdsl.cli.fmt_cmd as cmd

    def fail(path: Path, data: bytes) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cmd, "write_atomically", fail)
    result = run(str(tree / "messy.mcp"))
    assert result.exit_code == 2
    assert "cannot write" in result.output
    assert (tree / "messy.mcp").read_text() == MESSY


def test_stdin_to_stdout() -> None:
    result = run("-", input=MESSY)
    assert result.exit_code == 0
    assert result.stdout == CLEAN


def test_stdin_check() -> None:
    assert run("--check", "-", input=MESSY).exit_code == 1
    assert run("--check", "-", input=CLEAN).exit_code == 0


def test_internal_error_leaves_file_untouched(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mcpdsl.fmt as fmt

    def corrupt(text: str, tree, comments) -> str:  # type: ignore[no-untyped-def]
        return text.replace("8080", "8081")  # a formatter bug that changes the IR

    monkeypatch.setattr(fmt, "_render", corrupt)
    result = run(str(tree / "messy.mcp"))
    assert result.exit_code == 1
    assert "internal formatter error" in result.output
    assert (tree / "messy.mcp").read_text() == MESSY


def test_internal_error_when_output_does_not_parse(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mcpdsl.fmt as fmt

    monkeypatch.setattr(fmt, "_render", lambda text, tree, comments: text + "}\n")
    result = run(str(tree / "messy.mcp"))
    assert result.exit_code == 1
    assert "does not parse" in result.output
    assert (tree / "messy.mcp").read_text() == MESSY


def test_write_atomically_keeps_mode_and_follows_symlinks(tmp_path: Path) -> None:
    target = tmp_path / "real.mcp"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.mcp"
    link.symlink_to(target)
    write_atomically(link, b"new")
    assert link.is_symlink()
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640
