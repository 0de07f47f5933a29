"""The stable table of diagnostic codes.

Codes never change meaning once released: CI configurations, SARIF baselines
and editor integrations key on them.  Each code has a default severity, a one
line title and a long explanation printed by `mcpdsl check --explain CODE`.

Ranges: E01xx syntax, E02xx declarations and clauses, E03xx units, values and
expressions, E04xx names and imports, E05xx input files, E06xx tests,
W01xx warnings.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcpdsl.diagnostics.model import Severity


@dataclass(frozen=True)
class Code:
    code: str
    severity: Severity
    title: str
    explanation: str


_E = Severity.ERROR
_W = Severity.WARNING

_TABLE: tuple[Code, ...] = (
    # ------------------------------------------------------------ syntax
    Code(
        "E0101",
        _E,
        "unexpected token",
        "The parser found a token where the grammar does not allow it. The message names\n"
        "what it expected in words (a keyword, `}`, a duration, ...). A common cause is a\n"
        "misspelled keyword: the help line suggests the nearest one.\n\n"
        '    service api {\n        imag "ghcr.io/mcp/api:5"   # error[E0101]: did you mean `image`\n    }\n',
    ),
    Code(
        "E0102",
        _E,
        "invalid character",
        "A character that cannot start any token of the language, for example `@` or `;`.\n"
        "Identifiers are `[A-Za-z_][A-Za-z0-9_-]*`; strings use double quotes.\n",
    ),
    Code(
        "E0103",
        _E,
        "unterminated string",
        'A string literal opened with `"` is not closed on the same line. Strings cannot\n'
        "span lines; write `\\n` for a newline inside a string.\n",
    ),
    Code(
        "E0104",
        _E,
        "unclosed delimiter",
        "A `{`, `[` or `(` has no matching closing delimiter, or a closing delimiter has\n"
        "no opening one. The label points at the delimiter left open.\n",
    ),
    Code(
        "E0105",
        _E,
        "file is not valid UTF-8 text",
        "Policy files are UTF-8 text. The file contains bytes that are not valid UTF-8 or\n"
        "NUL bytes (a binary file). Re-save the file as UTF-8 or remove it from the tree.\n",
    ),
    Code(
        "E0106",
        _E,
        "nesting too deep",
        "Brackets and parentheses may nest at most 64 levels. Deeper nesting is never\n"
        "needed by a real policy and is refused so that every later stage stays bounded.\n",
    ),
    Code(
        "E0107",
        _E,
        "missing package declaration",
        "Every file starts with `package NAME`. Declarations of a file belong to that\n"
        'package; other packages reach them as `NAME.decl` after `import "NAME"`.\n',
    ),
    Code(
        "E0108",
        _E,
        "unexpected end of file",
        "The file ended in the middle of a declaration; usually a `}` is missing.\n",
    ),
    Code(
        "E0109",
        _E,
        "literal too long or too large",
        "A number with more than 30 digits, or a string or line so long that it cannot be\n"
        "a sensible policy value. The limit keeps exact arithmetic and the solvers bounded.\n",
    ),
    # ------------------------------------------------------ declarations
    Code(
        "E0201",
        _E,
        "duplicate clause",
        "A clause that may appear once in a declaration appears twice. The second one\n"
        "is reported; the first one is shown as a secondary label. Remove one of them.\n",
    ),
    Code(
        "E0202",
        _E,
        "missing required clause",
        "A declaration lacks a clause it cannot do without, for example a `service`\n"
        "without `image` or a `job` without `runs`. The help line names the clause.\n",
    ),
    Code(
        "E0203",
        _E,
        "unknown setting",
        "A `{ key value }` block contains a key that this block does not accept. The\n"
        "help line suggests the nearest accepted key and lists the accepted ones.\n",
    ),
    Code(
        "E0204",
        _E,
        "unknown keyword value",
        "A clause takes one of a fixed set of words (for example `strategy` takes\n"
        "`round-robin`, `least-request`, `ring-hash`, `maglev` or `random`) and the word\n"
        "given is not one of them.\n",
    ),
    Code(
        "E0205",
        _E,
        "invalid time zone",
        "A time window names a zone that is not an IANA time-zone name (like\n"
        '"Europe/Stockholm") or `UTC`.\n',
    ),
    Code(
        "E0206",
        _E,
        "invalid string value",
        "A string clause has a value of the wrong shape: an image reference with spaces,\n"
        "a SPIFFE identity that does not start with `spiffe://`, a URL without a scheme,\n"
        "a route path that does not start with `/`.\n",
    ),
    Code(
        "E0207",
        _E,
        "duplicate rule id",
        "Two rules of one policy carry the same label. Rule ids name rules in decisions,\n"
        "decision logs and coverage reports, so they must be unique within a policy.\n",
    ),
    Code(
        "E0208",
        _E,
        "invalid test",
        "A `test` block is incomplete or inconsistent: it has no `expect`, or it mixes a\n"
        "`request` with a `given scale`, or its expectation does not fit what it tests.\n",
    ),
    # ----------------------------------------------- units and expressions
    Code(
        "E0301",
        _E,
        "wrong unit",
        "A value has a unit that the clause does not accept. Units are part of the type\n"
        "system: `timeout` takes a duration (`30s`), `memory` takes bytes (`512Mi`).\n"
        "The message names the expected unit with an example.\n",
    ),
    Code(
        "E0302",
        _E,
        "inverted range",
        "A range `low..high` has `low > high`. Ranges are inclusive on both ends and both\n"
        "ends carry the same unit.\n",
    ),
    Code(
        "E0303",
        _E,
        "value out of bounds",
        "A value is outside the bounds its clause allows: a percent above 100%, a port\n"
        "outside 1..65535, a negative duration, zero replicas for a maximum.\n",
    ),
    Code(
        "E0304",
        _E,
        "ambiguous unit",
        "A suffix means different things for different types (`m` is millicores or\n"
        "minutes, `M` is mega-bytes or a million per rate) and the expected type cannot\n"
        "be known here. Write the explicit form, for example `0.5` cores or `300s`.\n",
    ),
    Code(
        "E0305",
        _E,
        "type mismatch in expression",
        "An operator is applied to operands of incompatible types, such as a duration\n"
        "compared with a string, `and` over a number, or arithmetic on strings. Every\n"
        "condition must be a boolean.\n",
    ),
    Code(
        "E0306",
        _E,
        "unknown attribute root",
        "Attribute paths start with `principal`, `resource`, `source`, `request`,\n"
        "`context`, `now`, `action` or `risk` in conditions, and with `$` in integration mappings.\n",
    ),
    Code(
        "E0307",
        _E,
        "unknown function or wrong arity",
        "Built-in functions are `lower`, `upper`, `len`, `startswith`, `endswith` and\n"
        "`contains`. There are no user functions: conditions stay total and terminating.\n",
    ),
    Code(
        "E0308",
        _E,
        "invalid CIDR",
        '`in cidr "..."` takes an IPv4 or IPv6 network such as "10.0.0.0/8".\n',
    ),
    Code(
        "E0309",
        _E,
        "invalid glob",
        "A `matches` or route pattern may use `*` (one path segment) and `**` (any number\n"
        'of segments) only as whole segments, for example "/v1/*/items" or "/v1/**".\n',
    ),
    Code(
        "E0310",
        _E,
        "`risk` used inside a risk term",
        "Risk terms define the request's risk; a term whose condition reads `risk` would\n"
        "define risk in terms of itself.\n",
    ),
    Code(
        "E0311",
        _E,
        "invalid literal",
        "A literal cannot be read as the value it should be: a time of day such as\n"
        "`25:00`, a non-integer where a count is expected, an invalid string escape.\n",
    ),
    # ------------------------------------------------------ names, imports
    Code(
        "E0401",
        _E,
        "duplicate declaration",
        "Two declarations of the same kind share a name in one package. Names are unique\n"
        "per package and kind.\n",
    ),
    Code(
        "E0402",
        _E,
        "unknown reference",
        "A declaration refers to a name that does not exist: a `scale` or `balance` for a\n"
        "missing service, a `job` naming a missing `carbon` block, a rule naming an unknown\n"
        "service or tool, a route to a missing integration. The help line suggests the\n"
        "nearest existing name.\n",
    ),
    Code(
        "E0403",
        _E,
        "import not found",
        '`import "NAME"` names a package that no file of the tree declares.\n',
    ),
    Code(
        "E0404",
        _E,
        "import outside the tree",
        "Imports are paths relative to the tree root and may not leave it (`..`,\n"
        "absolute paths). This keeps a policy tree self-contained and reviewable.\n",
    ),
    Code(
        "E0405",
        _E,
        "package not imported",
        "A qualified name `pkg.name` uses a package that this file does not import.\n",
    ),
    Code(
        "E0406",
        _E,
        "conflicting declarations",
        "Two declarations claim the same thing: two `scale` or `balance` blocks for one\n"
        "service, two integrations exposing the same tool, two gateways on one port.\n",
    ),
    # ------------------------------------------------------------ input
    Code(
        "E0501",
        _E,
        "cannot read input",
        "The path given does not exist, is not readable, or contains no `.mcp` file.\n",
    ),
    Code(
        "E0502",
        _E,
        "file too large",
        "Policy files are limited to 8 MiB. Split large generated policies over files.\n",
    ),
    # ----------------------------------------------------------- warnings
    Code(
        "W0101",
        _W,
        "unused import",
        "A package is imported but none of its declarations is referenced in the file.\n",
    ),
    Code(
        "W0102",
        _W,
        "stateless service without `scale`",
        "A service that is not marked `stateful` has no `scale` block, so it runs a fixed\n"
        "number of replicas. Add `scale NAME { replicas 2..10 target cpu 70% }` or mark\n"
        "the service `stateful`.\n",
    ),
    Code(
        "W0103",
        _W,
        "affinity with a non-hashing strategy",
        "`affinity` (sticky sessions) only works with a hashing strategy: `ring-hash` or\n"
        "`maglev`. With another strategy the affinity key is ignored by the load balancer.\n",
    ),
    Code(
        "W0104",
        _W,
        "test expects nothing",
        "A test block makes a request but has no `expect`; it always passes.\n",
    ),
    Code(
        "W0105",
        _W,
        "internet-facing service without `balance`",
        "A gateway routes to a service that has no `balance` block; it gets round-robin\n"
        "balancing, no health checks, no outlier ejection and no rate limit.\n",
    ),
)

CODES: dict[str, Code] = {c.code: c for c in _TABLE}


def explain(code: str) -> str | None:
    """The long explanation of a code, for `mcpdsl check --explain`."""
    entry = CODES.get(code.upper())
    if entry is None:
        return None
    return f"{entry.code}: {entry.title}\n\n{entry.explanation}"
