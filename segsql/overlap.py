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
from segsql.emit import Target
from segsql.kpis import feature_ctes

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
