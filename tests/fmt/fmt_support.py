"""Helpers shared by the formatter tests: IR comparison and golden case files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcpdsl.ir import model as m
from mcpdsl.ir.lower import lower
from mcpdsl.source import SourceFile
from mcpdsl.syntax.parser import parse_source

CASES = Path(__file__).parent / "cases"
INPUT = "--- input\n"
EXPECTED = "--- expected\n"


def unit_of(text: str, path: str = "case.mcp") -> tuple[m.FileUnit | None, list[str]]:
    """The IR of one file through the shared parser (not the formatter's) and its codes."""
    parsed = parse_source(SourceFile(path, text))
    assert not parsed.diagnostics, [d.message for d in parsed.diagnostics]
    unit, diagnostics = lower(parsed)
    return unit, sorted(d.code for d in diagnostics)


@dataclass
class Case:
    path: Path
    input: str
    expected: str | None

    @classmethod
    def load(cls, path: Path) -> Case:
        text = path.read_text(encoding="utf-8")
        assert text.startswith(INPUT), f"{path.name} must start with {INPUT!r}"
        body = text[len(INPUT) :]
        if EXPECTED in body:
            given, expected = body.split(EXPECTED, 1)
            return cls(path, given, expected)
        return cls(path, body, None)

    def save(self, expected: str) -> None:
        self.path.write_text(INPUT + self.input + EXPECTED + expected, encoding="utf-8")
