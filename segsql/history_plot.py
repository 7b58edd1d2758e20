"""`segsql growth --plot out.svg`: segment size over time as a dependency-free SVG line chart."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape  # not xml.sax.saxutils: it imports urllib (slow start-up)
from pathlib import Path

from segsql.errors import SpecError
from segsql.files import write_atomic
from segsql.history import Growth

WIDTH, HEIGHT = 760, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 180, 30, 50  # margins: axis labels left/bottom, legend right
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7")
Y_TICKS = 5
LEGEND_LINE = 16  # px per segment in the legend


@dataclass(frozen=True)
class Series:
    segment: str
    points: tuple[tuple[dt.date, int], ...]


def series_of(rows: Sequence[Growth]) -> list[Series]:
    """One series per segment, points in date order (rows keep the segments' order)."""
    points: dict[str, list[tuple[dt.date, int]]] = {}
    for row in rows:
        points.setdefault(row.segment, []).append((row.as_of, row.size))
    return [Series(name, tuple(sorted(p))) for name, p in points.items()]


def write_plot(path: Path, rows: Sequence[Growth]) -> None:
    if path.suffix.lower() != ".svg":
        raise SpecError(
            f"cannot plot to '{path.name}': only SVG is supported",
            hint="write --plot growth.svg (browsers and docs sites show SVG directly)",
        )
    if not rows:
        raise SpecError("nothing to plot: no snapshots in the period", hint="run segsql snapshot")
    write_atomic(path, render_svg(series_of(rows)))


def render_svg(series: Sequence[Series]) -> str:
    days = [d for s in series for d, _ in s.points]
    first, last = min(days), max(days)
    top = _nice_max(max((n for s in series for _, n in s.points), default=0))
    span = max((last - first).days, 1)
    # the legend has a line per segment: a tall legend makes the chart taller, not clipped
    height = max(HEIGHT, TOP + LEGEND_LINE * len(series) + BOTTOM)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, height - TOP - BOTTOM

    def x(day: dt.date) -> float:
        return LEFT + plot_w * (day - first).days / span

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        "<title>segment size over time</title>",
    ]
    parts += _axes(first, last, top, x, y, height)
    for index, one in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        coords = " ".join(f"{x(d):.1f},{y(n):.1f}" for d, n in one.points)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        parts += [
            f'<circle cx="{x(d):.1f}" cy="{y(n):.1f}" r="2.5" fill="{color}">'
            f"<title>{escape(one.segment, quote=False)} {d}: {n:,}</title></circle>"
            for d, n in one.points
        ]
        legend_y = TOP + LEGEND_LINE * index
        parts.append(
            f'<rect x="{WIDTH - RIGHT + 15}" y="{legend_y}" width="12" height="12" fill="{color}"/>'
        )
        parts.append(
            f'<text x="{WIDTH - RIGHT + 32}" y="{legend_y + 10}">{escape(one.segment, quote=False)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _axes(
    first: dt.date,
    last: dt.date,
    top: int,
    x: Callable[[dt.date], float],
    y: Callable[[float], float],
    height: int = HEIGHT,
) -> list[str]:
    bottom = height - BOTTOM
    parts = [
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="#333"/>',
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="#333"/>',
    ]
    for tick in range(Y_TICKS + 1):
        value = top * tick / Y_TICKS
        label = f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
        parts.append(
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{label}</text>'
        )
        parts.append(
            f'<line x1="{LEFT}" y1="{y(value):.1f}" x2="{WIDTH - RIGHT}" y2="{y(value):.1f}" stroke="#eee"/>'
        )
    for day in _date_ticks(first, last):
        parts.append(
            f'<text x="{x(day):.1f}" y="{bottom + 18}" text-anchor="middle">{day.isoformat()}</text>'
        )
    parts.append(f'<text x="{LEFT}" y="{TOP - 10}">members</text>')
    return parts


def _date_ticks(first: dt.date, last: dt.date, count: int = 5) -> list[dt.date]:
    """Up to `count` + 1 evenly spaced dates from first to last."""
    span = (last - first).days
    steps = min(count, span)
    if steps == 0:
        return [first]
    return sorted({first + dt.timedelta(days=span * i // steps) for i in range(steps + 1)})


def _nice_max(value: int) -> int:
    """A round axis maximum >= value (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= value:
            return factor * magnitude
    return 10 * magnitude
