"""Definition, references, hover and symbols over a checked tree.

Every function here is pure: a snapshot (one check of a tree) and a 1-based
(line, column) in, plain data out.  The server converts positions and URIs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from lark import Token, Tree

from mcpdsl.compile.envoy_authz import Inexpressible, Resource, condition_formula, relevant
from mcpdsl.ir import model as m
from mcpdsl.ir.typecheck import CONDITION_ROOTS, MAPPING_ROOTS, _Checker
from mcpdsl.lsp.index import Key, Reference, Symbol, contains, token_span
from mcpdsl.lsp.workspace import Snapshot
from mcpdsl.source import Span

_KIND_WORDS = {
    "service": "service",
    "pool": "pool",
    "carbon": "carbon block",
    "job": "job",
    "policy": "policy",
    "integration": "integration",
    "gateway": "gateway",
    "provider": "identity provider",
    "mesh": "mesh",
    "server": "decision server",
    "test": "test",
    "tool": "tool",
    "package": "package",
    "rule": "rule",
}


@dataclass(frozen=True)
class Location:
    file: str  # display path in the snapshot's tree
    span: Span


def item_at(snapshot: Snapshot, file: str, line: int, column: int) -> Symbol | Reference | None:
    index = snapshot.indexes.get(file)
    return index.at(line, column) if index else None


def symbols_for(snapshot: Snapshot, key: Key) -> list[Symbol]:
    return [s for index in _indexes(snapshot) for s in index.symbols if s.key == key]


def definition(snapshot: Snapshot, file: str, line: int, column: int) -> list[Location]:
    """Where the name under the cursor is declared (several files for a package)."""
    item = item_at(snapshot, file, line, column)
    if item is None:
        return []
    return [Location(s.span.file, s.span) for s in symbols_for(snapshot, item.key)]


def references(
    snapshot: Snapshot, file: str, line: int, column: int, *, include_declaration: bool = True
) -> list[Location]:
    """Every use of the name under the cursor across the tree, in file order."""
    item = item_at(snapshot, file, line, column)
    if item is None:
        return []
    key = item.key
    out: list[Location] = []
    for index in _indexes(snapshot):
        if include_declaration:
            out.extend(Location(s.span.file, s.span) for s in index.symbols if s.key == key)
        out.extend(Location(r.span.file, r.span) for r in index.references if r.key == key)
    return sorted(set(out), key=lambda loc: (loc.file, loc.span.line, loc.span.column))


def _indexes(snapshot: Snapshot) -> Iterator:  # type: ignore[type-arg]
    for display in sorted(snapshot.indexes):
        yield snapshot.indexes[display]


# ------------------------------------------------------------------ hover


def hover(snapshot: Snapshot, file: str, line: int, column: int) -> tuple[str, Span] | None:
    """Markdown for the thing under the cursor and the span it covers."""
    item = item_at(snapshot, file, line, column)
    if item is not None:
        return _hover_name(snapshot, item), item.span
    expr = _expression_at(snapshot, file, line, column)
    if expr is not None:
        return _hover_expr(expr), expr.span  # type: ignore[return-value]
    token = _token_at(snapshot, file, line, column)
    if token is not None and token.type in ("QUANTITY", "NUMBER", "TIME"):
        return quantity_hover(snapshot, file, line, column, token), token_span(file, token)
    return None


def _hover_name(snapshot: Snapshot, item: Symbol | Reference) -> str:
    targets = symbols_for(snapshot, item.key)
    kind = _KIND_WORDS.get(item.kind, item.kind)
    qualified = (
        item.name if item.kind in ("tool", "package", "rule") else f"{item.key[1]}.{item.name}"
    )
    head = f"```mcp\n{kind} {qualified}\n```"
    if not targets:
        return head + f"\n\nno {kind} `{item.name}` is declared in this tree"
    parts = [head]
    target = targets[0]
    if target.container and target.kind == "tool":
        parts.append(f"exposed by integration `{target.container}`")
    if target.doc:
        parts.append(target.doc)
    if len(targets) > 1 and item.kind != "package":
        parts.append(f"declared {len(targets)} times")
    if item.kind == "package":
        files = sorted({t.span.file for t in targets})
        parts.append("files: " + ", ".join(f"`{f}`" for f in files))
    if item.kind == "rule":
        parts.append(enforcement(snapshot, target))
    parts.append(f"declared in `{target.span.file}:{target.span.line}`")
    return "\n\n".join(parts)


def enforcement(snapshot: Snapshot, symbol: Symbol) -> str:
    """Where a rule is enforced: the OPA bundle always, and the gateway routes it guards."""
    project = snapshot.compilation.project
    policy_name, _, rule_id = symbol.name.partition("/")
    lines = [
        f"**enforced by:** OPA, `opa/{symbol.package}/{policy_name}.rego`"
        f" (decision `{policy_name}/{rule_id}`)"
    ]
    if project is None:
        lines.append("gateway routes: unknown until the tree has no errors")
        return "\n".join(lines)
    rule = next(
        (
            r
            for p in project.policies
            if p.package == symbol.package and p.name == policy_name
            for r in p.rules
            if r.id == rule_id
        ),
        None,
    )
    if rule is None:
        return "\n".join(lines)
    for gateway in project.gateways:
        for route in gateway.routes:
            resource = _route_resource(project, route)
            if not relevant(rule, resource, route):
                continue
            try:
                condition_formula(rule.condition, resource)
                how = "Envoy RBAC" if rule.effect == "deny" else "Envoy RBAC or ext_authz"
            except Inexpressible as exc:
                how = f"Envoy ext_authz -> OPA ({exc})"
            lines.append(f"- gateway `{gateway.name}` route `{route.path}`: {how}")
    if rule.resource.type in (None, "service") and rule.effect == "allow":
        lines.append("- Kubernetes NetworkPolicy of the matching services (allowed sources)")
    return "\n".join(lines)


def _route_resource(project: m.Project, route: m.Route) -> Resource:
    ref = route.target.ref
    if route.target.kind == "service":
        return Resource("service", ref.name)
    for integration in project.integrations:
        if integration.name == ref.name and (ref.package in (None, integration.package)):
            return Resource("tool", integration.tool) if integration.tool else Resource(None, None)
    return Resource(None, None)


def _hover_expr(expr: m.Node) -> str:
    checker = _Checker(CONDITION_ROOTS + MAPPING_ROOTS, "hover", [])
    try:
        kind = checker.type_of(expr)
    except Exception:  # a half-built expression must not break hover
        kind = "any"
    text = f"type: `{kind}`"
    if isinstance(expr, m.Literal_) and expr.unit:
        text += f"\n\nvalue: `{expr.value}` in base units of {expr.unit}"
    if isinstance(expr, m.Attr):
        path = ".".join((expr.root, *expr.path))
        text = f"attribute `{path}`\n\n" + text + " (attributes are dynamic)"
    return text


_CLAUSE_UNITS = {
    "cpu_clause": "cpu (cores; `m` = millicores)",
    "memory_clause": "bytes",
    "gpu_clause": "count",
    "port_clause": "port number",
    "timeout_clause": "duration",
    "timeout_option": "duration",
    "limit_clause": "rate (events per time)",
    "budget_clause": "CO2e mass",
    "energy_clause": "energy",
    "renewable_clause": "percent",
    "target_cpu": "percent of requested cpu",
    "target_memory": "percent of requested memory",
    "listen_clause": "port number",
}


def _token_at(snapshot: Snapshot, file: str, line: int, column: int) -> Token | None:
    parsed = snapshot.parsed.get(file)
    if parsed is None:
        return None
    for item in parsed.items:
        for tok in item.scan_values(lambda v: isinstance(v, Token)):
            if contains(token_span(file, tok), line, column):
                return tok
    return None


def _expression_at(snapshot: Snapshot, file: str, line: int, column: int) -> m.Node | None:
    unit = snapshot.unit(file)
    if unit is None:
        return None
    best: m.Node | None = None
    for root in _expressions(unit):
        for node in _walk(root):
            span = node.span
            if span is None or not contains(span, line, column):
                continue
            if best is None or _size(span) <= _size(best.span):  # type: ignore[arg-type]
                best = node
    return best


def _size(span: Span) -> tuple[int, int]:
    return (span.end_line - span.line, span.end_column - span.column)


def _expressions(unit: m.FileUnit) -> Iterator[m.Node]:
    for decl in unit.decls:
        if isinstance(decl, m.Policy):
            yield from decl.conditions()
        elif isinstance(decl, m.Integration):
            for mapping in decl.mappings:
                yield mapping.expr


def _walk(node: m.Node) -> Iterator[m.Node]:
    yield node
    for name in type(node).model_fields:
        value = getattr(node, name)
        if isinstance(value, m.Node):
            yield from _walk(value)
        elif isinstance(value, tuple):
            for item in value:
                if isinstance(item, m.Node):
                    yield from _walk(item)


# ---------------------------------------------------------------- symbols


def document_symbols(snapshot: Snapshot, file: str) -> list[Symbol]:
    index = snapshot.indexes.get(file)
    return list(index.symbols) if index else []


def workspace_symbols(snapshot: Snapshot, query: str, limit: int = 500) -> list[Symbol]:
    """Declarations whose name contains `query` (case-insensitive), in tree order."""
    needle = query.lower()
    out: list[Symbol] = []
    for index in _indexes(snapshot):
        for s in index.symbols:
            if needle in s.name.lower():
                out.append(s)
                if len(out) >= limit:
                    return out
    return out


def enclosing_clause(snapshot: Snapshot, file: str, line: int, column: int) -> Tree[Token] | None:
    """The innermost clause tree of the parse around a position (for quantity hovers)."""
    parsed = snapshot.parsed.get(file)
    if parsed is None:
        return None
    best: Tree[Token] | None = None
    for item in parsed.items:
        for sub in item.iter_subtrees():
            if str(sub.data) not in _CLAUSE_UNITS:
                continue
            toks = list(sub.scan_values(lambda v: isinstance(v, Token)))
            if not toks:
                continue
            start, end = token_span(file, toks[0]), token_span(file, toks[-1])
            span = Span(file, start.line, start.column, end.end_line, end.end_column)
            if contains(span, line, column):
                best = sub
    return best


def quantity_hover(snapshot: Snapshot, file: str, line: int, column: int, token: Token) -> str:
    clause = enclosing_clause(snapshot, file, line, column)
    text = f"literal `{token}`"
    if clause is not None:
        text += f"\n\nunit: {_CLAUSE_UNITS[str(clause.data)]}"
    return text
