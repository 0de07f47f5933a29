"""Reading sources safely: special files, size, symlinks out of the tree, escaped snippets.

Cases that could hang a regression (FIFOs) run in a subprocess with a timeout,
so a reader that blocks again fails the test instead of freezing the suite.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from repo_paths import REPO

from mcpdsl.cli import main
from mcpdsl.diagnostics.render import escape_controls, json_safe, render_human, render_json
from mcpdsl.pipeline import InputError, compile_tree
from mcpdsl.reader import MAX_FILE_BYTES
from mcpdsl.trust.common import MAX_KEY_FILE_BYTES

GOOD = (
    'package shop\n\nservice api {\n  image "ghcr.io/shop/api:1.0.0"\n  port 8080\n  stateful\n}\n'
)
SECRET = "root-secret-line:x:0:0\n"
TIMEOUT = 60  # seconds; the fixed reader answers in well under one
UNSAFE_OUTPUT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f]")


def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "main.mcp").write_text(GOOD)
    return root


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mcpdsl", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        cwd=cwd,
    )


def codes(path: Path) -> list[str]:
    return [d.code for d in compile_tree(path).diagnostics if d.is_error]


# ------------------------------------------------------------------ special files


@pytest.mark.parametrize("command", ["check", "build", "fmt"])
def test_a_fifo_is_a_diagnostic_not_a_hang(tmp_path: Path, command: str) -> None:
    root = tree(tmp_path)
    os.mkfifo(root / "pipe.mcp")
    args = {
        "check": ["check", str(root)],
        "build": ["build", str(root), "--out", str(tmp_path / "out")],
        "fmt": ["fmt", "--check", str(root)],
    }[command]
    result = cli(*args)  # raises TimeoutExpired if the reader blocks
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error[E0504]: `pipe.mcp` is not a regular file (a FIFO)" in (
        result.stdout + result.stderr
    ).replace(str(root) + "/", "")


def test_watch_reports_a_fifo_and_recovers_when_it_is_removed(tmp_path: Path) -> None:
    root = tree(tmp_path)
    os.mkfifo(root / "pipe.mcp")
    script = (
        "import os, sys\n"
        "from mcpdsl.builder.watch import Watcher\n"
        "w = Watcher(sys.argv[1], sys.argv[2], echo=lambda s: None)\n"
        "first = w.rebuild()\n"
        "os.unlink(os.path.join(sys.argv[1], 'pipe.mcp'))\n"
        "second = w.rebuild(['pipe.mcp'])\n"
        "print(first.ok, first.errors, second.ok)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(root), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.stdout.split() == ["False", "1", "True"], result.stderr


def test_a_socket_is_refused(tmp_path: Path) -> None:
    root = tree(tmp_path)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock.mcp"))
        assert codes(root) == ["E0504"]


def test_a_device_named_as_the_input_is_refused() -> None:
    c = compile_tree("/dev/zero")  # bounded: refused before a byte is read
    assert [d.code for d in c.diagnostics] == ["E0504"]
    assert "(a device)" in c.diagnostics[0].message


def test_an_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    root = tree(tmp_path)
    with open(root / "huge.mcp", "wb") as handle:  # sparse: no 9 MiB written
        handle.truncate(MAX_FILE_BYTES + 1)
    assert codes(root) == ["E0502"]


# ------------------------------------------------------------------ symlinks


def test_a_symlink_to_dev_zero_is_refused(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "zero.mcp").symlink_to("/dev/zero")
    assert codes(root) == ["E0503"]


def test_a_symlink_out_of_the_tree_is_not_read_or_printed(tmp_path: Path) -> None:
    root = tree(tmp_path)
    secret = tmp_path / "passwd"
    secret.write_text(SECRET)
    (root / "leak.mcp").symlink_to(secret)
    result = CliRunner().invoke(main, ["check", str(root)], env={"NO_COLOR": "1"})
    assert result.exit_code == 1
    assert "error[E0503]: `leak.mcp` is a symlink that leaves the tree root" in result.output
    assert "root-secret-line" not in result.output


def test_a_symlinked_directory_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    root = tree(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "other.mcp").write_text(SECRET)
    (root / "vendor").symlink_to(outside, target_is_directory=True)
    c = compile_tree(root)
    assert [d.code for d in c.diagnostics if d.is_error] == ["E0503"]
    assert "root-secret-line" not in render_human(c.diagnostics, c.sources)


def test_symlinks_inside_the_tree_are_fine(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "sub").mkdir()
    (root / "alias").symlink_to(root / "sub", target_is_directory=True)  # not descended
    (root / "sub" / "more.mcp").write_text(GOOD.replace("shop", "more"))
    (root / "link.mcp").symlink_to(root / "sub" / "more.mcp")
    c = compile_tree(root)
    assert sorted(c.raw) == ["link.mcp", "main.mcp", "sub/more.mcp"]
    assert not [d for d in c.diagnostics if d.code in ("E0503", "E0504")]


def test_a_dangling_symlink_is_a_read_error(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "gone.mcp").symlink_to(root / "missing.mcp")
    assert codes(root) == ["E0501"]


# ------------------------------------------------------------------ escaped snippets


def test_bidi_and_c1_controls_in_a_snippet_are_escaped(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    (root / "main.mcp").write_text(
        'package shop\n\nservice api {\n  image "a\u202eb\u2066c\x9bd" @\n}\n', encoding="utf-8"
    )
    c = compile_tree(root)
    text = render_human(c.diagnostics, c.sources)
    assert "<U+202E>" in text and "<U+2066>" in text and "<U+009B>" in text
    assert not UNSAFE_OUTPUT.search(text)
    doc = render_json(c.diagnostics)
    assert "\u202e" not in doc
    assert not UNSAFE_OUTPUT.search(doc)


def test_nul_is_shown_as_a_picture(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    (root / "main.mcp").write_bytes(b"package shop\n\x00\x1b[31m\n")
    c = compile_tree(root)
    text = render_human(c.diagnostics, c.sources)
    assert "\u2400\u241b[31m" in text
    assert not UNSAFE_OUTPUT.search(text)


def test_escape_helpers() -> None:
    assert escape_controls("a\u202eb\x00c\td") == "a<U+202E>b\u2400c\td"
    assert escape_controls("x\ny", keep_newlines=True) == "x\ny"
    assert escape_controls("x\ny") == "x\u240ay"
    raw = json.dumps({"m": "a\u202e\U000e0041"}, ensure_ascii=False)
    safe = json_safe(raw)
    assert "\u202e" not in safe and json.loads(safe) == {"m": "a\u202e\U000e0041"}


def test_a_file_name_with_escapes_is_shown_escaped(tmp_path: Path) -> None:
    root = tree(tmp_path)
    os.mkfifo(root / "\x1b[2Jx\u202e.mcp")
    c = compile_tree(root)
    text = render_human(c.diagnostics, c.sources)
    assert "E0504" in text and not UNSAFE_OUTPUT.search(text)


EVIL = "\x1b]0;pwned\x07\x1b[2J\u202e"


@pytest.mark.parametrize(
    "args",
    [
        ("fmt", "--check", "{root}"),  # a tree file name: `would reformat ...`
        ("fmt", "{root}"),  # `reformatted ...`
        ("diff", "{root}/" + EVIL, "{root}"),  # a side that does not exist
        ("eval", "{root}", "--input", "{root}/" + EVIL),
        ("keys", "list", "--keyring", "{root}/" + EVIL),
        ("init", "{root}/" + EVIL + ".mcp"),  # exists and is not a directory
    ],
    ids=["fmt-check", "fmt", "diff", "eval", "keys", "init"],
)
def test_one_line_errors_and_file_lists_escape_terminal_controls(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """Names chosen by a hostile tree or by a typo never reach the terminal raw."""
    root = tree(tmp_path)
    (root / (EVIL + ".mcp")).write_text(GOOD.replace("  port", "port"))  # needs formatting
    done = cli(*(a.format(root=root) for a in args))
    out = done.stdout + done.stderr
    assert done.returncode != 0 or "reformatted" in out, out
    assert "pwned" in out or "U+202E" in out or "<U+202E>" in out, out
    assert not UNSAFE_OUTPUT.search(out), out


# ------------------------------------------------------------------ property

KINDS = ("regular", "fifo", "inside-link", "outside-link", "oversized", "directory-link")


@settings(max_examples=40)
@given(
    files=st.lists(
        st.tuples(st.sampled_from(KINDS), st.binary(max_size=200) | st.text(max_size=200)),
        min_size=1,
        max_size=4,
    )
)
def test_any_mix_of_file_kinds_and_contents_gives_diagnostics_never_a_crash(
    files: list[tuple[str, bytes | str]],
) -> None:
    """Whatever the tree holds, the front end finishes, never raises, prints nothing raw."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "root"
        root.mkdir()
        outside = base / "outside.mcp"
        outside.write_text(SECRET)
        for i, (kind, content) in enumerate(files):
            data = content.encode("utf-8") if isinstance(content, str) else content
            path = root / f"f{i}.mcp"
            if kind == "regular":
                path.write_bytes(data)
            elif kind == "fifo":
                os.mkfifo(path)
            elif kind == "inside-link":
                (root / f"t{i}.txt").write_bytes(data)
                path.symlink_to(root / f"t{i}.txt")
            elif kind == "outside-link":
                path.symlink_to(outside)
            elif kind == "oversized":
                with open(path, "wb") as handle:
                    handle.write(data)
                    handle.truncate(MAX_FILE_BYTES + 1 + len(data))
            else:
                path.symlink_to(base, target_is_directory=True)
        try:
            c = compile_tree(root)
        except InputError as exc:  # only "no .mcp files" could apply, and never here
            pytest.fail(f"unexpected input error {exc.diagnostic.message}")
        text = render_human(c.diagnostics, c.sources)
        assert "root-secret-line" not in text
        assert not UNSAFE_OUTPUT.search(text)
        assert not UNSAFE_OUTPUT.search(render_json(c.diagnostics))
        refused = {d.span.file for d in c.diagnostics if d.code in ("E0502", "E0503", "E0504")}
        assert refused.isdisjoint(c.raw)


# --------------------------------------------------------- the other files commands read


def _special(tmp_path: Path, kind: str, name: str, limit: int = MAX_FILE_BYTES) -> Path:
    """A FIFO, a symlink to `/dev/zero`, or a (sparse) file one byte over `limit`."""
    path = tmp_path / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    else:
        with path.open("wb") as fh:
            fh.truncate(limit + 1)
    return path


@pytest.mark.parametrize("kind", ["fifo", "zero", "huge"])
def test_eval_input_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    """`eval --input` used to block on a FIFO and fill memory from `/dev/zero`."""
    root = tree(tmp_path)
    special = _special(tmp_path, kind, "input.json")
    done = cli("eval", str(root), "--input", str(special))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert ("not a regular file" if kind != "huge" else "larger than 8 MiB") in done.stderr


def test_eval_standard_input_is_bounded(tmp_path: Path) -> None:
    root = tree(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mcpdsl", "eval", str(root), "--input", "-"],
        input=b" " * (MAX_FILE_BYTES + 1),
        capture_output=True,
        timeout=TIMEOUT,
        env=env,
    )
    assert done.returncode == 2 and b"larger than 8 MiB" in done.stderr, done.stderr


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_an_intensity_file_that_is_not_a_regular_file_is_e0701(tmp_path: Path, kind: str) -> None:
    """`intensity from` is read by the loader and by the carbon analysis: both refuse."""
    root = tmp_path / "tree"
    root.mkdir()
    (root / "carbon.mcp").write_text(
        "package t\n\ncarbon grid {\n"
        '  intensity from "forecast.csv"\n'
        "  budget 1000kg per month\n"
        '  region "eu-north-1" { intensity 30g/kWh }\n}\n'
    )
    _special(root, kind, "forecast.csv")
    checked = cli("check", str(root))  # the analysis skips it (it used to block on a FIFO)
    assert checked.returncode == 0 and "Traceback" not in checked.stderr, checked.stderr
    planned = cli("plan", str(root))  # the loader says why
    assert planned.returncode != 0 and "Traceback" not in planned.stderr, planned.stderr
    assert "error[E0701]:" in planned.stdout and "file `forecast.csv`" in planned.stdout


@pytest.mark.parametrize("kind", ["fifo", "zero", "huge"])
def test_key_files_that_are_not_regular_files_are_refused(tmp_path: Path, kind: str) -> None:
    """`keys add` reads entries and keyrings: a FIFO or a device is an error, not a hang."""
    special = _special(tmp_path, kind, "public.json", MAX_KEY_FILE_BYTES)
    done = cli("keys", "add", "--keyring", str(tmp_path / "ring.json"), str(special))
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "cannot read key entry" in done.stderr + done.stdout


def test_the_language_server_reads_sources_like_every_command(tmp_path: Path) -> None:
    """Out-of-tree symlinks, FIFOs and devices: the LSP says E0503/E0504, reads none of them."""
    code = f"""
import os, pathlib, sys
from mcpdsl.lsp.workspace import TreeChecker
root = pathlib.Path(sys.argv[1])
snap = TreeChecker(root).check({{}})
print(sorted(d.code for d in snap.compilation.diagnostics if d.is_error))
print({SECRET.strip()!r} in repr(snap.compilation.raw))
"""
    root = tree(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    (root / "leak.mcp").symlink_to(secret)
    os.mkfifo(root / "pipe.mcp")
    (root / "zero.mcp").symlink_to("/dev/zero")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(root)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    found, leaked = done.stdout.splitlines()
    assert found == "['E0503', 'E0503', 'E0504']" and leaked == "False", done.stdout
