"""Grid carbon intensity: annual averages from `carbon` blocks, hourly forecasts from files.

A `carbon` block gives each region an annual average (location-based, gCO2e
per kWh).  `intensity from "FILE"` adds a forecast, path relative to the tree
root (never outside it), in one of two formats:

- CSV with the header `region,timestamp,g_per_kwh` (any column order, extra
  columns ignored, `#` comments and blank lines skipped), ISO 8601 timestamps
  with a zone (`2025-03-01T00:00:00Z`); each row holds until the region's next
  step (the smallest spacing of its rows);
- the Carbon Aware SDK's emissions JSON, `[{"Location", "Time", "Rating",
  "Duration"}]`, or that list wrapped as `{"Emissions": [...]}`; `Rating` is
  gCO2e/kWh and `Duration` a .NET time span (`01:00`, `00:05:00`, `1.00:00:00`).

Bad data is reported with the file's line and column: unknown region (E0703),
unsorted, duplicate or overlapping timestamps (E0704), gaps (E0705), negative
values (E0706), unreadable records (E0702) and unusable files (E0701).  Where a
forecast does not cover a moment, the region's annual average applies.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mcpdsl.diagnostics import Diagnostic, make
from mcpdsl.ir import model as m
from mcpdsl.optimize.coefficients import provider_of
from mcpdsl.reader import Refused, read_regular, read_source
from mcpdsl.source import SourceFile, Span

MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RegionFacts:
    """What a carbon block says about one region, as floats for the optimiser."""

    region: str
    intensity: float  # annual average, gCO2e/kWh
    renewable: float | None  # share 0..1, None when not declared
    pue: float
    pue_declared: bool
    span: Span | None = None


@dataclass(frozen=True)
class Segment:
    start: int  # epoch seconds, UTC
    end: int
    g_per_kwh: float


@dataclass
class IntensityTable:
    """Intensity per region of one carbon block: annual averages plus optional forecasts."""

    carbon: str
    regions: dict[str, RegionFacts]
    series: dict[str, tuple[Segment, ...]] = field(default_factory=dict)
    source: str | None = None  # display path of the forecast file
    _starts: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._starts = {r: [s.start for s in segs] for r, segs in self.series.items()}

    @property
    def horizon(self) -> tuple[int, int] | None:
        """The span of time the forecast covers (any region), or None without one."""
        if not self.series:
            return None
        return (
            min(segs[0].start for segs in self.series.values()),
            max(segs[-1].end for segs in self.series.values()),
        )

    def average(self, region: str, start: float, end: float) -> float:
        """Time-weighted mean intensity over [start, end); annual average where uncovered."""
        annual = self.regions[region].intensity
        segs = self.series.get(region)
        if not segs or end <= start:
            return annual
        starts = self._starts[region]
        i = max(bisect.bisect_right(starts, start) - 1, 0)
        covered = 0.0
        total = 0.0
        while i < len(segs) and segs[i].start < end:
            seg = segs[i]
            overlap = min(end, seg.end) - max(start, seg.start)
            if overlap > 0:
                covered += overlap
                total += overlap * seg.g_per_kwh
            i += 1
        total += (end - start - covered) * annual
        return total / (end - start)


# ------------------------------------------------------------------ carbon blocks


def region_facts(carbon: m.Carbon) -> dict[str, RegionFacts]:
    facts = {}
    for r in carbon.regions:
        declared = r.pue is not None
        pue = float(r.pue) if r.pue is not None else float(provider_of(r.region).pue)
        facts[r.region] = RegionFacts(
            region=r.region,
            intensity=float(r.intensity),
            renewable=float(r.renewable) if r.renewable is not None else None,
            pue=pue,
            pue_declared=declared,
            span=r.span,
        )
    return facts


def carbon_for_region(project: m.Project, package: str, region: str) -> m.Carbon | None:
    """The carbon block that prices `region` for a workload of `package`.

    The workload's own package first, then the first block (by qualified name)
    that lists the region.
    """
    listing = [c for c in project.carbons if any(r.region == region for r in c.regions)]
    if not listing:
        return None
    own = [c for c in listing if c.package == package]
    return min(own or listing, key=lambda c: c.qualified)


# ------------------------------------------------------------------ loading


@dataclass
class Loaded:
    table: IntensityTable
    diagnostics: list[Diagnostic]
    sources: list[SourceFile]


def in_tree(root: Path, relative: str) -> Path | None:
    """The real path of an `intensity from` file, or None when it leaves the tree.

    One rule for the loader and the carbon analysis: a relative name whose real
    path (symlinks and `..` resolved) stays under the tree root.
    """
    if Path(relative).is_absolute():
        return None
    try:
        path = (root / relative).resolve()
        path.relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return None
    return path


def load(project: m.Project, carbon: m.Carbon) -> Loaded:
    """The carbon block's intensity table, reading its forecast file if it names one."""
    facts = region_facts(carbon)
    table = IntensityTable(carbon.qualified, facts)
    if carbon.intensity_file is None:
        return Loaded(table, [], [])
    clause = _clause_span(project, carbon)
    root = Path(project.root or ".")
    relative = carbon.intensity_file
    path = in_tree(root, relative)
    if path is None:
        diag = make(
            "E0701",
            f"intensity file `{relative}` is outside the policy tree",
            clause,
            label="outside the tree",
            help="name a file under the tree root, e.g. `data/intensity.csv`",
        )
        return Loaded(table, [diag], [])
    display = path.relative_to(root.resolve()).as_posix()
    return _read_file(carbon, facts, table, path, display, clause)


def load_forecast(carbon: m.Carbon, path: Path) -> Loaded:
    """A forecast file named outside the tree (`mcpdsl simulate --intensity FILE`).

    The same formats and checks as `intensity from`; the user named the file on
    the command line, so it need not lie under the tree root.
    """
    facts = region_facts(carbon)
    table = IntensityTable(carbon.qualified, facts)
    return _read_file(carbon, facts, table, path, path.as_posix(), None)


def _read_file(
    carbon: m.Carbon,
    facts: dict[str, RegionFacts],
    table: IntensityTable,
    path: Path,
    display: str,
    clause: Span | None,
) -> Loaded:
    try:  # a FIFO or a device named `data.csv` is refused, not read forever
        data = read_regular(path, MAX_FILE_BYTES)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        reason = reason[:1].lower() + reason[1:]
        diag = make("E0701", f"cannot read intensity file `{display}`: {reason}", clause)
        return Loaded(table, [diag], [])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        diag = make("E0701", f"intensity file `{display}` is not UTF-8 (byte {exc.start})", clause)
        return Loaded(table, [diag], [])
    source = SourceFile(display, text)
    reader = _Reader(display, text, set(facts), carbon)
    if _looks_like_json(display, text):
        reader.read_json()
    else:
        reader.read_csv()
    reader.report_unknown()
    if reader.diagnostics:
        return Loaded(table, reader.diagnostics, [source])
    series = reader.series()
    if reader.diagnostics:
        return Loaded(table, reader.diagnostics, [source])
    return Loaded(IntensityTable(carbon.qualified, facts, series, display), [], [source])


def _looks_like_json(display: str, text: str) -> bool:
    if display.lower().endswith(".json"):
        return True
    if display.lower().endswith(".csv"):
        return False
    return text.lstrip()[:1] in ("[", "{")


def _clause_span(project: m.Project, carbon: m.Carbon) -> Span | None:
    """The span of `intensity from "FILE"` in the carbon block, found in its source text."""
    span = carbon.span
    if span is None:
        return None
    try:
        root = Path(project.root or ".")  # read as every source is read (docs/sources.md)
        text = read_source(root, root / span.file).decode("utf-8")
    except (Refused, UnicodeDecodeError):
        return span
    lines = text.split("\n")
    needle = json.dumps(carbon.intensity_file)
    for number in range(span.line, min(span.end_line, len(lines)) + 1):
        line = lines[number - 1]
        col = line.find(needle)
        if col >= 0 and "intensity" in line[:col]:
            return Span(span.file, number, col + 1, number, col + 1 + len(needle))
    return span


# ------------------------------------------------------------------ the reader


@dataclass
class _Record:
    region: str
    region_span: Span
    start: int
    start_span: Span
    duration: int | None  # seconds, None for CSV rows
    value: float


class _Reader:
    def __init__(self, display: str, text: str, regions: set[str], carbon: m.Carbon) -> None:
        self.display = display
        self.text = text
        self.regions = regions
        self.carbon = carbon
        self.records: list[_Record] = []
        self.diagnostics: list[Diagnostic] = []
        self.unknown: dict[str, tuple[Span, int]] = {}
        self._line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]

    # -- positions

    def span_at(self, offset: int, width: int = 1) -> Span:
        line = bisect.bisect_right(self._line_starts, offset)
        column = offset - self._line_starts[line - 1] + 1
        return Span(self.display, line, column, line, column + max(width, 1))

    def error(self, code: str, message: str, span: Span, **kw: Any) -> None:
        if len(self.diagnostics) < 50:  # a broken file reports its first 50 problems
            self.diagnostics.append(make(code, message, span, **kw))

    # -- common checks

    def region(self, name: str, span: Span) -> bool:
        if name in self.regions:
            return True
        first = self.unknown.setdefault(name, (span, 0))
        self.unknown[name] = (first[0], first[1] + 1)
        return False

    def report_unknown(self) -> None:
        """One E0703 per unknown region, at its first record."""
        known = ", ".join(f"`{r}`" for r in sorted(self.regions)) or "none"
        for name, (span, count) in self.unknown.items():
            more = f" ({count} records)" if count > 1 else ""
            self.error(
                "E0703",
                f"unknown region `{name}` in intensity data{more}",
                span,
                label="not a region of this carbon block",
                help=_did_you_mean(name, self.regions)
                or f"regions of `{self.carbon.qualified}`: {known}",
            )

    def value(self, number: float, span: Span) -> bool:
        if number < 0:
            self.error(
                "E0706",
                f"negative carbon intensity `{_fmt(number)}`",
                span,
                label="must be 0 or more",
            )
            return False
        return True

    def timestamp(self, raw: str, span: Span) -> int | None:
        try:
            stamp = datetime.fromisoformat(raw.strip())
        except ValueError:
            self.error(
                "E0702",
                f"`{raw}` is not an ISO 8601 timestamp",
                span,
                help="write e.g. `2025-03-01T00:00:00Z`",
            )
            return None
        if stamp.tzinfo is None:
            self.error(
                "E0702",
                f"timestamp `{raw}` has no time zone",
                span,
                help="add `Z` for UTC or an offset like `+01:00`",
            )
            return None
        return int(stamp.timestamp())

    # -- CSV

    def read_csv(self) -> None:
        header: dict[str, int] | None = None
        offset = 0
        for line in self.text.split("\n"):
            start = offset
            offset += len(line) + 1
            stripped = line.rstrip("\r")
            if not stripped.strip() or stripped.lstrip().startswith("#"):
                continue
            fields = _split_csv(stripped)
            if header is None:
                names = [f.strip().lower() for f, _ in fields]
                missing = [c for c in ("region", "timestamp", "g_per_kwh") if c not in names]
                if missing:
                    self.error(
                        "E0701",
                        "intensity CSV needs the columns `region,timestamp,g_per_kwh`",
                        self.span_at(start, len(stripped)),
                        label=f"missing {', '.join(f'`{c}`' for c in missing)}",
                        help="the first line is the header: `region,timestamp,g_per_kwh`",
                    )
                    return
                header = {name: names.index(name) for name in ("region", "timestamp", "g_per_kwh")}
                continue
            if len(fields) <= max(header.values()):
                self.error(
                    "E0702",
                    f"row has {len(fields)} fields, the header has {max(header.values()) + 1}",
                    self.span_at(start, len(stripped)),
                )
                continue
            region, rcol = fields[header["region"]]
            stamp, tcol = fields[header["timestamp"]]
            number, vcol = fields[header["g_per_kwh"]]
            rspan = self.span_at(start + rcol, len(region))
            tspan = self.span_at(start + tcol, len(stamp))
            vspan = self.span_at(start + vcol, len(number))
            self._record(region.strip(), rspan, stamp, tspan, None, number, vspan)

    def _record(
        self,
        region: str,
        rspan: Span,
        stamp: str,
        tspan: Span,
        duration: int | None,
        number: str | float,
        vspan: Span,
    ) -> None:
        ok = self.region(region, rspan)
        when = self.timestamp(stamp, tspan)
        if isinstance(number, str):
            try:
                value = float(number.strip())
            except ValueError:
                self.error("E0702", f"`{number.strip()}` is not a number", vspan)
                return
        else:
            value = float(number)
        if not math.isfinite(value):
            self.error("E0702", f"`{number}` is not a finite number", vspan)
            return
        if not self.value(value, vspan) or not ok or when is None:
            return
        self.records.append(_Record(region, rspan, when, tspan, duration, value))

    # -- JSON (Carbon Aware SDK)

    def read_json(self) -> None:
        try:
            root, end = _parse_json(self.text, 0)
            end = _skip_ws(self.text, end)
            if end != len(self.text):
                raise _JsonError(end, "extra data after the JSON value")
        except _JsonError as exc:
            self.error(
                "E0701", f"intensity file is not valid JSON: {exc.message}", self.span_at(exc.pos)
            )
            return
        items = root
        if isinstance(root.value, dict):
            wrapped = root.value.get("Emissions")
            if wrapped is None:
                self.error(
                    "E0701",
                    "a JSON object of emissions data needs an `Emissions` list",
                    self.span_at(root.start),
                    help='use `[{"Location": ..., "Time": ..., "Rating": ..., "Duration": ...}]`',
                )
                return
            items = wrapped[1]
        if not isinstance(items.value, list):
            self.error("E0701", "emissions data must be a JSON list", self.span_at(items.start))
            return
        for item in items.value:
            self._json_item(item)

    def _json_item(self, item: _Node) -> None:
        if not isinstance(item.value, dict):
            self.error(
                "E0702", "an emissions record must be a JSON object", self.span_at(item.start)
            )
            return
        fields = item.value
        missing = [k for k in ("Location", "Time", "Rating") if k not in fields]
        if missing:
            self.error(
                "E0702",
                f"emissions record without {', '.join(f'`{k}`' for k in missing)}",
                self.span_at(item.start),
            )
            return
        loc, time, rating = fields["Location"][1], fields["Time"][1], fields["Rating"][1]
        for node, kind, what in ((loc, str, "a string"), (time, str, "a string")):
            if not isinstance(node.value, kind):
                self.error(
                    "E0702", f"expected {what}", self.span_at(node.start, node.end - node.start)
                )
                return
        if isinstance(rating.value, bool) or not isinstance(rating.value, int | float):
            span = self.span_at(rating.start, rating.end - rating.start)
            self.error("E0702", "`Rating` must be a number", span)
            return
        duration = None
        if "Duration" in fields:
            dnode = fields["Duration"][1]
            duration = _timespan(dnode.value) if isinstance(dnode.value, str) else None
            if duration is None or duration <= 0:
                span = self.span_at(dnode.start, dnode.end - dnode.start)
                self.error(
                    "E0702",
                    f"`Duration` {json.dumps(dnode.value)} is not a positive time span",
                    span,
                    help='write hours and minutes, e.g. "01:00"',
                )
                return
        self._record(
            loc.value,
            self.span_at(loc.start, loc.end - loc.start),
            time.value,
            self.span_at(time.start, time.end - time.start),
            duration,
            rating.value,
            self.span_at(rating.start, rating.end - rating.start),
        )

    # -- series checks

    def series(self) -> dict[str, tuple[Segment, ...]]:
        by_region: dict[str, list[_Record]] = {}
        for record in self.records:
            by_region.setdefault(record.region, []).append(record)
        out: dict[str, tuple[Segment, ...]] = {}
        for region in sorted(by_region):
            segments = self._check(by_region[region])
            if segments:
                out[region] = tuple(segments)
        return out

    def _check(self, records: list[_Record]) -> list[Segment]:
        ok = True
        for prev, cur in itertools.pairwise(records):
            if cur.start == prev.start:
                self.error(
                    "E0704",
                    f"duplicate timestamp for region `{cur.region}`",
                    cur.start_span,
                    secondary=[_label(prev.start_span, "first here")],
                )
                ok = False
            elif cur.start < prev.start:
                self.error(
                    "E0704",
                    f"timestamps of region `{cur.region}` are not in order",
                    cur.start_span,
                    label="earlier than the row before",
                    secondary=[_label(prev.start_span, "previous timestamp")],
                    help="sort the rows of each region by time",
                )
                ok = False
        if not ok:
            return []
        if records[0].duration is None:  # CSV: each row lasts the series' step
            steps = [b.start - a.start for a, b in itertools.pairwise(records)]
            step = min(steps) if steps else 3600
            durations = [step] * len(records)
        else:
            durations = [r.duration or 0 for r in records]
        for i, (prev, cur) in enumerate(itertools.pairwise(records)):
            end = prev.start + durations[i]
            if cur.start < end:
                self.error(
                    "E0704",
                    f"interval of region `{cur.region}` overlaps the one before",
                    cur.start_span,
                    secondary=[_label(prev.start_span, f"lasts until {_iso(end)}")],
                )
                ok = False
            elif cur.start > end:
                self.error(
                    "E0705",
                    f"gap in the intensity series of `{cur.region}`: "
                    f"nothing from {_iso(end)} to {_iso(cur.start)}",
                    cur.start_span,
                    label=f"{_duration(cur.start - end)} after the previous interval ends",
                    secondary=[_label(prev.start_span, "previous interval")],
                    help="fill the missing hours, or split the forecast into separate files",
                )
                ok = False
        if not ok:
            return []
        return [
            Segment(r.start, r.start + d, r.value) for r, d in zip(records, durations, strict=True)
        ]


def _label(span: Span, message: str) -> Any:
    from mcpdsl.diagnostics import Label

    return Label(span=span, message=message)


def _split_csv(line: str) -> list[tuple[str, int]]:
    """Fields of one CSV line with their 0-based start columns (double quotes respected)."""
    fields: list[tuple[str, int]] = []
    i, n = 0, len(line)
    while True:
        start = i
        if i < n and line[i] == '"':
            i += 1
            chunks = []
            while i < n:
                if line[i] == '"':
                    if i + 1 < n and line[i + 1] == '"':
                        chunks.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                chunks.append(line[i])
                i += 1
            value = "".join(chunks)
            while i < n and line[i] != ",":
                i += 1
            fields.append((value, start + 1))
        else:
            j = line.find(",", i)
            j = n if j < 0 else j
            fields.append((line[i:j], start))
            i = j
        if i >= n:
            return fields
        i += 1  # the comma


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$")


def _timespan(text: str) -> int | None:
    """Seconds of a .NET TimeSpan string: `hh:mm`, `hh:mm:ss`, `d.hh:mm:ss`."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _iso(epoch: int) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _fmt(number: float) -> str:
    return f"{number:g}"


def _did_you_mean(name: str, candidates: set[str]) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.75)
    return f"did you mean `{close[0]}`?" if close else None


# ------------------------------------------------------------------ JSON with offsets


@dataclass
class _Node:
    value: Any  # dict[str, tuple[int, _Node]] | list[_Node] | scalar
    start: int
    end: int


class _JsonError(Exception):
    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


_DECODER = json.JSONDecoder()
# `json.decoder.scanstring` (C, with a pure-Python fallback) exists at runtime, but
# typeshed's `json/decoder.pyi` does not declare it
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_WS = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, i: int) -> int:
    match = _WS.match(text, i)
    return match.end() if match else i


def _parse_json(text: str, i: int, depth: int = 0) -> tuple[_Node, int]:
    """A JSON value with the offsets of every object member and list item."""
    if depth > 64:
        raise _JsonError(i, "nested too deeply")
    i = _skip_ws(text, i)
    if i >= len(text):
        raise _JsonError(i, "unexpected end of file")
    start = i
    if text[i] == "{":
        members: dict[str, tuple[int, _Node]] = {}
        i = _skip_ws(text, i + 1)
        if i < len(text) and text[i] == "}":
            return _Node(members, start, i + 1), i + 1
        while True:
            i = _skip_ws(text, i)
            if i >= len(text) or text[i] != '"':
                raise _JsonError(i, "expected a string key")
            key_start = i
            try:
                key, i = _scanstring(text, i + 1)
            except json.JSONDecodeError as exc:
                raise _JsonError(exc.pos, exc.msg) from exc
            i = _skip_ws(text, i)
            if i >= len(text) or text[i] != ":":
                raise _JsonError(i, "expected `:`")
            node, i = _parse_json(text, i + 1, depth + 1)
            members[key] = (key_start, node)
            i = _skip_ws(text, i)
            if i < len(text) and text[i] == ",":
                i += 1
                continue
            if i < len(text) and text[i] == "}":
                return _Node(members, start, i + 1), i + 1
            raise _JsonError(i, "expected `,` or `}`")
    if text[i] == "[":
        items: list[_Node] = []
        i = _skip_ws(text, i + 1)
        if i < len(text) and text[i] == "]":
            return _Node(items, start, i + 1), i + 1
        while True:
            node, i = _parse_json(text, i, depth + 1)
            items.append(node)
            i = _skip_ws(text, i)
            if i < len(text) and text[i] == ",":
                i += 1
                continue
            if i < len(text) and text[i] == "]":
                return _Node(items, start, i + 1), i + 1
            raise _JsonError(i, "expected `,` or `]`")
    try:
        value, end = _DECODER.raw_decode(text, i)
    except json.JSONDecodeError as exc:
        raise _JsonError(exc.pos, exc.msg) from exc
    if isinstance(value, float) and not math.isfinite(value):
        raise _JsonError(i, "NaN and Infinity are not JSON")
    return _Node(value, start, end), end
