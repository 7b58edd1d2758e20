"""KPIs per segment: definitions, the standard pack, and the one-pass query that computes them.

A KPI is an aggregate over an entity's feature relation (`sum(lifetime_revenue)`), declared under
`kpis:` beside segments, or taken from the standard pack by name (formulas in docs/kpis.md).

`kpi_query` computes every KPI of every selected segment in ONE query, in which the source tables
are read and the features computed once. Two shapes give the same numbers:
- "union" (DuckDB, PostgreSQL): the feature relation is a MATERIALIZED CTE, and one aggregate per
  segment over it (`SELECT 1, COUNT(*), SUM(...) FROM features WHERE <segment 1> UNION ALL ...`)
  computes all of that segment's KPIs, its predicate evaluated once per row;
- "unnest" (BigQuery, which has no MATERIALIZED CTEs and would recompute the features for each
  reference): each entity row is fanned out to the ids of the segments it belongs to
  (`CROSS JOIN UNNEST(ARRAY[0, CASE WHEN <segment 1> THEN 1 END, ...])`), and one GROUP BY over
  that id aggregates every KPI of every segment.
Measured on DuckDB at 1M customers and 50 segments (bench/kpi_bench.py; docs/kpis.md), union
costs 1.5x the features alone and unnest 3.5x (the fan-out multiplies the rows). A FILTER
aggregate per KPI per segment, the other obvious shape, evaluates each predicate once per KPI and
is slower still.
An outer select adds share of entity, share of parent and lift (KPI / parent KPI). Ratios and KPI
values leave the query as DECIMAL(38, 9), so DuckDB (whose decimal division yields DOUBLE) and
PostgreSQL (exact NUMERIC) print the same numbers.
"""

from __future__ import annotations

import decimal
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sqlglot import exp

from segsql.build import (
    CompiledProject,
    Entity,
    _Context,
    parse_expression,
    resolve_columns,
)
from segsql.dialects import lower_portable
from segsql.emit import SegmentPrinter, Target, to_sql, with_where
from segsql.errors import ErrorCollector, Location, SpecError, did_you_mean
from segsql.model import Expr, KpiDef
from segsql.render import renderer_for

STANDARD_PACK = "standard"
# Always in the result (the standard pack's size and shares): they need no definition.
STRUCTURAL = ("size", "share_of_entity", "share_of_parent")
RESERVED = frozenset({"segment", "entity", "parent", *STRUCTURAL})
OUTPUT_DECIMAL = "DECIMAL(38, 9)"
SEGMENT_ID = "segsql_segment_id"
MEMBERS_CTE = "segsql_members"
VALUES_CTE = "segsql_kpi_values"
SEGMENTS_CTE = "segsql_segments"
BASELINE = "(all)"  # the segment column of the whole-entity row
Shape = Literal["union", "unnest"]
SHAPES: tuple[Shape, ...] = ("union", "unnest")
UNNEST_ENGINES = frozenset({"bigquery"})  # no MATERIALIZED CTEs: see the module docstring


# ---------------------------------------------------------------------------------------------
# the standard pack


@dataclass(frozen=True)
class StandardKpi:
    name: str
    expr: str
    format: str
    description: str
    needs: tuple[str, ...]  # features the entity must have, by these conventional names


def _count_if(condition: str) -> str:
    # SUM(CASE ...) rather than COUNT(*) FILTER (...): BigQuery has no FILTER clause.
    return f"sum(case when {condition} then 1 else 0 end)"


_RETAINED = _count_if("active_before and active_now")
_WERE_ACTIVE = _count_if("active_before")
_CHURNED = _count_if("active_before and not active_now")

STANDARD_KPIS: dict[str, StandardKpi] = {
    k.name: k
    for k in (
        StandardKpi(
            "conversion_rate",
            f"segsql_safe_divide({_count_if('order_count > 0')}, count(*))",
            "percent",
            "Share of members who ordered at least once.",
            ("order_count",),
        ),
        StandardKpi(
            "revenue",
            "sum(lifetime_revenue)",
            "currency",
            "Revenue to date of all members.",
            ("lifetime_revenue",),
        ),
        StandardKpi(
            "average_order_value",
            "segsql_safe_divide(sum(lifetime_revenue), sum(order_count))",
            "currency",
            "Revenue per order.",
            ("lifetime_revenue", "order_count"),
        ),
        StandardKpi(
            "purchase_frequency",
            "segsql_safe_divide(sum(order_count), count(*))",
            "number",
            "Orders per member.",
            ("order_count",),
        ),
        StandardKpi(
            "clv_historic",
            "segsql_safe_divide(sum(lifetime_revenue), count(*))",
            "currency",
            "Historic customer lifetime value: revenue to date per member.",
            ("lifetime_revenue",),
        ),
        StandardKpi(
            "clv_predictive",
            f"segsql_safe_divide(sum(period_revenue) * {_WERE_ACTIVE}, count(*) * {_CHURNED})",
            "currency",
            "Predictive CLV: revenue per member in the current period / churn rate.",
            ("period_revenue", "active_before", "active_now"),
        ),
        StandardKpi(
            "retention_rate",
            f"segsql_safe_divide({_RETAINED}, {_WERE_ACTIVE})",
            "percent",
            "Of members active in the previous period, the share also active in this one.",
            ("active_before", "active_now"),
        ),
        StandardKpi(
            "churn_rate",
            f"segsql_safe_divide({_CHURNED}, {_WERE_ACTIVE})",
            "percent",
            "Of members active in the previous period, the share not active in this one.",
            ("active_before", "active_now"),
        ),
        StandardKpi(
            "active_days_per_member",
            "segsql_safe_divide(sum(active_days), count(*))",
            "number",
            "Engagement: active days in the period per member.",
            ("active_days",),
        ),
        StandardKpi(
            "sessions_per_member",
            "segsql_safe_divide(sum(sessions), count(*))",
            "number",
            "Engagement: sessions in the period per member.",
            ("sessions",),
        ),
        StandardKpi(
            "segment_value",
            f"segsql_safe_divide(sum(period_revenue) * {_WERE_ACTIVE}, {_CHURNED})",
            "currency",
            "Predictive CLV x size; summed over a split of the base (see `split_values`).",
            ("period_revenue", "active_before", "active_now"),
        ),
    )
}


# ---------------------------------------------------------------------------------------------
# resolved KPIs


@dataclass(frozen=True)
class Kpi:
    name: str
    entity: str
    expression: exp.Expr  # an aggregate over the feature relation's columns
    format: str
    description: str | None
    columns: tuple[str, ...]  # feature-relation columns it reads


def build_kpis(compiled: CompiledProject) -> dict[str, tuple[Kpi, ...]]:
    """Entity -> its KPIs in declared order (standard references expanded); raises SpecErrors."""
    errors = ErrorCollector()
    renderer = renderer_for(compiled.project.macro_files, compiled.variables, compiled.as_of)
    context = _Context(compiled.project, renderer, errors, compiled.as_of)
    explicit = {(d.name, _entity_of(d, compiled)) for d in compiled.project.kpis.values() if d.expr}
    built: dict[str, dict[str, Kpi]] = {}
    for definition in compiled.project.kpis.values():
        for kpi in (
            context.capture(_build_definition, definition, compiled, context, explicit) or []
        ):
            built.setdefault(kpi.entity, {})[kpi.name] = kpi
    errors.raise_if_any()
    return {entity: tuple(kpis.values()) for entity, kpis in built.items()}


_last_built: tuple[CompiledProject, dict[str, tuple[Kpi, ...]]] | None = None


def built_kpis(compiled: CompiledProject) -> dict[str, tuple[Kpi, ...]]:
    """`build_kpis`, once per compiled project: `compile` writes a kpis.sql per target."""
    global _last_built
    if _last_built is None or _last_built[0] is not compiled:
        _last_built = (compiled, build_kpis(compiled))
    return _last_built[1]


def _entity_of(definition: KpiDef, compiled: CompiledProject) -> str | None:
    if definition.entity is not None:
        return definition.entity.name
    entities = list(compiled.entities)
    return entities[0] if len(entities) == 1 else None


def _build_definition(
    definition: KpiDef,
    compiled: CompiledProject,
    context: _Context,
    explicit: set[tuple[str, str | None]],
) -> list[Kpi]:
    entity = _entity(definition, compiled)
    if definition.expr is not None:
        _check_name(definition.name, definition.loc)
        fmt = definition.format or "number"
        return [_build_kpi(definition.name, definition.expr, fmt, definition, entity, context)]
    names = _standard_names(definition)
    # a KPI the project defines itself under a standard name replaces the standard one
    names = [n for n in names if (n, entity.name) not in explicit]
    _check_features(names, entity, definition)
    kpis = []
    for name in names:
        if name in STRUCTURAL:
            continue
        standard = STANDARD_KPIS[name]
        expr = Expr(standard.expr, definition.loc)
        fmt = definition.format or standard.format
        kpis.append(_build_kpi(name, expr, fmt, definition, entity, context, standard.description))
    return kpis


def _entity(definition: KpiDef, compiled: CompiledProject) -> Entity:
    name = _entity_of(definition, compiled)
    if name is None:
        raise SpecError(
            f"KPI '{definition.name}' does not say which entity it measures",
            definition.loc,
            f"add `entity:` (one of {', '.join(compiled.entities)}), e.g. `- {{name: {definition.name}, entity: customer}}`",
        )
    if name not in compiled.entities:
        loc = definition.entity.loc if definition.entity else definition.loc
        raise SpecError(
            f"KPI '{definition.name}': unknown entity '{name}'",
            loc,
            did_you_mean(name, compiled.entities),
        )
    return compiled.entities[name]


def _check_name(name: str, loc: Location) -> None:
    if name.lower() in RESERVED or name.lower().startswith("lift_"):
        raise SpecError(
            f"KPI name '{name}' is taken by a column of the KPI result",
            loc,
            f"rename it: {', '.join(sorted(RESERVED))} and lift_* are reserved",
        )


def _standard_names(definition: KpiDef) -> list[str]:
    if definition.name == STANDARD_PACK:
        return [*STRUCTURAL, *STANDARD_KPIS]
    if definition.name in STANDARD_KPIS or definition.name in STRUCTURAL:
        return [definition.name]
    known = [STANDARD_PACK, *STRUCTURAL, *STANDARD_KPIS]
    raise SpecError(
        f"'{definition.name}' is not a standard KPI, and has no `expr`",
        definition.loc,
        did_you_mean(definition.name, known)
        or "define it with `expr:` (an aggregate), or use one of: " + ", ".join(known),
    )


def _check_features(names: Iterable[str], entity: Entity, definition: KpiDef) -> None:
    """Standard KPIs read features by conventional names: say exactly which ones are missing."""
    have = {c.lower() for c in entity.output_columns}
    missing = {}
    for name in names:
        needs = STANDARD_KPIS[name].needs if name in STANDARD_KPIS else ()
        lacking = [f for f in needs if f.lower() not in have]
        if lacking:
            missing[name] = lacking
    if not missing:
        return
    detail = "; ".join(f"{kpi} needs {', '.join(features)}" for kpi, features in missing.items())
    features = sorted({f for lacking in missing.values() for f in lacking})
    raise SpecError(
        f"standard KPIs need features entity '{entity.name}' does not have: {detail}",
        definition.loc,
        f"define feature(s) {', '.join(features)} on '{entity.name}' (meanings in docs/kpis.md), "
        "or list only the standard KPIs it can compute, e.g. `kpis: [revenue]`",
    )


def _build_kpi(
    name: str,
    expr: Expr,
    fmt: str,
    definition: KpiDef,
    entity: Entity,
    context: _Context,
    default_description: str | None = None,
) -> Kpi:
    what = f"KPI '{name}'"
    parsed = parse_expression(expr, context, what)
    scope = f"entity '{entity.name}' (columns and features)"
    columns = resolve_columns(parsed.tree, entity.output_columns, expr, scope)
    _check_aggregate(parsed.tree, expr, what)
    description = definition.description or default_description
    return Kpi(name, entity.name, parsed.tree, fmt, description, columns)


def _check_aggregate(tree: exp.Expr, expr: Expr, what: str) -> None:
    """One value per segment: every column must be read inside an aggregate, and no windows."""
    if tree.find(exp.Window) is not None:
        raise SpecError(f"{what}: window functions are not allowed", expr.loc)
    if tree.find(exp.AggFunc) is None:
        raise SpecError(
            f"{what} must aggregate the members' rows",
            expr.loc,
            "e.g. `sum(lifetime_revenue)`, `avg(orders_90d)`, `count(*)`",
        )
    for column in tree.find_all(exp.Column):
        if column.find_ancestor(exp.AggFunc) is None:
            raise SpecError(
                f"{what} reads '{column.name}' outside an aggregate",
                expr.loc,
                f"aggregate it, e.g. `sum({column.name})`",
            )


# ---------------------------------------------------------------------------------------------
# the plan: which segments, which KPIs, who is whose parent


@dataclass(frozen=True)
class KpiPlan:
    entity: Entity
    shown: tuple[str, ...]  # selected segments, in tree order (see `tree_order`)
    computed: tuple[str, ...]  # shown + the parents they are compared with; id = index + 1
    kpis: tuple[Kpi, ...]

    def segment_id(self, name: str) -> int:
        return self._ids[name]

    @functools.cached_property
    def _ids(self) -> dict[str, int]:
        return {name: index + 1 for index, name in enumerate(self.computed)}


def plan_kpis(
    compiled: CompiledProject,
    selected: list[str],
    kpis: dict[str, tuple[Kpi, ...]],
    only: list[str] | None = None,
) -> list[KpiPlan]:
    """One plan per entity of the selected segments; `only` keeps the named KPIs."""
    entities = sorted({compiled.segments[s].entity for s in selected})
    _check_only(only, {e: kpis.get(e, ()) for e in entities})
    plans = []
    for entity_name in entities:
        shown = tree_order(
            compiled, [s for s in selected if compiled.segments[s].entity == entity_name]
        )
        wanted = {*shown, *(_parent(compiled, s) for s in shown)}  # and their parents
        # ids follow the tree order too: the result is ordered by id
        computed = tree_order(compiled, [s for s in compiled.segments if s in wanted])
        chosen = _only(kpis.get(entity_name, ()), only)
        plans.append(KpiPlan(compiled.entities[entity_name], tuple(shown), tuple(computed), chosen))
    return plans


def _parent(compiled: CompiledProject, name: str) -> str | None:
    parent = compiled.segments[name].definition.parent
    return parent.name if parent else None


def _ancestry(compiled: CompiledProject, name: str) -> list[str]:
    """The segment's `parent:` chain, root first, then the segment itself."""
    chain: list[str] = []
    current: str | None = name
    while current is not None:
        chain.append(current)
        current = _parent(compiled, current)
    return chain[::-1]


def tree_order(compiled: CompiledProject, names: list[str]) -> list[str]:
    """Each segment right under its parent (pre-order of the `parent:` tree): the table indents by
    nesting, and share of parent and lift compare a row with the one it is indented under.
    Siblings keep the dependency order."""
    position = {s: i for i, s in enumerate(compiled.segments)}
    return sorted(names, key=lambda n: [position[s] for s in _ancestry(compiled, n)])


def nesting_depth(compiled: CompiledProject, name: str) -> int:
    """1 for a segment without `parent:`, its parent's + 1 otherwise. Not the lineage depth, which
    also counts set operands: `intersect: [a, b]` is compared with the entity, not with b."""
    return len(_ancestry(compiled, name))


def _check_only(only: list[str] | None, kpis: dict[str, tuple[Kpi, ...]]) -> None:
    """A name must be a KPI of at least one of the entities shown; each entity keeps its own."""
    known = {k.name for entity_kpis in kpis.values() for k in entity_kpis}
    for name in only or []:
        if name not in known and name not in STRUCTURAL:
            listed = ", ".join(sorted(known)) or "none (add `kpis:` to a definition file)"
            raise SpecError(
                f"no KPI '{name}' for {' or '.join(repr(e) for e in kpis)}",
                hint=did_you_mean(name, known) or f"KPIs: {listed}",
            )


def _only(kpis: tuple[Kpi, ...], only: list[str] | None) -> tuple[Kpi, ...]:
    if only is None:
        return kpis
    known = {k.name: k for k in kpis}
    return tuple(known[n] for n in only if n in known)


# ---------------------------------------------------------------------------------------------
# the one-pass query


def default_shape(target: Target) -> Shape:
    return "unnest" if target.engine.name in UNNEST_ENGINES else "union"


class KpiTexts:
    """The pieces a KPI query is assembled from, each printed once per target and put in its
    tree as an opaque leaf (a `Var`: sqlglot prints it verbatim and indents its lines as it
    would the subtree's, so the query's text is the same).

    Building the query from the segments' trees instead copied every predicate (with its
    ancestors' terms) into each UNION branch: 0.3 s per target on the example project. Here
    the predicates and the feature relation come from a SegmentPrinter, so `compile` takes
    them from its cache and a recompile after one edit prints that segment's predicate only.
    """

    def __init__(self, compiled: CompiledProject, target: Target, printer: SegmentPrinter | None):
        self.compiled = compiled
        self.target = target
        self.printer = printer or SegmentPrinter(compiled, target)
        self._aggregates: dict[tuple[str, str], str] = {}

    def predicate(self, segment: str) -> exp.Expr:
        return self.printer.lowering.predicate(self.compiled.segments[segment])

    def aggregate(self, kpi: Kpi) -> str:
        key = (kpi.entity, kpi.name)
        if key not in self._aggregates:
            lowered = lower_portable(kpi.expression, self.target.engine)
            self._aggregates[key] = to_sql(lowered, self.target, copy=False)
        return self._aggregates[key]

    def feature_ctes(self, entity: Entity) -> list[tuple[str, exp.Expr]]:
        return [(name, exp.Var(this=text)) for name, text in self.printer.feature_ctes(entity.name)]

    def printed(
        self, kind: str, made_of: tuple[str, ...], build: Callable[[], exp.Expr]
    ) -> exp.Expr:
        """`build()` printed, as a leaf; `made_of` are the texts (and values) it is made of, so
        a compile takes it from the cache while they are the same: a project of 1,000 segments
        has 1,000 UNION branches and 1,000 rows of segments in each kpis.sql."""
        text = self.printer.made_of(kind, made_of, lambda: to_sql(build(), self.target, copy=False))
        return exp.Var(this=text)


def kpi_query(
    compiled: CompiledProject,
    plan: KpiPlan,
    target: Target,
    shape: Shape | None = None,
    texts: KpiTexts | None = None,
) -> exp.Select:
    """Every KPI of every planned segment and the whole entity, with shares and lifts: one query.
    `texts` shares printed pieces between queries (by default printed for this one)."""
    shape = shape or default_shape(target)
    texts = texts or KpiTexts(compiled, target, None)
    result = lower_portable(_result_select(plan), target.engine, copy=False)
    query: exp.Select = result  # type: ignore[assignment]
    for alias, body in texts.feature_ctes(plan.entity):
        # computed once, then read by each segment's aggregate (not inlined into each of them)
        materialized = shape == "union" and alias == plan.entity.relation_name
        query = query.with_(alias, as_=body, copy=False, materialized=materialized or None)
    if shape == "union":
        query = query.with_(VALUES_CTE, as_=_values_union(plan, texts), copy=False)
    else:
        query = query.with_(MEMBERS_CTE, as_=_members(plan, texts), copy=False)
        query = query.with_(VALUES_CTE, as_=_values_unnest(plan, texts), copy=False)
    return query.with_(SEGMENTS_CTE, as_=_segment_list(compiled, plan, texts), copy=False)


def _aggregates(plan: KpiPlan, texts: KpiTexts) -> list[exp.Expr]:
    """Size and every KPI: the same list for each segment (fresh nodes around shared texts)."""
    aggregates: list[exp.Expr] = [exp.alias_(exp.func("COUNT", exp.Star()), "size")]
    for kpi in plan.kpis:
        aggregates.append(exp.alias_(exp.Var(this=texts.aggregate(kpi)), kpi.name, copy=False))
    return aggregates


def _values_union(plan: KpiPlan, texts: KpiTexts) -> exp.Expr:
    """One aggregate per segment over the materialized feature relation; 0 is the whole entity."""
    aggregates = tuple(f"{k.name}\0{texts.aggregate(k)}" for k in plan.kpis)
    parts: list[exp.Expr] = []
    for segment_id, name in enumerate((None, *plan.computed)):
        predicate = texts.predicate(name) if name is not None else None
        condition = str(predicate.this) if predicate is not None else ""  # the printed text
        made_of = (str(segment_id), plan.entity.relation_name, *aggregates, condition)
        build = functools.partial(_union_branch, plan, texts, segment_id, predicate)
        parts.append(texts.printed("kpi-branch", made_of, build))
    return _union_all(parts)


def _union_all(parts: list[exp.Expr]) -> exp.Expr:
    """`parts[0] UNION ALL parts[1] ...` (the parts may be printed leaves, so no builder)."""
    query = parts[0]
    for part in parts[1:]:
        query = exp.Union(this=query, expression=part, distinct=False)
    return query


def _union_branch(
    plan: KpiPlan, texts: KpiTexts, segment_id: int, predicate: exp.Expr | None
) -> exp.Select:
    segment = exp.alias_(exp.Literal.number(segment_id), SEGMENT_ID)
    branch = exp.select(segment, *_aggregates(plan, texts), copy=False)
    branch = branch.from_(plan.entity.relation_name, copy=False)
    return with_where(branch, predicate) if predicate is not None else branch


def _members(plan: KpiPlan, texts: KpiTexts) -> exp.Select:
    """One row per (entity row, segment it belongs to); segment 0 is the whole entity."""
    ids: list[exp.Expr] = [exp.Literal.number(0)]
    for name in plan.computed:
        when = exp.If(this=texts.predicate(name), true=exp.Literal.number(plan.segment_id(name)))
        ids.append(exp.Case(ifs=[when]))
    unnest = exp.Unnest(
        expressions=[exp.Array(expressions=ids)],
        alias=exp.TableAlias(this=exp.to_identifier("m"), columns=[exp.to_identifier(SEGMENT_ID)]),
    )
    columns = sorted({c for kpi in plan.kpis for c in kpi.columns})
    select = exp.select(
        exp.column(SEGMENT_ID, table="m"), *[exp.column(c, table="f") for c in columns]
    )
    source = exp.alias_(exp.to_table(plan.entity.relation_name), "f", table=True)
    return select.from_(source, copy=False).join(unnest, join_type="cross", copy=False)


def _values_unnest(plan: KpiPlan, texts: KpiTexts) -> exp.Select:
    return (
        exp.select(exp.column(SEGMENT_ID), *_aggregates(plan, texts), copy=False)
        .from_(MEMBERS_CTE, copy=False)
        .where(exp.column(SEGMENT_ID).is_(exp.null()).not_(), copy=False)
        .group_by(exp.column(SEGMENT_ID), copy=False)
    )


def _segment_list(compiled: CompiledProject, plan: KpiPlan, texts: KpiTexts) -> exp.Expr:
    """(id, name, parent id, parent name, depth) of the rows shown: the entity, then segments."""
    rows: list[tuple[int, str, int | None, str | None, int]] = [(0, BASELINE, None, None, 0)]
    for name in plan.shown:
        parent = _parent(compiled, name)
        parent_id = plan.segment_id(parent) if parent else 0
        rows.append((plan.segment_id(name), name, parent_id, parent, nesting_depth(compiled, name)))

    def build() -> exp.Expr:  # UNION ALL of literals: VALUES does not exist on BigQuery
        return _union_all([_segment_row(*row) for row in rows])

    return texts.printed("kpi-segments", (repr(rows),), build)


def _segment_row(
    segment_id: int, name: str, parent_id: int | None, parent: str | None, depth: int
) -> exp.Select:
    parent_value: exp.Expr = exp.Literal.string(parent) if parent else exp.null()
    return exp.select(
        exp.alias_(exp.Literal.number(segment_id), "segment_id", copy=False),
        exp.alias_(exp.Literal.string(name), "segment", copy=False),
        exp.alias_(
            _typed(
                exp.Literal.number(parent_id) if parent_id is not None else exp.null(), "BIGINT"
            ),
            "parent_id",
        ),
        exp.alias_(_typed(parent_value, "TEXT"), "parent", copy=False),
        exp.alias_(exp.Literal.number(depth), "depth", copy=False),
    )


def _typed(value: exp.Expr, kind: str) -> exp.Expr:
    return exp.Cast(this=value, to=_data_type(kind).copy())


@functools.cache
def _data_type(kind: str) -> exp.DataType:
    return exp.DataType.build(kind)  # parsed once: a query casts hundreds of values


def _ratio(numerator: exp.Expr, denominator: exp.Expr) -> exp.Expr:
    division = exp.Anonymous(this="segsql_safe_divide", expressions=[numerator, denominator])
    return _typed(division, OUTPUT_DECIMAL)


def _result_select(plan: KpiPlan) -> exp.Select:
    def value(alias: str, column: str) -> exp.Expr:
        return exp.column(column, table=alias)

    size = exp.func("COALESCE", value("k", "size"), exp.Literal.number(0))
    columns: list[exp.Expr] = [
        exp.alias_(exp.Literal.string(plan.entity.name), "entity", copy=False),
        value("s", "segment"),
        value("s", "parent"),
        value("s", "depth"),
        exp.alias_(size, "size", copy=False),
        exp.alias_(_ratio(size.copy(), value("b", "size")), "share_of_entity", copy=False),
        exp.alias_(_ratio(size.copy(), value("p", "size")), "share_of_parent", copy=False),
    ]
    for kpi in plan.kpis:
        value_of = _typed(value("k", kpi.name), OUTPUT_DECIMAL)
        columns.append(exp.alias_(value_of, kpi.name, copy=False))
    for kpi in plan.kpis:
        lift = _ratio(
            _typed(value("k", kpi.name), OUTPUT_DECIMAL),
            _typed(value("p", kpi.name), OUTPUT_DECIMAL),
        )
        columns.append(exp.alias_(lift, f"lift_{kpi.name}", copy=False))
    segments = exp.alias_(exp.to_table(SEGMENTS_CTE), "s", table=True)
    query = exp.select(*columns, copy=False).from_(segments, copy=False)
    for alias, on in (("k", "segment_id"), ("p", "parent_id")):
        condition = exp.column(SEGMENT_ID, table=alias).eq(value("s", on))
        values = exp.alias_(exp.to_table(VALUES_CTE), alias, table=True)
        query = query.join(values, on=condition, join_type="left", copy=False)
    baseline = exp.column(SEGMENT_ID, table="b").eq(exp.Literal.number(0))
    values = exp.alias_(exp.to_table(VALUES_CTE), "b", table=True)
    query = query.join(values, on=baseline, join_type="left", copy=False)
    return query.order_by(value("s", "segment_id"), copy=False)


# ---------------------------------------------------------------------------------------------
# results


def result_columns(plan: KpiPlan) -> tuple[str, ...]:
    kpi_names = [k.name for k in plan.kpis]
    return (
        "entity",
        "segment",
        "parent",
        "depth",
        *STRUCTURAL,
        *kpi_names,
        *(f"lift_{n}" for n in kpi_names),
    )


def result_formats(plans: list[KpiPlan]) -> dict[str, str]:
    formats = {"size": "number", "share_of_entity": "percent", "share_of_parent": "percent"}
    for plan in plans:
        for kpi in plan.kpis:
            formats[kpi.name] = kpi.format
            formats[f"lift_{kpi.name}"] = "ratio"
    return formats


def split_values(rows: Iterable[dict[str, Any]], compiled: CompiledProject) -> list[dict[str, Any]]:
    """Segment value summed over each split of the base, i.e. each `exclusive` group (segments
    that share no member): which split is worth most? None when a member segment's value is
    unknown (no churn: the predictive CLV is unbounded)."""
    groups: dict[str, list[Any]] = {}
    for row in rows:
        name = row["segment"]
        if name == BASELINE or "segment_value" not in row:
            continue
        group = compiled.segments[name].definition.exclusive
        if group is not None:
            groups.setdefault(group, []).append(row["segment_value"])
    result = [
        {
            "split": group,
            "segments": len(values),
            "segment_value": None if None in values else sum(values),
        }
        for group, values in groups.items()
    ]
    return sorted(result, key=lambda r: (r["segment_value"] is None, -(r["segment_value"] or 0)))


def kpis_script(
    compiled: CompiledProject,
    target: Target,
    segments: list[str],
    printer: SegmentPrinter | None = None,
) -> str:
    """`compile`'s kpis.sql: one query per entity, every KPI of every segment, runnable as is.
    `printer` gives the segments' printed predicates (from the compile cache)."""
    plans = plan_kpis(compiled, segments, built_kpis(compiled))
    header = (
        f"-- segsql KPIs of project {compiled.project.config.name} as_of {compiled.as_of.isoformat()}, "
        f"target {target.name} ({target.engine.name}): one query per entity, one row per segment\n"
    )
    texts = KpiTexts(compiled, target, printer)
    queries = [
        to_sql(kpi_query(compiled, plan, target, texts=texts), target, copy=False) + ";\n"
        for plan in plans
    ]
    return header + "\n".join(queries)


def format_kpi(value: Any, kind: str = "number") -> str:
    """A KPI value for people: 12.3% (percent), 1,234.50 (currency), 1.25x (ratio), 1,234."""
    if value is None:
        return ""
    number = decimal.Decimal(str(value))
    if kind == "percent":
        return f"{number:.1%}"
    if kind == "currency":
        return f"{number:,.2f}"
    if kind == "ratio":
        return f"{number:.2f}x"
    if number == number.to_integral_value():
        return f"{number:,.0f}"
    return f"{number:,.4f}".rstrip("0").rstrip(".")
