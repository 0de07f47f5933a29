"""The stable table of diagnostic codes.

Codes never change meaning once released: CI configurations, SARIF baselines
and editor integrations key on them.  Each code has a default severity, a one
line title and a long explanation printed by `mcpdsl check --explain CODE`.

Ranges: E01xx syntax, E02xx declarations and clauses, E03xx units, values and
expressions, E04xx names and imports, E05xx input files, E06xx tests, E07xx
carbon data and the optimiser, E08xx output directories (mcpdsl/outdir.py),
E09xx identity (providers, the mesh, gateway TLS, trusted headers), E10xx the decision
server's deployment (`server`), E11xx the MCP gateway's clauses (`codes_mcp.py`), W01xx warnings, A01xx analysis findings (z3; docs/analysis.md), B01xx build findings:
what a target or the optimiser could not express as written (docs/diagnostics.md), L01xx
decision-log verification (`mcpdsl logs verify`, `codes_log.py`), S01xx load
simulation (`mcpdsl simulate`, `codes_sim.py`).

A code marked `strict` says that a clause is not enforced, was dropped or is
narrowed by the build; `mcpdsl build --strict` turns those warnings into errors.
"""

from __future__ import annotations

from mcpdsl.diagnostics.codes_build import BUILD_TABLE
from mcpdsl.diagnostics.codes_log import LOG_TABLE
from mcpdsl.diagnostics.codes_mcp import MCP_TABLE
from mcpdsl.diagnostics.codes_sim import SIM_TABLE
from mcpdsl.diagnostics.model import Code, Severity

__all__ = ["CODES", "STRICT_CODES", "Code", "explain"]


_E = Severity.ERROR
_W = Severity.WARNING
_I = Severity.INFO

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
    Code(
        "E0209",
        _E,
        "storage on a service that is not stateful",
        "A `storage` clause gives every pod of the service its own volume, which only a\n"
        "StatefulSet can do; a service without `stateful` is a Deployment, whose pods are\n"
        "interchangeable and share nothing.\n\n"
        "    service db {\n"
        '        image "postgres:16"\n'
        "        port  5432\n"
        "        storage { size 20Gi }   # error[E0209]: add `stateful`\n"
        "    }\n\n"
        "Add `stateful` (the service becomes a StatefulSet with one volume claim per pod)\n"
        "or remove `storage`.\n",
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
        "`context`, `now`, `action`, `risk` or `stats` in conditions, and with `$` in\n"
        "integration mappings.\n",
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
        'of segments) only as whole segments, for example "/v1/*/items" or "/v1/**".\n'
        'A `route prefix "P"` is text, not a glob: it starts with `/`, has no `*`, `?`,\n'
        "`#` or control character and is in normal form (no `//`, `.` or `..` segment).\n",
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
    Code(
        "E0312",
        _E,
        "value outside the target platform's range",
        "The value is valid mcpdsl, but a field it is compiled into has a narrower\n"
        "range on the target platform, which would refuse the artifact at apply or\n"
        "load time.  The limits checked:\n"
        "\n"
        "  replicas, nodes, pods per step      Kubernetes int32: at most 2147483647\n"
        "  utilisation and step percentages   whole int32 percent: at most 2147483647%\n"
        "  cpu                                Kubernetes quantity in millicores (int64):\n"
        "                                     at most 9223372036854775.807 cores\n"
        "  memory, metric targets             Kubernetes quantity: at most 2^63-1\n"
        "  timeouts, intervals, TTLs,         protobuf Duration: 1ns .. 315576000000s\n"
        "  ejection times, backoffs, horizons (10,000 years)\n"
        "  rate limits                        Envoy token bucket: at most 2^32-1 tokens\n"
        "                                     per refill\n"
        "\n"
        "Policy periods (at most 30m) and stabilisation windows (at most 1h), ports\n"
        "(1..65535) and percentages of 0..100% are language bounds, reported as E0303.\n",
    ),
    Code(
        "E0313",
        _E,
        "name or reference the target platform cannot parse",
        "A string that is compiled into a field with a fixed grammar does not match it:\n"
        "\n"
        "  image     the container image reference grammar:\n"
        "            [REGISTRY[:PORT]/]PATH[:TAG][@ALGORITHM:HEX]; path components are\n"
        "            lowercase letters and digits joined by `.`, `_`, `__` or dashes,\n"
        "            a tag is at most 128 letters, digits, `_`, `.` and `-`, and the\n"
        "            name is at most 255 characters\n"
        "  metric    a Prometheus metric name: [a-zA-Z_:][a-zA-Z0-9_:]* (scale\n"
        "            targets and `predict`)\n"
        "\n"
        "Names of services, namespaces and labels are not errors: the Kubernetes target\n"
        "turns them into DNS-1123 names and keeps the original in an annotation.\n",
    ),
    Code(
        "E0314",
        _E,
        "invalid route condition",
        'A route\'s `header "NAME" [== | != "VALUE"]` or `query "NAME" [== "VALUE"]`\n'
        "condition cannot mean the same in the engine and at the gateway:\n"
        "\n"
        "  * the header name is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~),\n"
        "    is empty or longer than 256 characters;\n"
        "  * the header is one the gateway sets or rewrites itself (`host`, which routes\n"
        "    as `:authority` (use the gateway's `hosts`), `x-forwarded-*`, `x-request-id`,\n"
        "    `x-envoy-*`, hop-by-hop headers);\n"
        "  * the operator is not `==` or `!=` (headers) or `==` (query parameters:\n"
        "    Envoy's query-parameter matcher cannot invert);\n"
        "  * the value holds a NUL, CR or LF.\n"
        "\n"
        '    route "/v1/**" header "Host" == "a" -> service api   # error[E0314]\n'
        '    route "/v1/**" header "x-canary" == "on" -> service canary\n',
    ),
    Code(
        "E0315",
        _E,
        "rate limit key no target enforces",
        "`limit RATE per KEY` keeps one token bucket per value of KEY.  The only key\n"
        "every enforcement point can read is `client-ip` (Envoy's peer address; the\n"
        "engine's `admit` key).  A limit per `team` or `principal` (or `user`, `agent`,\n"
        "`service`, `tenant`) would need that identity verified at the gateway, which the\n"
        "generated Envoy configuration does not key limits by, so such a limit would be\n"
        "accepted and then applied nowhere: it is refused instead.  Other words are\n"
        "unknown keys.\n"
        "\n"
        "    balance api { limit 100/s per team }        # error[E0315]\n"
        "    balance api { limit 100/s per client-ip }   # one bucket per client address\n"
        "    balance api { limit 100/s }                 # one bucket for everyone\n",
    ),
    Code(
        "E0320",
        _E,
        "unknown server statistic",
        "`stats` holds the behaviour counters the decision server (`mcpdsl serve`) keeps\n"
        "for the request's principal over sliding windows of one minute and one hour:\n\n"
        "    stats.principal.calls_1m      stats.principal.calls_1h       calls decided\n"
        "    stats.principal.denials_1m    stats.principal.denials_1h     calls denied\n"
        "    stats.principal.resources_1m  stats.principal.resources_1h   distinct resources\n\n"
        "Each is a non-negative integer (a *count*: it compares with plain numbers, not with\n"
        "strings, durations or sizes, `E0305`). Any other path under `stats` -- a misspelled\n"
        "counter, a scope other than `principal`, `stats` or `stats.principal` alone, an\n"
        "attribute of a counter -- names nothing the server provides, so a condition on it\n"
        "would never be true; it is refused, with the nearest counter when one is close:\n\n"
        "    deny agent any -> tool any when stats.principal.calls_1min > 600   # error[E0320]\n"
        "    deny agent any -> tool any unless stats.principal.calls_1m <= 600\n\n"
        'docs/semantics.md ("Server statistics") says what each counter counts.\n',
    ),
    Code(
        "E0330",
        _E,
        "unknown tool argument",
        '`args.NAME` reads the argument `NAME` of a tool call (docs/semantics.md, "Tool\n'
        'arguments"); the integration that exposes the tool declares its arguments in\n'
        '`input { ... }`. In a rule about named tools (`-> tool "docs.search"`, or a list)\n'
        "the argument must be declared by every one of them; in a rule about any tool (`any`,\n"
        "`tool any`), a risk term or a `require`, by at least one exposed tool (on the others\n"
        "it is missing). An argument no such tool declares can never be there, so a\n"
        "condition on it would never be true; it is refused, with the nearest argument:\n\n"
        '    integration docs-search { expose tool "docs.search" input { query: string, limit: number } ... }\n'
        '    deny agent any -> tool "docs.search" unless args.limt <= 50   # error[E0330]\n'
        '    deny agent any -> tool "docs.search" unless args.limit <= 50\n',
    ),
    Code(
        "E0331",
        _E,
        "tool arguments read about something that is not a tool",
        "Only tool calls have arguments: the MCP gateway puts them in the request as `args`\n"
        "when the resource is a tool. A rule about a service, an agent, a user or a group\n"
        "never sees `args` (it is missing there), so a condition on them would never be\n"
        'true. Write the rule about the tool (`-> tool "NAME"`), or read what requests to\n'
        "that resource carry (`request`, `context`).\n",
    ),
    Code(
        "E0332",
        _E,
        "tool argument with different types",
        "The rule is about several tools that all declare the argument, with different\n"
        "types (a string in one, a number in another), so no comparison is right for all of\n"
        "them. Write one rule per tool. (In a rule about any tool, a risk term or a\n"
        "`require`, such an argument is read untyped instead.)\n",
    ),
    Code(
        "E0333",
        _E,
        "tool argument path",
        "`args` alone is the object of all arguments, not a value: read one argument\n"
        "(`args.limit`). Below an argument, only an `object` argument has fields\n"
        "(`args.filter.team`, untyped); a string, number, boolean or array argument has\n"
        "none, so `args.limit.max` would never be there.\n",
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
    Code(
        "E0503",
        _E,
        "source outside the tree",
        "A `.mcp` file, or a directory in the tree, is a symlink whose target lies\n"
        "outside the directory given to mcpdsl. Such files are not read: a policy tree\n"
        "must not be able to pull in (and print in a diagnostic) a file from elsewhere\n"
        "on the machine, such as `/etc/passwd`. Symlinks that stay inside the tree are\n"
        "followed for files; symlinked directories inside the tree are skipped because\n"
        "their files are already found under their real path. Copy the file into the\n"
        "tree, or run mcpdsl on a directory that holds both (docs/sources.md).\n",
    ),
    Code(
        "E0504",
        _E,
        "not a regular file",
        "A path named `*.mcp` is a FIFO, socket, device or directory. Only regular\n"
        "files are read: reading a FIFO or a device can block forever or never end.\n"
        "The file is opened without blocking and checked before any byte is read, so\n"
        "the diagnostic comes at once (docs/sources.md).\n",
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
    Code(
        "W0106",
        _W,
        "deny does not fire when an attribute is missing",
        "A `deny` condition tests `X != v` or `X not in [...]`, and a request may lack `X`.\n"
        "Both comparisons are false when `X` is missing (docs/semantics.md: a MISSING side\n"
        "makes `==`, `!=`, `in` and `not in` false), so the deny does not fire for a request\n"
        "without the attribute, which is rarely what was meant:\n\n"
        '    deny any -> service billing when context.tier != "gold"\n\n'
        "does not deny a request that carries no `context.tier` at all. Say it with\n"
        "`unless`, which fires when the attribute is missing:\n\n"
        '    deny any -> service billing unless context.tier == "gold"\n\n'
        "(`unless C` is `when not C`, and `not` of a MISSING comparison is true.) If a\n"
        "request without the attribute should pass, keep the rule: the warning only says\n"
        "what it does. `action`, `now` and `risk` are never missing.\n\n"
        "The server's counters (`stats.principal.*`) are always present in a request\n"
        "`mcpdsl serve` decides, but missing wherever nobody counts: in the embedded engine\n"
        "unless its caller supplies them, and in the generated Rego and Envoy configuration.\n"
        "So for them every comparison at a positive position is reported, `>` and `<` too:\n\n"
        "    deny agent any -> tool any when stats.principal.calls_1m > 600     # W0106\n"
        "    deny agent any -> tool any unless stats.principal.calls_1m <= 600  # fails closed\n",
    ),
    Code(
        "W0111",
        _W,
        "rule needs a verified principal the gateway cannot provide",
        "An access rule names `user` or `agent` principals (or reads `principal.email`,\n"
        "`principal.groups` or `request.auth.*`), and the service or tool it protects is\n"
        "routed only by gateways that `accept` no identity provider. Requests through\n"
        "those gateways carry no verified principal, so an `allow` can only deny there\n"
        "and a `deny` never fires. Declare a `provider` and accept it on the gateway.\n",
    ),
    Code(
        "W0112",
        _W,
        "several server replicas without a shared store",
        "A `server` may run more than one replica (`replicas 2..10`) but declares no\n"
        "`redis` store. Each replica then keeps its own token buckets and per-principal\n"
        "counters: a gateway limit of N per second admits N per second *per replica*,\n"
        "and a principal whose calls are spread over replicas is never seen whole.\n"
        "Declare the store the replicas share, or run a single replica:\n\n"
        "    server authz {\n"
        '        image    "ghcr.io/acme/mcpdsl:1.0"\n'
        "        replicas 2..10\n"
        '        redis    secret "authz-redis" key "url"\n'
        "    }\n",
    ),
    # ------------------------------------------------ carbon and the optimiser (E07xx)
    Code(
        "E0701",
        _E,
        "unusable intensity file",
        'The file named by a carbon block\'s `intensity from "FILE"` cannot be used: it does\n'
        "not exist, cannot be read, is not UTF-8, lies outside the policy tree (paths are\n"
        "relative to the tree root and may not leave it), is not valid JSON, or is a CSV\n"
        "without the header `region,timestamp,g_per_kwh`.\n\n"
        "Two formats are read: CSV with one row per region and hour, and the Carbon Aware\n"
        'SDK\'s emissions JSON, a list of `{"Location", "Time", "Rating", "Duration"}`\n'
        '(or that list under `"Emissions"`).\n\n'
        "    region,timestamp,g_per_kwh\n"
        "    eu-north-1,2025-03-01T00:00:00Z,31\n",
    ),
    Code(
        "E0702",
        _E,
        "unreadable intensity record",
        "A record of an intensity forecast cannot be read: a timestamp that is not ISO 8601\n"
        "or has no time zone (write `Z` for UTC), an intensity that is not a finite number,\n"
        "a CSV row with fewer fields than the header, a JSON record without `Location`,\n"
        "`Time` or `Rating`, or a `Duration` that is not a positive time span like `01:00`.\n",
    ),
    Code(
        "E0703",
        _E,
        "unknown region in intensity data",
        "An intensity forecast names a region its carbon block does not declare. Every\n"
        'region of the forecast needs a `region "NAME" { intensity ... }` entry (its annual\n'
        "average applies where the forecast has no data). A misspelling gets a did-you-mean.\n",
    ),
    Code(
        "E0704",
        _E,
        "unsorted, duplicate or overlapping timestamps",
        "The rows of one region must be in time order, each timestamp once, and (for the\n"
        "Carbon Aware SDK format) no interval may start before the previous one ends. The\n"
        "secondary label points at the earlier row. Sort the rows of each region by time.\n",
    ),
    Code(
        "E0705",
        _E,
        "gap in an intensity series",
        "A region's forecast has a hole: an interval ends and the next starts later. In CSV\n"
        "each row lasts the region's step (the smallest spacing of its rows), so a missing\n"
        "hour is a gap. Fill the missing hours; a scheduler that silently used the annual\n"
        "average inside a forecast would plan on data nobody gave it.\n",
    ),
    Code(
        "E0706",
        _E,
        "negative carbon intensity",
        "Grid carbon intensity is a mass of CO2e per kWh and cannot be negative. Location-\n"
        "based intensities are at least 0; a negative number usually is a unit or sign error.\n",
    ),
    Code(
        "E0707",
        _E,
        "job region without an intensity",
        "A job may run in a region that its carbon block does not list, so the scheduler\n"
        "cannot price it. Add the region to the carbon block (with its intensity and a\n"
        "source comment) or remove it from the job's `regions`.\n",
    ),
    Code(
        "E0708",
        _E,
        "job cannot be placed",
        "No (region, start) is possible for a job: none of its regions has its pool, it needs\n"
        "more cpu, memory or GPUs than one node of its pool has, or its run does not fit\n"
        "between its window's opening and its deadline (the run must start inside the window\n"
        "and end by the deadline; without a deadline, by the window's end).\n",
    ),
    Code(
        "E0709",
        _E,
        "no schedule meets the constraints",
        "The green scheduler proved that no placement of the jobs meets every constraint.\n"
        "The message names a minimal set of constraints that conflict: dropping any one of\n"
        "them makes a schedule possible. Constraints are the capacity of a pool in a region\n"
        "(node capacity at its maximum nodes, less the services' expected requests), the\n"
        "renewable floor of a carbon block (`renewable at least P`) and the carbon budget.\n"
        "When only budgets conflict, the plan keeps the lowest-carbon schedule and reports\n"
        "the overrun as E0710 instead.\n",
    ),
    Code(
        "E0710",
        _E,
        "carbon budget exceeded",
        "The month's emissions of a carbon block, by the Cloud Carbon Footprint method, are\n"
        "above its budget: services at their expected replicas around the clock plus jobs\n"
        "once a day at their planned placement, at location-based average intensities.\n"
        "`mcpdsl plan DIR` shows the split; raise the budget, move workloads to cleaner\n"
        "regions or hours, or lower replicas and job energy. See docs/carbon.md.\n",
    ),
    Code(
        "E0711",
        _E,
        "services do not fit their pools",
        "The pool packer found no placement of the services' replicas at their minimum or\n"
        "expected counts: a replica is bigger than a node, the requests exceed the pool at\n"
        "its maximum `nodes`, or a service with two or more replicas (which must spread over\n"
        "at least two nodes) is in a pool of one node. Add nodes, use bigger nodes, or lower\n"
        "the replicas.\n",
    ),
    # ------------------------------------------------ output directories (E08xx)
    Code(
        "E0801",
        _E,
        "output would replace the current directory",
        "`--out` names the current directory or one of its parents. Replacing it would\n"
        "delete everything in it, the policy sources included. `--force` does not override\n"
        "this. Name a directory of its own, such as the default `build`.\n\n"
        "    mcpdsl build policies --out .        # error[E0801]\n"
        "    mcpdsl build policies --out build    # ok\n",
    ),
    Code(
        "E0802",
        _E,
        "output overlaps the source tree",
        "The output directory is the policy tree, contains it (a parent of the sources), or\n"
        "lies inside it and is not an earlier output of the same command. Paths are compared\n"
        "after resolving symbolic links and `..`, so a symlink that points into the sources\n"
        "is refused too. `--force` does not override this: the sources would be deleted.\n"
        "An absent or empty directory, or an earlier build, inside the tree is allowed\n"
        "(`mcpdsl build . --out build`).\n",
    ),
    Code(
        "E0803",
        _E,
        "output is not a directory",
        "The output path exists and is not a directory: a regular file, a device such as\n"
        "`/dev/null`, a FIFO, a socket or a symbolic link loop. It is never replaced by a\n"
        "directory; `--force` does not override this. Choose another `--out`.\n",
    ),
    Code(
        "E0804",
        _E,
        "output directory is not an mcpdsl output",
        "An output directory is replaced as a whole, so it may be replaced only when it is\n"
        "absent, empty, or an earlier output of the same command, recognised by the format\n"
        "marker in its `manifest.json` (`mcpdsl-build/1` for `build` and `watch`,\n"
        "`mcpdsl-report/1` for `report`; builds written before the marker existed are\n"
        'recognised by their `"generator": "mcpdsl"` manifest). This directory holds other\n'
        "files. Choose another `--out`, or pass `--force` to replace it anyway (everything\n"
        "in it is deleted). A report is not written into a build: `verify` would reject\n"
        "the extra files and the next build would delete them.\n",
    ),
    Code(
        "E0805",
        _E,
        "cannot write the output directory",
        "The output directory, its parent, or a temporary sibling (`.<out>.staging-*`)\n"
        "cannot be created, inspected or renamed: no permission, a read-only file system,\n"
        "a parent path that is a file, or a full disk. The previous output, if any, is\n"
        "left as it was.\n",
    ),
    # ------------------------------------------------------------ identity
    Code(
        "E0901",
        _E,
        "provider without issuer",
        "A `provider` has no `issuer`, or an empty one. The issuer is the exact `iss`\n"
        "claim of the tokens it signs; a gateway rejects tokens of any other issuer, so\n"
        "without it no token could ever be accepted.\n\n"
        '    provider corp-idp {\n        issuer "https://idp.example.com/"\n'
        '        jwks url "https://idp.example.com/.well-known/jwks.json"\n    }\n',
    ),
    Code(
        "E0902",
        _E,
        "provider needs exactly one key source",
        "A `provider` names where its public keys come from with exactly one `jwks`\n"
        'clause: `jwks url "https://..."` (fetched and refreshed by the gateway) or\n'
        '`jwks file "keys.json"` (read at build time and shipped inside the artifacts).\n'
        "Neither or both is an error: which keys verify a token must be unambiguous.\n",
    ),
    Code(
        "E0903",
        _E,
        "jwks url is not https",
        "The keys that verify tokens must arrive over TLS: whoever can change them in\n"
        "transit can mint any identity. Write an `https://` URL with a host, or ship\n"
        'the keys with the policy as `jwks file "..."`.\n',
    ),
    Code(
        "E0904",
        _E,
        "unusable jwks file",
        "The `jwks file` of a provider cannot verify tokens: it is missing, outside the\n"
        'tree, not JSON, not a JWK set (`{"keys": [...]}`), empty, or one of its keys\n'
        "is unusable: `alg: none` (accepts unsigned tokens), a symmetric `oct` key (its\n"
        "secret would be copied to every gateway), a key with private members (`d`, ...),\n"
        "a key for encryption (`use: enc`), or a key PyJWT cannot load. Export only the\n"
        "issuer's public signing keys (RSA, EC or OKP).\n",
    ),
    Code(
        "E0905",
        _E,
        "identity names another namespace",
        "A service's SPIFFE `identity` is `spiffe://TD/ns/N/sa/S`, and the mesh certifies\n"
        "a pod as the namespace it runs in. When `N` is not the service's `namespace`\n"
        "(its package unless given), the declared identity can never be presented and\n"
        "rules naming it never match. Make the two agree.\n",
    ),
    Code(
        "E0906",
        _E,
        "identity outside the mesh's trust domain",
        "A service's SPIFFE `identity` names a trust domain other than the one the\n"
        "tree's `mesh` declares: the mesh would never issue that certificate.\n\n"
        '    mesh platform { trust domain "mcp.local" }\n'
        '    service api { ... identity "spiffe://cluster.local/ns/core/sa/api" }  # E0906\n',
    ),
    Code(
        "E0907",
        _E,
        "meshes disagree on the trust domain",
        "Two `mesh` declarations name different trust domains. Every service of a tree\n"
        "is certified by one mesh; keep a single `mesh` (or give both the same domain).\n",
    ),
    Code(
        "E0908",
        _E,
        "header cannot be trusted",
        "A `trust header` names a header the gateway itself sets, rewrites or strips\n"
        "(`host`, `x-forwarded-*`, `x-envoy-*`, `x-request-id`, pseudo-headers like\n"
        "`:path`, hop-by-hop headers like `connection`), or `authorization`, which\n"
        "carries the caller's credentials: its value is not a fact a policy can rely on.\n"
        "Carry the fact in a header of its own (`x-geo`); identity comes from a\n"
        "`provider` the gateway accepts.\n",
    ),
    Code(
        "E0909",
        _E,
        "header trusted twice",
        "A gateway trusts the same header twice, or two headers set the same `context`\n"
        "attribute: which value a rule reads would depend on the order of clauses.\n",
    ),
    Code(
        "E0910",
        _E,
        "incomplete gateway tls",
        'A gateway\'s `tls` block has no server certificate (`cert sds "NAME"` or\n'
        '`cert file "cert.pem" key "key.pem"`), or asks for client certificates\n'
        "(`clients required` / `clients optional`) without a `ca` to check them against.\n",
    ),
    Code(
        "E0911",
        _E,
        "invalid network in trust header",
        "The `from [...]` list of a `trust header` holds something that is not a CIDR\n"
        'network (`"10.0.0.0/8"`; host bits must be zero), or is empty. Only peers in\n'
        "these networks may set the header; everyone else has it ignored.\n",
    ),
    # ----------------------------------------------- the decision server (E10xx)
    Code(
        "E1001",
        _E,
        "second decision server",
        "A tree declares more than one `server`. The build points every Envoy ext_authz\n"
        "filter and the Istio CUSTOM provider at the tree's decision server; with two,\n"
        "which one enforces the policy would depend on the order of files. Keep one\n"
        "`server` block; it scales out with `replicas MIN..MAX` and a shared `redis`.\n",
    ),
    Code(
        "E1002",
        _E,
        "invalid redis URL",
        "The URL of a server's `redis` store is not one its replicas can connect to:\n"
        "the scheme must be `redis://` (plain TCP) or `rediss://` (TLS), it must name a\n"
        "host, a port must be 1..65535 and a path, if any, a database number (`/0`).\n"
        "`unix://` sockets cannot be shared by pods on different nodes.\n\n"
        '    redis "redis://redis.mcp-system.svc:6379/0"\n',
    ),
    Code(
        "E1003",
        _E,
        "credentials in a redis URL",
        "The URL of a server's `redis` store carries a password\n"
        "(`redis://:s3cret@host:6379`). The policy tree, its build and the generated\n"
        "manifests are not secret: they are reviewed, diffed, stored in git and in CI\n"
        "logs. Credentials must come from a Secret: put the whole URL in one and name it,\n"
        "\n"
        '    redis secret "authz-redis" key "url"\n\n'
        "and the Deployment reads it into the server's environment (secretKeyRef).\n",
    ),
    # ------------------------------- `mcpdsl serve --workers N` (E113x, command line)
    Code(
        "E1130",
        _E,
        "several workers without a shared store",
        "`mcpdsl serve --workers N` (N > 1) runs N processes, each with its own store. A\n"
        "policy that reads `stats.principal.*` or declares a `limit` would then see each\n"
        "worker's share of the calls: a limit of 100 a minute would let N x 100 through.\n"
        "Give the workers one shared store, or run one worker:\n\n"
        "    mcpdsl serve policies/ --workers 2 --redis redis://127.0.0.1:6379/0\n\n"
        "A reload that brings such a policy to workers started without `--redis` is\n"
        "refused request by request (a deny saying why), never served with split counts.\n",
    ),
    Code(
        "E1131",
        _E,
        "several workers writing one decision-log stream",
        "`--decision-log -` with `--workers N` (N > 1): the workers' records would\n"
        "interleave on standard output, and their hash chains with them, so that\n"
        "`mcpdsl logs verify` could not follow any of them. Give a FILE: worker I writes\n"
        "`FILE.wI` (its own chain, rotated as `FILE.wI.1` ...), each verifiable alone.\n",
    ),
    # ---------------------------------------------------- analysis (z3)
    Code(
        "A0101",
        _W,
        "rule never fires",
        "No request can make this rule fire: its condition is never true together with\n"
        "its principal, resource, action and path patterns (for a deny: never true and\n"
        "never an evaluation error either). The rule is dead code; usually the condition\n"
        "contradicts itself (`x > 5 and x < 3`), contradicts the patterns\n"
        '(`principal.type == "user"` on a `service` rule) or reads `risk` beyond what the\n'
        "risk terms can add up to. No witness exists; the message names the rule.\n\n"
        "    allow service a -> service b when context.n > 5 and context.n < 3\n",
    ),
    Code(
        "A0102",
        _W,
        "allow never takes effect",
        "The allow rule can fire, but every request it fires on is denied anyway: a deny\n"
        "rule of the same policy fires on all of them (deny overrides allow), or another\n"
        "policy of the tree refuses them (a request needs every policy to allow it).\n"
        "The secondary labels are the rules or policies that are enough to deny every\n"
        "such request (an unsatisfiable core); the `witness:` note is one such request.\n"
        "Narrow the deny, or remove the allow.\n",
    ),
    Code(
        "A0103",
        _W,
        "redundant rule",
        "Every request this rule fires on is also matched by another rule of the same\n"
        "effect in the same policy (shown as a secondary label), so removing it changes\n"
        "no decision. When two rules are equivalent the later one is reported. Remove it,\n"
        "or make it more specific than the rule that covers it.\n",
    ),
    Code(
        "A0104",
        _I,
        "allow and deny overlap",
        "Some requests are matched by both this deny and an allow of the same policy; the\n"
        "deny wins (LANGUAGE.md §5). Usually intended (a guard such as an embargo list),\n"
        "so this is information: each overlapping allow is labelled, and `witness:` notes\n"
        "give a request where both fire, confirmed by the engine.\n",
    ),
    Code(
        "A0105",
        _W,
        "`require` never triggers",
        "The obligation is never added to a decision: its condition never holds (nor\n"
        "errors) on any request the policy allows. Obligations are reported only on an\n"
        "allow, so a `require` whose condition only holds on denied requests is dead.\n",
    ),
    Code(
        "A0106",
        _W,
        "risk term never counts",
        "The condition of this risk term is never true and never an evaluation error, so\n"
        "its weight is never added to `risk`.\n",
    ),
    Code(
        "A0107",
        _W,
        "deny fires only on evaluation errors",
        "The deny's condition is never true, yet the rule does fire: on requests where\n"
        "the condition is an evaluation error (a wrong type at run time), because denies\n"
        "fail closed (docs/semantics.md). The rule almost certainly does not say what was\n"
        "meant; the `witness:` note shows a request it denies.\n",
    ),
    Code(
        "A0110",
        _W,
        "route shadowed by earlier routes",
        "Routes are tried in declaration order and the first match wins. Every request\n"
        "this route matches (method and path) is taken by an earlier route (secondary\n"
        "labels), so it never receives traffic. Move it before the route that takes its\n"
        "requests; the `witness:` note is a request the engine routes elsewhere.\n\n"
        '    route "/v1/**"        -> service api\n'
        '    route "/v1/agents/**" -> service agents   # warning[A0110]\n',
    ),
    Code(
        "A0120",
        _W,
        "overlapping `during` windows disagree",
        "Two `during` windows of one `scale` block are active at the same moment and give\n"
        "different replica ranges. While both are active the engine (and the Kubernetes\n"
        "target) uses the larger minimum and the larger maximum, which is neither range\n"
        "as written. The `witness:` note is a moment when both windows are active.\n",
    ),
    Code(
        "A0121",
        _W,
        "conflicting scaling targets",
        "The same metric has two targets in one `scale` block; only one can be held.\n"
        "The HPA keeps one value per metric, so the other target is silently ignored.\n",
    ),
    Code(
        "A0122",
        _W,
        "utilisation target without a resource request",
        "`target cpu P` and `target memory P` are percentages of the pod's request, but\n"
        "the service declares no `cpu` (or `memory`), so the HPA cannot compute the\n"
        "utilisation and never scales on it. Declare the request, or scale on a metric.\n",
    ),
    Code(
        "A0123",
        _W,
        "fixed replicas outside the scaling range",
        "The service sets `replicas N`, and a `scale` block for it allows only `MIN..MAX`\n"
        "with N outside. The autoscaler overrides N at once; one of the two is wrong.\n",
    ),
    Code(
        "A0124",
        _W,
        "`predict` metric is not a target",
        "`predict` forecasts a metric the block does not scale on, so the forecast can\n"
        "never change the replica count. Add a `target metric` for it or fix the name.\n",
    ),
    Code(
        "A0130",
        _W,
        "pool too small for its workloads at their maximum",
        "The sum over the services placed in this pool of max replicas x requests\n"
        "exceeds what the pool holds at its largest node count (max nodes x node size)\n"
        "for cpu, memory or GPUs (jobs are not counted: they can run at other times). The labels are a minimal set of workloads that alone\n"
        "exceed the capacity (an unsatisfiable core), with the numbers in a note. Raise\n"
        "`nodes`, use larger nodes, or lower the maximums.\n",
    ),
    Code(
        "A0131",
        _E,
        "replica larger than a node",
        "One replica (or job) requests more cpu, memory or GPUs than a single node of its\n"
        "pool has, so it can never be scheduled.\n",
    ),
    Code(
        "A0132",
        _W,
        "quotas exceed the pool's capacity",
        "The team quotas of the pool add up to more than the pool holds at its largest\n"
        "node count: the quotas promise capacity that does not exist.\n",
    ),
    Code(
        "A0133",
        _E,
        "reservations do not fit the pool at its minimum",
        "Reservations hold capacity even when the pool runs its minimum number of nodes;\n"
        "together they exceed min nodes x node size, so they cannot all be honoured.\n"
        "The labels are a minimal set of reservations that alone do not fit.\n",
    ),
    Code(
        "A0134",
        _W,
        "pods need more than their quota",
        "A team quota becomes one ResourceQuota per namespace its workloads run in,\n"
        "scoped to the pool (the team's share, split by their demand; teams sharing a\n"
        "namespace and pool add up). That ResourceQuota counts every pod of the namespace\n"
        "placed in the pool, with or without a team. Here those pods, at their maximum\n"
        "replicas (jobs: one pod each), request more than the quota there allows, so\n"
        "Kubernetes would refuse some of them. The notes list the teams' shares.\n\n"
        "Raise the quota, lower the maximum replicas, or move a workload to another\n"
        "namespace or pool. docs/analysis.md describes the mapping.\n",
    ),
    Code(
        "A0135",
        _W,
        "reservation for a service in another pool",
        "The pool reserves capacity for a service whose `pool` clause names a different\n"
        "pool; the reservation holds capacity nothing here uses. (A service without a\n"
        "`pool` clause may be scheduled in any pool and is not reported.)\n",
    ),
    Code(
        "A0140",
        _E,
        "carbon budget cannot be met",
        "Even the cleanest possible schedule (every job run in its cleanest allowed\n"
        "region, as often as its window repeats; every service at its minimum replicas\n"
        "at idle power in its regions) emits more CO2e per period than the budget. The\n"
        "note shows the least possible emissions and their parts; the labels are the\n"
        "jobs and services that alone exceed the budget.\n",
    ),
    Code(
        "A0141",
        _E,
        "renewable share cannot be met",
        "No placement of the jobs over their allowed regions reaches the carbon block's\n"
        "`renewable at least P`: the best achievable energy-weighted share is lower.\n",
    ),
    Code(
        "A0142",
        _W,
        "job has no priced region",
        "None of the job's regions has an intensity in its carbon block, so its emissions\n"
        "cannot be estimated or scheduled against the budget.\n",
    ),
    Code(
        "A0199",
        _I,
        "analysis inconclusive",
        "The solver did not answer within its per-query limit (default 2000 ms; set\n"
        "`MCPDSL_ANALYSIS_TIMEOUT_MS`), so nothing is claimed about this subject. Usually\n"
        "caused by non-linear arithmetic between attributes or very long conditions.\n",
    ),
)

CODES: dict[str, Code] = {
    c.code: c for c in (*_TABLE, *MCP_TABLE, *BUILD_TABLE, *LOG_TABLE, *SIM_TABLE)
}

#: Codes `mcpdsl build --strict` turns into errors: a clause not enforced, dropped or narrowed.
STRICT_CODES: frozenset[str] = frozenset(c.code for c in CODES.values() if c.strict)


def explain(code: str) -> str | None:
    """The long explanation of a code, for `mcpdsl check --explain`."""
    entry = CODES.get(code.upper())
    if entry is None:
        return None
    strict = "\n`mcpdsl build --strict` reports this as an error.\n" if entry.strict else ""
    return f"{entry.code}: {entry.title}\n\n{entry.explanation}{strict}"
