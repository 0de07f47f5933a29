"""Shared CLI plumbing: rendering diagnostics and deciding colour."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

import click

from mcpdsl.cli.exit import EXIT_USAGE
from mcpdsl.diagnostics import Diagnostic
from mcpdsl.source import SourceMap

if TYPE_CHECKING:
    from mcpdsl.ir.model import Project
    from mcpdsl.outdir import OutputError, OutputPlan
    from mcpdsl.pipeline import Compilation


def echo_error(message: str, *, diagnostic: str | None = None) -> None:
    """Print `error: message` on stderr with control and bidi characters made visible.

    With a `diagnostic` code the line reads `error[CODE]: message`, as a rendered
    diagnostic does, so `mcpdsl check --explain CODE` applies.

    Messages name files and revisions a hostile tree or repository chooses (a file
    called `\x1b]0;...\x07` retitles the terminal, `\x1b[2J` clears it): every
    one-line error goes through here, as diagnostics go through the renderer.
    """
    from mcpdsl.diagnostics.render import escape_controls

    head = f"error[{diagnostic}]" if diagnostic else "error"
    click.echo(f"{head}: {escape_controls(message)}", err=True)


def fail(message: str, code: int = EXIT_USAGE, *, diagnostic: str | None = None) -> NoReturn:
    """`echo_error(message)`, then end the command (by default: usage or input error)."""
    echo_error(message, diagnostic=diagnostic)
    sys.exit(code)


def use_colour(stream: object = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    stream = stream or sys.stdout
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def emit_diagnostics(
    diagnostics: Sequence[Diagnostic],
    sources: SourceMap,
    fmt: str = "text",
    *,
    summary: bool = True,
    base: str = "",
) -> None:
    """Render `diagnostics` in `fmt`; `base` is the tree path as given (GitHub `file=`)."""
    from mcpdsl._version import __version__
    from mcpdsl.diagnostics.render import (
        render_github,
        render_human,
        render_json,
        render_sarif,
        summary_line,
    )

    if fmt == "github":
        click.echo(render_github(diagnostics, base=base), nl=False)
    elif fmt == "json":
        click.echo(render_json(diagnostics), nl=False)
    elif fmt == "sarif":
        click.echo(render_sarif(diagnostics, version=__version__), nl=False)
    else:
        colour = use_colour()
        text = render_human(diagnostics, sources, colour=colour)
        if text:
            # click strips ANSI codes when stdout is not a terminal; FORCE_COLOR
            # asks for them anyway, so say explicitly what was decided.
            click.echo(text, color=colour)
        if summary:
            click.echo(summary_line(diagnostics))


def compile_or_exit(path: str, fmt: str = "text", *, analyze: bool = False) -> Compilation:
    """Run the front end; an unusable path is reported and ends the command with exit 2.

    What a command does with a tree that has errors differs (check reports
    them, build refuses, test treats them as input errors), so that stays with
    the command.
    """
    from mcpdsl._gc import gc_paused

    with gc_paused():  # the front end's modules (the IR's classes): see gc_paused
        from mcpdsl.pipeline import InputError, compile_tree

    try:
        return compile_tree(path, analyze=analyze, stored=True)
    except InputError as exc:
        emit_diagnostics([exc.diagnostic], SourceMap(), fmt, summary=False)
        sys.exit(EXIT_USAGE)


def project_or_exit(path: str) -> Project:
    """For commands that evaluate a tree (test, eval): its errors are input errors, exit 2."""
    compilation = compile_or_exit(path)
    if compilation.project is None:
        emit_diagnostics([d for d in compilation.diagnostics if d.is_error], compilation.sources)
        sys.exit(EXIT_USAGE)
    return compilation.project


def output_or_exit(
    out: str, *, sources: tuple[str, ...], force: bool = False, kind: str | None = None
) -> OutputPlan:
    """Check `--out` against the output-directory policy before any work (mcpdsl.outdir).

    Leftovers of an interrupted run are restored or removed first and each is
    named in a note; a refusal is a coded diagnostic at the path, exit 2.
    """
    from mcpdsl.outdir import BUILD_FORMAT, OutputError, prepare

    try:
        plan = prepare(out, kind=kind or BUILD_FORMAT, sources=sources, force=force)
    except OutputError as exc:
        exit_output_error(exc)
    for note in plan.notes:
        click.echo(f"note: {note}")
    return plan


def exit_output_error(exc: OutputError) -> NoReturn:
    """Print an output refusal (E08xx) the way input errors are printed, and exit 2."""
    emit_diagnostics([exc.diagnostic], SourceMap(), summary=False)
    sys.exit(EXIT_USAGE)
