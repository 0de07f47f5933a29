"""Inline SVG charts for the project's self-contained HTML reports.

One small chart engine shared by the sustainability report
(`mcpdsl.optimize.report`) and the simulation report
(`mcpdsl.simulate.report`): bar charts, line charts over time and the
deterministic downsampling a week of 15-second steps needs before it is drawn.
Everything is a pure function from numbers to an SVG string: no scripts, no
fonts or files fetched, no timestamps, so the same numbers give the same
bytes.  Every text that reaches the SVG goes through `esc`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

GRID = "#dddddd"

#: Distinct colours for series that have no colour of their own (pools, services).
CYCLE = (
    "#1565c0",
    "#2e7d32",
    "#c62828",
    "#f9a825",
    "#6a1b9a",
    "#00838f",
    "#ef6c00",
    "#4e342e",
    "#ad1457",
    "#558b2f",
)

#: The pages' shared style sheet (inline in each page).
CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:24px auto;max-width:980px;color:#222;
line-height:1.4;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{font-size:1.2em;margin-top:28px;border-bottom:1px solid #ccc}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid #ccc;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:1.4em}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border-bottom:1px solid #e3e3e3;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}
svg{width:100%;height:auto;margin:8px 0}
svg .title{font-size:14px;font-weight:bold}svg .small{font-size:11px}
.bad{color:#c62828;font-weight:bold}.good{color:#2e7d32;font-weight:bold}
.note{color:#555;font-size:.9em}
"""


def esc(text: object) -> str:
    """Text for HTML/SVG content or a quoted attribute."""
    return html.escape(str(text), quote=True)


def colour(i: int) -> str:
    return CYCLE[i % len(CYCLE)]


def legend(entries: Sequence[tuple[str, str]], x: float, y: float) -> str:
    parts = []
    for label, fill in entries:
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{fill}"/>'
            f'<text x="{x + 14:.1f}" y="{y:.1f}" class="small">{esc(label)}</text>'
        )
        x += 24 + 7 * len(label)
    return "".join(parts)


def tick(value: float) -> str:
    return f"{round(value, 6):g}"


def ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values covering [low, high]."""
    span = high - low if high > low else 1.0
    raw = span / count
    exp = 10 ** math.floor(math.log10(raw))
    step = next(s * exp for s in (1, 2, 2.5, 5, 10) if raw <= s * exp)
    first = math.floor(low / step) * step
    out = [first]
    while out[-1] < high - 1e-9:
        out.append(out[-1] + step)
    return out


def bar_chart(
    title: str,
    categories: list[str],
    series: list[tuple[str, str, list[float]]],  # (label, colour, values)
    *,
    stacked: bool,
    unit: str = "kg CO2e / month",
    width: int = 720,
    rotate: bool = False,
    value_unit: str = "kg",
    fmt: Callable[[float], str] = tick,
) -> str:
    """A vertical bar chart (stacked or grouped) as an inline SVG element."""
    height = 300 if not rotate else 340
    left, right, top, bottom = 64, 16, 40, 52 if not rotate else 110
    plot_w, plot_h = width - left - right, height - top - bottom
    if stacked:
        peak = max((sum(s[2][i] for s in series) for i in range(len(categories))), default=0)
    else:
        peak = max((v for s in series for v in s[2]), default=0)
    scale = ticks(0.0, peak if peak > 0 else 1.0)
    top_value = scale[-1]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{esc(title)}">',
        f'<text x="{left}" y="20" class="title">{esc(title)}</text>',
    ]
    for value in scale:
        y = top + plot_h - plot_h * value / top_value
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
            f'stroke="{GRID}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="small" text-anchor="end">'
            f"{esc(tick(value))}</text>"
        )
    out.append(
        f'<text x="14" y="{top + plot_h / 2:.1f}" class="small" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.1f})" text-anchor="middle">{esc(unit)}</text>'
    )
    n = max(len(categories), 1)
    band = plot_w / n
    bar_w = band * 0.7 if stacked else band * 0.8 / max(len(series), 1)
    for i, category in enumerate(categories):
        x0 = left + band * i + band * 0.15 if stacked else left + band * i + band * 0.1
        base = 0.0
        for s, (label, fill, values) in enumerate(series):
            value = values[i]
            h = plot_h * value / top_value
            if stacked:
                y = top + plot_h - plot_h * (base + value) / top_value
                x = x0
                base += value
            else:
                y = top + plot_h - h
                x = x0 + s * bar_w
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0):.1f}" '
                f'fill="{fill}"><title>{esc(category)}, {esc(label)}: '
                f"{esc(fmt(value))} {esc(value_unit)}</title></rect>"
            )
        cx = left + band * i + band / 2
        ly = top + plot_h + 16
        if rotate:
            out.append(
                f'<text x="{cx:.1f}" y="{ly:.1f}" class="small" text-anchor="end" '
                f'transform="rotate(-35 {cx:.1f} {ly:.1f})">{esc(category)}</text>'
            )
        else:
            out.append(
                f'<text x="{cx:.1f}" y="{ly:.1f}" class="small" text-anchor="middle">'
                f"{esc(category)}</text>"
            )
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>'
    )
    out.append(legend([(label, fill) for label, fill, _ in series], left, height - 10))
    out.append("</svg>")
    return "".join(out)


# ------------------------------------------------------------------ over time


def finite(value: object) -> float | None:
    """A plottable number, or None for a gap (None, NaN, infinities, non-numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def downsample(
    xs: Sequence[float], ys: Sequence[object], buckets: int, how: str = "mean"
) -> tuple[list[float], list[float | None]]:
    """At most `buckets` points: each bucket of consecutive steps becomes one.

    `how` is `mean`, `max` or `min`; a bucket's x is its first step's, so step
    lines keep their edges.  Deterministic: bucket i holds steps
    [i*n/b, (i+1)*n/b).  A bucket without a finite value is a gap.
    """
    n = min(len(xs), len(ys))
    if n <= buckets:
        return [float(x) for x in xs[:n]], [finite(y) for y in ys[:n]]
    out_x: list[float] = []
    out_y: list[float | None] = []
    for i in range(buckets):
        lo, hi = i * n // buckets, (i + 1) * n // buckets
        values = [v for v in (finite(y) for y in ys[lo:hi]) if v is not None]
        out_x.append(float(xs[lo]))
        if not values:
            out_y.append(None)
        elif how == "max":
            out_y.append(max(values))
        elif how == "min":
            out_y.append(min(values))
        else:
            out_y.append(math.fsum(values) / len(values))
    return out_x, out_y


Series = tuple[str, str, Sequence[float | None]]  # (label, colour, y per x; None = gap)


def line_chart(
    title: str,
    xs: Sequence[float],
    series: Sequence[Series],
    *,
    unit: str,
    x_label: Callable[[float], str] = tick,
    x_ticks: Sequence[float] = (),
    step: bool = False,
    dashed: Sequence[str] = (),
    width: int = 720,
    height: int = 260,
    floor_zero: bool = True,
) -> str:
    """Lines over a shared x axis (e.g. seconds), as an inline SVG element.

    `step` draws each value flat until the next x (replica and node counts);
    series whose label is in `dashed` are drawn dashed.  None values break a
    line.  `x_ticks` are the x values to label (by `x_label`).
    """
    left, right, top, bottom = 64, 16, 40, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, _, ys in series for v in ys if v is not None]
    low = min([0.0, *values]) if floor_zero else min(values, default=0.0)
    high = max(values, default=1.0)
    scale = ticks(low, high if high > low else low + 1.0)
    y_lo, y_hi = scale[0], scale[-1]
    x_lo = xs[0] if xs else 0.0
    x_hi = xs[-1] if len(xs) > 1 else x_lo + 1.0
    if step and len(xs) > 1:
        x_hi = xs[-1] + (xs[-1] - xs[-2])

    def px(x: float) -> float:
        return left + plot_w * (x - x_lo) / (x_hi - x_lo)

    def py(y: float) -> float:
        return top + plot_h - plot_h * (y - y_lo) / (y_hi - y_lo)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{esc(title)}">',
        f'<text x="{left}" y="20" class="title">{esc(title)}</text>',
    ]
    for value in scale:
        out.append(
            f'<line x1="{left}" y1="{py(value):.1f}" x2="{left + plot_w}" y2="{py(value):.1f}" '
            f'stroke="{GRID}"/><text x="{left - 6}" y="{py(value) + 4:.1f}" class="small" '
            f'text-anchor="end">{esc(tick(value))}</text>'
        )
    for x in x_ticks:
        if not x_lo <= x <= x_hi:
            continue
        out.append(
            f'<line x1="{px(x):.1f}" y1="{top}" x2="{px(x):.1f}" y2="{top + plot_h}" '
            f'stroke="{GRID}"/><text x="{px(x):.1f}" y="{top + plot_h + 16}" class="small" '
            f'text-anchor="middle">{esc(x_label(x))}</text>'
        )
    out.append(
        f'<text x="14" y="{top + plot_h / 2:.1f}" class="small" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.1f})" text-anchor="middle">{esc(unit)}</text>'
    )
    for label, stroke, ys in series:
        path = _path(xs, ys, px, py, step, x_hi)
        if not path:
            continue
        dash = ' stroke-dasharray="6 4"' if label in dashed else ""
        out.append(
            f'<path d="{path}" fill="none" stroke="{stroke}" stroke-width="1.6"{dash}>'
            f"<title>{esc(label)}</title></path>"
        )
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>'
    )
    out.append(legend([(label, stroke) for label, stroke, _ in series], left, height - 10))
    out.append("</svg>")
    return "".join(out)


def _path(
    xs: Sequence[float],
    ys: Sequence[float | None],
    px: Callable[[float], float],
    py: Callable[[float], float],
    step: bool,
    x_end: float,
) -> str:
    parts: list[str] = []
    pen_down = False
    for i, (x, y) in enumerate(zip(xs, ys, strict=False)):
        if y is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{px(x):.1f} {py(y):.1f}")
        if step:
            nxt = xs[i + 1] if i + 1 < len(xs) else x_end
            parts.append(f"L{px(nxt):.1f} {py(y):.1f}")
        pen_down = True
    return "".join(parts)
