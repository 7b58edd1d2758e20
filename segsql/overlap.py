"""Pairwise overlap of segments: shared members, Jaccard and containment, in one query per entity.

The query computes the feature relation once, turns each segment's membership into a 0/1 flag per
entity row, and sums the flags and the pairwise products of flags in a single aggregate, so the
answer is one row of counts (sizes and shared members), whatever the number of members. Jaccard
and containment are then plain arithmetic on those counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

from sqlglot import exp

from segsql.build import CompiledProject
from segsql.dialects import lower_portable
from segsql.drawing import Drawing, Rect, Shape, Text
from segsql.emit import Target, feature_ctes

FLAGS_CTE = "segsql_flags"


@dataclass(frozen=True)
class OverlapPlan:
    entity: str
    segments: tuple[str, ...]  # flag i is segments[i]


def plan_overlap(compiled: CompiledProject, selected: list[str]) -> list[OverlapPlan]:
    entities = sorted({compiled.segments[s].entity for s in selected})
    return [
        OverlapPlan(e, tuple(s for s in selected if compiled.segments[s].entity == e))
        for e in entities
    ]


def _flag(index: int) -> str:
    return f"f_{index}"


def overlap_query(compiled: CompiledProject, plan: OverlapPlan, target: Target) -> exp.Select:
    """One row: size_<i> for each segment, then shared_<i>_<j> for each pair i < j."""
    entity = compiled.entities[plan.entity]
    flags = []
    for index, name in enumerate(plan.segments):
        predicate = lower_portable(compiled.segments[name].predicate, target.engine)
        case = exp.Case(
            ifs=[exp.If(this=predicate, true=exp.Literal.number(1))], default=exp.Literal.number(0)
        )
        flags.append(exp.alias_(case, _flag(index)))
    flag_query = exp.select(*flags).from_(entity.relation_name)
    sums: list[exp.Expr] = [
        exp.alias_(exp.func("SUM", exp.column(_flag(i))), f"size_{i}")
        for i in range(len(plan.segments))
    ]
    for i, j in combinations(range(len(plan.segments)), 2):
        product = exp.Mul(this=exp.column(_flag(i)), expression=exp.column(_flag(j)))
        sums.append(exp.alias_(exp.func("SUM", product), f"shared_{i}_{j}"))
    query = exp.select(*sums).from_(FLAGS_CTE)
    for alias, body in feature_ctes(entity, target):
        query = query.with_(alias, as_=body, copy=False)
    return query.with_(FLAGS_CTE, as_=flag_query, copy=False)


def overlap_pairs(plan: OverlapPlan, counts: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Every ordered pair (a, b), a != b: shared members, Jaccard, and containment of a in b
    (the share of a's members that are also in b)."""
    n = len(plan.segments)
    sizes = [int(counts[i] or 0) for i in range(n)]
    shared: dict[tuple[int, int], int] = {}
    for position, (i, j) in enumerate(combinations(range(n), 2), start=n):
        shared[(i, j)] = shared[(j, i)] = int(counts[position] or 0)
    rows = []
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            both = shared[(i, j)]
            union = sizes[i] + sizes[j] - both
            rows.append(
                {
                    "entity": plan.entity,
                    "a": plan.segments[i],
                    "b": plan.segments[j],
                    "size_a": sizes[i],
                    "size_b": sizes[j],
                    "shared": both,
                    "jaccard": both / union if union else None,
                    "containment": both / sizes[i] if sizes[i] else None,
                }
            )
    return rows


# ---------------------------------------------------------------------------------------------
# the heat map (`segsql overlap --plot out.svg|out.png`)

CELL = 28  # px per matrix cell
LABEL_CHARS_PX = 7  # approximate width of a character at font-size 11
MAX_SHOWN_VALUES = 25  # beyond that many segments, cells only carry the value as a tooltip


def heatmap(pairs: list[dict[str, Any]], metric: str) -> Drawing:
    """One matrix per entity (row a, column b) of `metric`, darker = larger (written as SVG or
    PNG, like the growth chart: see drawing.py)."""
    entities = list(dict.fromkeys(p["entity"] for p in pairs))
    names = {e: list(dict.fromkeys(p["a"] for p in pairs if p["entity"] == e)) for e in entities}
    longest = max((len(n) for group in names.values() for n in group), default=1)
    margin = 10 + longest * LABEL_CHARS_PX
    size = max(len(group) for group in names.values()) * CELL if names else CELL
    top = 0
    shapes: list[Shape] = []
    for entity in entities:
        block_top = top + 30 + margin  # title, then the rotated column labels
        shapes += _heatmap_block(pairs, metric, entity, names[entity], margin, top, block_top)
        top = block_top + len(names[entity]) * CELL + 20
    # the last column's label leans right of the grid by cos(60 deg) of its length
    width, height = margin + size + margin // 2 + 20, max(top, 1)
    return Drawing(width, height, f"segment overlap: {metric}", 11, tuple(shapes))


def _heatmap_block(
    pairs: list[dict[str, Any]],
    metric: str,
    entity: str,
    names: list[str],
    left: int,
    top: int,
    grid_top: int,
) -> list[Shape]:
    cell = {(p["a"], p["b"]): p[metric] for p in pairs if p["entity"] == entity}
    largest = max((v for v in cell.values() if v is not None), default=0) or 1
    scale = 1 if metric != "shared" else largest  # Jaccard and containment are already 0..1
    shapes: list[Shape] = [Text(10, top + 18, f"{entity}: {metric} (row a, column b)", size=13)]
    for index, name in enumerate(names):
        x = round(left + index * CELL + CELL / 2)
        y = grid_top + index * CELL + CELL / 2
        shapes.append(Text(x, grid_top - 6, name, rotate=-60))
        shapes.append(Text(left - 6, round(y + 4), name, anchor="end"))
    for row, a in enumerate(names):
        for column, b in enumerate(names):
            value = None if a == b else cell.get((a, b))
            x, y = left + column * CELL, grid_top + row * CELL
            shapes += _heatmap_cell(x, y, a, b, value, scale, len(names), metric)
    return shapes


def _heatmap_cell(
    x: int, y: int, a: str, b: str, value: Any, scale: float, n: int, metric: str
) -> list[Shape]:
    if value is None:  # the diagonal, or an empty segment (no ratio)
        return [Rect(x, y, CELL, CELL, "#ddd", stroke="#fff")]
    share = max(0.0, min(1.0, float(value) / scale))
    # white -> dark blue, light text on dark cells
    r, g, b_ = (round(255 - share * (255 - c)) for c in (8, 48, 107))
    exact = f"{value:,}" if metric == "shared" else f"{value:.3f}"
    rect = Rect(x, y, CELL, CELL, f"rgb({r},{g},{b_})", stroke="#fff", tip=f"{a} / {b}: {exact}")
    if n > MAX_SHOWN_VALUES:
        return [rect]
    ink = "#fff" if share > 0.55 else "#222"
    centre = round(x + CELL / 2)
    return [rect, Text(centre, round(y + CELL / 2 + 3), _short(value, metric), "middle", 8, ink)]


def _short(value: Any, metric: str) -> str:
    """A cell's text: counts as is, ratios as .42 (two digits fit a cell)."""
    if metric == "shared":
        return f"{value:,}"
    return "1" if value >= 1 else f"{value:.2f}".removeprefix("0")
