"""Completion: what may be typed at the cursor.

The text before the cursor usually does not parse (it is being typed), so the
context comes from a light scan of it: the stack of open blocks (which
declaration or nested block the cursor is in), the word being typed and the
word before it.  The candidates are keywords valid in that block, declared
names of the kind the previous keyword expects, attribute roots and their
known fields inside conditions, and unit suffixes right after a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mcpdsl.ir import args, stats
from mcpdsl.ir.typecheck import CONDITION_ROOTS, NOW_FIELDS
from mcpdsl.lsp.workspace import Snapshot
from mcpdsl.syntax.parser import DECLARATION_KEYWORDS

#: Clause keywords per declaration, from the grammar's `*_clause` alternatives.
CLAUSES: dict[str, tuple[str, ...]] = {
    "service": (
        "image", "port", "cpu", "memory", "gpu", "tier", "regions", "identity", "labels",
        "pool", "namespace", "replicas", "stateful", "storage", "team", "env",
    ),
    "scale": ("replicas", "target", "up", "down", "during", "predict", "expected"),
    "pool": ("tier", "node", "nodes", "quota", "reserve", "regions"),
    "balance": ("strategy", "affinity", "health", "eject", "failover", "limit", "connections"),
    "carbon": ("budget", "renewable", "intensity", "region"),
    "job": (
        "image", "cpu", "memory", "gpu", "energy", "runs", "window", "regions", "carbon",
        "pool", "namespace", "team",
    ),
    "policy": ("default", "allow", "deny", "risk", "require"),
    "integration": ("expose", "call", "timeout", "retry", "limit", "map", "description"),
    "gateway": ("listen", "route", "limit", "hosts", "tls", "accept", "trust"),
    "provider": ("issuer", "jwks", "audiences", "skew", "claims", "mfa", "type"),
    "mesh": ("trust",),
    "server": (
        "image", "namespace", "replicas", "target", "cpu", "memory", "redis", "on",
    ),
    "tls": ("cert", "clients", "ca"),
    "test": ("request", "given", "expect"),
}  # fmt: skip

#: Fields the language defines for each attribute root (others are free-form).
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "principal": ("type", "id", "groups", "email"),
    "resource": ("type", "id"),
    "source": ("namespace", "ip"),
    "request": ("path", "method", "headers", "auth"),
    "context": (),
    "now": NOW_FIELDS,
    stats.ROOT: tuple(f"{stats.SCOPE}.{f}" for f in stats.FIELDS),
}

FUNCTIONS = ("lower", "upper", "len", "startswith", "endswith", "contains")
EXPRESSION_WORDS = ("and", "or", "not", "in", "matches", "cidr", "true", "false")

UNITS: dict[str, str] = {
    "m": "millicores (cpu) or minutes (duration)",
    "ms": "milliseconds",
    "s": "seconds",
    "min": "minutes",
    "h": "hours",
    "d": "days",
    "Ki": "kibibytes",
    "Mi": "mebibytes",
    "Gi": "gibibytes",
    "Ti": "tebibytes",
    "%": "percent",
    "/s": "per second",
    "/m": "per minute",
    "/h": "per hour",
    "/d": "per day",
    "Wh": "watt-hours",
    "kWh": "kilowatt-hours",
    "MWh": "megawatt-hours",
    "W": "watts",
    "kW": "kilowatts",
    "g": "grams CO2e",
    "kg": "kilograms CO2e",
    "t": "tonnes CO2e",
    "g/kWh": "carbon intensity",
}

#: After these words, a name of this kind is expected (per enclosing block).
_NAME_AFTER: dict[tuple[str, str], str] = {
    ("", "scale"): "service",
    ("", "balance"): "service",
    ("service", "pool"): "pool",
    ("job", "pool"): "pool",
    ("job", "carbon"): "carbon",
    ("pool", "reserve"): "service",
    ("policy", "service"): "service",
    ("gateway", "service"): "service",
    ("gateway", "integration"): "integration",
    ("test", "service"): "service",
    ("test", "integration"): "integration",
}

_SCAN = re.compile(r'#[^\n]*|"(?:[^"\\\n]|\\.)*"?|[A-Za-z_$][A-Za-z0-9_-]*|[0-9][\w.%/]*|->|\S')
_CONDITION_START = {"when", "unless", "and", "or", "not", "(", ",", "==", "!=", "<", ">", "["}


@dataclass(frozen=True)
class Candidate:
    label: str
    kind: str  # keyword, name, attribute, function, unit, package, tool
    detail: str = ""


@dataclass(frozen=True)
class Context:
    block: str  # "" at top level, else the declaration keyword or nested block word
    declaration: str  # the enclosing declaration keyword ("" at top level)
    prefix: str  # the partial word before the cursor
    previous: str  # the word or symbol before it
    line_start: bool  # the prefix is the first word on its line
    in_string: str | None  # the text of an unclosed string before the cursor
    in_comment: bool


def context_at(text: str, line: int, column: int) -> Context:
    """The completion context at a 1-based (line, column) of `text`."""
    lines = text.split("\n")
    before_lines = lines[: line - 1]
    current = lines[line - 1][: column - 1] if line - 1 < len(lines) else ""
    before = "\n".join([*before_lines, current])
    stack: list[str] = []
    declaration = ""
    words: list[str] = []
    in_string: str | None = None
    in_comment = False
    for match in _SCAN.finditer(before):
        tok = match.group()
        in_string, in_comment = None, False
        if tok.startswith("#"):
            in_comment = match.end() == len(before)
            continue
        if tok.startswith('"'):
            if (len(tok) == 1 or not tok.endswith('"')) and match.end() == len(before):
                in_string = tok[1:]
            words.append(tok)
            continue
        if tok == "{":
            opener = declaration if not stack else _last_word(words)
            if not stack:
                declaration = next((w for w in reversed(words) if w in DECLARATION_KEYWORDS), "")
                opener = declaration
            stack.append(opener)
        elif tok == "}":
            if stack:
                stack.pop()
            if not stack:
                declaration = ""
        words.append(tok)
    m = re.search(r"[A-Za-z0-9_$.%/-]*\Z", current)
    prefix = m.group() if m else ""
    stripped = current[: len(current) - len(prefix)]
    tail = words[:-1] if prefix and words and words[-1] == prefix else words
    if in_string is not None:
        tail = words[:-1]
    previous = tail[-1] if tail else ""
    return Context(
        block=stack[-1] if stack else "",
        declaration=declaration if stack else "",
        prefix=prefix,
        previous=previous,
        line_start=stripped.strip() == "" or stripped.rstrip().endswith(":"),
        in_string=in_string,
        in_comment=in_comment,
    )


def _last_word(words: list[str]) -> str:
    for w in reversed(words):
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", w):
            return w
    return ""


def complete(
    snapshot: Snapshot | None, text: str, line: int, column: int, package: str = ""
) -> list[Candidate]:
    """The candidates at a 1-based position; empty inside comments."""
    ctx = context_at(text, line, column)
    if ctx.in_comment:
        return []
    if ctx.in_string is not None:
        return _in_string(snapshot, ctx, package)
    if re.fullmatch(r"\$?[0-9]+(\.[0-9]+)?[A-Za-z%/]*", ctx.prefix):
        return [Candidate(unit, "unit", meaning) for unit, meaning in UNITS.items()]
    if "." in ctx.prefix:
        root = ctx.prefix.split(".", 1)[0]
        if root == args.ROOT:
            return _arguments(snapshot, text, line, column)
        fields = ATTRIBUTES.get(root)
        if fields is not None:
            return [Candidate(f"{root}.{f}", "attribute", f"`{root}` field") for f in fields]
        return []
    kind = _NAME_AFTER.get((ctx.declaration if ctx.block != "" else "", ctx.previous))
    if ctx.block == "" and ctx.previous in ("scale", "balance"):
        kind = "service"
    if kind is not None:
        out = _names(snapshot, kind, package)
        if ctx.declaration in ("policy", "test") and kind == "service":
            out.insert(0, Candidate("any", "keyword"))
        return out
    if ctx.previous == "tool" and ctx.declaration in ("policy", "test"):
        return [
            Candidate(f'"{c.label}"', "tool", c.detail) for c in _names(snapshot, "tool", package)
        ]
    if ctx.block == "":
        return [Candidate(k, "keyword", "declaration") for k in DECLARATION_KEYWORDS]
    if ctx.previous in _CONDITION_START or ctx.previous in ("risk", "require"):
        return _expression(ctx)
    if ctx.line_start and ctx.block in CLAUSES:
        return [Candidate(k, "keyword", f"`{ctx.block}` clause") for k in CLAUSES[ctx.block]]
    if ctx.block == "policy" and ctx.previous in ("allow", "deny", "->"):
        return [
            Candidate(k, "keyword", "entity")
            for k in ("any", "service", "agent", "user", "tool", "group")
        ]
    return _expression(ctx) if ctx.declaration == "policy" else []


#: The tools a rule is about, in the text before the cursor: `-> tool "a"` or `-> tool ["a", "b"]`.
_RULE_TOOLS = re.compile(r'->\s*tool\s+(?:"([^"\n]*)"|\[([^\]]*)\])')


def _arguments(snapshot: Snapshot | None, text: str, line: int, column: int) -> list[Candidate]:
    """`args.` completes to the arguments of the rule's tool(s), else of every exposed tool.

    The rule is found textually (its last `->` before the cursor, as it is being
    typed); the arguments come from the last compiled project (mcpdsl.ir.args).
    """
    project = snapshot.compilation.project if snapshot is not None else None
    if project is None:
        return []
    tools = args.tool_inputs(project.integrations)
    lines = text.split("\n")
    before = "\n".join(
        [*lines[: line - 1], lines[line - 1][: column - 1] if line <= len(lines) else ""]
    )
    arrow = before.rfind("->")
    found = _RULE_TOOLS.match(before, arrow) if arrow >= 0 else None
    names: list[str] = []
    if found is not None:
        names = (
            [found.group(1)]
            if found.group(1) is not None
            else re.findall(r'"([^"]*)"', found.group(2))
        )
    chosen = [tools[n] for n in names if n in tools] or list(tools.values())
    out: dict[str, Candidate] = {}
    for tool in chosen:
        for name, kind in sorted(tool.fields.items()):
            optional = " (optional)" if name in tool.optional else ""
            out.setdefault(
                name,
                Candidate(
                    f"{args.ROOT}.{name}",
                    "attribute",
                    f"{kind} argument of `{tool.tool}`{optional}",
                ),
            )
    return sorted(out.values(), key=lambda c: c.label)


def _expression(ctx: Context) -> list[Candidate]:
    out = [Candidate(r, "attribute", "attribute root") for r in CONDITION_ROOTS]
    out += [Candidate(f, "function", "built-in function") for f in FUNCTIONS]
    out += [Candidate(w, "keyword", "operator") for w in EXPRESSION_WORDS]
    return out


def _in_string(snapshot: Snapshot | None, ctx: Context, package: str) -> list[Candidate]:
    if ctx.previous == "import":
        return _names(snapshot, "package", package)
    if ctx.previous == "tool":
        return _names(snapshot, "tool", package)
    return []


def _names(snapshot: Snapshot | None, kind: str, package: str) -> list[Candidate]:
    """Declared names of one kind; another package's are offered qualified (`pkg.name`)."""
    if snapshot is None:
        return []
    seen: dict[str, Candidate] = {}
    for display in sorted(snapshot.indexes):
        for s in snapshot.indexes[display].symbols:
            if s.kind != kind:
                continue
            qualify = kind not in ("tool", "package") and s.package != package
            label = f"{s.package}.{s.name}" if qualify else s.name
            seen.setdefault(label, Candidate(label, kind, f"{kind} in `{display}`"))
    return sorted(seen.values(), key=lambda c: c.label)
