"""The canonical layout: syntax tree (with anchored comments) to lines.

docs/fmt.md states the rules for users; in short:

- 2-space indentation; `package`, the imports, then the declarations in source
  order, separated by one blank line; one clause per line; a blank line before
  an item that starts with a comment;
- alignment in runs of one-line items: the value after the first word
  (`ALIGNED` kinds), the `{` of `region`/`quota`/`reserve` and what follows a
  `route` path, a `map`'s `=`, the effect after a rule's label, the value after
  `key:` in broken `{ }` values, and trailing comments;
- a policy rule is one line when it fits (and holds no comment), else its head,
  then `on ...` and `when/unless ...` on continuation lines indented 2 more;
  policy items are also separated by a blank line when either takes several
  lines;
- `{ ... }` and `[ ... ]` values are flat when they fit in 100 columns and hold
  no comment (a test request's attributes never are), else one element per line;
- expressions: single spaces around binary operators, the fewest parentheses
  that keep the tree; a condition whose top-level `and`/`or` chain does not fit
  (or holds a comment) is broken before each operator;
- every token is printed exactly as written.

Every layout decision depends only on the tree, the comments' anchors and
widths computed from them, never on the input's whitespace (but for the blank
line that detaches a comment, see `comments.py`); and a decision
that a comment forces is taken so that the comment ends up where the next run
takes the same decision (see `_needs_break`).  That is what makes the output a
fixed point.
"""

from __future__ import annotations

from collections.abc import Callable

from lark import Token, Tree

from mcpdsl.fmt.comments import BLANK, Comments
from mcpdsl.fmt.layout import INDENT, MAX_WIDTH, Emitter, Line, finish

# Declaration kinds whose simple clauses get their values aligned.
ALIGNED = {
    "service_decl",
    "scale_decl",
    "pool_decl",
    "balance_decl",
    "carbon_decl",
    "job_decl",
    "integration_decl",
    "gateway_decl",
    "provider_decl",
    "mesh_decl",
    "server_decl",
}

# Clauses that read as a sentence (`on redis down deny`): never split into columns.
_UNALIGNED = {"default_clause", "require_clause", "store_down_clause"}

# Clause kinds whose settings block `{ ... }` is aligned too, as a second column
# (`route` aligns what follows its path).
_SECOND_COLUMN = {"region_clause", "quota_clause", "reserve_clause"}

# Binding strength of expression nodes (higher binds tighter).
_OR, _AND, _NOT, _CMP, _SUM, _PRODUCT, _COALESCE, _UNARY, _ATOM = range(1, 10)
_LEVELS = {
    "or_expr": _OR,
    "and_expr": _AND,
    "not_op": _NOT,
    "compare": _CMP,
    "member": _CMP,
    "not_member": _CMP,
    "in_cidr": _CMP,
    "glob_match": _CMP,
    "default_op": _COALESCE,
    "negate": _UNARY,
}
_EXPR_NODES = set(_LEVELS) | {"arith", "atom", "call", "list_expr"}

# Bracketed values: (commas when broken, spaces inside the brackets when flat).
_BRACKETS = {
    "list": (True, False),
    "list_literal": (True, False),
    "object": (True, True),
    "object_literal": (True, True),
    "input_schema": (True, True),  # `expose tool ... input { name: type, name?: type }`
    "settings": (False, True),
    "attributes": (False, True),
}

# Tokens glued to what comes before them / after them in the generic layout.
_GLUE_BEFORE = {"COMMA", "COLON", "DOT", "DOTDOT", "RPAR", "RBRACKET", "QMARK"}
_GLUE_AFTER = {"DOT", "DOTDOT", "LPAR", "LBRACKET", "DOLLAR"}


def _is_tok(node: object, *types: str) -> bool:
    return isinstance(node, Token) and (not types or node.type in types)


def _level(node: Tree[Token] | Token) -> int:
    if isinstance(node, Token):
        return _ATOM
    if node.data == "arith":
        ops = [c for c in node.children if _is_tok(c, "PLUS", "MINUS", "STAR", "SLASH")]
        return _SUM if _is_tok(ops[0], "PLUS", "MINUS") else _PRODUCT
    return _LEVELS.get(str(node.data), _ATOM)


def _unwrap(node: Tree[Token] | Token) -> tuple[Tree[Token] | Token, list[Token], list[Token]]:
    """Strip the parentheses of `atom` nodes: (inner, opening tokens, closing tokens)."""
    opens: list[Token] = []
    closes: list[Token] = []
    while isinstance(node, Tree) and node.data == "atom":
        kids = [c for c in node.children if c is not None]
        opens.append(kids[0])  # type: ignore[arg-type]
        closes.insert(0, kids[-1])  # type: ignore[arg-type]
        node = kids[1]
    return node, opens, closes


class Printer:
    def __init__(self, comments: Comments | None) -> None:
        self.comments = comments
        self.em = Emitter(comments)

    # ------------------------------------------------------------ file

    def file(self, tree: Tree[Token]) -> list[str]:
        em = self.em
        package = tree.children[0]
        items = [c for c in tree.children[1:] if isinstance(c, Tree)]
        imports = [i for i in items if i.data == "import_decl"]
        decls = [i for i in items if i.data != "import_decl"]
        groups: list[list[Line]] = []
        start = len(em.lines)
        em.line(0)
        self.inline(package, 0)  # type: ignore[arg-type]
        groups.append(em.lines[start:])
        if imports:
            start = len(em.lines)
            for item in imports:
                em.line(0)
                self.inline(item, 0)
            groups.append(em.lines[start:])
        for decl in decls:
            start = len(em.lines)
            self.declaration(decl, 0)
            groups.append(em.lines[start:])
        out: list[str] = []
        for i, group in enumerate(groups):
            if i:
                out.append("")
            for line in group:
                out.extend(finish(line))
        tail = list(em.pending)
        em.pending = []
        if self.comments is not None:
            tail.extend(self.comments.tail)
            self.comments.tail = []
        while tail and tail[-1] == BLANK:
            tail.pop()
        if tail:
            out.append("")
            for comment in tail:
                if comment != BLANK or out[-1] != "":
                    out.append(comment)
        return out

    # ---------------------------------------------------- declarations

    def declaration(self, node: Tree[Token], indent: int) -> None:
        kids = node.children
        if not any(_is_tok(c, "LBRACE") for c in kids):  # pragma: no cover - grammar has none
            self.em.line(indent)
            self.inline(node, indent)
            return
        brace = next(i for i, c in enumerate(kids) if _is_tok(c, "LBRACE"))
        self.em.line(indent)
        for child in kids[:brace]:
            self.inline(child, indent)
        items = [c for c in kids[brace + 1 : -1] if isinstance(c, Tree)]
        self.block(
            kids[brace],  # type: ignore[arg-type]
            items,
            kids[-1],  # type: ignore[arg-type]
            indent,
            align=node.data in ALIGNED or node.data == "policy_decl",
            spaced=node.data == "policy_decl",
        )

    def block(
        self,
        lbrace: Token,
        items: list[Tree[Token]],
        rbrace: Token,
        indent: int,
        *,
        align: bool = False,
        spaced: bool = False,
    ) -> None:
        """`{` at the end of the current line, one item per line, `}` on its own line."""
        em = self.em
        em.tok(lbrace)
        if not items and not (self.comments and self.comments.has_leading(rbrace)):
            em.tok(rbrace, glue=True)
            return
        inner = indent + INDENT
        rendered: list[list[Line]] = []
        for item in items:
            start = len(em.lines)
            self.clause(item, inner)
            rendered.append(em.lines[start:])
            del em.lines[start:]
        blank = [
            bool(i)
            and (
                _starts_with_comment(lines)
                or (spaced and (len(rendered[i - 1]) > 1 or len(lines) > 1))
            )
            for i, lines in enumerate(rendered)
        ]
        em.lines.extend(_arrange(rendered, blank, align=align))
        em.line(indent, closer=True)
        em.tok(rbrace)

    def clause(self, node: Tree[Token], indent: int) -> None:
        data = node.data
        if data == "rule":
            self.rule(node, indent)
            return
        if data in ("risk_block", "map_clause", "tls_clause"):
            kids = node.children
            self.em.line(indent)
            self.em.tok(kids[0])  # type: ignore[arg-type]
            items = [c for c in kids if isinstance(c, Tree)]
            self.block(kids[1], items, kids[-1], indent, align=data != "risk_block")  # type: ignore[arg-type]
            return
        line = self.em.line(indent)
        if data in ("risk_term", "mapping", "require_clause"):
            self.conditional(node, indent)
        else:
            self.inline(node, indent)
        if data == "mapping":
            line.align_after = next(
                (i - 1 for i, p in enumerate(line.pieces) if p.text == "=" and i), None
            )
        elif _is_tok(node.children[0]) and data not in _UNALIGNED:
            line.align_after = 0
            line.kind = str(data)
            if data == "route_clause":
                # after the path: `route "/v1/**"` or `route prefix "/v1"`
                line.column2 = 2 if _is_tok(node.children[1], "PREFIX") else 1
            elif data in _SECOND_COLUMN:
                line.column2 = next(
                    (i - 1 for i, p in enumerate(line.pieces) if _is_tok(p.source, "LBRACE")), None
                )

    def conditional(self, node: Tree[Token], indent: int) -> None:
        """`0.4 when EXPR`, `key = EXPR`, `require mfa when EXPR`: the expression is last."""
        kids = [c for c in node.children if c is not None]
        for child in kids[:-1]:
            self.inline(child, indent)
        self.condition(kids[-1], indent)

    def rule(self, node: Tree[Token], indent: int) -> None:
        """A rule on one line when it fits, else `on` and `when` on continuation lines."""
        em = self.em
        label, colon, effect, principal, arrow, resource, on, cond = node.children
        line = em.line(indent)
        if label is not None:
            em.tok(label)  # type: ignore[arg-type]
            em.tok(colon, glue=True)  # type: ignore[arg-type]
        em.tok(effect)  # type: ignore[arg-type]
        self.inline(principal, indent)
        em.tok(arrow)  # type: ignore[arg-type]
        self.inline(resource, indent)
        if self._rule_fits(node):
            if label is not None:
                line.align_after = 1
            if on is not None:
                self.inline(on, indent)
            if cond is not None:
                assert isinstance(cond, Tree)
                em.tok(cond.children[0])  # type: ignore[arg-type]
                self.expr(cond.children[1], 0)
            return
        if on is not None:
            em.line(indent + INDENT)
            self.inline(on, indent + INDENT)
        if cond is not None:
            assert isinstance(cond, Tree)
            em.line(indent + INDENT)
            em.tok(cond.children[0])  # type: ignore[arg-type]
            self.condition(cond.children[1], indent + INDENT)

    def _rule_fits(self, node: Tree[Token]) -> bool:
        """Whether the rest of a rule stays on its first line (see `_break_chain`)."""
        on, cond = node.children[6], node.children[7]
        if on is None and cond is None:
            return True
        if self.comments is None:
            return True
        rest = [c for c in (on, cond) if c is not None]
        probe = Printer(self.comments.subset(node))
        probe.em.line(self.em.current.indent)
        prefix = [p.bare() for p in self.em.current.pieces]
        prefix[-1].trailing = list(self.em.current.pieces[-1].trailing)  # the head's end
        probe.em.current.pieces = list(prefix)
        for part in rest:
            assert isinstance(part, Tree)
            if part.data == "on_clause":
                probe.inline(part, 0)
            else:
                probe.em.tok(part.children[0])  # type: ignore[arg-type]
                probe.expr(part.children[1], 0)
        first = rest[0].children[0]  # type: ignore[union-attr]
        return not _needs_break(probe.em.current, len(prefix) - 1, first)  # type: ignore[arg-type]

    # ------------------------------------------------------ generic

    def inline(self, node: Tree[Token] | Token | None, indent: int) -> None:
        em = self.em
        if node is None:
            return
        if isinstance(node, Token):
            em.tok(node, glue=node.type in _GLUE_BEFORE)
            if node.type in _GLUE_AFTER:
                em.glue_next = True
            return
        data = str(node.data)
        if data in ("path", "key_path", "ref", "range"):
            for i, child in enumerate(c for c in node.children if c is not None):
                if isinstance(child, Tree):
                    self.inline(child, indent)
                else:
                    em.tok(child, glue=i > 0)
                if i > 0 or _is_tok(child, "DOLLAR"):
                    em.glue_next = True
            em.glue_next = False
            return
        if data in _EXPR_NODES:
            self.expr(node, 0)
            return
        if data in _BRACKETS:
            self.bracketed(node, indent)
            return
        if data == "time_window":
            start, dash, end, zone = node.children
            em.tok(start)  # type: ignore[arg-type]
            em.tok(dash, glue=True)  # type: ignore[arg-type]
            em.tok(end, glue=True)  # type: ignore[arg-type]
            self.inline(zone, indent)
            return
        if data == "entity_list":
            kids = [c for c in node.children if c is not None]
            self.inline(kids[0], indent)
            em.tok(kids[1])  # type: ignore[arg-type]
            em.glue_next = True
            self.separated(kids[2:-1], indent, flat=True)
            em.tok(kids[-1], glue=True)  # type: ignore[arg-type]
            return
        for child in node.children:
            self.inline(child, indent)

    def separated(self, kids: list[Tree[Token] | Token], indent: int, *, flat: bool) -> None:
        """Elements separated by commas (source commas dropped, canonical ones printed)."""
        elements = [k for k in kids if not _is_tok(k, "COMMA")]
        for k in kids:
            if _is_tok(k, "COMMA"):
                self.em.drop(k)  # type: ignore[arg-type]
                continue
            self.inline(k, indent)
            if flat and k is not elements[-1]:
                self.em.text(",", glue=True)

    # ----------------------------------------------------- brackets

    def bracketed(self, node: Tree[Token], indent: int) -> None:
        em = self.em
        commas, spaced = _BRACKETS[str(node.data)]
        kids = [c for c in node.children if c is not None]
        opening, closing, inner = kids[0], kids[-1], kids[1:-1]
        assert isinstance(opening, Token) and isinstance(closing, Token)
        elements = [k for k in inner if not _is_tok(k, "COMMA")]
        if self._flat_fits(node, indent):
            em.tok(opening)
            if not elements:
                for k in inner:
                    em.drop(k)  # type: ignore[arg-type]
                em.tok(closing, glue=True)
                return
            em.glue_next = not spaced
            self.separated(inner, indent, flat=True)
            em.tok(closing, glue=not spaced)
            return
        em.tok(opening)
        rendered: list[list[Line]] = []
        for k in inner:
            if _is_tok(k, "COMMA"):
                em.drop(k)  # type: ignore[arg-type]
                continue
            start = len(em.lines)
            line = em.line(indent + INDENT)
            self.inline(k, indent + INDENT)
            if commas:
                em.text(",", glue=True)
            if isinstance(k, Tree) and k.data == "setting":
                line.align_after = 0
            elif isinstance(k, Tree) and k.data in (
                "pair",
                "literal_pair",
                "attribute",
                "input_field",
            ):
                line.align_after = next(
                    (i for i, p in enumerate(line.pieces) if _is_tok(p.source, "COLON")), None
                )
            rendered.append(em.lines[start:])
        del em.lines[len(em.lines) - sum(map(len, rendered)) :]
        em.lines.extend(_arrange(rendered, [False] * len(rendered), align=True))
        em.line(indent, closer=True)
        em.tok(closing)

    def _flat_fits(self, node: Tree[Token], indent: int) -> bool:
        if self.comments is None:
            return True
        if node.data == "attributes" and any(isinstance(c, Tree) for c in node.children):
            return False  # a test request's attributes: one per line, like a request body
        if self.comments.has_inner(node):
            return False
        probe = Printer(None)
        probe.em.line(self.em.current.indent)
        probe.em.current.pieces = list(self.em.current.pieces)
        probe.em.glue_next = self.em.glue_next
        probe.inline(node, indent)
        return probe.em.current.width() <= MAX_WIDTH

    # --------------------------------------------------- expressions

    def condition(self, node: Tree[Token] | Token, indent: int) -> None:
        """An expression at the end of a line; a long `and`/`or` chain is broken per operand."""
        em = self.em
        inner, opens, closes = _unwrap(node)
        if not (isinstance(inner, Tree) and inner.data in ("or_expr", "and_expr")):
            self.expr(node, 0)
            return
        if not self._break_chain(node, inner):
            self.expr(node, 0)
            return
        for tok in opens:
            em.drop(tok)
        level = _level(inner)
        for i, child in enumerate(inner.children):
            if _is_tok(child, "OR", "AND"):
                em.line(indent + INDENT)
                em.tok(child)  # type: ignore[arg-type]
            elif i and level == _OR and _level(_unwrap(child)[0]) == _AND:
                # an `and` chain inside a broken `or` chain needs no parentheses,
                # so it may be broken in turn, one level deeper
                self.condition(child, em.current.indent)
            else:
                self.expr(child, level + 1)
        for tok in closes:
            em.drop(tok)

    def _break_chain(self, whole: Tree[Token] | Token, chain: Tree[Token]) -> bool:
        """Break when the chain does not fit, or when a comment would land between operands.

        The decision is taken on a trial flat layout (with a copy of the comments,
        so that dropped parentheses and commas hand theirs on as they will): a
        comment on or after the first operator, or one ending the first operand,
        can only keep its place if the chain is broken.  A second run sees those
        comments in the same places and takes the same decision.
        """
        if self.comments is None:
            return False
        probe = Printer(self.comments.subset(whole))
        probe.em.line(self.em.current.indent)
        prefix = [p.bare() for p in self.em.current.pieces]
        probe.em.current.pieces = list(prefix)
        probe.em.glue_next = self.em.glue_next
        probe.expr(whole, 0)
        first = next(c for c in chain.children if _is_tok(c, "OR", "AND"))
        return _needs_break(probe.em.current, len(prefix), first)  # type: ignore[arg-type]

    def expr(self, node: Tree[Token] | Token, min_level: int) -> None:
        em = self.em
        inner, opens, closes = _unwrap(node)
        for tok in opens:
            em.drop(tok)
        parens = _level(inner) < min_level
        if parens:
            em.text("(")
            em.glue_next = True
        self._expr_inner(inner)
        if parens:
            em.text(")", glue=True)
        for tok in closes:
            em.drop(tok)

    def _expr_inner(self, node: Tree[Token] | Token) -> None:
        em = self.em
        if isinstance(node, Token):
            em.tok(node)
            return
        data = str(node.data)
        kids = [c for c in node.children if c is not None]
        level = _level(node)
        if data in ("or_expr", "and_expr"):
            for child in kids:
                if _is_tok(child, "OR", "AND"):
                    em.tok(child)  # type: ignore[arg-type]
                else:
                    self.expr(child, level + 1)
        elif data == "not_op":
            em.tok(kids[0])  # type: ignore[arg-type]
            self.expr(kids[1], _NOT)
        elif data in ("compare", "member", "not_member", "in_cidr", "glob_match", "arith"):
            left, *ops, right = kids
            arith = data == "arith"
            self.expr(left, level if arith else _SUM)
            for op in ops:
                em.tok(op)  # type: ignore[arg-type]
            if data in ("in_cidr", "glob_match"):
                em.tok(right)  # type: ignore[arg-type]
            else:
                self.expr(right, level + 1 if arith else _SUM)
        elif data == "default_op":
            left, op, right = kids
            self.expr(left, _COALESCE)
            em.tok(op)  # type: ignore[arg-type]
            self.expr(right, _UNARY)
        elif data == "negate":
            em.tok(kids[0])  # type: ignore[arg-type]
            operand = _unwrap(kids[1])[0]
            # `- -x`, not `--x`
            em.glue_next = not (isinstance(operand, Tree) and operand.data == "negate")
            self.expr(kids[1], _UNARY)
        elif data == "call":
            em.tok(kids[0])  # type: ignore[arg-type]
            em.tok(kids[1], glue=True)  # type: ignore[arg-type]
            em.glue_next = True
            self._args(kids[2:-1])
            em.tok(kids[-1], glue=True)  # type: ignore[arg-type]
        elif data == "list_expr":
            em.tok(kids[0])  # type: ignore[arg-type]
            em.glue_next = True
            self._args(kids[1:-1])
            em.tok(kids[-1], glue=True)  # type: ignore[arg-type]
        else:  # path, true, false, risk_ref
            self.inline(node, 0)

    def _args(self, kids: list[Tree[Token] | Token]) -> None:
        elements = [k for k in kids if not _is_tok(k, "COMMA")]
        for k in kids:
            if _is_tok(k, "COMMA"):
                self.em.drop(k)  # type: ignore[arg-type]
                continue
            self.expr(k, 0)
            if k is not elements[-1]:
                self.em.text(",", glue=True)


def _needs_break(line: Line, start: int, first: Token) -> bool:
    """Whether a trial one-line layout must be broken before `first` (and its kind).

    True when the line is too wide, or when a comment sits where only the
    broken layout keeps it: on or after `first`, or trailing the piece before
    it (but not trailing the whole line).  Comments elsewhere move above the
    line, where a second run finds them outside the construct: the decision
    is the same on the formatter's own output.
    """
    if line.width() > MAX_WIDTH:
        return True
    pieces = line.pieces[start:]
    index = next(i for i, p in enumerate(pieces) if p.source is first)
    last = len(pieces) - 1
    if pieces[index - 1].trailing:
        return True
    return any(p.leading or (i < last and p.trailing) for i, p in enumerate(pieces) if i >= index)


def _starts_with_comment(lines: list[Line]) -> bool:
    first = finish(lines[0])[0] if lines else "x"
    return first == "" or first.lstrip().startswith("#")


def _arrange(rendered: list[list[Line]], blank: list[bool], *, align: bool) -> list[Line]:
    """The lines of a block's items: blank lines where asked, values and comments aligned.

    Alignment runs end at a blank line, at an item that takes several lines and
    at an item that starts with a comment.
    """
    start = 0
    for i in range(1, len(rendered) + 1):
        if i == len(rendered) or blank[i] or _starts_with_comment(rendered[i]):
            if align:
                _align(rendered[start:i])
            _align_comments(rendered[start:i])
            start = i
    out: list[Line] = []
    for lines, gap in zip(rendered, blank, strict=True):
        if gap:
            out.append(Line(0))
        out.extend(lines)
    return out


def _align_comments(rendered: list[list[Line]]) -> None:
    """Start the trailing comments of consecutive one-line items in one column."""
    run: list[Line] = []
    for lines in [*rendered, []]:
        if len(lines) == 1 and lines[0].pieces[-1].trailing:
            run.append(lines[0])
            continue
        if len(run) > 1:
            column = max(line.width() for line in run) + 2
            for line in run:
                line.comment_column = column
        run = []


def _align(rendered: list[list[Line]]) -> None:
    """Pad the first word of runs of consecutive one-line clauses to a common width.

    Within such a run, consecutive clauses of one kind that have a second
    column (`region "eu-north-1" {`, `route "/v1/**" ->`) align it too.
    """
    run: list[Line] = []
    for lines in [*rendered, []]:
        if len(lines) == 1 and lines[0].align_after is not None:
            run.append(lines[0])
            continue
        valued = [line for line in run if len(line.pieces) > line.align_after + 1]  # type: ignore[operator]
        _pad(valued, lambda line: line.align_after)  # type: ignore[arg-type,return-value]
        group: list[Line] = []
        for line in [*run, None]:
            if (
                line is not None
                and line.column2 is not None
                and (not group or group[0].kind == line.kind)
            ):
                group.append(line)
                continue
            _pad(group, lambda line: line.column2)  # type: ignore[arg-type,return-value]
            group = [line] if line is not None and line.column2 is not None else []
        run = []


def _pad(lines: list[Line], point: Callable[[Line], int]) -> None:
    if len(lines) < 2:
        return
    width = max(line.head_width(point(line)) for line in lines)
    for line in lines:
        line.pads[point(line)] = (
            line.pads.get(point(line), 0) + width - line.head_width(point(line))
        )
