"""`mcpdsl logs verify FILE...`: check a decision log's hash chain (docs/decision-log.md).

Exit codes: 0 the chain is intact (warnings allowed unless `--strict`); 1 it is
broken (each finding names the line); 2 usage, or a file that cannot be read or
is not a decision log.  The verifier is imported inside the command: `mcpdsl`
starts without it.
"""

from __future__ import annotations

import re

import click

from mcpdsl.cli.common import fail
from mcpdsl.cli.exit import EXIT_FINDINGS

_ANCHOR = re.compile(r"(\d{1,19}):([0-9a-fA-F]{64})")


@click.group("logs")
def logs_command() -> None:
    """Decision logs: verify their hash chain."""


@logs_command.command("verify")
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--rotated",
    is_flag=True,
    help="Each FILE is the newest file of a rotated set: read FILE.N ... FILE.1, FILE.",
)
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    metavar="SEQ:SHA256",
    help="A head recorded earlier (`seq` and sha256 of a line): it must be in the chain.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too (torn or dropped records).")
def verify_logs_command(
    files: tuple[str, ...], rotated: bool, anchors: tuple[str, ...], fmt: str, strict: bool
) -> None:
    """Verify the hash chain of decision-log FILEs (one chain, any order; or --rotated)."""
    import json

    from mcpdsl.engine.log_chain import DecisionLogError
    from mcpdsl.engine.log_verify import rotated_set, verify

    parsed: list[tuple[int, str]] = []
    for anchor in anchors:
        match = _ANCHOR.fullmatch(anchor.strip())
        if match is None:
            fail(f"invalid anchor `{anchor}`: expected SEQ:SHA256 (64 hex digits)")
        parsed.append((int(match.group(1)), match.group(2).lower()))
    paths = [p for f in files for p in (rotated_set(f) if rotated else [f])]
    try:
        result = verify(paths, parsed, ordered=rotated and len(files) == 1)
    except DecisionLogError as exc:
        fail(str(exc))
    failed = result.errors > 0 or (strict and result.warnings > 0)
    if fmt == "json":
        from mcpdsl.diagnostics.render import to_json_obj

        doc = {
            "files": list(result.files),
            "lines": result.lines,
            "records": result.records,
            "first_seq": result.first_seq,
            "last_seq": result.last_seq,
            "head": None
            if result.head is None
            else {"seq": result.last_seq, "sha256": result.head},
            "intact": result.errors == 0,
            "diagnostics": [to_json_obj(d) for d in result.diagnostics],
            "summary": {"errors": result.errors, "warnings": result.warnings},
        }
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        _print_text(result)
    if failed:
        raise SystemExit(EXIT_FINDINGS)


def _print_text(result: object) -> None:
    from mcpdsl.cli.common import use_colour
    from mcpdsl.diagnostics.render import render_human, summary_line
    from mcpdsl.engine.log_verify import Verification
    from mcpdsl.source import SourceMap

    assert isinstance(result, Verification)
    text = render_human(result.diagnostics, SourceMap(), colour=use_colour())
    if text:
        click.echo(text)
    n = len(result.files)
    where = f"{n} file{'s' if n != 1 else ''}"
    if result.records == 0:
        click.echo(f"no records in {where}; {summary_line(result.diagnostics)}")
        return
    state = "intact" if result.errors == 0 else "broken"
    click.echo(
        f"chain {state}: {result.records} records, seq {result.first_seq} to "
        f"{result.last_seq}, in {where}; {summary_line(result.diagnostics)}"
    )
    if result.first_seq:
        click.echo(
            f"note: the chain starts at seq {result.first_seq}: older entries are not in "
            "the files given (rotated away?)"
        )
    click.echo(f"head: {result.last_seq}:{result.head}  (keep it; check later with --anchor)")
