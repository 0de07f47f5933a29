"""`mcpdsl logs verify`: output, exit codes, rotated sets and hostile files."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mcpdsl.cli import main
from mcpdsl.cli.exit import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE
from mcpdsl.engine.decision_log import DecisionLog
from mcpdsl.evaluate.policy import Decision

ALLOW = Decision(True, (), Decimal(0), ("p/allow-1",), False, True)


def write(path: Path, n: int, **kw: object) -> Path:
    log = DecisionLog(path, **kw)  # type: ignore[arg-type]
    for i in range(n):
        log.record({"principal": {"type": "user", "id": f"u{i}"}}, ALLOW, 1.0)
    log.close()
    return path


def run(*args: str) -> Result:
    result = CliRunner().invoke(main, ["logs", "verify", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def test_an_intact_log(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", 5)
    result = run(str(path))
    assert result.exit_code == EXIT_OK
    assert "chain intact: 5 records, seq 0 to 4, in 1 file; 0 errors, 0 warnings" in result.output
    assert "head: 4:" in result.output


def test_a_tampered_log_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", 5)
    content = path.read_bytes().splitlines(keepends=True)
    content[2] = content[2].replace(b'"u2"', b'"root"')
    path.write_bytes(b"".join(content))
    result = run(str(path))
    assert result.exit_code == EXIT_FINDINGS
    assert "error[L0102]: entry changed after it was written" in result.output
    assert f"--> {path}:3:1" in result.output
    assert "chain broken" in result.output


def test_json_format(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", 3)
    content = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(content[0] + content[2])
    result = run("--format", "json", str(path))
    assert result.exit_code == EXIT_FINDINGS
    doc = json.loads(result.output)
    assert doc["intact"] is False and doc["records"] == 2
    [d] = doc["diagnostics"]
    assert (d["code"], d["span"]["line"]) == ("L0103", 2)
    assert doc["summary"] == {"errors": 1, "warnings": 0}


def test_rotated_set_and_explicit_files(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", 40, max_bytes=1500, keep=100)
    rotated = run("--rotated", str(path))
    assert rotated.exit_code == EXIT_OK, rotated.output
    assert "chain intact: 40 records, seq 0 to 39" in rotated.output
    files = sorted(str(p) for p in tmp_path.iterdir())
    assert len(files) > 3
    explicit = run(*files)
    assert explicit.exit_code == EXIT_OK and "40 records" in explicit.output


def test_anchor(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", 6)
    head = run("--format", "json", str(path))
    anchor = f"{json.loads(head.output)['head']['seq']}:{json.loads(head.output)['head']['sha256']}"
    assert run("--anchor", anchor, str(path)).exit_code == EXIT_OK
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-2]))
    cut = run("--anchor", anchor, str(path))
    assert cut.exit_code == EXIT_FINDINGS and "error[L0110]" in cut.output
    assert run("--anchor", "nonsense", str(path)).exit_code == EXIT_USAGE


def test_truncated_tail_is_a_warning_unless_strict(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", 4)
    path.write_bytes(path.read_bytes()[:-25])
    result = run(str(path))
    assert result.exit_code == EXIT_OK and "warning[L0107]" in result.output
    assert run("--strict", str(path)).exit_code == EXIT_FINDINGS


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4, "not a decision log"),
        (b"\xff\xfe\xfa not utf-8\n", "not a decision log"),
        (b"hello world\n", "not a decision log"),
        (b"x" * (5 * 1024 * 1024), "not a decision log"),
        (b"\n" * 3_000_000, "more than 10000 of its lines are not records"),
    ],
)
def test_hostile_files_are_refused_with_exit_2(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(content)
    result = run(str(path))
    assert result.exit_code == EXIT_USAGE
    assert message in result.output


def test_hostile_lines_inside_a_log(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", 4)
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(1, b"\xff\xfe not utf-8\n")
    lines.insert(3, b"y" * (5 * 1024 * 1024) + b"\n")
    lines.insert(4, b'{"seq": "one"}\n')
    path.write_bytes(b"".join(lines))
    result = run("--format", "json", str(path))
    assert result.exit_code == EXIT_FINDINGS
    found = [(d["code"], d["span"]["line"]) for d in json.loads(result.output)["diagnostics"]]
    assert found == [("L0101", 2), ("L0101", 4), ("L0101", 5)]


def test_unreadable_paths(tmp_path: Path) -> None:
    missing = run(str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == EXIT_USAGE and "cannot read" in missing.output
    directory = run(str(tmp_path))
    assert directory.exit_code == EXIT_USAGE and "is a directory" in directory.output
    (tmp_path / "empty.jsonl").write_bytes(b"")
    empty = run(str(tmp_path / "empty.jsonl"))
    assert empty.exit_code == EXIT_OK and "no records" in empty.output
    assert run().exit_code == EXIT_USAGE  # no FILE


def test_explain_knows_the_log_codes() -> None:
    result = CliRunner().invoke(main, ["check", "--explain", "L0103"])
    assert result.exit_code == 0 and result.output.startswith("L0103: entries missing")


def test_the_command_does_not_load_the_verifier_at_start_up() -> None:
    code = (
        "import sys, mcpdsl.cli\n"
        "assert 'mcpdsl.engine.log_verify' not in sys.modules\n"
        "assert 'mcpdsl.engine' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_serve_refuses_a_decision_log_that_is_not_one(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "p.mcp").write_text("package p\n\npolicy p {\n  allow any -> any\n}\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    result = CliRunner().invoke(
        main, ["serve", str(tree), "--no-watch", "--decision-log", str(notes),
               "--decision-log-max-bytes", "1000", "--decision-log-mask", "context.ssn"],
    )  # fmt: skip
    assert result.exit_code == EXIT_USAGE, result.output
    assert "not a decision log" in result.output
    assert notes.read_text() == "my notes\n"
