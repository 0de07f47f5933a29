"""Load traces: what demand each service sees over time, read from CSV or JSON.

Two formats (docs/simulate.md):

- CSV with the header `time,service,metric,value` (any column order), `#`
  comment lines and blank lines skipped; `time` is an ISO 8601 instant with a
  zone (`2026-11-30T00:00:00Z`) or seconds from the start (a number) -- one
  kind per file; rows in any order;
- JSON `{"start": "ISO", "series": [{"service", "metric", "points": [[t, v], ...]}]}`
  with `t` seconds from `start`.

`metric` is `rps` (requests per second offered) or `cpu` (cores demanded).
Between points demand is **held** (a step function): a point's value applies
from its time until the next point of the same series; before a series' first
point its demand is 0.  Hostile files are S01xx diagnostics, never exceptions:
the loader returns either a `Trace` or the diagnostics, never a partial trace.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mcpdsl.diagnostics import Diagnostic, make
from mcpdsl.reader import read_regular
from mcpdsl.source import SourceFile, Span

METRICS = ("rps", "cpu")
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_POINTS = 2_000_000
MAX_SPAN_S = 400 * 86400
MAX_VALUE = 1e12
#: Where a CSV of offsets starts: a Monday at midnight UTC, so weekday windows mean something.
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
#: Stop after this many diagnostics: a broken million-row file needs no million errors.
MAX_DIAGNOSTICS = 20
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class Series:
    """One service's demand of one metric: (seconds from start, value), sorted by time."""

    service: str
    metric: str
    times: tuple[float, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class Trace:
    """A loaded trace: its origin (epoch seconds, UTC), its length and its series."""

    name: str
    start: float
    end: float  # seconds from start: the last point's time (at least one step is simulated)
    series: tuple[Series, ...]

    def get(self, service: str, metric: str) -> Series | None:
        for s in self.series:
            if s.service == service and s.metric == metric:
                return s
        return None


@dataclass
class Loaded:
    trace: Trace | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    source: SourceFile | None = None


def parse_instant(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 instant with a zone, None when it is not one."""
    text = text.strip()
    if not text or len(text) > 64:
        return None
    try:
        stamp = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" else text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None
    return stamp.timestamp()


def parse_number(text: str) -> float | None:
    """A plain decimal number (no `nan`, `inf`, `0x`, `1_000`), None otherwise."""
    text = text.strip()
    if len(text) > 64 or not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def iso(epoch: float) -> str:
    """An instant as `2026-11-30T00:00:00Z` (whole seconds, UTC)."""
    return datetime.fromtimestamp(math.floor(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Reader:
    """Collects points and diagnostics; `trace()` sorts and checks them."""

    def __init__(self, display: str, services: dict[str, str]) -> None:
        self.display = display
        self.services = services  # accepted name -> canonical service name
        self.diagnostics: list[Diagnostic] = []
        self.points: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        self.count = 0

    @property
    def full(self) -> bool:
        return len(self.diagnostics) >= MAX_DIAGNOSTICS

    def error(self, code: str, message: str, line: int = 0, col: int = 1, width: int = 1,
              help: str | None = None) -> None:  # fmt: skip
        if self.full:
            return
        span = Span.point(self.display, line, col, max(width, 1)) if line else None
        self.diagnostics.append(make(code, message, span, help=help))

    def service(self, name: str, line: int, col: int) -> str | None:
        found = self.services.get(name)
        if found is None:
            near = _did_you_mean(name, set(self.services))
            self.error(
                "S0106",
                f"unknown service `{_brief(name)}`",
                line,
                col,
                len(name),
                help=f"did you mean `{near}`?" if near else "name a service of the tree",
            )
        return found

    def metric(self, name: str, line: int, col: int) -> bool:
        if name in METRICS:
            return True
        self.error(
            "S0107",
            f"unknown metric `{_brief(name)}`",
            line,
            col,
            len(name),
            help="a trace metric is `rps` or `cpu`",
        )
        return False

    def value(self, text: str, line: int, col: int) -> float | None:
        value = parse_number(text)
        if value is None or value < 0 or value > MAX_VALUE:
            self.error(
                "S0108",
                f"bad value `{_brief(text)}`: expected a number from 0 to 1e12",
                line,
                col,
                len(text),
            )
            return None
        return value

    def add(self, service: str, metric: str, t: float, value: float, line: int) -> None:
        self.count += 1
        if self.count == MAX_POINTS + 1:
            self.error("S0111", f"the trace holds more than {MAX_POINTS:,} points", line)
            return
        if self.count > MAX_POINTS:
            return
        self.points.setdefault((service, metric), []).append((t, value, line))

    def trace(self, name: str, start: float | None, absolute: bool) -> Trace | None:
        """The checked trace.  Absolute CSV times: the earliest instant is the origin;
        offsets (CSV or JSON) count from `start` (`DEFAULT_START` for a CSV of offsets)."""
        if self.diagnostics:
            return None
        if not self.points:
            self.error("S0112", f"`{self.display}` holds no demand point")
            return None
        origin = min(p[0] for pts in self.points.values() for p in pts) if absolute else 0.0
        start = 0.0 if absolute else (DEFAULT_START if start is None else start)
        series = []
        end = 0.0
        for (service, metric), pts in sorted(self.points.items()):
            pts.sort(key=lambda p: (p[0], p[2]))
            for a, b in itertools.pairwise(pts):
                if a[0] == b[0]:
                    self.error(
                        "S0109",
                        f"`{service}` `{metric}` has two points at the same time "
                        f"(lines {a[2]} and {b[2]})"
                        if b[2]
                        else f"`{service}` `{metric}` has two points at {a[0]:g}s",
                        b[2],
                    )
                    break
            times = tuple(p[0] - origin for p in pts)
            end = max(end, times[-1])
            series.append(Series(service, metric, times, tuple(p[1] for p in pts)))
        if end > MAX_SPAN_S:
            self.error("S0111", f"the trace spans {end / 86400:.0f} days (at most 400)")
        if self.diagnostics:
            return None
        return Trace(name, start + origin, end, tuple(series))


def load_trace(path: str | Path, services: dict[str, str]) -> Loaded:
    """Read and check a trace file; `services` maps accepted names to service names."""
    path = Path(path)
    display = path.as_posix()
    try:
        data = read_regular(path, MAX_FILE_BYTES)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        reason = reason[:1].lower() + reason[1:]
        return Loaded(None, [make("S0101", f"cannot read trace `{display}`: {reason}", None)])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        diag = make("S0101", f"trace `{display}` is not UTF-8 (byte {exc.start})", None)
        return Loaded(None, [diag])
    return parse_trace(display, text, services)


def parse_trace(display: str, text: str, services: dict[str, str]) -> Loaded:
    """Parse a trace's text (format chosen by extension, else by the first character)."""
    source = SourceFile(display, text)
    reader = _Reader(display, services)
    lower = display.lower()
    as_json = lower.endswith(".json") or (
        not lower.endswith(".csv") and text.lstrip()[:1] in ("{", "[")
    )
    if as_json:
        start, absolute = _read_json(reader, text), False
    else:
        start, absolute = None, _read_csv(reader, text)
    name = display.rsplit("/", 1)[-1]
    return Loaded(reader.trace(name, start, absolute), reader.diagnostics, source)


def _read_csv(reader: _Reader, text: str) -> bool:
    """Rows into `reader`; True when the times are instants (False: offsets)."""
    header: dict[str, int] | None = None
    kind: str | None = None  # "absolute" | "relative"
    for number, raw in enumerate(text.split("\n"), start=1):
        if reader.full:
            break
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = _split(line)
        if header is None:
            names = [f.strip().lower() for f, _ in fields]
            if sorted(names) != sorted(("time", "service", "metric", "value")):
                reader.error(
                    "S0102",
                    f"expected the header `time,service,metric,value`, found `{_brief(line)}`",
                    number,
                    1,
                    len(line),
                )
                return False
            header = {n: i for i, n in enumerate(names)}
            continue
        if len(fields) != 4:
            reader.error("S0103", f"expected 4 fields, found {len(fields)}", number, 1, len(line))
            continue
        t_text, t_col = fields[header["time"]]
        relative = parse_number(t_text)
        absolute = None if relative is not None else parse_instant(t_text)
        if (relative is None or relative < 0) and absolute is None:
            reader.error(
                "S0104",
                f"bad time `{_brief(t_text.strip())}`: expected an ISO 8601 instant with a "
                "zone or seconds from the start",
                number,
                t_col,
                len(t_text),
            )
            continue
        this = "relative" if absolute is None else "absolute"
        if kind is None:
            kind = this
        elif kind != this:
            reader.error(
                "S0105",
                f"this row's time is an {'offset' if this == 'relative' else 'instant'}, "
                f"earlier rows use {'instants' if kind == 'absolute' else 'offsets'}",
                number,
                t_col,
                len(t_text),
            )
            continue
        s_text, s_col = fields[header["service"]]
        m_text, m_col = fields[header["metric"]]
        v_text, v_col = fields[header["value"]]
        service = reader.service(s_text.strip(), number, s_col)
        ok = reader.metric(m_text.strip(), number, m_col)
        value = reader.value(v_text, number, v_col)
        if service is None or not ok or value is None:
            continue
        t = absolute if absolute is not None else relative
        assert t is not None
        reader.add(service, m_text.strip(), t, value, number)
    if header is None and not reader.diagnostics:
        reader.error("S0112", f"`{reader.display}` holds no header and no demand point")
    return kind == "absolute"


def _split(line: str) -> list[tuple[str, int]]:
    out, col = [], 1
    for part in line.split(","):
        out.append((part, col))
        col += len(part) + 1
    return out


def _read_json(reader: _Reader, text: str) -> float | None:
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        line = exc.lineno if isinstance(exc, json.JSONDecodeError) else 0
        reader.error("S0110", f"not JSON{where}: {_brief(str(exc).split(':')[0])}", line)
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("series"), list):
        reader.error("S0110", 'expected an object with `"start"` and a `"series"` list')
        return None
    start_text = doc.get("start")
    start = parse_instant(start_text) if isinstance(start_text, str) else None
    if start is None:
        reader.error(
            "S0104", f"`start` must be an ISO 8601 instant with a zone, found {_brief(start_text)}"
        )
        return None
    for i, entry in enumerate(doc["series"]):
        if reader.full:
            break
        if not isinstance(entry, dict):
            reader.error("S0110", f"series {i} is not an object")
            continue
        service_name, metric = entry.get("service"), entry.get("metric")
        if not isinstance(service_name, str) or not isinstance(metric, str):
            reader.error("S0110", f'series {i} needs string `"service"` and `"metric"`')
            continue
        service = reader.service(service_name, 0, 1)
        if not reader.metric(metric, 0, 1) or service is None:
            continue
        points = entry.get("points")
        if not isinstance(points, list):
            reader.error("S0121", f"series {i} (`{_brief(service_name)}`) has no `points` list")
            continue
        for j, point in enumerate(points):
            if reader.full:
                break
            ok = (
                isinstance(point, list)
                and len(point) == 2
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in point)
            )
            if not ok:
                reader.error("S0121", f"series {i} point {j} is not `[seconds, value]`")
                continue
            t, v = float(point[0]), float(point[1])
            if not math.isfinite(t) or t < 0 or t > MAX_SPAN_S * 2:
                reader.error("S0104", f"series {i} point {j}: bad offset {_brief(point[0])}")
                continue
            if not math.isfinite(v) or v < 0 or v > MAX_VALUE:
                reader.error("S0108", f"series {i} point {j}: bad value {_brief(point[1])}")
                continue
            reader.add(service, metric, t, v, 0)
    return start


def _no_constant(name: str) -> float:
    raise ValueError(f"`{name}` is not a number")


def _brief(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 60 else text[:57] + "..."


def _did_you_mean(name: str, candidates: set[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return found[0] if found else None
