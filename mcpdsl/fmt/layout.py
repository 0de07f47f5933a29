"""Output lines for the formatter: pieces of code with their comments.

The printer appends *pieces* (one per printed token, or a synthetic one such as
a comma it inserts) to *lines*.  Comments travel with the pieces of the tokens
they are anchored to.  When a line is finished, the trailing comment of its
last piece stays at the end of the line; every other comment of the line (a
leading comment of any piece, a trailing comment of a piece in the middle of
the line) is written on its own line just above it, so no comment is ever lost
and a second run of the formatter leaves it where the first one put it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lark import Token

from mcpdsl.fmt.comments import BLANK, Comments

MAX_WIDTH = 100
INDENT = 2


@dataclass
class Piece:
    text: str
    glue: bool = False  # no space before this piece
    leading: list[str] = field(default_factory=list)
    trailing: list[str] = field(default_factory=list)
    source: Token | None = None  # the token printed, None for a piece the printer wrote

    def bare(self) -> Piece:
        """The same text without comments (for trial layouts)."""
        return Piece(self.text, self.glue)


@dataclass
class Line:
    """One line of code; a line without pieces is a blank line."""

    indent: int
    pieces: list[Piece] = field(default_factory=list)
    closer: bool = False  # starts with a closing bracket: its comments are one level deeper
    align_after: int | None = None  # the piece after which the first column is padded
    column2: int | None = None  # the piece after which a second column is padded
    kind: str = ""  # the clause kind (second columns align within one kind)
    pads: dict[int, int] = field(default_factory=dict)  # piece index -> extra spaces after it
    comment_column: int = 0  # where a trailing comment starts (at least 2 after the code)

    def code(self) -> str:
        out: list[str] = []
        for i, piece in enumerate(self.pieces):
            if i > 0 and not piece.glue:
                out.append(" ")
            out.append(piece.text)
            if self.pads.get(i):
                out.append(" " * self.pads[i])
        return "".join(out)

    def width(self) -> int:
        return self.indent + len(self.code())

    def head_width(self, upto: int) -> int:
        """Width of the pieces up to and including piece `upto` (unpadded)."""
        return len(Line(0, self.pieces[: upto + 1]).code())


def finish(line: Line) -> list[str]:
    """A line as text: hoisted comments, then the code with its trailing comment."""
    if not line.pieces:
        return [""]
    hoisted: list[str] = []
    last = len(line.pieces) - 1
    for i, piece in enumerate(line.pieces):
        hoisted.extend(piece.leading)
        if i < last:
            hoisted.extend(piece.trailing)
    trailing = line.pieces[last].trailing
    if len(trailing) > 1:
        hoisted.extend(trailing[:-1])
        trailing = trailing[-1:]
    if line.closer:
        while hoisted and hoisted[-1] == BLANK:  # no blank line before a `}`
            hoisted.pop()
    comment_indent = " " * (line.indent + (INDENT if line.closer else 0))
    out: list[str] = []
    for comment in hoisted:
        if comment != BLANK:
            out.append(comment_indent + comment)
        elif out and out[-1] != "":
            out.append("")
    code = " " * line.indent + line.code()
    if trailing:
        code = code.ljust(line.comment_column - 2) + "  " + trailing[0]
    out.append(code)
    return out


class Emitter:
    """Collects lines; in measuring mode it ignores comments (used to try a flat layout)."""

    def __init__(self, comments: Comments | None) -> None:
        self.comments = comments
        self.lines: list[Line] = []
        self.pending: list[str] = []  # leading comments of dropped tokens, for the next piece
        self.glue_next = False

    @property
    def measuring(self) -> bool:
        return self.comments is None

    @property
    def current(self) -> Line:
        return self.lines[-1]

    def line(self, indent: int, *, closer: bool = False) -> Line:
        new = Line(indent, closer=closer)
        self.lines.append(new)
        self.glue_next = False
        return new

    def blank(self) -> None:
        self.lines.append(Line(0))

    def _last_piece(self) -> Piece | None:
        for line in reversed(self.lines):
            if line.pieces:
                return line.pieces[-1]
        return None

    def _add(self, piece: Piece) -> Piece:
        if self.glue_next:
            piece.glue = True
            self.glue_next = False
        if self.pending:
            piece.leading[:0] = self.pending
            self.pending = []
        self.current.pieces.append(piece)
        return piece

    def tok(self, token: Token, *, glue: bool = False, text: str | None = None) -> Piece:
        piece = Piece(str(token) if text is None else text, glue=glue, source=token)
        if self.comments is not None:
            piece.leading, piece.trailing = self.comments.take(token)
        return self._add(piece)

    def text(self, text: str, *, glue: bool = False) -> Piece:
        """A piece the printer writes itself (a comma, a parenthesis)."""
        previous = self.current.pieces[-1] if self.current.pieces else None
        piece = self._add(Piece(text, glue=glue))
        if text == "," and previous is not None and previous.trailing and not self.measuring:
            piece.trailing, previous.trailing = previous.trailing, []
        return piece

    def drop(self, token: Token | None) -> None:
        """A token that is not printed (a comma, a redundant parenthesis): keep its comments."""
        if token is None or self.comments is None:
            return
        leading, trailing = self.comments.take(token)
        self.pending.extend(leading)
        if trailing:
            last = self._last_piece()
            if last is not None:
                last.trailing.extend(trailing)
            else:
                self.pending.extend(trailing)
