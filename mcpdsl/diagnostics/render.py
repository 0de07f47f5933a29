"""Renderers for diagnostics: human (rustc style), JSON and SARIF 2.1.0 (`sarif.py`).

The human renderer draws a window of source lines around each span with carets
under the primary span and dashes under secondary spans.  Colour is used only
when the caller says the output is a terminal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

from mcpdsl.diagnostics.codes import CODES
from mcpdsl.diagnostics.model import Diagnostic, Label, Severity
from mcpdsl.source import SourceMap, Span

if TYPE_CHECKING:
    from mcpdsl.diagnostics.sarif import SarifLocation

_COLOURS = {
    "error": "\x1b[1;31m",
    "warning": "\x1b[1;33m",
    "info": "\x1b[1;36m",
    "bold": "\x1b[1m",
    "blue": "\x1b[1;34m",
    "reset": "\x1b[0m",
}
_MAX_SNIPPET = 160  # columns of a source line shown; megabyte lines are clipped
# Control characters are drawn as their Unicode pictures (one column each), so
# that a policy file cannot send escape sequences to the reader's terminal.
_PICTURES = {c: 0x2400 + c for c in range(0x20) if c != 0x09} | {0x7F: 0x2421}
# Everything else that can move the cursor, reorder text or hide it: C1 controls
# (0x9b is a one-byte CSI on some terminals), bidirectional overrides and
# isolates ("Trojan Source"), zero-width and invisible format characters, line
# and paragraph separators, tag characters.  Shown as `<U+XXXX>`.
_INVISIBLE = (
    "\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e"
    "\u2028\u2029\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000e0000-\U000e007f"
)


@cache
def _unsafe(*, in_json: bool = False) -> re.Pattern[str]:
    """The characters to make visible (compiled on first use: a clean run prints none)."""
    if in_json:
        return re.compile(f"[{_INVISIBLE}]")  # json.dumps escapes C0 itself
    return re.compile(f"[\x00-\x08\x0a-\x1f{_INVISIBLE}]")


def _escape_one(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20 or code == 0x7F:
        return chr(_PICTURES[code])
    return f"<U+{code:04X}>"


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control, bidi and invisible format character made visible.

    Human output only: JSON and SARIF escape the same characters as `\\uXXXX`.
    `keep_newlines` leaves line breaks of multi-line messages alone.
    """
    if keep_newlines:
        return "\n".join(_unsafe().sub(_escape_one, part) for part in text.split("\n"))
    return _unsafe().sub(_escape_one, text)


def json_safe(text: str) -> str:
    """JSON text with the same characters written as `\\uXXXX` escapes (still valid JSON).

    They can only occur inside strings (JSON's own syntax is ASCII), and
    `ensure_ascii=False` would otherwise leave them raw.
    """

    def escape(match: re.Match[str]) -> str:
        raw = match.group().encode("utf-16-be")
        return "".join(f"\\u{int.from_bytes(raw[i : i + 2]):04x}" for i in range(0, len(raw), 2))

    return _unsafe(in_json=True).sub(escape, text)


class _Paint:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, style: str, text: str) -> str:
        if not self.enabled or not text:
            return text
        return f"{_COLOURS[style]}{text}{_COLOURS['reset']}"


def render_human(
    diagnostics: Sequence[Diagnostic], sources: SourceMap, *, colour: bool = False
) -> str:
    """Render diagnostics the way rustc and ruff do, followed by a summary line."""
    paint = _Paint(colour)
    blocks = [_render_one(d, sources, paint) for d in diagnostics]
    return "\n".join(blocks)


def summary_line(diagnostics: Sequence[Diagnostic]) -> str:
    errors = sum(1 for d in diagnostics if d.severity is Severity.ERROR)
    warnings = sum(1 for d in diagnostics if d.severity is Severity.WARNING)
    infos = sum(1 for d in diagnostics if d.severity is Severity.INFO)
    parts = [f"{errors} error{'s' if errors != 1 else ''}"]
    parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    if infos:
        parts.append(f"{infos} info")
    return ", ".join(parts)


def _render_one(d: Diagnostic, sources: SourceMap, paint: _Paint) -> str:
    sev = d.severity.value
    message = escape_controls(d.message, keep_newlines=True)
    out = [f"{paint(sev, f'{sev}[{d.code}]')}{paint('bold', ': ' + message)}"]
    if d.span is not None:
        labels = [(d.span, escape_controls(d.label or ""), True)] + [
            (s.span, escape_controls(s.message or ""), False) for s in d.secondary
        ]
        width = len(str(max(lb[0].end_line for lb in labels)))
        gutter = " " * width
        # The primary span's file first (`-->`), then each other file (`:::`), as rustc does.
        others = sorted({lb[0].file for lb in labels} - {d.span.file})
        for file in (d.span.file, *others):
            group = [lb for lb in labels if lb[0].file == file]
            head = d.span
            if file != d.span.file:
                head = min((s for s, _, _ in group), key=lambda s: (s.line, s.column))
            arrow = paint("blue", "-->" if file == d.span.file else ":::")
            out.append(f"{gutter}{arrow} {escape_controls(head.file)}:{head.line}:{head.column}")
            source = sources.get(file)
            if source is None:
                out.extend(
                    f"{gutter} {paint('blue', '=')} {escape_controls(str(s))}: {msg}"
                    for s, msg, _ in group
                    if msg
                )
                continue
            out.append(f"{gutter} {paint('blue', '|')}")
            out.extend(_snippet(source.line, group, width, paint, sev))
            out.append(f"{gutter} {paint('blue', '|')}")
        indent = f"{gutter} {paint('blue', '=')} "
    else:
        indent = "  = "
    for note in d.notes:
        out.append(f"{indent}{paint('bold', 'note')}: {escape_controls(note, keep_newlines=True)}")
    if d.help:
        help_text = escape_controls(d.help, keep_newlines=True)
        out.append(f"{indent}{paint('bold', 'help')}: {help_text}")
    return "\n".join(out) + "\n"


def _snippet(
    line_of,  # type: ignore[no-untyped-def]
    labels: list[tuple[Span, str, bool]],
    width: int,
    paint: _Paint,
    sev: str,
) -> list[str]:
    """Source lines touched by labels, each followed by its markers."""
    by_line: dict[int, list[tuple[Span, str, bool]]] = {}
    for label in labels:
        by_line.setdefault(label[0].line, []).append(label)
    out: list[str] = []
    previous = None
    for number in sorted(by_line):
        if previous is not None and number > previous + 1:
            out.append(paint("blue", "..."))
        previous = number
        raw = line_of(number)
        # Clip before expanding tabs: expansion only widens, and a megabyte line
        # must not be copied once per diagnostic.
        text = escape_controls(raw[: _MAX_SNIPPET + 1].expandtabs(4))
        long = len(text) > _MAX_SNIPPET or len(raw) > _MAX_SNIPPET + 1
        clipped = text[:_MAX_SNIPPET] + (" ..." if long else "")
        out.append(f"{str(number).rjust(width)} {paint('blue', '|')} {clipped}")
        for span, message, primary in sorted(by_line[number], key=lambda x: x[0].column):
            start = min(_width(raw, span.column), _MAX_SNIPPET)
            if span.end_line == span.line:
                length = max(1, _width(raw, span.end_column) - start)
            else:
                length = max(1, len(text) - start)
            length = min(length, _MAX_SNIPPET + 4 - start)
            mark = ("^" if primary else "-") * max(1, length)
            style = sev if primary else "blue"
            tail = f" {message}" if message else ""
            out.append(
                f"{' ' * width} {paint('blue', '|')} {' ' * start}{paint(style, mark + tail)}"
            )
    return out


def _width(raw: str, column: int) -> int:
    """Display columns before the 1-based `column`, tabs expanded (exact up to the clip)."""
    return len(escape_controls(raw[: max(0, min(column - 1, _MAX_SNIPPET + 5))].expandtabs(4)))


def to_json_obj(d: Diagnostic) -> dict[str, object]:
    """The diagnostic as JSON; `enforcement` only where a build diagnostic carries it."""
    return d.model_dump(mode="json", exclude={"enforcement"} if d.enforcement is None else None)


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    """One JSON document: the diagnostics and a summary, stable key order."""
    doc = {
        "diagnostics": [to_json_obj(d) for d in diagnostics],
        "summary": {
            "errors": sum(1 for d in diagnostics if d.severity is Severity.ERROR),
            "warnings": sum(1 for d in diagnostics if d.severity is Severity.WARNING),
            "infos": sum(1 for d in diagnostics if d.severity is Severity.INFO),
        },
    }
    return json_safe(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False)) + "\n"


_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _sarif_location(span: Span, message: str = "") -> SarifLocation:
    from mcpdsl.diagnostics.sarif import SarifLocation

    return SarifLocation(span.file, span, message)


def render_sarif(diagnostics: Sequence[Diagnostic], *, version: str) -> str:
    """SARIF 2.1.0 for code-scanning dashboards; rules come from the code table."""
    from mcpdsl.diagnostics.sarif import SarifResult, SarifRule, write_sarif

    rules = []
    for code in sorted({d.code for d in diagnostics}):
        entry = CODES.get(code)
        if entry is None:
            rules.append(SarifRule(code))
        else:
            full = entry.explanation.strip()
            rules.append(SarifRule(code, entry.title, full, _SARIF_LEVEL[entry.severity]))
    results = []
    for d in diagnostics:
        text = d.message
        if d.help:
            text += f"\nhelp: {d.help}"
        for note in d.notes:
            text += f"\nnote: {note}"
        results.append(
            SarifResult(
                d.code,
                _SARIF_LEVEL[d.severity],
                text,
                _sarif_location(d.span, d.label) if d.span is not None else None,
                tuple(_sarif_location(lb.span, lb.message) for lb in d.secondary),
                {"enforcement": d.enforcement.model_dump(mode="json")}
                if d.enforcement is not None
                else None,
            )
        )
    return json_safe(write_sarif("mcpdsl", version, rules, results))


__all__ = ["Label", "render_human", "render_json", "render_sarif", "summary_line"]


_GITHUB_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _github_escape(text: str, *, prop: bool = False) -> str:
    """Escape a workflow-command value (`%`, CR, LF; and `:`/`,` inside properties)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render_github(diagnostics: Sequence[Diagnostic], *, base: str = "") -> str:
    """GitHub Actions workflow commands: one annotation per diagnostic.

    `base` is the tree path as the user gave it, so that `file=` is relative to
    the repository root (where the workflow runs), not to the policy tree.
    """
    lines = []
    for d in diagnostics:
        props = [f"title={_github_escape(d.code, prop=True)}"]
        if d.span is not None:
            file = f"{base.rstrip('/')}/{d.span.file}" if base else d.span.file
            props = [
                f"file={_github_escape(file, prop=True)}",
                f"line={d.span.line}",
                f"col={d.span.column}",
                f"endLine={d.span.end_line}",
                f"endColumn={d.span.end_column}",
                *props,
            ]
        text = d.message + (f"\nhelp: {d.help}" if d.help else "")
        lines.append(f"::{_GITHUB_LEVEL[d.severity]} {','.join(props)}::{_github_escape(text)}\n")
    return "".join(lines)
