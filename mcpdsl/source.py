"""Source files and spans.

Spans are plain data shared by the syntax tree, the IR and diagnostics.  They
are 1-based (line, column) pairs because that is what editors, SARIF and human
readers use; byte offsets are not kept since every renderer works on lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True, slots=True)
class Span:
    """A region of one source file, 1-based and end-exclusive in columns.

    A plain frozen dataclass rather than a pydantic model: large trees make
    hundreds of thousands of spans, and pydantic still validates and
    serialises dataclass fields where they are used in models.
    """

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    @classmethod
    def point(cls, file: str, line: int, column: int, width: int = 1) -> Span:
        return cls(file, line, column, line, column + width)

    @classmethod
    def make(cls, file: str, line: int, column: int, end_line: int, end_column: int) -> Span:
        return cls(file, line, column, end_line, end_column)


class SourceFile:
    """The text of one policy file with its display path.

    The display path is relative to the tree root so that diagnostics, SARIF
    and snapshots do not depend on where the checkout lives.
    """

    __slots__ = ("__dict__", "path", "text")

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text

    @cached_property
    def lines(self) -> list[str]:
        return self.text.split("\n")

    def line(self, number: int) -> str:
        lines = self.lines
        if 1 <= number <= len(lines):
            return lines[number - 1].rstrip("\r")
        return ""


class SourceMap:
    """Every source file of a compilation, by display path, for renderers."""

    def __init__(self) -> None:
        self._files: dict[str, SourceFile] = {}

    def add(self, source: SourceFile) -> None:
        self._files[source.path] = source

    def get(self, path: str) -> SourceFile | None:
        return self._files.get(path)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._files.values(), key=lambda s: s.path))
