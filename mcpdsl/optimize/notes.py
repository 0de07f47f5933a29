"""A planner note that knows the declaration it is about.

Plan notes are read as text by `mcpdsl plan`, the report and JSON output, so a
`Note` *is* its text (a `str`); it also carries the span of the job, service or
carbon block concerned, so that `mcpdsl build` can report it as a diagnostic
(B0131) pointing at that declaration instead of a free string.
"""

from __future__ import annotations

from mcpdsl.source import Span


class Note(str):
    """Note text plus the span of the declaration it is about (None: the whole tree)."""

    span: Span | None

    def __new__(cls, text: str, span: Span | None = None) -> Note:
        note = super().__new__(cls, text)
        note.span = span
        return note


def span_of(note: str) -> Span | None:
    """The span a note carries, if it is a `Note`."""
    return note.span if isinstance(note, Note) else None
