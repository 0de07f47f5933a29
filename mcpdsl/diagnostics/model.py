"""The one diagnostic model every stage reports with.

A diagnostic is data; renderers (human, JSON, SARIF) live in `render.py` so
that the same finding can be printed for a person, a machine or a code-scanning
dashboard without the stage that found it knowing which.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from mcpdsl.source import Span


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


@dataclass(frozen=True)
class Code:
    """One entry of the code table (`codes.py`): severity, title, long explanation."""

    code: str
    severity: Severity
    title: str
    explanation: str
    strict: bool = False  # a warning `mcpdsl build --strict` turns into an error


class Label(BaseModel):
    """A secondary span with a short message, drawn under the primary one."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    span: Span
    message: str = ""


class Status(StrEnum):
    """How an enforcement point carries an access rule (the `build` enforcement table).

    `narrowed` fails closed (the rule admits less than written there), `not-enforced`
    fails open (a deny that cannot fire there).
    """

    ENFORCED = "enforced"
    NARROWED = "narrowed"
    NOT_ENFORCED = "not-enforced"


class Enforcement(BaseModel):
    """Where one access rule is enforced by one target: data carried by a build diagnostic."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    rule: str  # POLICY/ID
    target: str
    where: str  # e.g. "rbac deny, gateway public, route /v1/**"
    status: Status = Status.ENFORCED


class Diagnostic(BaseModel):
    """A finding about the user's input: code, place, message and advice."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    code: str
    severity: Severity
    message: str
    span: Span | None = None
    label: str = ""
    secondary: tuple[Label, ...] = ()
    help: str | None = None
    notes: tuple[str, ...] = ()
    enforcement: Enforcement | None = None  # build diagnostics about an access rule

    def sort_key(self) -> tuple[str, int, int, int, str, str]:
        """Diagnostics are reported by location so that output is deterministic."""
        if self.span is None:
            return ("", 0, 0, self.severity.rank, self.code, self.message)
        return (
            self.span.file,
            self.span.line,
            self.span.column,
            self.severity.rank,
            self.code,
            self.message,
        )

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


def sort_diagnostics(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Sort by location and drop exact duplicates (recovery can report twice)."""
    seen: set[tuple[object, ...]] = set()
    unique: list[Diagnostic] = []
    for d in sorted(diagnostics, key=Diagnostic.sort_key):
        key = (d.sort_key(), d.label, d.enforcement)
        if key in seen:
            continue
        seen.add(key)
        unique.append(d)
    return unique


class CompileError(Exception):
    """Raised by the Python API when the input has errors; carries every diagnostic."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        errors = [d for d in diagnostics if d.is_error]
        first = errors[0] if errors else (diagnostics[0] if diagnostics else None)
        summary = f"{len(errors)} error(s)"
        if first is not None:
            where = f"{first.span}: " if first.span else ""
            summary += f"; first: {where}{first.message}"
        super().__init__(summary)
