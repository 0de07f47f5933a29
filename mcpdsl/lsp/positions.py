"""Editor positions (0-based, in UTF-16/8/32 code units) to spans (1-based, in characters).

Compiler spans count characters (code points) from 1; the protocol counts
code units of the negotiated encoding from 0.  The two differ on every line
with a character outside the Basic Multilingual Plane, so every position that
crosses the wire goes through here.  A position past the end of its line is
clamped to the end (as the protocol asks); a line past the end of the
document is the client's error and is refused.
"""

from __future__ import annotations

from lsprotocol import types

from mcpdsl.source import SourceFile, Span


class BadPosition(ValueError):
    """A position that names no place in the document."""


def _units(char: str, encoding: str) -> int:
    code = ord(char)
    if encoding == "utf-8":
        return len(char.encode("utf-8", errors="surrogatepass"))
    if encoding == "utf-32":
        return 1
    return 2 if code > 0xFFFF else 1


def column_of(line_text: str, character: int, encoding: str) -> int:
    """The 0-based character index of a code-unit offset, clamped to the line."""
    if character < 0:
        raise BadPosition(f"character {character} is negative")
    if encoding == "utf-32":
        return min(character, len(line_text))
    seen = 0
    for index, char in enumerate(line_text):
        if seen >= character:
            return index
        seen += _units(char, encoding)
        if seen > character:  # inside a surrogate pair or a multi-byte sequence
            return index
    return len(line_text)


def units_of(line_text: str, column: int, encoding: str) -> int:
    """The code-unit offset of a 0-based character index."""
    prefix = line_text[: max(0, column)]
    if encoding == "utf-32":
        return len(prefix)
    return sum(_units(c, encoding) for c in prefix)


def to_point(source: SourceFile, position: types.Position, encoding: str) -> tuple[int, int]:
    """A protocol position as a 1-based (line, column) of `source`."""
    if position.line < 0:
        raise BadPosition(f"line {position.line} is negative")
    if position.line >= len(source.lines):
        raise BadPosition(
            f"line {position.line} is past the end of the document ({len(source.lines)} lines)"
        )
    text = source.line(position.line + 1)
    return position.line + 1, column_of(text, position.character, encoding) + 1


def to_position(source: SourceFile, line: int, column: int, encoding: str) -> types.Position:
    line = max(1, line)
    text = source.line(line)
    return types.Position(line=line - 1, character=units_of(text, column - 1, encoding))


def to_range(source: SourceFile, span: Span, encoding: str) -> types.Range:
    return types.Range(
        start=to_position(source, span.line, span.column, encoding),
        end=to_position(source, span.end_line, span.end_column, encoding),
    )


def whole_document(source: SourceFile, encoding: str) -> types.Range:
    last = len(source.lines)
    return types.Range(
        start=types.Position(line=0, character=0),
        end=to_position(source, last, len(source.line(last)) + 1, encoding),
    )
