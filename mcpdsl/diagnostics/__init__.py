"""Diagnostics: the model, the code table and the renderers."""

from __future__ import annotations

from collections.abc import Iterable

from mcpdsl.diagnostics.codes import CODES, explain
from mcpdsl.diagnostics.model import (
    CompileError,
    Diagnostic,
    Enforcement,
    Label,
    Severity,
    Status,
    sort_diagnostics,
)
from mcpdsl.source import Span

__all__ = [
    "CODES",
    "CompileError",
    "Diagnostic",
    "Enforcement",
    "Label",
    "Severity",
    "Status",
    "explain",
    "make",
    "sort_diagnostics",
]


def make(
    code: str,
    message: str,
    span: Span | None,
    *,
    label: str = "",
    help: str | None = None,
    notes: Iterable[str] = (),
    secondary: Iterable[Label] = (),
    severity: Severity | None = None,
    enforcement: Enforcement | None = None,
) -> Diagnostic:
    """Build a diagnostic whose severity comes from the code table.

    Stages call this instead of constructing `Diagnostic` so that a code's
    severity is decided in one place.
    """
    entry = CODES[code]
    return Diagnostic(
        code=code,
        severity=severity or entry.severity,
        message=message,
        span=span,
        label=label,
        help=help,
        notes=tuple(notes),
        secondary=tuple(secondary),
        enforcement=enforcement,
    )
