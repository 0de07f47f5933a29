"""Names in one file's syntax tree: what it declares and what it refers to.

The language server answers definition, references, hover, symbols and
rename-free navigation from this index rather than from the IR because the
syntax tree keeps the exact token of every name (the IR keeps one span per
reference, and nothing for the ids inside an entity list), and because it
exists for files that do not lower.  An index is a pure function of one
file's parse, so it is cached with that parse (keyed by content).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from lark import Token, Tree

from mcpdsl.source import SourceFile, Span
from mcpdsl.syntax.parser import ParsedFile, tree_bounds

#: Declaration trees and the kind of symbol their name token declares.
DECLARATIONS = {
    "service_decl": "service",
    "pool_decl": "pool",
    "carbon_decl": "carbon",
    "job_decl": "job",
    "policy_decl": "policy",
    "integration_decl": "integration",
    "gateway_decl": "gateway",
    "provider_decl": "provider",
    "mesh_decl": "mesh",
    "server_decl": "server",
    "test_decl": "test",
}

#: Trees whose `ref` child names a declaration of a known kind.
_REF_KINDS = {
    "scale_decl": "service",
    "balance_decl": "service",
    "reserve_clause": "service",
    "carbon_ref_clause": "carbon",
    "route_to_service": "service",
    "route_to_integration": "integration",
    "given_scale": "service",
    "given_route": "gateway",
    "given_transform": "integration",
}

#: Entity types whose ids name a declaration (agents, users and groups are free).
_ENTITY_KINDS = {"service": "service", "tool": "tool"}

#: Kinds whose names are global to the tree rather than per package.
GLOBAL_KINDS = ("tool", "package")

_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([A-Za-z_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)", re.M)

Key = tuple[str, str, str]  # (kind, package, name); package "" for global kinds


@dataclass(frozen=True)
class Symbol:
    """A declared name: where it is, what it is, and its doc comment."""

    kind: str
    package: str
    name: str
    span: Span  # the name itself
    full: Span  # the whole declaration
    doc: str = ""
    container: str = ""  # the policy of a rule, the integration of a tool

    @property
    def key(self) -> Key:
        return (self.kind, "" if self.kind in GLOBAL_KINDS else self.package, self.name)


@dataclass(frozen=True)
class Reference:
    """A use of a name; `key` is what it names once its package is bound."""

    kind: str
    package: str
    name: str
    span: Span

    @property
    def key(self) -> Key:
        return (self.kind, "" if self.kind in GLOBAL_KINDS else self.package, self.name)


@dataclass
class FileIndex:
    """Every symbol and reference of one file, in source order."""

    path: str
    package: str = ""
    symbols: list[Symbol] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)

    def at(self, line: int, column: int) -> Symbol | Reference | None:
        """The symbol or reference whose name covers a 1-based (line, column)."""
        for symbol in self.symbols:
            if contains(symbol.span, line, column):
                return symbol
        for reference in self.references:
            if contains(reference.span, line, column):
                return reference
        return None


def contains(span: Span, line: int, column: int) -> bool:
    """Whether a position lies in a span, its end included (a cursor after a name)."""
    if (line, column) < (span.line, span.column):
        return False
    return (line, column) <= (span.end_line, span.end_column)


def token_span(path: str, token: Token) -> Span:
    line = token.line or 1
    column = token.column or 1
    end_line = token.end_line or line
    end_column = token.end_column or column + len(token)
    return Span(path, line, column, end_line, end_column)


def tree_span(path: str, tree: Tree[Token]) -> Span | None:
    bounds = tree_bounds(tree)
    if bounds is None:
        return None
    a, b = token_span(path, bounds[0]), token_span(path, bounds[1])
    return Span(path, a.line, a.column, b.end_line, b.end_column)


def unquote(token: Token) -> str:
    text = str(token)
    if token.type != "STRING":
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text.strip('"')
    return value if isinstance(value, str) else text


def doc_comment(source: SourceFile, line: int) -> str:
    """The `#` lines right above `line` (no blank line between), without rulers."""
    lines: list[str] = []
    number = line - 1
    while number >= 1:
        text = source.line(number).strip()
        if not text.startswith("#"):
            break
        body = text[1:].strip()
        if not body.strip("-=#* "):  # a ruler such as `# -----`
            if lines:
                break
            number -= 1
            continue
        lines.append(body.lstrip("-= ") if body.startswith("--") else body)
        number -= 1
    return "\n".join(reversed(lines))


def build_index(parsed: ParsedFile) -> FileIndex:
    """The index of one parsed file (items that failed to parse are simply absent)."""
    source = parsed.source
    path = source.path
    package = ""
    index = FileIndex(path)
    if parsed.package is not None:
        names = [t for t in parsed.package.children if isinstance(t, Token) and t.type == "NAME"]
        if names:
            package = str(names[0])
            span = token_span(path, names[0])
            full = tree_span(path, parsed.package) or span
            index.symbols.append(Symbol("package", package, package, span, full))
    if parsed.package is None:  # recovery parses items only: find the package line itself
        match = _PACKAGE.search(source.text)
        if match is not None:
            package = match.group(1)
            line = source.text.count("\n", 0, match.start(1)) + 1
            column = match.start(1) - (source.text.rfind("\n", 0, match.start(1)) + 1) + 1
            span = Span(path, line, column, line, column + len(package))
            index.symbols.append(Symbol("package", package, package, span, span))
    index.package = package
    for item in parsed.items:
        _index_item(index, source, item)
    return index


def _index_item(index: FileIndex, source: SourceFile, item: Tree[Token]) -> None:
    path, package = source.path, index.package
    if item.data == "import_decl":
        strings = [t for t in item.children if isinstance(t, Token) and t.type == "STRING"]
        if strings:
            name = unquote(strings[0])
            index.imports.append(name)
            index.references.append(Reference("package", "", name, token_span(path, strings[0])))
        return
    kind = DECLARATIONS.get(str(item.data))
    full = tree_span(path, item)
    if kind is not None and full is not None:
        token = _name_token(item)
        if token is not None:
            doc = doc_comment(source, full.line)
            name = unquote(token)
            index.symbols.append(
                Symbol(kind, package, name, token_span(path, token), full, doc=doc)
            )
            if kind == "policy":
                _index_rules(index, source, item, name)
            if kind == "integration":
                _index_tools(index, source, item, name)
    for sub in item.iter_subtrees_topdown():
        _index_refs(index, sub)


def _name_token(item: Tree[Token]) -> Token | None:
    for child in item.children[1:]:
        if isinstance(child, Token) and child.type in ("NAME", "STRING"):
            return child
        if isinstance(child, Token) and child.type == "LBRACE":
            return None
    return None


def _index_rules(index: FileIndex, source: SourceFile, policy: Tree[Token], name: str) -> None:
    counters = {"allow": 0, "deny": 0}
    position = 0
    for child in policy.children:
        if not isinstance(child, Tree) or child.data != "rule":
            continue
        position += 1
        effect = next(
            (t for t in child.children if isinstance(t, Token) and t.type in ("ALLOW", "DENY")),
            None,
        )
        if effect is None:
            continue
        counters[str(effect)] = counters.get(str(effect), 0) + 1
        label = child.children[0]
        if isinstance(label, Token) and label.type == "NAME":
            rule_id, token = str(label), label
        else:
            rule_id, token = f"{effect}-{position}", effect
        full = tree_span(source.path, child)
        if full is None:
            continue
        index.symbols.append(
            Symbol(
                "rule",
                index.package,
                f"{name}/{rule_id}",
                token_span(source.path, token),
                full,
                doc=doc_comment(source, full.line),
                container=name,
            )
        )


def _index_tools(index: FileIndex, source: SourceFile, integration: Tree[Token], name: str) -> None:
    for clause in integration.children:
        if isinstance(clause, Tree) and clause.data == "expose_clause":
            strings = [t for t in clause.children if isinstance(t, Token) and t.type == "STRING"]
            if strings:
                full = tree_span(source.path, clause) or token_span(source.path, strings[0])
                index.symbols.append(
                    Symbol(
                        "tool",
                        index.package,
                        unquote(strings[0]),
                        token_span(source.path, strings[0]),
                        full,
                        doc=doc_comment(source, full.line),
                        container=name,
                    )
                )


def _index_refs(index: FileIndex, tree: Tree[Token]) -> None:
    path = index.path
    data = str(tree.data)
    if data == "accept_clause":
        for child in tree.children:
            if isinstance(child, Tree) and child.data == "ref":
                index.references.append(_ref(index, "provider", child))
    elif data in _REF_KINDS:
        for child in tree.children:
            if isinstance(child, Tree) and child.data == "ref":
                index.references.append(_ref(index, _REF_KINDS[data], child))
                break
    elif data == "pool_ref_clause":
        names = [t for t in tree.children if isinstance(t, Token) and t.type == "NAME"]
        if names:
            index.references.append(
                Reference("pool", index.package, str(names[0]), token_span(path, names[0]))
            )
    elif data in ("one_entity", "entity_list"):
        entity = tree.children[0]
        if not isinstance(entity, Tree):
            return
        kind = _ENTITY_KINDS.get(str(entity.children[0]))
        if kind is None:
            return
        for child in tree.children[1:]:
            if isinstance(child, Tree) and child.data == "ref":
                index.references.append(_ref(index, kind, child))
            elif isinstance(child, Token) and child.type == "STRING":
                qualifier, _, name = unquote(child).rpartition(".")
                if kind == "tool":
                    qualifier, name = "", unquote(child)
                index.references.append(
                    Reference(kind, qualifier or index.package, name, token_span(path, child))
                )


def _ref(index: FileIndex, kind: str, ref: Tree[Token]) -> Reference:
    names = [t for t in ref.children if isinstance(t, Token)]
    names = [t for t in names if t.type == "NAME"]
    last = names[-1]
    if kind == "tool":  # `tool crm.lookup`: the dotted name is the tool id itself
        first = token_span(index.path, names[0])
        end = token_span(index.path, last)
        span = Span(index.path, first.line, first.column, end.end_line, end.end_column)
        return Reference(kind, "", ".".join(str(t) for t in names), span)
    package = str(names[0]) if len(names) == 2 else index.package
    span = token_span(index.path, last)
    if len(names) == 2:
        first = token_span(index.path, names[0])
        span = Span(index.path, first.line, first.column, span.end_line, span.end_column)
    return Reference(kind, package, str(last), span)
