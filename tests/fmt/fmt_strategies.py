"""Hypothesis strategies for the formatter: random valid programs, laid out at random.

A program is built as a list of *items*: code tokens (`str`) and comments
(`Comment`).  `layout` joins them with random whitespace, so the same program
can be drawn compact, spread over many lines or anywhere in between; comments
are trailing (after code on a line) or on a line of their own.

Expressions are generated with their binding strength and parenthesised where
the grammar needs it (and sometimes where it does not), so every program
parses; declarations carry their required clauses so that lowering reports no
diagnostic and the IR comparison is meaningful.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import strategies as st

OR, AND, NOT, CMP, SUM, PRODUCT, COALESCE, UNARY, ATOM = range(1, 10)


@dataclass(frozen=True)
class Comment:
    text: str
    own_line: bool


Item = str | Comment
Expr = tuple[int, list[str]]  # (binding strength, tokens)

NAMES = st.sampled_from(["api", "frontend", "db", "crm-lookup", "nightly-etl", "a_b", "x1"])
ROOTS = ["principal", "source", "request", "resource", "context"]
KEYS = ["tier", "id", "mfa", "auth", "device", "managed", "geo", "namespace", "cpu", "count"]
COMMENT_TEXT = st.text(alphabet="ab #{}[]()\"'-=*/", max_size=12)


def comments_between(items: list[Item], draw: st.DrawFn) -> list[Item]:
    """Sprinkle comments between the items of a declaration."""
    out: list[Item] = []
    rate = draw(st.sampled_from([0.0, 0.0, 0.05, 0.2]))
    rng = random.Random(draw(st.integers(0, 2**16)))
    for item in items:
        if rate and rng.random() < rate:
            out.append(Comment("#" + draw(COMMENT_TEXT), own_line=rng.random() < 0.5))
        out.append(item)
    if rate and rng.random() < rate:
        out.append(Comment("# end", own_line=True))
    return out


# ------------------------------------------------------------ expressions


def wrap(draw: st.DrawFn, expr: Expr, needed: int) -> list[str]:
    level, toks = expr
    if level < needed or (level < ATOM and draw(st.integers(0, 9)) == 0):
        return ["(", *toks, ")"]
    return toks


@st.composite
def paths(draw: st.DrawFn) -> list[str]:
    out = [draw(st.sampled_from(ROOTS))] if draw(st.booleans()) else ["$"]
    for key in draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3)):
        out += [".", key]
    return out


@st.composite
def atoms(draw: st.DrawFn) -> Expr:
    kind = draw(st.integers(0, 9))
    if kind <= 3:
        return ATOM, draw(paths())
    if kind == 4:
        return ATOM, [draw(st.sampled_from(["5", "0.7", "100", "1.50"]))]
    if kind == 5:
        return ATOM, [draw(st.sampled_from(['"x"', '"a b"', '"q\\"uote"', '"\\u00e9"', '""']))]
    if kind == 6:
        return ATOM, [draw(st.sampled_from(["30s", "512Mi", "70%", "$5", "100/s", "08:00"]))]
    if kind == 7:
        return ATOM, [draw(st.sampled_from(["true", "false", "risk"]))]
    if kind == 8:
        fn = draw(st.sampled_from(["lower", "upper", "len", "startswith", "contains"]))
        args = [draw(paths())]
        if fn in ("startswith", "contains"):
            args.append(['"a"'])
        toks = [fn, "("]
        for i, arg in enumerate(args):
            toks += ([","] if i else []) + arg
        return ATOM, [*toks, ")"]
    items = draw(st.lists(st.sampled_from(['"gold"', '"x"', "1", "2"]), max_size=3))
    toks = ["["]
    for i, item in enumerate(items):
        toks += ([","] if i else []) + [item]
    if items and draw(st.booleans()):
        toks.append(",")
    return ATOM, [*toks, "]"]


@st.composite
def exprs(draw: st.DrawFn, depth: int = 3) -> Expr:
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(atoms())
    sub = exprs(depth - 1)
    kind = draw(st.sampled_from(["chain", "chain", "not", "cmp", "in", "arith", "default", "neg"]))
    if kind == "chain":
        op = draw(st.sampled_from(["and", "or"]))
        level = AND if op == "and" else OR
        operands = draw(st.lists(sub, min_size=2, max_size=4))
        toks: list[str] = []
        for i, operand in enumerate(operands):
            toks += ([op] if i else []) + wrap(draw, operand, level + 1)
        return level, toks
    if kind == "not":
        return NOT, ["not", *wrap(draw, draw(sub), NOT)]
    if kind == "cmp":
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        return CMP, [*wrap(draw, draw(sub), SUM), op, *wrap(draw, draw(sub), SUM)]
    if kind == "in":
        left = wrap(draw, draw(sub), SUM)
        form = draw(st.integers(0, 3))
        if form == 0:
            return CMP, [*left, "in", *wrap(draw, draw(sub), SUM)]
        if form == 1:
            return CMP, [*left, "not", "in", *wrap(draw, draw(sub), SUM)]
        if form == 2:
            return CMP, [*left, "in", "cidr", '"10.0.0.0/8"']
        return CMP, [*left, "matches", '"/v1/**"']
    if kind == "arith":
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        level = SUM if op in "+-" else PRODUCT
        return level, [*wrap(draw, draw(sub), level), op, *wrap(draw, draw(sub), level + 1)]
    if kind == "default":
        return COALESCE, [*wrap(draw, draw(sub), COALESCE), "??", *wrap(draw, draw(sub), UNARY)]
    return UNARY, ["-", *wrap(draw, draw(sub), UNARY)]


def expression(draw: st.DrawFn) -> list[str]:
    return draw(exprs())[1]


# ---------------------------------------------------------- declarations


def block(draw: st.DrawFn, head: list[str], clauses: dict[str, list[str]], required: set[str]):
    """`head { clauses }` with the optional clauses subsetted and everything shuffled."""
    chosen = [
        k for k in clauses if k in required or draw(st.booleans())
    ]  # keep dict order, then shuffle
    chosen = draw(st.permutations(chosen))
    items: list[Item] = [*head, "{"]
    for key in chosen:
        items += clauses[key]
    return comments_between([*items, "}"], draw)


def str_list(draw: st.DrawFn, values: list[str]) -> list[str]:
    picked = draw(st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True))
    toks = ["["]
    for i, v in enumerate(picked):
        toks += ([","] if i else []) + [v]
    if draw(st.booleans()):
        toks.append(",")
    return [*toks, "]"]


def settings(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> list[str]:
    toks = ["{"]
    for i, (k, v) in enumerate(pairs):
        if i and draw(st.booleans()):
            toks.append(",")
        toks += [k, v]
    return [*toks, "}"]


@st.composite
def services(draw: st.DrawFn) -> list[Item]:
    clauses = {
        "image": ["image", '"ghcr.io/mcp/api:5.0.0"'],
        "port": ["port", draw(st.sampled_from(["80", "8080"]))],
        "cpu": ["cpu", draw(st.sampled_from(["500m", "2", "0.25"]))],
        "memory": ["memory", "512Mi"],
        "gpu": ["gpu", "1"],
        "tier": ["tier", "gold"],
        "regions": ["regions", *str_list(draw, ['"eu-north-1"', '"us-east-1"'])],
        "identity": ["identity", '"spiffe://mcp.local/ns/core/sa/api"'],
        "labels": ["labels", "{", "team", ":", '"core"', ",", '"a.b/c"', ":", '"d"', "}"],
        "pool": ["pool", "general"],
        "namespace": ["namespace", '"core"'],
        "replicas": ["replicas", "3"],
        "stateful": ["stateful"],
        "env": ["env", "{", "LOG", ":", '"debug"', "}"],
    }
    return block(draw, ["service", draw(NAMES)], clauses, {"image", "port"})


@st.composite
def scales(draw: st.DrawFn) -> list[Item]:
    up = draw(st.sampled_from([["100%"], ["4", "pods"]]))
    clauses = {
        "replicas": ["replicas", "2", "..", "40"],
        "target-cpu": ["target", "cpu", "70%"],
        "target-metric": ["target", "metric", '"rps"', "150", "per", "pod"],
        "up": ["up", "by", *up, "every", "15s", "stabilize", "0s"],
        "down": ["down", "by", "10%", "every", "60s"],
        "down-select": ["down", "select", draw(st.sampled_from(["max", "min", "disabled"]))],
        "during": [
            "during",
            draw(st.sampled_from(["weekdays", "daily", "sat"])),
            "08:00",
            "-",
            "20:00",
            draw(st.sampled_from(['"Europe/Stockholm"', "UTC"])),
            *settings(draw, [("replicas", "6..40")]),
        ],
        "predict": ["predict", '"rps"', "horizon", "15m", "lookback", "7d"],
    }
    return block(draw, ["scale", draw(NAMES)], clauses, {"replicas"})


@st.composite
def pools(draw: st.DrawFn) -> list[Item]:
    clauses = {
        "tier": ["tier", "standard"],
        "node": [
            "node",
            *settings(draw, [("cpu", "8"), ("memory", "32Gi"), ("idle", "90W"), ("peak", "350W")]),
        ],
        "nodes": ["nodes", "3", "..", "20"],
        "quota": ["quota", "team", '"core"', *settings(draw, [("cpu", "32"), ("memory", "128Gi")])],
        "reserve": ["reserve", "api", *settings(draw, [("cpu", "4")])],
    }
    return block(draw, ["pool", draw(NAMES)], clauses, {"node", "nodes"})


@st.composite
def balances(draw: st.DrawFn) -> list[Item]:
    clauses = {
        "strategy": ["strategy", draw(st.sampled_from(["least-request", "round-robin"]))],
        "affinity": ["affinity", "cookie", '"s"', "ttl", "1h"],
        "health": [
            *["health", "http", '"/healthz"', "every", "5s", "timeout", "1s"],
            *["healthy", "2", "unhealthy", "3"],
        ],
        "eject": ["eject", "after", "5", "errors", "for", "30s", "max", "50%", "every", "5s"],
        "connections": [
            *["connections", "{", "max", "100", ",", "pending", "10", ","],
            *["per-connection", "5", "}"],
        ],
        "failover": ["failover", *str_list(draw, ['"eu-north-1"', '"us-east-1"'])],
        "limit": ["limit", "1000/s", "burst", "2000", "per", "client-ip"],
    }
    return block(draw, ["balance", draw(NAMES)], clauses, set())


@st.composite
def carbons(draw: st.DrawFn) -> list[Item]:
    clauses = {
        "budget": ["budget", "1200kg", "per", "month"],
        "renewable": ["renewable", "at", "least", "80%"],
        "intensity": ["intensity", "from", '"data/intensity.csv"'],
        "region": [
            *["region", '"eu-north-1"'],
            *settings(draw, [("intensity", "28g/kWh"), ("renewable", "95%"), ("pue", "1.1")]),
        ],
    }
    return block(draw, ["carbon", draw(NAMES)], clauses, set())


@st.composite
def jobs(draw: st.DrawFn) -> list[Item]:
    clauses = {
        "image": ["image", '"etl:2.1"'],
        "runs": ["runs", "2h"],
        "window": ["window", "00:00", "-", "08:00", "UTC", "deadline", "8h"],
        "cpu": ["cpu", "4"],
        "memory": ["memory", "8Gi"],
        "energy": ["energy", "12kWh"],
        "regions": ["regions", *str_list(draw, ['"eu-north-1"', '"us-east-1"'])],
        "carbon": ["carbon", "platform"],
    }
    return block(draw, ["job", draw(NAMES)], clauses, {"image", "runs", "window"})


def entity(draw: st.DrawFn) -> list[str]:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return ["any"]
    etype = draw(st.sampled_from(["service", "agent", "user", "group", "tool"]))
    if kind == 1:
        return [etype, "any"]
    if kind == 2:
        return [etype, draw(st.sampled_from(["api", '"alice"', "other.api"]))]
    names = draw(st.lists(st.sampled_from(["a", "b", '"c"']), min_size=1, max_size=3))
    toks = [etype, "["]
    for i, n in enumerate(names):
        toks += ([","] if i else []) + [n]
    return [*toks, "]"]


@st.composite
def rules(draw: st.DrawFn, index: int) -> list[str]:
    toks: list[str] = []
    if draw(st.integers(0, 4)) == 0:
        toks += [f"rule-{index}", ":"]
    toks += [draw(st.sampled_from(["allow", "deny"]))]
    toks += [*entity(draw), "->", *entity(draw)]
    on = draw(st.integers(0, 3))
    if on == 1:
        toks += ["on", "GET", ",", "POST", '"/v1/**"']
    elif on == 2:
        toks += ["on", "*"]
    if draw(st.booleans()):
        toks += [draw(st.sampled_from(["when", "unless"])), *expression(draw)]
    return toks


@st.composite
def policies(draw: st.DrawFn) -> list[Item]:
    items: list[Item] = ["policy", draw(NAMES), "{"]
    if draw(st.booleans()):
        items += ["default", draw(st.sampled_from(["allow", "deny"]))]
    for index in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 5))
        if kind <= 3:
            items += draw(rules(index))
        elif kind == 4:
            items += ["risk", "{"]
            for _ in range(draw(st.integers(0, 3))):
                items += [draw(st.sampled_from(["0.4", "0.25", "1"])), "when", *expression(draw)]
            items += ["}"]
        else:
            items += ["require", "mfa"]
            if draw(st.booleans()):
                items += ["when", *expression(draw)]
    return comments_between([*items, "}"], draw)


@st.composite
def integrations(draw: st.DrawFn) -> list[Item]:
    targets = draw(st.lists(st.sampled_from(["id", "name", "a.b", "tier", "cpu"]), unique=True))
    mapping: list[str] = ["map", "{"]
    for target in targets:
        mapping += [*target.replace(".", " . ").split(), "=", *expression(draw)]
    clauses = {
        "call": ["call", "GET", '"https://crm.internal/api/{id}"'],
        "expose": ["expose", "tool", '"crm.lookup"', "input", "{", "id", ":", "string", "}"],
        "timeout": ["timeout", "2s"],
        "retry": [
            "retry",
            "3",
            "backoff",
            "200ms",
            "..",
            "5s",
            "on",
            "[",
            "5xx",
            ",",
            "reset",
            "]",
            *["per", "try", "timeout", "1s"],
        ],
        "limit": ["limit", "100/s", "burst", "200"],
        "description": ["description", '"look \\"up\\""'],
        "map": [*mapping, "}"],
        "auth": draw(
            st.sampled_from(
                [
                    ["auth", "bearer", "env", '"CRM_TOKEN"'],
                    ["auth", "header", '"X-Api-Key"', "file", '"/run/secrets/key"'],
                ]
            )
        ),
        "breaker": ["breaker", "5", "failures", "open", "30s"],
        "idempotent": ["idempotent"],
    }
    if draw(st.booleans()):
        optional = draw(st.booleans())
        clauses["expose"] = [
            *["expose", "tool", '"crm.lookup"', "input", "{", "id", ":", "string", ","],
            *(["fields", "?", ":", "array"] if optional else ["n", ":", "number"]),
            "}",
        ]
    # Programs lower cleanly: `idempotent` only where the method is not (W0120), and
    # then always, so that the retry is one the gateway makes (W0121).
    if draw(st.integers(0, 3)) == 0:  # a federated MCP server: no call, expose or map
        for rest in ("call", "expose", "map"):
            del clauses[rest]
        clauses["upstream"] = ["upstream", "mcp", '"http://docs-mcp:8000/mcp"', "prefix", '"docs"']
        return block(draw, ["integration", draw(NAMES)], clauses, {"upstream", "idempotent"})
    if draw(st.booleans()):
        clauses["call"] = ["call", "POST", '"https://crm.internal/api/{id}"']
        return block(draw, ["integration", draw(NAMES)], clauses, {"call", "idempotent"})
    del clauses["idempotent"]
    return block(draw, ["integration", draw(NAMES)], clauses, {"call"})


@st.composite
def gateways(draw: st.DrawFn) -> list[Item]:
    routes: list[str] = []
    for path in draw(st.lists(st.sampled_from(['"/v1/**"', '"/a/*"', '"/"']), max_size=3)):
        if draw(st.booleans()):
            routes += ["route", path]
        else:  # a prefix is text: no wildcards
            routes += ["route", "prefix", draw(st.sampled_from(['"/v1/bl"', '"/a/"', '"/"']))]
        if draw(st.booleans()):
            routes += ["on", "GET", ",", "POST"]
        if draw(st.booleans()):
            routes += ["header", '"x-canary"', "==", '"on"', "query", '"debug"']
        routes += ["->", *draw(st.sampled_from([["service", "api"], ["integration", "crm"]]))]
        if draw(st.booleans()):
            routes += ["rewrite", '"/"']
        if draw(st.booleans()):
            routes += ["timeout", "5s"]
        if draw(st.booleans()):
            routes += ["retry", "2", "on", "[", "reset", "]", "per", "try", "timeout", "1s"]
    clauses = {
        "listen": ["listen", "8443"],
        "hosts": ["hosts", *str_list(draw, ['"a.example"', '"b.example"'])],
        "routes": routes,
        "limit": ["limit", "10000/s", "burst", "20000"],
        "tls": [
            *["tls", "{", *draw(st.sampled_from([["cert", "sds", '"default"'],
                                                ["cert", "file", '"/c.pem"', "key", '"/k.pem"']]))],
            *draw(st.sampled_from([[], ["clients", "required", "ca", "sds", '"ROOTCA"'],
                                   ["ca", "file", '"ca.pem"', "clients", "optional"]])),
            "}",
        ],
        "accept": ["accept", *str_list(draw, ["idp", "lib.idp", "other"])],
        "trust": [
            *["trust", "header", '"x-geo"', "as", "context", ".", "geo"],
            *draw(st.sampled_from([[], ["number"], ["bool"]])),
            *draw(st.sampled_from([[], ["from", "[", '"10.0.0.0/8"', "]"]])),
        ],
    }  # fmt: skip
    return block(draw, ["gateway", draw(NAMES)], clauses, {"listen"})


@st.composite
def providers(draw: st.DrawFn) -> list[Item]:
    clauses = {
        "issuer": ["issuer", '"https://login.example.com/"'],
        "jwks": ["jwks", *draw(st.sampled_from([["url", '"https://l.example/j"'],
                                                ["file", '"keys/idp.json"']]))],
        "audiences": ["audiences", *str_list(draw, ['"a"', '"b"'])],
        "skew": ["skew", "30s"],
        "claims": ["claims", "{", "id", ":", '"sub"', ",", "groups", ":", '"roles"', "}"],
        "mfa": ["mfa", '"amr"', "in", *str_list(draw, ['"mfa"', '"hwk"'])],
        "type": ["type", *draw(st.sampled_from([["user"], ["agent"], ["from", '"kind"']]))],
    }  # fmt: skip
    return block(draw, ["provider", draw(NAMES)], clauses, {"issuer", "jwks"})


@st.composite
def meshes(draw: st.DrawFn) -> list[Item]:
    return block(
        draw, ["mesh", draw(NAMES)], {"trust": ["trust", "domain", '"m.local"']}, {"trust"}
    )


def object_literal(draw: st.DrawFn, depth: int = 2) -> list[str]:
    toks = ["{"]
    keys = draw(st.lists(st.sampled_from(["a", "b", '"c d"', "id"]), unique=True, max_size=3))
    for i, key in enumerate(keys):
        toks += ([","] if i else []) + [key, ":"]
        if depth and draw(st.integers(0, 3)) == 0:
            toks += object_literal(draw, depth - 1)
        elif draw(st.integers(0, 3)) == 0:
            toks += ["[", "1", ",", '"x"', "]"]
        else:
            toks += [draw(st.sampled_from(["1", '"x"', "true", "2.5"]))]
    return [*toks, "}"]


@st.composite
def tests(draw: st.DrawFn) -> list[Item]:
    kind = draw(st.integers(0, 3))
    body: list[str] = []
    if kind == 0:
        concrete = st.sampled_from([["service", "api"], ["user", '"alice"'], ["tool", '"x.y"']])
        body += ["request", *draw(concrete), "->", *draw(concrete), "GET"]
        if draw(st.booleans()):
            body += ['"/v1/items"']
        if draw(st.booleans()):
            body += ["{", "request", ".", "auth", ".", "mfa", ":", "true"]
            if draw(st.booleans()):
                body += [",", "context", ".", "geo", ":", '"se"']
            body += ["}"]
        body += ["expect", draw(st.sampled_from(["allow", "deny"]))]
        if draw(st.booleans()):
            body += ["with", "mfa", ",", "audit"]
        if draw(st.booleans()):
            body += ["expect", "risk", "0.4"]
    elif kind == 1:
        body += ["given", "scale", "api", *settings(draw, [("replicas", "5"), ("cpu", "95%")])]
        body += ["expect", "replicas", "7"]
    elif kind == 2:
        body += ["given", "route", "public", "GET", '"/v1/x"']
        body += draw(st.sampled_from([["expect", "no", "route"], ["expect", "service", "api"]]))
    else:
        body += ["given", "transform", "crm", *object_literal(draw)]
        body += draw(st.sampled_from([["expect", "error"], ["expect", "output", "{", "}"]]))
        if body[-1] == "}":
            body[-2:] = object_literal(draw)
    return comments_between(["test", '"a test"', "{", *body, "}"], draw)


DECLARATIONS = st.one_of(
    services(),
    scales(),
    pools(),
    balances(),
    carbons(),
    jobs(),
    policies(),
    integrations(),
    gateways(),
    providers(),
    meshes(),
    tests(),
)


@st.composite
def programs(draw: st.DrawFn) -> list[Item]:
    items: list[Item] = []
    if draw(st.booleans()):
        items.append(Comment("# header", own_line=True))
    items += ["package", "demo"]
    decls = draw(st.lists(DECLARATIONS, min_size=1, max_size=4))
    for decl in decls:
        if draw(st.integers(0, 5)) == 0:
            items += ["import", '"lib"']
        items += decl
    return items


# ----------------------------------------------------------------- layout

WHITESPACE = [" ", " ", "  ", "\n", "\n  ", "\n\n", "\t", "\n    \n      "]


def layout(items: list[Item], seed: int, style: str) -> str:
    """Source text: the items joined by whitespace chosen by `style` and `seed`."""
    rng = random.Random(seed)
    out: list[str] = []
    for item in items:
        if isinstance(item, Comment):
            if item.own_line:
                blank = "\n" * rng.choice([1, 1, 2])
                out.append("\n" + " " * rng.randint(0, 6) + item.text + blank)
            else:
                out.append(" " * rng.randint(1, 3) + item.text + "\n")
            continue
        if out and not out[-1].endswith("\n"):
            out.append(gap(rng, style))
        out.append(item)
    return "".join(out) + "\n"


def gap(rng: random.Random, style: str) -> str:
    if style == "compact":
        return " "
    if style == "spread":
        return "\n" + " " * rng.randint(0, 8)
    return rng.choice(WHITESPACE)
