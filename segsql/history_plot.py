"""`segsql growth --plot out.svg|out.png`: segment size over time as a line chart (see drawing.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from segsql.drawing import (
    Circle,
    Drawing,
    Line,
    Polyline,
    Rect,
    Shape,
    Text,
    to_svg,
    write_drawing,
)
from segsql.errors import SpecError
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
    if not rows:
        raise SpecError("nothing to plot: no snapshots in the period", hint="run segsql snapshot")
    write_drawing(path, growth_chart(series_of(rows)))


def render_svg(series: Sequence[Series]) -> str:
    return to_svg(growth_chart(series))


def growth_chart(series: Sequence[Series]) -> Drawing:
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

    shapes = _axes(first, last, top, x, y, height)
    for index, one in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        shapes.append(Polyline(tuple((x(d), y(n)) for d, n in one.points), color))
        shapes += [
            Circle(x(d), y(n), 2.5, color, tip=f"{one.segment} {d}: {n:,}") for d, n in one.points
        ]
        legend_y = TOP + LEGEND_LINE * index
        shapes.append(Rect(WIDTH - RIGHT + 15, legend_y, 12, 12, color))
        shapes.append(Text(WIDTH - RIGHT + 32, legend_y + 10, one.segment))
    return Drawing(WIDTH, height, "segment size over time", 12, tuple(shapes))


def _axes(
    first: dt.date,
    last: dt.date,
    top: int,
    x: Callable[[dt.date], float],
    y: Callable[[float], float],
    height: int = HEIGHT,
) -> list[Shape]:
    bottom = height - BOTTOM
    shapes: list[Shape] = []
    for tick in range(Y_TICKS + 1):
        value = top * tick / Y_TICKS
        label = f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
        shapes.append(Text(LEFT - 6, y(value) + 4, label, anchor="end"))
        shapes.append(Line(LEFT, y(value), WIDTH - RIGHT, y(value), "#eee"))
    for day in _date_ticks(first, last):
        shapes.append(Text(x(day), bottom + 18, day.isoformat(), anchor="middle"))
    shapes.append(Text(LEFT, TOP - 10, "members"))
    # the axes after the grid lines, so the line at 0 does not paint over the x axis
    shapes.append(Line(LEFT, TOP, LEFT, bottom, "#333"))
    shapes.append(Line(LEFT, bottom, WIDTH - RIGHT, bottom, "#333"))
    return shapes


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
