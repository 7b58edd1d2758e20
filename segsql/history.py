"""Segment membership over time: snapshots into a history table, growth and flows read from it.

History is stored as one row per (segment, entity key, as_of date) in `segment_history`, plus one
row per (segment, as_of) in `segment_snapshots` saying that the date was evaluated (so a segment
with no members on a date is told apart from a date never snapshotted). A snapshot of a date is a
DELETE of that date's rows and an INSERT of the members, in one transaction: re-running a date
replaces it, and a failed date leaves history as it was. Every date is evaluated with the project
compiled for that as_of, so every window ends on that date and later rows never count.

Keys are stored as text (`CAST(key AS TEXT)`): one history table then holds integer and string
keys alike, and both engines render an integer the same way (`42` -> `'42'`).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlglot
from sqlglot import exp

from segsql.build import CompiledProject, Entity, build_project
from segsql.emit import Lowering, Target, feature_query
from segsql.errors import SpecError
from segsql.model import Project
from segsql.pipeline import effective_vars
from segsql.run import Runner
from segsql.select import select_segments

HISTORY_TABLE = "segment_history"
SNAPSHOTS_TABLE = "segment_snapshots"
HISTORY_COLUMNS = (("segment", "TEXT"), ("entity_key", "TEXT"), ("as_of", "DATE"))
SNAPSHOTS_COLUMNS = (
    ("segment", "TEXT"),
    ("entity", "TEXT"),
    ("as_of", "DATE"),
    ("definition_hash", "TEXT"),
)
TEMPLATE_DIALECT = "postgres"


class Every(StrEnum):
    day = "day"
    week = "week"
    month = "month"


# ---------------------------------------------------------------------------------------------
# dates


def snapshot_dates(start: dt.date, end: dt.date, every: Every) -> list[dt.date]:
    """start, start + 1 step, ... up to end (inclusive); months keep start's day, clamped."""
    if end < start:
        raise SpecError(f"--from {start} is after --to {end}", hint="give --from the earlier date")
    dates: list[dt.date] = []
    step = 0
    day = start
    while day <= end:
        dates.append(day)
        step += 1
        day = _step(start, step, every)
    return dates


def _step(start: dt.date, steps: int, every: Every) -> dt.date:
    if every is Every.day:
        return start + dt.timedelta(days=steps)
    if every is Every.week:
        return start + dt.timedelta(weeks=steps)
    index = start.year * 12 + start.month - 1 + steps
    year, month = divmod(index, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(start.day, last_day))


# ---------------------------------------------------------------------------------------------
# tables


def _date(day: dt.date) -> exp.Expr:
    return exp.cast(exp.Literal.string(day.isoformat()), exp.DataType.Type.DATE)


def _table_ddl(target: Target, name: str, columns: Sequence[tuple[str, str]]) -> exp.Create:
    schema = exp.Schema(
        this=target.relation(name),
        expressions=[
            exp.ColumnDef(
                this=exp.to_identifier(column),
                kind=exp.DataType.build(kind),
                constraints=[exp.ColumnConstraint(kind=exp.NotNullColumnConstraint())],
            )
            for column, kind in columns
        ],
    )
    return exp.Create(this=schema, kind="TABLE", exists=True)


def history_ddl(target: Target) -> list[exp.Expr]:
    """The schema and both history tables, created when missing (never replaced)."""
    return [
        exp.Create(this=target.schema_expression(), kind="SCHEMA", exists=True),
        _table_ddl(target, HISTORY_TABLE, HISTORY_COLUMNS),
        _table_ddl(target, SNAPSHOTS_TABLE, SNAPSHOTS_COLUMNS),
    ]


# ---------------------------------------------------------------------------------------------
# membership for one date (frozen segments read theirs from history)


# A compile hands printed parts in: (segment, kind of part, build it) -> the part, or its text
# as printed by an earlier compile (segsql/cache.py). Kinds: "member" (its SELECT), "log" (its row
# in segment_snapshots).
PartPrinter = Callable[[str, str, Callable[[], exp.Expr]], exp.Expr]


@dataclass(frozen=True)
class SnapshotPlan:
    """What one date's snapshot writes: these segments' rows, with these membership predicates."""

    as_of: dt.date
    written: tuple[str, ...]
    predicates: Mapping[str, exp.Expr]  # every segment of the project, frozen ones as lookups


def frozen_lookup(segment: str, freeze: dt.date, key: str, target: Target) -> exp.Expr:
    """CAST(key AS TEXT) IN (the segment's members recorded on its freeze date)."""
    recorded = (
        exp.select("entity_key")
        .from_(target.relation(HISTORY_TABLE))
        .where(exp.column("segment").eq(exp.Literal.string(segment)))
        .where(exp.column("as_of").eq(_date(freeze)))
    )
    return exp.In(this=_key_text(key), query=exp.Subquery(this=recorded))


def _key_text(key: str) -> exp.Expr:
    return exp.cast(exp.column(key), exp.DataType.Type.TEXT)


def plan_snapshot(
    compiled: CompiledProject,
    names: Sequence[str],
    recorded: set[str],
    target: Target,
    lowering: Lowering | None = None,
) -> SnapshotPlan:
    """Predicates for compiled.as_of, in the target's form: a segment frozen on or before it
    reads its recorded members. `lowering` shares lowered terms with the target's other queries.

    `recorded` holds the frozen segments whose freeze date is already in history. On the freeze
    date itself a recorded segment is left as it is (that record is the frozen membership).
    """
    day = compiled.as_of
    needed = _with_ancestors(compiled, names)
    lookups: dict[str, exp.Expr] = {}
    skipped: set[str] = set()
    for name, segment in compiled.segments.items():
        freeze = segment.definition.freeze
        if freeze is None or freeze > day or name not in needed:
            continue
        if name in recorded:
            key = compiled.entities[segment.entity].key
            lookups[name] = frozen_lookup(name, freeze, key, target)
            if freeze == day:
                skipped.add(name)
        elif freeze < day:
            raise SpecError(
                f"segment '{name}' is frozen on {freeze}, but that date is not in history yet",
                segment.definition.loc,
                f"snapshot it first: segsql snapshot --as-of {freeze} --select {name}",
            )
    predicates = _predicates(compiled, lookups, lowering or Lowering(target))
    written = tuple(n for n in names if n not in skipped)
    return SnapshotPlan(day, written, predicates)


def _with_ancestors(compiled: CompiledProject, names: Iterable[str]) -> set[str]:
    """The segments whose membership the given ones read (themselves included)."""
    needed: set[str] = set(names)
    for name in list(needed):
        needed |= compiled.graph.ancestors(name)
    return needed


def _predicates(
    compiled: CompiledProject, lookups: dict[str, exp.Expr], lowering: Lowering
) -> Mapping[str, exp.Expr]:
    """Every segment's lowered predicate, with frozen segments replaced by their lookups wherever
    used. The trees share subtrees (see `emit.Lowering`): they are printed, never rewritten.

    build.py inlines a parent's terms into its children, so with a frozen segment the predicates
    are re-assembled here from each segment's own `where` terms and its references.
    """
    if not lookups:
        return _LazyPredicates(compiled, lowering)
    out: dict[str, exp.Expr] = {}
    for name, segment in compiled.segments.items():
        if name in lookups:
            out[name] = lowering.term(lookups[name])
            continue
        d = segment.definition
        terms: list[exp.Expr] = [exp.paren(out[d.parent.name])] if d.parent else []
        terms += [lowering.term(t) for t in segment.own_terms[: len(d.where)]]
        if d.union:
            union = exp.or_(*[exp.paren(out[r.name]) for r in d.union], copy=False)
            terms.append(exp.paren(union))
        terms += [exp.paren(out[r.name]) for r in d.intersect]
        terms += [exp.not_(exp.paren(out[r.name])) for r in d.exclude]
        out[name] = exp.and_(*terms, copy=False) if terms else exp.true()
    return out


# ---------------------------------------------------------------------------------------------
# statements for one date


def snapshot_statements(
    compiled: CompiledProject,
    target: Target,
    plan: SnapshotPlan,
    printed: PartPrinter | None = None,
) -> list[exp.Expr]:
    """DELETE the date's rows of the written segments, INSERT their members and the log rows.

    Run them in one transaction (BigQuery: the compiled snapshot.sql wraps them in one).
    """
    if not plan.written:
        return []
    date_filter = exp.and_(
        exp.column("as_of").eq(_date(plan.as_of)),
        exp.column("segment").isin(*[exp.Literal.string(n) for n in plan.written], copy=False),
        copy=False,  # fresh nodes (a literal per segment): nothing to protect by copying
    )
    statements: list[exp.Expr] = [
        exp.delete(target.relation(HISTORY_TABLE), where=date_filter.copy())
    ]
    for entity_name in _entities_of(compiled, plan.written):
        entity = compiled.entities[entity_name]
        names = [n for n in plan.written if compiled.segments[n].entity == entity_name]
        statements.append(
            exp.insert(
                members_query(entity, names, plan, target, printed),
                target.relation(HISTORY_TABLE),
                columns=[c for c, _ in HISTORY_COLUMNS],
                copy=False,  # a fresh tree holding every segment's predicate: do not copy it
            )
        )
    statements.append(exp.delete(target.relation(SNAPSHOTS_TABLE), where=date_filter))
    statements.append(
        exp.insert(
            exp.Values(
                expressions=[
                    _printed_log_row(compiled, n, plan.as_of, printed) for n in plan.written
                ]
            ),
            target.relation(SNAPSHOTS_TABLE),
            columns=[c for c, _ in SNAPSHOTS_COLUMNS],
            copy=False,  # a fresh row per segment
        )
    )
    return statements


def _entities_of(compiled: CompiledProject, names: Iterable[str]) -> list[str]:
    return sorted({compiled.segments[n].entity for n in names})


def _printed_log_row(
    compiled: CompiledProject, name: str, day: dt.date, printed: PartPrinter | None
) -> exp.Expr:
    def build() -> exp.Tuple:
        return _log_row(compiled, name, day)

    return printed(name, "log", build) if printed else build()


def _log_row(compiled: CompiledProject, name: str, day: dt.date) -> exp.Tuple:
    segment = compiled.segments[name]
    return exp.tuple_(
        exp.Literal.string(name),
        exp.Literal.string(segment.entity),
        _date(day),
        exp.Literal.string(segment.definition.definition_hash),
        copy=False,  # fresh literals: copying them is most of the cost of 1,000 log rows
    )


class _LazyPredicates(Mapping[str, exp.Expr]):
    """Segment name -> lowered predicate, built when first read: a compile that finds a
    segment's snapshot part in its cache never lowers that segment's terms."""

    def __init__(self, compiled: CompiledProject, lowering: Lowering):
        self._segments = compiled.segments
        self._lowering = lowering

    def __getitem__(self, name: str) -> exp.Expr:
        return self._lowering.predicate(self._segments[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._segments)

    def __len__(self) -> int:
        return len(self._segments)


def member_select(entity: Entity, name: str, plan: SnapshotPlan) -> exp.Select:
    """SELECT DISTINCT 'segment', key as text, as_of FROM the feature relation WHERE membership."""
    predicate = plan.predicates[name]  # already lowered for the target
    # Every node here is fresh, so the builders need not copy (there are 1,000s of parts).
    return (
        exp.select(
            exp.alias_(exp.Literal.string(name), "segment", copy=False),
            exp.alias_(_key_text(entity.key), "entity_key", copy=False),
            exp.alias_(_date(plan.as_of), "as_of", copy=False),
            copy=False,
        )
        .distinct(copy=False)
        .from_(entity.relation_name, copy=False)
        .where(predicate, copy=False)
    )


def members_query(
    entity: Entity,
    names: Sequence[str],
    plan: SnapshotPlan,
    target: Target,
    printed: PartPrinter | None = None,
) -> exp.Query:
    """One pass over the entity's feature relation (a CTE) giving (segment, key, as_of) rows."""
    relation = entity.relation_name
    if len(names) == 1:  # no union: the query itself carries the CTEs, so it must be a tree
        printed = None
    parts: list[exp.Expr] = []
    for name in names:

        def build(name: str = name) -> exp.Select:
            return member_select(entity, name, plan)

        parts.append(printed(name, "member", build) if printed else build())
    query = parts[0] if len(parts) == 1 else _union_all(parts)
    assert isinstance(query, exp.Query)
    features = feature_query(entity, target)
    body = features.copy()
    body.set("with_", None)
    for cte in features.ctes:
        query = query.with_(cte.alias, as_=cte.this.copy(), copy=False)
    return query.with_(relation, as_=body, copy=False)


def _union_all(parts: list[exp.Expr]) -> exp.Union:
    query = exp.union(parts[0], parts[1], distinct=False, copy=False)
    for part in parts[2:]:
        # copy=False: the parts are fresh trees; copying the growing union each time is quadratic
        query = exp.union(query, part, distinct=False, copy=False)
    return query


def transaction(statements: list[exp.Expr]) -> list[exp.Expr]:
    """For scripts: BEGIN; statements; COMMIT (runners open their own transaction)."""
    return [exp.Transaction(), *statements, exp.Commit()] if statements else []


def compiled_snapshot_statements(
    compiled: CompiledProject,
    target: Target,
    names: Sequence[str],
    lowering: Lowering | None = None,
    printed: PartPrinter | None = None,
) -> list[exp.Expr]:
    """What `segsql compile` writes to snapshot.sql: the history tables, then as_of's snapshot.

    A script cannot ask which freeze dates are recorded, so it assumes every freeze date before
    as_of was snapshotted (a freeze on as_of itself is evaluated, which records it).
    """
    recorded = {
        name
        for name, segment in compiled.segments.items()
        if segment.definition.freeze is not None and segment.definition.freeze < compiled.as_of
    }
    plan = plan_snapshot(compiled, names, recorded, target, lowering)
    statements = snapshot_statements(compiled, target, plan, printed)
    return history_ddl(target) + transaction(statements)


# ---------------------------------------------------------------------------------------------
# running snapshots


@dataclass(frozen=True)
class SnapshotRun:
    """A date recorded: the selected segments now hold their members as of it in history."""

    as_of: dt.date
    segments: tuple[str, ...]


Compile = Callable[[dt.date], CompiledProject]


def compiler_for(
    project: Project, overrides: dict[str, Any], runner: Runner | None = None
) -> Compile:
    """Build the (already loaded) project for any as_of: windows and filters end on that date."""

    def compile_at(day: dt.date) -> CompiledProject:
        as_of, variables = effective_vars(project, overrides, day.isoformat())
        introspect = runner.table_columns if runner is not None else None
        return build_project(project, as_of, variables, introspect)

    return compile_at


def recorded_freezes(runner: Runner, compiled: CompiledProject) -> set[str]:
    """Frozen segments whose freeze date is already in the snapshot log."""
    frozen = {n: s.definition.freeze for n, s in compiled.segments.items() if s.definition.freeze}
    if not frozen:
        return set()
    query = (
        exp.select("segment", "as_of")
        .from_(runner.target.relation(SNAPSHOTS_TABLE))
        .where(exp.column("segment").isin(*[exp.Literal.string(n) for n in frozen]))
    )
    rows = runner.query(query)
    return {str(name) for name, day in rows if _as_date(day) == frozen.get(str(name))}


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def backfill(
    runner: Runner,
    compile_at: Compile,
    dates: Sequence[dt.date],
    selectors: Sequence[str] | None,
    on_date: Callable[[SnapshotRun], None] | None = None,
) -> list[SnapshotRun]:
    """Snapshot each date in its own transaction; a failure stops there, earlier dates stay."""
    runner.execute_all(history_ddl(runner.target))
    runs: list[SnapshotRun] = []
    recorded: set[str] | None = None
    for day in sorted(set(dates)):
        compiled = compile_at(day)
        names = select_segments(compiled, selectors)
        if recorded is None:
            recorded = recorded_freezes(runner, compiled)
            _record_freezes(runner, compile_at, compiled, names, max(dates), recorded)
        plan = plan_snapshot(compiled, names, recorded, runner.target)
        runner.execute_all(snapshot_statements(compiled, runner.target, plan))
        recorded |= {n for n in names if compiled.segments[n].definition.freeze == day}
        run = SnapshotRun(day, tuple(names))
        runs.append(run)
        if on_date is not None:
            on_date(run)
    return runs


def _record_freezes(
    runner: Runner,
    compile_at: Compile,
    compiled: CompiledProject,
    names: Sequence[str],
    last: dt.date,
    recorded: set[str],
) -> None:
    """Record, in dependency order, the freeze date of every frozen segment the dates will read."""
    needed = _with_ancestors(compiled, names)
    for name, segment in compiled.segments.items():
        freeze = segment.definition.freeze
        if name not in needed or freeze is None or freeze > last or name in recorded:
            continue
        at_freeze = compile_at(freeze)
        plan = plan_snapshot(at_freeze, [name], recorded, runner.target)
        runner.execute_all(snapshot_statements(at_freeze, runner.target, plan))
        recorded.add(name)


# ---------------------------------------------------------------------------------------------
# reading history: growth and flows


GROWTH_SQL = """
WITH logged AS (
  SELECT segment, as_of, LAG(as_of) OVER (PARTITION BY segment ORDER BY as_of) AS previous_as_of
  FROM segment_snapshots
  WHERE :segments
),
snaps AS (
  SELECT segment, as_of, previous_as_of FROM logged WHERE :period
),
current_members AS (
  SELECT s.segment, s.as_of, h.entity_key
  FROM snaps AS s JOIN segment_history AS h ON h.segment = s.segment AND h.as_of = s.as_of
),
previous_members AS (
  SELECT s.segment, s.as_of, h.entity_key
  FROM snaps AS s JOIN segment_history AS h ON h.segment = s.segment AND h.as_of = s.previous_as_of
),
moves AS (
  SELECT COALESCE(c.segment, p.segment) AS segment, COALESCE(c.as_of, p.as_of) AS as_of,
         c.entity_key AS current_key, p.entity_key AS previous_key
  FROM current_members AS c
  FULL OUTER JOIN previous_members AS p
    ON c.segment = p.segment AND c.as_of = p.as_of AND c.entity_key = p.entity_key
),
counts AS (
  SELECT segment, as_of,
         COUNT(current_key) AS size,
         COUNT(previous_key) AS previous_size,
         COUNT(CASE WHEN previous_key IS NULL THEN 1 END) AS entered,
         COUNT(CASE WHEN current_key IS NULL THEN 1 END) AS exited,
         COUNT(CASE WHEN current_key IS NOT NULL AND previous_key IS NOT NULL THEN 1 END) AS retained
  FROM moves
  GROUP BY segment, as_of
),
periods AS (
  SELECT s.segment, s.previous_as_of, s.as_of,
         COALESCE(c.size, 0) AS size,
         CASE WHEN s.previous_as_of IS NOT NULL THEN COALESCE(c.previous_size, 0) END AS previous_size,
         CASE WHEN s.previous_as_of IS NOT NULL THEN COALESCE(c.entered, 0) END AS entered,
         CASE WHEN s.previous_as_of IS NOT NULL THEN COALESCE(c.exited, 0) END AS exited,
         CASE WHEN s.previous_as_of IS NOT NULL THEN COALESCE(c.retained, 0) END AS retained
  FROM snaps AS s LEFT JOIN counts AS c ON c.segment = s.segment AND c.as_of = s.as_of
)
SELECT segment, previous_as_of, as_of, size, previous_size, entered, exited, retained,
       size - previous_size AS net_growth,
       CAST(size - previous_size AS DOUBLE PRECISION) / NULLIF(previous_size, 0) AS growth_rate
FROM periods
ORDER BY segment, as_of
"""

FLOWS_SQL = """
WITH from_members AS (
  SELECT segment, entity_key FROM segment_history WHERE as_of = :from_date AND :segments
),
to_members AS (
  SELECT segment, entity_key FROM segment_history WHERE as_of = :to_date AND :segments
),
keys AS (
  SELECT entity_key FROM from_members UNION SELECT entity_key FROM to_members
),
origins AS (
  SELECT k.entity_key, f.segment FROM keys AS k LEFT JOIN from_members AS f ON f.entity_key = k.entity_key
),
destinations AS (
  SELECT k.entity_key, t.segment FROM keys AS k LEFT JOIN to_members AS t ON t.entity_key = k.entity_key
)
SELECT o.segment AS from_segment, d.segment AS to_segment, COUNT(*) AS members
FROM origins AS o JOIN destinations AS d ON d.entity_key = o.entity_key
GROUP BY o.segment, d.segment
"""

GROWTH_COLUMNS = (
    "segment",
    "previous_as_of",
    "as_of",
    "size",
    "previous_size",
    "entered",
    "exited",
    "retained",
    "net_growth",
    "growth_rate",
)


def _from_template(sql: str, target: Target, values: dict[str, exp.Expr]) -> exp.Expr:
    """Parse a fixed query, point its history tables at the target and fill its placeholders."""
    tables = {name: target.relation(name) for name in (HISTORY_TABLE, SNAPSHOTS_TABLE)}

    def fill(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Placeholder):
            return values[node.name].copy()
        if isinstance(node, exp.Table) and not node.db and node.name in tables:
            table = tables[node.name].copy()
            table.set("alias", node.args.get("alias"))
            return table
        return node

    tree = sqlglot.parse_one(sql, read=TEMPLATE_DIALECT)
    return tree.transform(fill)


def _segment_filter(names: Sequence[str]) -> exp.Expr:
    return exp.column("segment").isin(*[exp.Literal.string(n) for n in names])


def growth_query(
    target: Target, names: Sequence[str], start: dt.date | None, end: dt.date | None
) -> exp.Expr:
    """Per segment and period between consecutive snapshots: size, entered, exited, retained..."""
    period: list[exp.Expr] = []
    if start is not None:
        period.append(exp.column("as_of") >= _date(start))
    if end is not None:
        period.append(exp.column("as_of") <= _date(end))
    values = {
        "segments": _segment_filter(names),
        "period": exp.and_(*period) if period else exp.true(),
    }
    return _from_template(GROWTH_SQL, target, values)


@dataclass(frozen=True)
class Growth:
    segment: str
    previous_as_of: dt.date | None
    as_of: dt.date
    size: int
    previous_size: int | None
    entered: int | None
    exited: int | None
    retained: int | None
    net_growth: int | None
    growth_rate: float | None


def growth(
    runner: Runner, names: Sequence[str], start: dt.date | None, end: dt.date | None
) -> list[Growth]:
    rows = runner.query(growth_query(runner.target, names, start, end))
    order = {name: index for index, name in enumerate(names)}
    out = [_growth_row(row) for row in rows]
    return sorted(out, key=lambda g: (order.get(g.segment, len(order)), g.as_of))


def _growth_row(row: Sequence[Any]) -> Growth:
    segment, previous, day, size, prev_size, entered, exited, retained, net, rate = row
    return Growth(
        str(segment),
        _as_date(previous) if previous is not None else None,
        _as_date(day),
        int(size),
        _int(prev_size),
        _int(entered),
        _int(exited),
        _int(retained),
        _int(net),
        float(rate) if rate is not None else None,
    )


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def sizes(runner: Runner, runs: Sequence[SnapshotRun]) -> dict[tuple[str, dt.date], int]:
    """Members per (segment, date) recorded by `runs` (0 for an empty segment)."""
    days = [r.as_of for r in runs]
    written = sorted({n for r in runs for n in r.segments})
    if not written:
        return {}
    query = (
        exp.select("segment", "as_of", exp.func("COUNT", exp.Star()))
        .from_(runner.target.relation(HISTORY_TABLE))
        .where(_segment_filter(written))
        .where(exp.column("as_of").isin(*[_date(d) for d in days]))
        .group_by("segment", "as_of")
    )
    counts = {(str(s), _as_date(d)): int(n) for s, d, n in runner.query(query)}
    return {(n, r.as_of): counts.get((n, r.as_of), 0) for r in runs for n in r.segments}


def flows_query(target: Target, names: Sequence[str], start: dt.date, end: dt.date) -> exp.Expr:
    values = {
        "segments": _segment_filter(names),
        "from_date": _date(start),
        "to_date": _date(end),
    }
    return _from_template(FLOWS_SQL, target, values)


@dataclass(frozen=True)
class Flows:
    """Members moving between segments of one group; None is 'in none of them'."""

    segments: tuple[str, ...]
    start: dt.date
    end: dt.date
    counts: dict[tuple[str | None, str | None], int]

    def count(self, source: str | None, destination: str | None) -> int:
        return self.counts.get((source, destination), 0)


def flows(runner: Runner, names: Sequence[str], start: dt.date, end: dt.date) -> Flows:
    """The migration matrix of `names` (segments of one entity) from start to end."""
    _require_snapshots(runner, names, [start, end])
    rows = runner.query(flows_query(runner.target, names, start, end))
    counts = {
        (None if a is None else str(a), None if b is None else str(b)): int(n) for a, b, n in rows
    }
    return Flows(tuple(names), start, end, counts)


def snapshot_log(runner: Runner, names: Sequence[str]) -> set[tuple[str, dt.date]]:
    query = (
        exp.select("segment", "as_of")
        .from_(runner.target.relation(SNAPSHOTS_TABLE))
        .where(_segment_filter(names))
    )
    return {(str(s), _as_date(d)) for s, d in runner.query(query)}


def _require_snapshots(runner: Runner, names: Sequence[str], dates: Sequence[dt.date]) -> None:
    recorded = snapshot_log(runner, names)
    for day in dates:
        missing = [n for n in names if (n, day) not in recorded]
        if missing:
            raise SpecError(
                f"no snapshot of {', '.join(missing)} as of {day}",
                hint=f"record it first: segsql snapshot --as-of {day}",
            )


def history_exists(runner: Runner) -> bool:
    target = runner.target
    schema = target.schema
    qualified = f"{target.config.project}.{schema}" if target.config.project else schema
    return runner.table_columns(f"{qualified}.{SNAPSHOTS_TABLE}") is not None


def sibling_groups(compiled: CompiledProject, names: Sequence[str]) -> list[list[str]]:
    """Selected segments grouped by (entity, parent): the sets whose members move between them."""
    groups: dict[tuple[str, str | None], list[str]] = {}
    for name in names:
        segment = compiled.segments[name]
        parent = segment.definition.parent
        groups.setdefault((segment.entity, parent.name if parent else None), []).append(name)
    return list(groups.values())
