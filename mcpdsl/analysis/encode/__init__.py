"""The one bridge to z3: IR conditions, rule matching and decisions as SMT formulas.

This package is the ONLY place in mcpdsl that imports z3 (its modules, by
theory: `core` values and formulas, `strings` globs and case mapping, `cidr`,
`attributes` of the request, `expressions`, `decisions`, `solving`, and
`linear` for capacity and carbon); every analysis builds its queries through
it.  It is imported lazily (by `mcpdsl.analysis`) only when a
tree has something to analyse, so `mcpdsl check` of a tree without policies,
gateways or pools never pays for z3.

The request model (docs/semantics.md, exactly):

- every attribute path `root.a.b` the conditions read (plus the implicit ones:
  `principal.type/id`, `resource.type/id`, `action`, `request.path`) is one
  symbolic JSON value: a **kind** (missing, null, bool, number, string, list,
  object) and one value per kind (Bool, Real, String, a list of slots).  A path
  that is present makes its parent an object; a parent that is not an object
  makes its children missing; the decision server's counters
  (`stats.principal.*`, mcpdsl.ir.stats) are missing or whole numbers in
  0..2^53-1, the only values the engine accepts there.  MISSING and ERROR
  are therefore exact: `x < 1` on a string is ERROR, on a missing `x` false,
  as the semantics table says;
- an expression evaluates to a `Sym`: guards for MISSING, ERROR and each kind,
  and the value of each kind.  Conditions fire on `true`, a deny fires on
  anything but `false`/MISSING (fail closed), risk terms count when they fire
  or error, risk is the clamped exact sum;
- numbers (with units, in base units) are exact rationals; strings use z3's
  string theory: equality, prefix, suffix, contains, `lower`/`upper` (ASCII
  case mapping via `seq.map`), `len`, and globs as regular expressions that
  include the query-string stripping of `mcpdsl.ir.globs`; `in cidr` decides
  the address's bits under the network's mask: per octet the mask admits one
  interval of values, so the dotted quads inside a network are a regular
  language (IPv4 exactly; IPv6 as an abstraction over a 128-bit vector);
  lists are slots: a list attribute gets one slot per membership test in
  scope, which is enough for any satisfiable combination.

What cannot be encoded exactly (equality of two objects or of two list
attributes, IPv6 address syntax, case mapping of non-ASCII strings) becomes a
fresh unconstrained symbol: an over-approximation, so an `unsat` answer ("this
rule can never fire") stays sound, and a `sat` answer is only reported after
its witness is re-run through the engine (`mcpdsl.analysis.witness`).  One
assumption narrows the model: a path matched against a glob contains no line
feed (HTTP paths cannot, and Python's `re` treats one inconsistently at the
end of a string).

Each query runs in a fresh solver with a seed, a resource limit (deterministic)
and a wall-clock timeout; `unknown` is reported, never waited for.
"""

from __future__ import annotations

from mcpdsl.analysis.encode.core import (
    AND,
    BOOL,
    DEFAULT_RLIMIT,
    DEFAULT_TIMEOUT_MS,
    FALSE,
    IMPLIES,
    KIND_NAMES,
    LIST,
    MISSING,
    NOT,
    NULL,
    NUM,
    OBJ,
    OR,
    OTHER,
    STR,
    TRUE,
    Env,
    F,
    ListVal,
    Outcome,
    Stats,
    Sym,
    all_of,
    any_of,
    json_key,
    number_of,
    string_of,
    z3_text,
)
from mcpdsl.analysis.encode.encoder import Encoder
from mcpdsl.analysis.encode.linear import Linear

__all__ = [
    "AND",
    "BOOL",
    "DEFAULT_RLIMIT",
    "DEFAULT_TIMEOUT_MS",
    "FALSE",
    "IMPLIES",
    "KIND_NAMES",
    "LIST",
    "MISSING",
    "NOT",
    "NULL",
    "NUM",
    "OBJ",
    "OR",
    "OTHER",
    "STR",
    "TRUE",
    "Encoder",
    "Env",
    "F",
    "Linear",
    "ListVal",
    "Outcome",
    "Stats",
    "Sym",
    "all_of",
    "any_of",
    "json_key",
    "number_of",
    "string_of",
    "z3_text",
]
