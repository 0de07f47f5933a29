"""Codes of `mcpdsl simulate` (S01xx): load traces, forecasts and the simulated cluster.

Kept apart from the front-end table like the build and log codes: they describe a
trace file or a simulation run (docs/simulate.md), not a policy tree.
"""

from __future__ import annotations

from mcpdsl.diagnostics.model import Code, Severity

_E = Severity.ERROR
_W = Severity.WARNING

SIM_TABLE: tuple[Code, ...] = (
    Code(
        "S0101",
        _E,
        "load trace cannot be read",
        "The file given to `--load` is missing, not a regular file (a FIFO, a device,\n"
        "a directory), larger than the limit (256 MiB) or not UTF-8 text. Nothing is\n"
        "simulated from a file that cannot be read whole.\n",
    ),
    Code(
        "S0102",
        _E,
        "trace header is not `time,service,metric,value`",
        "A CSV trace starts (after `#` comment lines and blank lines) with the header\n"
        "`time,service,metric,value`, in any order, each column once. Extra columns are\n"
        "refused so that a misspelled column is not silently ignored.\n",
    ),
    Code(
        "S0103",
        _E,
        "trace row has the wrong number of fields",
        "A CSV row has more or fewer comma-separated fields than the header. Fields\n"
        "hold no commas (service names, metric names and numbers never need them).\n",
    ),
    Code(
        "S0104",
        _E,
        "bad trace timestamp",
        "`time` is either seconds from the start of the trace (a finite, non-negative\n"
        "number) or an ISO 8601 instant with a zone offset (`2026-11-30T00:00:00Z`,\n"
        "`2026-11-30T01:00:00+01:00`). An instant without a zone is ambiguous and refused.\n",
    ),
    Code(
        "S0105",
        _E,
        "trace mixes instants and offsets",
        "Every `time` of one trace is an ISO instant or every one is an offset in seconds;\n"
        "a mix has no common origin. In a JSON trace the points are offsets from `start`.\n",
    ),
    Code(
        "S0106",
        _E,
        "trace names an unknown service",
        "The trace gives demand for a service the policy tree does not declare. The help\n"
        "line suggests the nearest declared name. Demand is matched by the service's\n"
        "name (`api`) or qualified name (`package.api`).\n",
    ),
    Code(
        "S0107",
        _E,
        "unknown trace metric",
        "A trace metric is `rps` (requests per second offered to the service: the total\n"
        "of its first per-pod metric, see docs/simulate.md) or `cpu` (CPU cores the\n"
        "service's load demands).\n",
    ),
    Code(
        "S0108",
        _E,
        "bad trace value",
        "A demand value must be a finite number of at least 0 (no NaN, no infinity, no\n"
        "negative demand) and at most 1e12.\n",
    ),
    Code(
        "S0109",
        _E,
        "duplicate trace point",
        "Two points give the same service and metric at the same time. Rows may come in\n"
        "any order, but each (time, service, metric) appears once: which of two values\n"
        "holds would otherwise depend on the order of the file.\n",
    ),
    Code(
        "S0110",
        _E,
        "malformed JSON trace",
        'A JSON trace is `{"start": "ISO instant", "series": [{"service": NAME,\n'
        '"metric": "rps"|"cpu", "points": [[seconds, value], ...]}]}`. The message names\n'
        "the first place where the document differs from that shape.\n",
    ),
    Code(
        "S0111",
        _E,
        "trace too large",
        "The trace holds more points (2,000,000) or spans more time (400 days) than the\n"
        "simulator accepts, or `--from`/`--to`/`--step` ask for more than 5,000,000 steps.\n"
        "Split the trace or use a coarser `--step`.\n",
    ),
    Code(
        "S0112",
        _E,
        "trace has no demand",
        "The trace holds no point at all (only comments, or an empty `series`), so there\n"
        "is no time span to simulate.\n",
    ),
    Code(
        "S0113",
        _E,
        "bad simulation window",
        "`--from` and `--to` are ISO instants with a zone or offsets in seconds from the\n"
        "trace start, `--from` before `--to`, and the window overlaps the trace.\n",
    ),
    Code(
        "S0114",
        _E,
        "bad simulation step",
        "`--step` is a duration of 1 second to 1 hour (`15s`, `1m`, `60`). The HPA syncs\n"
        "every 15 s; a coarser step runs it once per step.\n",
    ),
    Code(
        "S0115",
        _E,
        "intensity forecast cannot be read",
        "The file given to `--intensity` could not be read or parsed as a forecast (the\n"
        "formats of `intensity from` in docs/carbon.md). The E07xx diagnostics that follow\n"
        "say where.\n",
    ),
    Code(
        "S0116",
        _E,
        "unknown simulation region",
        "`--region` names a region no pool and no carbon block of the tree lists. Each\n"
        "region runs its own cluster; the simulation runs one of them.\n",
    ),
    Code(
        "S0117",
        _W,
        "scaled service has no demand in the trace",
        "A service with a `scale` block has no `rps` or `cpu` series in the trace: it is\n"
        "simulated with no load (it stays at its minimum and its figures are empty).\n",
    ),
    Code(
        "S0118",
        _W,
        "no carbon intensity for the simulated region",
        "No carbon block lists the simulated region, so energy is counted but carbon is\n"
        "0 and the renewable share is unknown.\n",
    ),
    Code(
        "S0119",
        _W,
        "pods did not fit",
        "Some pods stayed pending during the simulation: the pool reached its maximum\n"
        "number of nodes, a pod is larger than a node, or the team quota of its namespace\n"
        "was full. The message says how long and which limit held them back.\n",
    ),
    Code(
        "S0120",
        _W,
        "service has no pool",
        "A service without `pool` runs on nodes the tree does not describe: its pods are\n"
        "simulated (replicas, served load) but take no node capacity, cost or energy.\n",
    ),
    Code(
        "S0121",
        _E,
        "trace series is not a list of points",
        "A JSON series needs `points`: a list of `[seconds, value]` pairs, seconds an\n"
        "offset from the trace's `start`.\n",
    ),
)
