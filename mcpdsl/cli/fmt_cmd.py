"""`mcpdsl fmt PATH... [--check] [--diff]`: rewrite `.mcp` files in the canonical layout.

Exit codes: 0 ok (every file formatted, or nothing to do), 1 some file would
change (`--check`) or could not be formatted (syntax error, formatter bug),
2 usage error or an unreadable/unwritable path.  A file that does not parse is
never touched; neither is one whose formatted text fails the formatter's own
re-parse check.
"""

from __future__ import annotations

import difflib
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click

from mcpdsl.cli.common import echo_error, fail
from mcpdsl.cli.exit import EXIT_FINDINGS, EXIT_USAGE
from mcpdsl.diagnostics.render import escape_controls

STDIN = "-"


@dataclass
class _Outcome:
    changed: int = 0
    unchanged: int = 0
    failed: int = 0


@click.command("fmt")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--check", is_flag=True, help="Write nothing; list the files that would change, exit 1 if any."
)
@click.option("--diff", is_flag=True, help="Write nothing; print a unified diff of the changes.")
def fmt_command(paths: tuple[str, ...], check: bool, diff: bool) -> None:
    """Format policy files (directories are searched for `.mcp` files; `-` is stdin).

    Without options, files are rewritten in place (atomically).  Files with
    syntax errors are reported and left untouched.
    """
    from mcpdsl.cli.common import emit_diagnostics
    from mcpdsl.pipeline import InputError, find_files
    from mcpdsl.source import SourceMap

    files: list[tuple[Path, Path] | None] = []  # (root, file); None stands for stdin
    for raw in paths:
        if raw == STDIN:
            files.append(None)
            continue
        try:
            root, found = find_files(Path(raw))
        except InputError as exc:
            emit_diagnostics([exc.diagnostic], SourceMap(), summary=False)
            sys.exit(EXIT_USAGE)
        files.extend((root, file) for file in found)
    outcome = _Outcome()
    for file in files:
        if file is None:
            _format_stdin(check, diff, outcome)
        else:
            _format_file(*file, check, diff, outcome)
    total = outcome.changed + outcome.unchanged + outcome.failed
    verb = "would be reformatted" if check or diff else "reformatted"
    if files and files != [None]:
        summary = f"{outcome.changed} of {total} file{'s' if total != 1 else ''} {verb}"
        if outcome.failed:
            summary += f", {outcome.failed} could not be formatted"
        click.echo(summary, err=True)
    if outcome.failed or (check and outcome.changed):
        sys.exit(EXIT_FINDINGS)


def _format_stdin(check: bool, diff: bool, outcome: _Outcome) -> None:
    data = sys.stdin.buffer.read()
    formatted = _formatted("<stdin>", data, outcome)
    if formatted is None:
        return
    changed = formatted.encode("utf-8") != data
    outcome.changed += changed
    outcome.unchanged += not changed
    if diff:
        _print_diff("<stdin>", data.decode("utf-8", "replace"), formatted)
    elif not check:
        click.echo(formatted, nl=False)


def _format_file(root: Path, file: Path, check: bool, diff: bool, outcome: _Outcome) -> None:
    from mcpdsl.cli.common import emit_diagnostics
    from mcpdsl.reader import Refused, read_source
    from mcpdsl.source import SourceMap

    display = str(file)
    try:
        data = read_source(root, file)  # the same checks as every other command
    except Refused as refused:
        emit_diagnostics([refused.diagnostic], SourceMap(), summary=False)
        if refused.diagnostic.code == "E0501":  # an unreadable path is exit 2, as documented
            sys.exit(EXIT_USAGE)
        echo_error(f"`{display}` left unchanged")
        outcome.failed += 1
        return
    formatted = _formatted(display, data, outcome)
    if formatted is None:
        return
    new = formatted.encode("utf-8")
    if new == data:
        outcome.unchanged += 1
        return
    outcome.changed += 1
    if diff:
        _print_diff(display, data.decode("utf-8", "replace"), formatted)
    if check:
        if not diff:
            click.echo(f"would reformat {escape_controls(display)}")
        return
    if diff:
        return
    try:
        write_atomically(file, new)
    except OSError as exc:
        fail(f"cannot write `{display}`: {exc.strerror or exc}")
    click.echo(f"reformatted {escape_controls(display)}")


def _formatted(display: str, data: bytes, outcome: _Outcome) -> str | None:
    """The formatted text, or None after reporting why the file cannot be formatted."""
    from mcpdsl.cli.common import emit_diagnostics
    from mcpdsl.fmt import InternalError, SyntaxErrors, format_source
    from mcpdsl.source import SourceMap
    from mcpdsl.syntax.parser import decode

    source, problems = decode(display, data)
    if source is None:
        emit_diagnostics(problems, SourceMap(), summary=False)
        echo_error(f"`{display}` left unchanged")
        outcome.failed += 1
        return None
    try:
        return format_source(source.text, display)
    except SyntaxErrors as exc:
        sources = SourceMap()
        sources.add(exc.source)
        emit_diagnostics(exc.diagnostics, sources, summary=False)
        echo_error(f"`{display}` has syntax errors; left unchanged")
    except InternalError as exc:
        echo_error(
            f"internal formatter error in `{display}`: {exc}; the file was left "
            "unchanged (this is a bug in `mcpdsl fmt`, please report it)",
        )
    outcome.failed += 1
    return None


def _print_diff(display: str, before: str, after: str) -> None:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{display}\t(original)",
        tofile=f"{display}\t(formatted)",
    )
    for line in lines:
        click.echo(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n", nl=False
        )


def write_atomically(path: Path, data: bytes) -> None:
    """Replace a file's contents via a temporary file in the same directory."""
    target = Path(os.path.realpath(path))
    mode = stat.S_IMODE(target.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
