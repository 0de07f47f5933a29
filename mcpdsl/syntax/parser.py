"""Parse `.mcp` files into lark syntax trees, with recovery and worded errors.

Parsing is two-step, as in Cedar: the whole file is parsed at once on the happy
path; when that fails, a cheap scanner splits the file into top-level
declarations (brace-balanced, with a declaration keyword at the start of a line
as a resynchronisation point) and each is parsed on its own, so that one file
with three broken declarations reports three errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.utils import TextSlice

from mcpdsl.diagnostics import Diagnostic, Label, make
from mcpdsl.diagnostics.wording import closest as closest  # re-exported for the lowering
from mcpdsl.reader import MAX_FILE_BYTES
from mcpdsl.resources import read_text
from mcpdsl.source import SourceFile, Span
from mcpdsl.syntax.parser_cache import cached_parser

MAX_NESTING = 64

DECLARATION_KEYWORDS = (
    "package",
    "import",
    "service",
    "scale",
    "pool",
    "balance",
    "carbon",
    "job",
    "policy",
    "integration",
    "gateway",
    "provider",
    "mesh",
    "server",
    "test",
)

_WORDS = {
    "NAME": "a name",
    "STRING": "a string",
    "NUMBER": "a number",
    "QUANTITY": "a value with a unit (like `30s`, `512Mi` or `70%`)",
    "TIME": "a time of day (like `08:00`)",
    "COMPARE_OP": "a comparison operator",
    "$END": "the end of the file",
}


@lru_cache(maxsize=1)
def grammar_text() -> str:
    return read_text("grammar", "mcp.lark")


PARSER_OPTIONS: dict[str, object] = {
    "parser": "lalr",
    "lexer": "contextual",
    "start": ["start", "item", "package_decl"],
    "maybe_placeholders": True,
}


@lru_cache(maxsize=1)
def parser() -> Lark:
    """The one LALR parser, built once per process.

    Saved in and loaded from the per-user verified cache (`parser_cache`): never
    a shared temp directory, never the package directory.
    """
    return cached_parser("parser", grammar_text(), PARSER_OPTIONS)


@lru_cache(maxsize=1)
def terminal_words() -> dict[str, str]:
    """How each terminal is named in an error message."""
    words = dict(_WORDS)
    for term in parser().terminals:
        if term.name in words:
            continue
        pattern = term.pattern
        if pattern.type == "str":
            words[term.name] = f"`{pattern.value}`"
    return words


@lru_cache(maxsize=1)
def keyword_terminals() -> dict[str, str]:
    """Terminal name to keyword text, for keywords that look like names."""
    out = {}
    for term in parser().terminals:
        value = term.pattern.value
        if term.pattern.type == "str" and re.fullmatch(r"[a-z]+", value):
            out[term.name] = value
    return out


@dataclass
class ParsedFile:
    """One file's syntax: its package declaration and top-level items."""

    source: SourceFile
    package: Tree[Token] | None = None
    items: list[Tree[Token]] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def decode(path: str, data: bytes) -> tuple[SourceFile | None, list[Diagnostic]]:
    """Bytes to text, refusing binary or non-UTF-8 input with a positioned error."""
    if len(data) > MAX_FILE_BYTES:
        span = Span.point(path, 1, 1)
        return None, [make("E0502", f"file is larger than {MAX_FILE_BYTES >> 20} MiB", span)]
    nul = data.find(b"\x00")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.start
        if nul != -1:
            bad = min(bad, nul)
        return None, [_binary_error(path, data, bad)]
    if nul != -1:
        return None, [_binary_error(path, data, nul)]
    if text.startswith("\ufeff"):
        text = text[1:]
    return SourceFile(path, text), []


def display_text(data: bytes) -> str:
    """Undecodable input as text for snippets: one U+FFFD per undecodable byte."""
    return data.decode("utf-8", errors="replace")


def _binary_error(path: str, data: bytes, offset: int) -> Diagnostic:
    line = data.count(b"\n", 0, offset) + 1
    line_start = data.rfind(b"\n", 0, offset) + 1
    # Columns count characters, as everywhere else (the prefix decodes cleanly).
    column = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    return make(
        "E0105",
        "file is not valid UTF-8 text",
        Span.point(path, line, column),
        label=f"byte 0x{data[offset]:02x} here",
        help="policy files must be UTF-8 text; remove binary files from the policy tree",
    )


def parse_source(source: SourceFile) -> ParsedFile:
    """Parse one file; never raises for bad input."""
    result = ParsedFile(source)
    if _too_deep(source.text):  # recovery reports it, before any stage recurses
        return _parse_with_recovery(source)
    try:
        tree = parser().parse(source.text, start="start")
    except UnexpectedInput:
        return _parse_with_recovery(source)
    result.package = tree.children[0]  # type: ignore[assignment]
    result.items = [c for c in tree.children[1:] if isinstance(c, Tree)]
    return result


# ------------------------------------------------------------------ recovery

_DELIMITERS = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*|[{}()\[\]]')


def _too_deep(text: str) -> bool:
    """Whether brackets nest deeper than MAX_NESTING (strings and comments skipped).

    LALR parsing is iterative, but later stages walk trees recursively; the limit
    is enforced here, for every file, so that no stage ever meets a deeper tree.
    """
    depth = 0
    for m in _DELIMITERS.finditer(text):
        tok = m.group()
        if tok in _OPEN:
            depth += 1
            if depth > MAX_NESTING:
                return True
        elif tok in _CLOSE:
            depth = max(0, depth - 1)
    return False


_SCAN = re.compile(
    r'"(?:[^"\\\n]|\\.)*"?'  # strings, possibly unterminated
    r"|#[^\n]*"  # comments
    r"|[{}()\[\]]"  # delimiters
    r"|[A-Za-z_][A-Za-z0-9_-]*"  # words
    r"|\n"
    r'|[^\s"#{}()\[\]A-Za-z_]+'  # anything else
    r"|[ \t\r\f]+"
)
_OPEN = {"{": "}", "[": "]", "(": ")"}
_CLOSE = {v: k for k, v in _OPEN.items()}


@dataclass
class _Chunk:
    start: int
    end: int
    keyword: str
    too_deep: tuple[int, int] | None = None
    unclosed: bool = False


def _chunks(source: SourceFile, diags: list[Diagnostic]) -> list[_Chunk]:
    """Split a file into top-level declarations, reporting unbalanced delimiters."""
    text = source.text
    chunks: list[_Chunk] = []
    stack: list[tuple[str, int, int]] = []  # (delimiter, line, column)
    line, line_start = 1, 0
    current: _Chunk | None = None
    for m in _SCAN.finditer(text):
        tok = m.group()
        col = m.start() - line_start + 1
        if tok == "\n":
            line, line_start = line + 1, m.end()
            continue
        if tok in DECLARATION_KEYWORDS and (not stack or col == 1):
            if stack:
                delim, dl, dc = stack[0]
                diags.append(_unclosed(source.path, delim, dl, dc, line, col))
                stack.clear()
                if current is not None:
                    current.unclosed = True
            if current is not None:
                current.end = m.start()
            current = _Chunk(m.start(), len(text), tok)
            chunks.append(current)
            continue
        if current is None:
            if tok.isspace() or tok.startswith("#"):  # a header comment starts no chunk
                continue
            current = _Chunk(m.start(), len(text), "")
            chunks.append(current)
        if tok in _OPEN:
            stack.append((tok, line, col))
            if len(stack) > MAX_NESTING and current.too_deep is None:
                current.too_deep = (line, col)
        elif tok in _CLOSE:
            if stack and stack[-1][0] == _CLOSE[tok]:
                stack.pop()
                continue
            opener = next(
                (i for i in range(len(stack) - 1, -1, -1) if stack[i][0] == _CLOSE[tok]), None
            )
            if opener is not None:  # closes an outer delimiter: the inner ones are unclosed
                delim, dl, dc = stack[opener + 1]
                diags.append(
                    _unclosed(
                        source.path,
                        delim,
                        dl,
                        dc,
                        line,
                        col,
                        f"`{tok}` closes an outer `{_CLOSE[tok]}` here",
                        help=f"add `{_OPEN[delim]}` before this `{tok}`",
                    )
                )
                del stack[opener:]
                current.unclosed = True
            elif stack:
                delim, dl, dc = stack[-1]
                diags.append(
                    make(
                        "E0104",
                        f"mismatched closing delimiter `{tok}`",
                        Span.point(source.path, line, col),
                        label=f"does not close `{delim}`",
                        secondary=[
                            Label(span=Span.point(source.path, dl, dc), message="opened here")
                        ],
                        help=f"close it with `{_OPEN[delim]}`",
                    )
                )
                current.unclosed = True
            else:
                diags.append(
                    make(
                        "E0104",
                        f"unexpected closing delimiter `{tok}`",
                        Span.point(source.path, line, col),
                        label="no matching opening delimiter",
                        help=f"remove the `{tok}`",
                    )
                )
    if stack:
        delim, dl, dc = stack[0]
        diags.append(_unclosed(source.path, delim, dl, dc, None, None))
        if current is not None:
            current.unclosed = True
    return chunks


def _unclosed(
    path: str,
    delim: str,
    line: int,
    col: int,
    at_line: int | None,
    at_col: int | None,
    at_message: str = "next declaration starts here",
    help: str | None = None,
) -> Diagnostic:
    secondary = []
    if at_line is not None and at_col is not None:
        secondary.append(Label(span=Span.point(path, at_line, at_col), message=at_message))
    return make(
        "E0104",
        f"unclosed delimiter `{delim}`",
        Span.point(path, line, col),
        label="this delimiter is never closed",
        secondary=secondary,
        help=help or f"add `{_OPEN[delim]}` where the declaration ends",
    )


def _parse_with_recovery(source: SourceFile) -> ParsedFile:
    result = ParsedFile(source)
    diags = result.diagnostics
    chunks = _chunks(source, diags)
    # A parse error at a stray closing delimiter only repeats the delimiter error.
    stray = {(d.span.line, d.span.column) for d in diags if d.span is not None}
    stray |= {(lb.span.line, lb.span.column) for d in diags for lb in d.secondary}
    text = source.text
    p = parser()
    for index, chunk in enumerate(chunks):
        if chunk.too_deep is not None:
            line, col = chunk.too_deep
            diags.append(
                make(
                    "E0106",
                    f"brackets nest more than {MAX_NESTING} levels deep",
                    Span.point(source.path, line, col),
                    label="too deep here",
                    help="flatten the expression or value; no policy needs this depth",
                )
            )
            continue
        if index == 0 and chunk.keyword != "package":
            diags.append(
                make(
                    "E0107",
                    "file does not start with a package declaration",
                    _first_token_span(source, chunk.start),
                    label="expected `package NAME` before this",
                    help="start the file with `package NAME`",
                )
            )
        start = "package_decl" if chunk.keyword == "package" else "item"
        try:
            tree = p.parse(TextSlice(text, chunk.start, chunk.end), start=start)
        except UnexpectedInput as exc:
            # Lexical errors are local facts; a parse error in a declaration with
            # unbalanced delimiters is a consequence of them and is not reported.
            consequence = isinstance(exc, UnexpectedToken) and chunk.unclosed
            if not consequence and (exc.line, exc.column) not in stray:
                diags.append(syntax_error(source, exc))
            continue
        if start == "package_decl":
            if result.package is None and index == 0:
                result.package = tree
            else:
                diags.append(
                    make(
                        "E0101",
                        "a file has one package declaration, at its start",
                        _tree_span(source.path, tree),
                        label="second package declaration",
                        help="move the declarations of another package into a file of their own",
                    )
                )
        else:
            result.items.append(tree)
    if not chunks:
        diags.append(
            make(
                "E0107",
                "file does not start with a package declaration",
                Span.point(source.path, 1, 1),
                label="empty file",
                help="start the file with `package NAME`",
            )
        )
    return result


def _first_token_span(source: SourceFile, offset: int) -> Span:
    line = source.text.count("\n", 0, offset) + 1
    col = offset - (source.text.rfind("\n", 0, offset) + 1) + 1
    return Span.point(source.path, line, col)


def tree_bounds(tree: Tree[Token]) -> tuple[Token, Token] | None:
    """The first and last token of a subtree.

    Positions are not propagated to every tree node by the parser (that costs
    a third of parse time); spans of subtrees are derived on demand from their
    edge tokens, which always carry positions.
    """
    first = _edge(tree, 0)
    last = _edge(tree, -1)
    if first is None or last is None:
        return None
    return first, last


def _edge(node: Tree[Token] | Token | None, index: int) -> Token | None:
    while isinstance(node, Tree):
        children = [c for c in node.children if c is not None]
        if not children:
            return None
        node = children[0] if index == 0 else children[-1]
    return node


def _tree_span(path: str, tree: Tree[Token]) -> Span:
    bounds = tree_bounds(tree)
    if bounds is None:
        return Span.point(path, 1, 1)
    first, last = bounds
    return Span.make(
        path, first.line or 1, first.column or 1, last.end_line or 1, last.end_column or 1
    )


# ----------------------------------------------------------- error messages


def describe_expected(expected: set[str]) -> str:
    words = terminal_words()
    named = sorted({words.get(t, f"`{t}`") for t in expected})
    if len(named) <= 4:
        return " or ".join(named) if len(named) <= 2 else ", ".join(named[:-1]) + " or " + named[-1]
    keywords = sorted(t for t in expected if t in keyword_terminals())
    others = sorted({words.get(t, t) for t in expected if t not in keyword_terminals()})
    parts = others[:3]
    if keywords:
        parts.append(f"one of {len(keywords)} keywords")
    return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    text = str(token)
    if len(text) > 40:
        text = text[:37] + "..."
    # The contextual lexer reads a keyword as a name where no keyword is acceptable.
    if token.type in keyword_terminals() or str(token) in keyword_terminals().values():
        return f"keyword `{text}`"
    kind = {"NAME": "name", "STRING": "string", "NUMBER": "number", "QUANTITY": "value"}.get(
        token.type, ""
    )
    return f"{kind} `{text}`" if kind else f"`{text}`"


def syntax_error(source: SourceFile, exc: UnexpectedInput) -> Diagnostic:
    """Turn a lark exception into a worded diagnostic with a suggestion."""
    path = source.path
    if isinstance(exc, UnexpectedCharacters):
        line, col = exc.line, exc.column
        char = source.line(line)[col - 1 : col] or "?"
        if char == '"':
            escape = _bad_escape(source.line(line), col - 1)
            if escape is not None:
                return make(
                    "E0311",
                    f"invalid escape `{escape[1]}` in string",
                    Span.point(path, line, escape[0] + 1, len(escape[1])),
                    label="not a JSON escape",
                    help='valid escapes are `\\"`, `\\\\`, `\\/`, `\\b`, `\\f`, `\\n`, `\\r`, '
                    "`\\t` and `\\uXXXX`; write `\\\\` for a backslash",
                )
            return make(
                "E0103",
                "unterminated string",
                Span.point(path, line, col),
                label="string starts here and is not closed on this line",
                help='close the string with `"`; write `\\n` for a line break inside it',
            )
        shown = char if char.isprintable() else f"U+{ord(char):04X}"
        return make(
            "E0102",
            f"invalid character `{shown}`",
            Span.point(path, line, col),
            label="not part of any token",
            help=_char_help(char),
        )
    assert isinstance(exc, UnexpectedToken)
    token = exc.token
    # `accepts` tries each terminal (exact); `expected` is the LALR state's
    # lookahead set, which after a reduction-ready token names far too much.
    expected = set(exc.accepts or exc.expected or ())
    expected_text = describe_expected(expected) if expected else "something else"
    keywords = keyword_terminals()
    if token.type == "$END":
        line = max(1, len(source.lines))
        col = len(source.line(line)) + 1
        return make(
            "E0108",
            f"unexpected end of file, expected {expected_text}",
            Span.point(path, line, col),
            label=f"expected {expected_text}",
        )
    width = max(1, len(str(token))) if token.line == token.end_line else 1
    span = Span.point(path, token.line or 1, token.column or 1, width)
    help_text: str | None = None
    notes: list[str] = []
    expected_kw = [keywords[t] for t in expected if t in keywords]
    if token.type in ("NAME",) or token.type in keywords:
        suggestion = closest(str(token), expected_kw)
        if suggestion and suggestion != str(token):
            help_text = f"did you mean `{suggestion}`?"
    if token.type in keywords and "NAME" in expected:
        help_text = f"`{token}` is a keyword and cannot be used as a name here"
    if expected == {"COLON"} and token.start_pos is not None:
        # A word at the start of a policy item is read as a rule label (`NAME: allow`);
        # when no `:` follows, the word was most likely a misspelled keyword.
        word = _WORD_BEFORE.search(source.text, max(0, token.start_pos - 200), token.start_pos)
        guess = closest(word.group(1), _POLICY_ITEM_KEYWORDS) if word else None
        if word and guess:
            help_text = f"did you mean `{guess}` instead of `{word.group(1)}`?"
    if len(expected_kw) > 4:
        notes.append("expected one of: " + ", ".join(f"`{k}`" for k in sorted(expected_kw)))
    return make(
        "E0101",
        f"unexpected {_describe_token(token)}, expected {expected_text}",
        span,
        label=f"expected {expected_text}",
        help=help_text,
        notes=notes,
    )


_WORD_BEFORE = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)\s*\Z")
_POLICY_ITEM_KEYWORDS = ("allow", "default", "deny", "require", "risk", "strict")
_LENIENT_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_GOOD_ESCAPE = re.compile(r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})')


def _bad_escape(line: str, start: int) -> tuple[int, str] | None:
    """The first invalid escape (offset, text) of a closed string starting at `start`."""
    closed = _LENIENT_STRING.match(line, start)
    if closed is None:
        return None
    index = start + 1
    while index < closed.end() - 1:
        if line[index] == "\\":
            good = _GOOD_ESCAPE.match(line, index)
            if good is None:
                return index, line[index : index + 2]
            index = good.end()
        else:
            index += 1
    return None  # e.g. a raw carriage return inside the quotes


def _char_help(char: str) -> str | None:
    return {
        ";": "statements are not terminated; remove the `;`",
        "'": 'strings use double quotes: "..."',
        "@": None,
        "=": "use `==` to compare",
    }.get(char)
