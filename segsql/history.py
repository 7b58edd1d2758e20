"""Segment membership over time: snapshots into a history table, growth and flows read from it.

History is stored as validity intervals in `segment_history`: one row per (segment, entity key,
valid_from, valid_to) where valid_from is a snapshot date on which the key became a member and
valid_to the first later snapshot date *of that segment* on which it is not (NULL: still a member
on the latest one). `segment_snapshots` holds one row per (segment, as_of) evaluated, so a segment
with no members on a date is told apart from a date never snapshotted, and "the next snapshot"
is defined. "Members of S on D" (D logged) = `valid_from <= D AND (valid_to IS NULL OR
valid_to > D)`; the view `segment_members` gives them as (segment, entity_key, as_of) rows.

A snapshot of a date splices that date's membership into the intervals, in one transaction: each
entity's features as of D go to a scratch table, its members are compared with the intervals
covering D to find the keys that enter or leave on D, and only those keys' intervals around D
are rewritten (DELETE of the old rows that change, INSERT of the new ones; a date after every
logged one just closes the leavers' open intervals and opens the entrants'). So an in-order
append writes only the entries and exits, re-running a date replaces it, dates may come in any
order, and a failed date leaves history as it was. Every date is evaluated with the project compiled for that as_of, so every window ends
on that date and later rows never count.

Keys are stored as text (`CAST(key AS TEXT)`): one history table then holds integer and string
keys alike, and both engines render an integer the same way (`42` -> `'42'`).
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import functools
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlglot
from sqlglot import exp

from segsql.build import ENTITY_ROWS, KEY_ALIAS, CompiledProject, Entity, build_project
from segsql.dialects import lower_portable
from segsql.emit import Lowering, Target, feature_ctes, feature_query, to_sql, with_where
from segsql.errors import ExecutionError, SpecError
from segsql.kpis import (
    OUTPUT_DECIMAL,
    STRUCTURAL,
    KpiPlan,
    build_kpis,
    plan_kpis,
    result_formats,
)
from segsql.model import Project
from segsql.narrow import ntile_by_boundaries, prune_unread
from segsql.pipeline import effective_vars
from segsql.run import DuckDBRunner, Runner
from segsql.running import running_aggregates
from segsql.scratch import date_literal, drop, temp_table, temporary
from segsql.select import select_segments

HISTORY_TABLE = "segment_history"
SNAPSHOTS_TABLE = "segment_snapshots"
MEMBERS_VIEW = "segment_members"  # (segment, entity_key, as_of) rows, read from the intervals
# (column, type, NOT NULL)
HISTORY_COLUMNS = (
    ("segment", "TEXT", True),
    ("entity_key", "TEXT", True),
    ("valid_from", "DATE", True),
    ("valid_to", "DATE", False),  # NULL: still a member on the segment's latest snapshot
)
SNAPSHOTS_COLUMNS = (
    ("segment", "TEXT", True),
    ("entity", "TEXT", True),
    ("as_of", "DATE", True),
    ("definition_hash", "TEXT", True),
)
# Scratch tables of one date's splice (temporary: per session, dropped at the end of the date).
# Besides these, each entity's feature relation as of the date is `segsql_<relation>`.
FLIPS_SCRATCH = "segsql_flips"  # (segment, key, is_member): keys entering (1) or leaving (0)
OLD_SCRATCH = "segsql_old"  # their stored intervals around the date
CHANGED_SCRATCH = "segsql_changed"  # per flipped key: the neighbours' interval bounds
NEW_SCRATCH = "segsql_new"  # their intervals around the date, with the date spliced in
FLIPS_COLUMNS = (
    ("segment", "TEXT", True),
    ("entity_key", "TEXT", True),
    ("is_member", "INT", True),
)
MEMBER_ROWS = "segsql_member_rows"  # the CTE of the date's (segment, key) members
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


def _column_defs(columns: Sequence[tuple[str, str, bool]]) -> list[exp.Expr]:
    return [
        exp.ColumnDef(
            this=exp.to_identifier(column),
            kind=exp.DataType.build(kind),
            constraints=[exp.ColumnConstraint(kind=exp.NotNullColumnConstraint())]
            if required
            else [],
        )
        for column, kind, required in columns
    ]


def _table_ddl(target: Target, name: str, columns: Sequence[tuple[str, str, bool]]) -> exp.Create:
    schema = exp.Schema(this=target.relation(name), expressions=_column_defs(columns))
    return exp.Create(this=schema, kind="TABLE", exists=True)


MEMBERS_VIEW_SQL = """
SELECT s.segment, h.entity_key, s.as_of
FROM segment_snapshots AS s
JOIN segment_history AS h
  ON h.segment = s.segment AND h.valid_from <= s.as_of AND (h.valid_to IS NULL OR h.valid_to > s.as_of)
"""


def history_ddl(target: Target) -> list[exp.Expr]:
    """The schema and both history tables, created when missing (never replaced), and the
    `segment_members` view (replaced: it holds no data, and a newer segsql may redefine it)."""
    view = exp.Create(
        this=target.relation(MEMBERS_VIEW),
        kind="VIEW",
        replace=True,
        expression=_from_template(MEMBERS_VIEW_SQL, target, {}),
    )
    return [
        exp.Create(this=target.schema_expression(), kind="SCHEMA", exists=True),
        _table_ddl(target, HISTORY_TABLE, HISTORY_COLUMNS),
        _table_ddl(target, SNAPSHOTS_TABLE, SNAPSHOTS_COLUMNS),
        view,
    ]


def covering(day: exp.Expr, table: str | None = None) -> exp.Expr:
    """The intervals holding the members on `day` (a logged date of their segment)."""
    start, end = exp.column("valid_from", table=table), exp.column("valid_to", table=table)
    return exp.and_(start <= day, exp.paren(exp.or_(end.is_(exp.null()), end.copy() > day.copy())))


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
        .where(covering(date_literal(freeze)))
    )
    return exp.In(this=_key_text(key), query=exp.Subquery(this=recorded))


def _key_text(key: str) -> exp.Expr:
    return exp.cast(exp.column(key), exp.DataType.Type.TEXT, copy=False)


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
    carried: CarriedMembership | None = None,
) -> list[exp.Expr]:
    """Splice the date's membership into the intervals of the written segments (rewriting only
    the keys whose membership on the date changes), then replace the date's rows of the log.

    Run them in one transaction (BigQuery: the compiled snapshot.sql wraps them in one). A
    backfill passes `carried` to find the flips from the previous date's membership.
    """
    if not plan.written:
        return []
    flips = exp.Schema(this=exp.to_table(FLIPS_SCRATCH), expressions=_column_defs(FLIPS_COLUMNS))
    statements: list[exp.Expr] = [exp.Create(this=flips, kind="TABLE", properties=temporary())]
    scratch = [FLIPS_SCRATCH]
    views: list[str] = []
    for entity_name in _entities_of(compiled, plan.written):
        entity = compiled.entities[entity_name]
        names = [n for n in plan.written if compiled.segments[n].entity == entity_name]
        # Read by the date's mask alone, the features need not be written: as a view, DuckDB
        # computes the mask as it computes them (1M customers: ~0.2 s of a date saved)
        as_view = carried is not None and carried.carries(entity, names, plan.as_of)
        read = None if printed else _columns_read(entity, [plan.predicates[n] for n in names])
        features = features_statement(entity, target, read, as_view)
        statements += [features, *_flips_statements(entity, names, target, plan, printed, carried)]
        (views if as_view else scratch).append(features_scratch(entity))
    if carried is not None and carried.appends(plan.written, plan.as_of):
        statements += append_statements(target, plan.as_of)
    else:
        statements += splice_statements(target, plan.as_of, plan.written)
    log_filter = exp.and_(
        exp.column("as_of").eq(date_literal(plan.as_of)),
        _segment_filter(plan.written),
        copy=False,  # fresh nodes (a literal per segment): nothing to protect by copying
    )
    statements.append(exp.delete(target.relation(SNAPSHOTS_TABLE), where=log_filter))
    statements.append(
        exp.insert(
            exp.Values(
                expressions=[
                    _printed_log_row(compiled, n, plan.as_of, printed) for n in plan.written
                ]
            ),
            target.relation(SNAPSHOTS_TABLE),
            columns=[c for c, _, _ in SNAPSHOTS_COLUMNS],
            copy=False,  # a fresh row per segment
        )
    )
    scratch += [OLD_SCRATCH, CHANGED_SCRATCH, NEW_SCRATCH]
    drops = [drop(table) for table in scratch] + [drop(view, "VIEW") for view in views]
    return statements + drops


def _flips_statements(
    entity: Entity,
    names: Sequence[str],
    target: Target,
    plan: SnapshotPlan,
    printed: PartPrinter | None,
    carried: CarriedMembership | None,
) -> list[exp.Expr]:
    """Fill segsql_flips with the keys entering or leaving the entity's segments on the date:
    from the previous date's mask in a backfill, else by the FULL JOIN (built only then)."""

    def full_join() -> exp.Expr:
        members = members_query(entity, names, plan, printed)
        return flips_statement(target, plan.as_of, names, members)

    return carried.flips(entity, names, plan, full_join) if carried else [full_join()]


# The splice of one date D into the intervals of the written segments. For a segment S,
# next(S, D) is its first logged date after D. The stored intervals D can change are those
# covering D or ending on D (at most one per key: the one holding the key's membership on S's
# previous snapshot, or one starting on D) and those starting on next(S, D).
#
# 1. flips: per entity, the date's members are compared with the intervals covering D (one
#    FULL JOIN): the keys that enter (1) or leave (0) on D. Every other key keeps its rows.
# 2. old: the flipped keys' stored intervals around D (covering D, ending on D, or starting on
#    next(S, D)).
# 3. changed: per flipped key, the start of the interval holding S's previous snapshot
#    (left_from), whether the key is a member on next(S, D) and until when (on_next, right_to).
# 4. new: the flipped keys' intervals with D spliced in: a member on D gets one interval from
#    left_from (else D) to right_to (else next(S, D), else open), merging its neighbours; a
#    non-member keeps [left_from, D) and [next(S, D), right_to).
# 5. DELETE the old rows not in new, INSERT the new rows not in old (set difference): appending
#    a date in order writes its entries (new open intervals) and exits (intervals closed on D).

FLIPS_SQL = """
INSERT INTO segsql_flips (segment, entity_key, is_member)
SELECT DISTINCT
       COALESCE(m.segment, c.segment) AS segment,
       COALESCE(m.entity_key, c.entity_key) AS entity_key,
       CASE WHEN m.entity_key IS NULL THEN 0 ELSE 1 END AS is_member
FROM (
  SELECT segment, entity_key FROM segment_history
  WHERE :written AND valid_from <= :day AND (valid_to IS NULL OR valid_to > :day)
) AS c
FULL OUTER JOIN segsql_member_rows AS m ON m.segment = c.segment AND m.entity_key = c.entity_key
WHERE c.entity_key IS NULL OR m.entity_key IS NULL
"""

# next(S, D) per written segment: its first logged snapshot after D (old and changed need it)
NEXTS_CTE = """
nexts AS (
  SELECT segment, MIN(as_of) AS next_as_of
  FROM segment_snapshots
  WHERE :written AND as_of > :day
  GROUP BY segment
)"""

OLD_SQL = f"""
CREATE TEMPORARY TABLE segsql_old AS
WITH {NEXTS_CTE},
flipped AS (
  SELECT f.segment, f.entity_key, n.next_as_of
  FROM segsql_flips AS f LEFT JOIN nexts AS n ON n.segment = f.segment
)
SELECT h.segment, h.entity_key, h.valid_from, h.valid_to, f.next_as_of
FROM segment_history AS h
JOIN flipped AS f ON f.segment = h.segment AND f.entity_key = h.entity_key
WHERE (h.valid_from <= :day AND (h.valid_to IS NULL OR h.valid_to >= :day))
   OR h.valid_from = f.next_as_of
"""

CHANGED_SQL = f"""
CREATE TEMPORARY TABLE segsql_changed AS
WITH {NEXTS_CTE},
stored AS (
  SELECT segment, entity_key,
         MIN(CASE WHEN valid_from < :day THEN valid_from END) AS left_from,
         MAX(CASE WHEN valid_from <= next_as_of AND (valid_to IS NULL OR valid_to > next_as_of)
                  THEN 1 ELSE 0 END) AS on_next,
         MAX(CASE WHEN valid_from <= next_as_of AND valid_to > next_as_of
                  THEN valid_to END) AS right_to
  FROM segsql_old
  GROUP BY segment, entity_key
)
SELECT f.segment, f.entity_key, f.is_member, s.left_from,
       COALESCE(s.on_next, 0) AS on_next, s.right_to, n.next_as_of
FROM segsql_flips AS f
LEFT JOIN stored AS s ON s.segment = f.segment AND s.entity_key = f.entity_key
LEFT JOIN nexts AS n ON n.segment = f.segment
"""

NEW_SQL = """
CREATE TEMPORARY TABLE segsql_new AS
SELECT segment, entity_key, COALESCE(left_from, :day) AS valid_from,
       CASE WHEN on_next = 1 THEN right_to ELSE next_as_of END AS valid_to
FROM segsql_changed WHERE is_member = 1
UNION ALL
SELECT segment, entity_key, left_from AS valid_from, :day AS valid_to
FROM segsql_changed WHERE is_member = 0 AND left_from IS NOT NULL
UNION ALL
SELECT segment, entity_key, next_as_of AS valid_from, right_to AS valid_to
FROM segsql_changed WHERE is_member = 0 AND on_next = 1
"""

DELETE_SQL = """
DELETE FROM segment_history AS h
WHERE EXISTS (
  SELECT 1 FROM segsql_old AS o
  WHERE o.segment = h.segment AND o.entity_key = h.entity_key AND o.valid_from = h.valid_from
    AND NOT EXISTS (
      SELECT 1 FROM segsql_new AS n
      WHERE n.segment = o.segment AND n.entity_key = o.entity_key AND n.valid_from = o.valid_from
        AND (n.valid_to = o.valid_to OR (n.valid_to IS NULL AND o.valid_to IS NULL))
    )
)
"""

INSERT_SQL = """
INSERT INTO segment_history (segment, entity_key, valid_from, valid_to)
SELECT n.segment, n.entity_key, n.valid_from, n.valid_to
FROM segsql_new AS n
WHERE NOT EXISTS (
  SELECT 1 FROM segsql_old AS o
  WHERE o.segment = n.segment AND o.entity_key = n.entity_key AND o.valid_from = n.valid_from
    AND (o.valid_to = n.valid_to OR (o.valid_to IS NULL AND n.valid_to IS NULL))
)
"""


def flips_statement(
    target: Target, day: dt.date, names: Sequence[str], members: exp.Query
) -> exp.Expr:
    """INSERT INTO segsql_flips the keys of one entity's segments that enter or leave on `day`:
    its members (`members`, a CTE) FULL JOIN the intervals covering `day`."""
    values = {"day": date_literal(day), "written": _segment_filter(names)}
    statement = _from_template(FLIPS_SQL, target, values)
    select = statement.expression
    assert isinstance(select, exp.Select)
    statement.set("expression", select.with_(MEMBER_ROWS, as_=members, copy=False))
    return statement


# An append (no snapshot of the segments logged on or after D) needs none of that: every interval
# covering D is open (its end would be a logged date after D), so the keys leaving on D close
# their open interval on D and the keys entering on D open one. A backfill's dates usually are
# appends (`CarriedMembership.appends`).

CLOSE_SQL = """
UPDATE segment_history AS h SET valid_to = :day
FROM segsql_flips AS f
WHERE f.is_member = 0 AND f.segment = h.segment AND f.entity_key = h.entity_key
  AND h.valid_to IS NULL
"""

OPEN_SQL = """
INSERT INTO segment_history (segment, entity_key, valid_from, valid_to)
SELECT segment, entity_key, :day, NULL FROM segsql_flips WHERE is_member = 1
"""


def append_statements(target: Target, day: dt.date) -> list[exp.Expr]:
    """Splice the flipped keys into the intervals when no later date is logged (see above)."""
    return [
        _from_template(sql, target, {"day": date_literal(day)}) for sql in (CLOSE_SQL, OPEN_SQL)
    ]


def splice_statements(target: Target, day: dt.date, written: Sequence[str]) -> list[exp.Expr]:
    """Splice the flipped keys (segsql_flips) into the written segments' intervals (see above)."""
    values = {"day": date_literal(day), "written": _segment_filter(written)}
    return [
        _from_template(sql, target, values)
        for sql in (OLD_SQL, CHANGED_SQL, NEW_SQL, DELETE_SQL, INSERT_SQL)
    ]


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
        date_literal(day),
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
    """SELECT 'segment', key as text FROM the date's features WHERE membership.

    No DISTINCT: a key twice in the entity table would give two rows, and the splice compares
    keys, so it is counted once there (a DISTINCT per segment cost more than the rest)."""
    predicate = plan.predicates[name]  # already lowered for the target
    # Every node here is fresh, so the builders need not copy (there are 1,000s of parts).
    query = exp.select(
        exp.alias_(exp.Literal.string(name), "segment", copy=False),
        exp.alias_(_key_text(entity.key), "entity_key", copy=False),
        copy=False,
    ).from_(exp.table_(features_scratch(entity)), copy=False)  # built, not parsed: 1,000s
    return with_where(query, predicate)


def _columns_read(entity: Entity, predicates: Sequence[exp.Expr]) -> list[str]:
    """The feature relation's columns the predicates read, and the key: the scratch table holds
    only these, so features no segment reads (and the window functions computing them) are not
    computed, and fewer columns are carried through the ones that are. (A compile does not do
    this: it would resolve every segment, which its cache avoids; its script keeps them all.)"""
    outputs = entity.query.named_selects  # lowering for the target keeps the names
    if "*" in outputs:
        return ["*"]
    read = {c.name for p in predicates for c in p.find_all(exp.Column)} | {entity.key}
    return [name for name in outputs if name in read]


def features_scratch(entity: Entity) -> str:
    """The temporary table holding the entity's feature relation as of the snapshot date."""
    return f"segsql_{entity.relation_name}"


def members_query(
    entity: Entity,
    names: Sequence[str],
    plan: SnapshotPlan,
    printed: PartPrinter | None = None,
) -> exp.Query:
    """The (segment, key) members of the segments, one UNION ALL branch per segment, each
    reading the entity's features from its scratch table (`features_statement`)."""
    if len(names) == 1:  # no union: the query becomes a CTE body, so it must be a tree
        printed = None
    parts: list[exp.Expr] = []
    for name in names:

        def build(name: str = name) -> exp.Select:
            return member_select(entity, name, plan)

        parts.append(printed(name, "member", build) if printed else build())
    query = parts[0] if len(parts) == 1 else _union_all(parts)
    assert isinstance(query, exp.Query)
    return query


def features_statement(
    entity: Entity, target: Target, columns: Sequence[str] | None = None, as_view: bool = False
) -> exp.Create:
    """CREATE TEMPORARY TABLE segsql_<relation> AS the entity's feature relation (`columns` of
    it, else all), once per date; a temporary view when one query alone reads it (`as_view`).

    Materialized because every segment's branch reads it: as one CTE of a 50-branch union,
    DuckDB recomputed parts of it per branch (1M customers: 5 s for the members against 3.5 s
    for the relation). The relation is still a CTE of its own name inside, so
    `RunningAggregates` finds its aggregate CTEs."""
    query = exp.select(*(columns or ["*"])).from_(entity.relation_name)
    for alias, body in feature_ctes(entity, target):
        query = query.with_(alias, as_=body, copy=False)
    if columns and "*" not in columns:  # a snapshot run (a compiled script keeps every column)
        prune_unread(query)
        if target.engine.name == "duckdb":
            ntile_by_boundaries(query, entity.key)
    return temp_table(features_scratch(entity), query, "VIEW" if as_view else "TABLE")


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
    plan = plan_snapshot(compiled, names, _assumed_recorded(compiled), target, lowering)
    statements = snapshot_statements(compiled, target, plan, printed)
    return history_ddl(target) + transaction(statements)


def compiled_snapshot_parts(
    compiled: CompiledProject,
    target: Target,
    names: Sequence[str],
    lowering: Lowering,
    printed: PartPrinter,
) -> None:
    """The parts `compiled_snapshot_statements` would give `printed` for these segments (member
    branches, log rows), without building the statements around them: a recompile puts the
    parts of edited segments into the script's previous layout (emit.SnapshotLayout)."""
    plan = plan_snapshot(compiled, names, _assumed_recorded(compiled), target, lowering)
    for entity_name in _entities_of(compiled, plan.written):
        entity = compiled.entities[entity_name]
        members = [n for n in plan.written if compiled.segments[n].entity == entity_name]
        members_query(entity, members, plan, printed)
    for name in plan.written:
        _printed_log_row(compiled, name, plan.as_of, printed)


def _assumed_recorded(compiled: CompiledProject) -> set[str]:
    """The segments a script takes as recorded: frozen on a date before as_of."""
    return {
        name
        for name, segment in compiled.segments.items()
        if segment.definition.freeze is not None and segment.definition.freeze < compiled.as_of
    }


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
    share_work: bool = True,
) -> list[SnapshotRun]:
    """Snapshot each date in its own transaction; a failure stops there, earlier dates stay.

    With several dates (and `share_work`), decomposable feature aggregates are carried
    from one date to the next (`RunningAggregates`) instead of re-aggregating every source row
    on every date; the statements are otherwise those of a single-date snapshot.
    """
    _refuse_row_layout(runner)
    runner.execute_all(history_ddl(runner.target))
    runs: list[SnapshotRun] = []
    recorded: set[str] | None = None
    days = sorted(set(dates))
    running = running_aggregates(runner, days) if share_work else None
    carried: CarriedMembership | None = None
    checkpoints = _deferred_checkpoints(runner) if share_work and len(days) > 1 else None
    try:
        for day in days:
            compiled = compile_at(day)
            names = select_segments(compiled, selectors)
            if recorded is None:
                recorded = recorded_freezes(runner, compiled)
                _record_freezes(runner, compile_at, compiled, names, max(dates), recorded)
                if share_work and len(days) > 1:  # after the freezes: they are logged dates too
                    carried = CarriedMembership(logged_since(runner, days[0]), runner)
            plan = plan_snapshot(compiled, names, recorded, runner.target)
            statements = snapshot_statements(compiled, runner.target, plan, carried=carried)
            if running is not None:
                statements = running.advance(compiled, statements)
            runner.execute_all(statements)
            recorded |= {n for n in names if compiled.segments[n].definition.freeze == day}
            run = SnapshotRun(day, tuple(names))
            runs.append(run)
            if on_date is not None:
                on_date(run)
    finally:
        if running is not None:
            running.close()
        if carried is not None:
            runner.execute_all(carried.close())
        if checkpoints is not None:
            checkpoints()
    return runs


# DuckDB checkpoints (writes the WAL into the database file) at the first commit after the WAL
# passes `checkpoint_threshold` (16 MiB): in a backfill of the example project that is nearly
# every date, each checkpoint rewriting the row groups of segment_history the date's UPDATE
# touched (1M customers, 8 weeks: 2.3 s of commits against 0.4 s with one checkpoint at the end).
# So a backfill raises the threshold and checkpoints once when it ends. Each date stays its own
# transaction, durable when it commits (the WAL is written and synced at every commit).
BACKFILL_CHECKPOINT_THRESHOLD = "1GB"


def _deferred_checkpoints(runner: Runner) -> Callable[[], None] | None:
    """On DuckDB, raise the checkpoint threshold; returns what restores it and checkpoints."""
    if not isinstance(runner, DuckDBRunner):
        return None
    connection = runner.connection
    row = connection.execute("SELECT current_setting('checkpoint_threshold')").fetchone()
    previous = exp.Literal.string(str(row[0]) if row else "16MiB").sql("duckdb")
    connection.execute(f"SET checkpoint_threshold = '{BACKFILL_CHECKPOINT_THRESHOLD}'")

    def restore() -> None:
        connection.execute(f"SET checkpoint_threshold = {previous}")
        # a failed checkpoint (duckdb.Error) loses nothing: DuckDB checkpoints again on close
        with contextlib.suppress(Exception):
            connection.execute("CHECKPOINT")

    return restore


def logged_since(runner: Runner, first: dt.date) -> set[tuple[str, dt.date]]:
    """The (segment, as_of) snapshots in the log on or after `first`."""
    query = (
        exp.select("segment", "as_of")
        .from_(runner.target.relation(SNAPSHOTS_TABLE))
        .where(exp.column("as_of") >= date_literal(first))
    )
    return {(str(name), _as_date(as_of)) for name, as_of in runner.query(query)}


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
# sharing work across dates: carried membership
#
# A date's flips are its members compared with the intervals covering it (`flips_statement`: a
# FULL JOIN of two sets of (segment, key) rows, ~6M each for 50 segments over 1M customers). In a
# backfill, the intervals covering date D are exactly the members of the date before, which the
# backfill just spliced in, unless a snapshot of one of the segments was already logged in
# (previous date, D]. So each date's membership is also kept as one row per key, a bit per
# written segment (`mask_query`), and the next date compares the two masks (a FULL JOIN of two
# 1M-row tables) and unpacks only the keys whose mask changed into flips (`mask_flips`). The
# first date, and any date the condition rules out, uses the FULL JOIN as before.

MASK_TABLE = "segsql_mask"
MASK_CHANGES = "segsql_mask_changes"  # keys whose mask changed: now_i / before_i per word i
MASK_BITS = 62  # segments per BIGINT word: a sum of distinct powers of two below 2**62 fits


@dataclass(frozen=True)
class _Mask:
    """One entity's membership on a date, one row per key (see `mask_query`)."""

    table: str
    names: tuple[str, ...]  # bit i of the mask words is names[i]
    as_of: dt.date


class CarriedMembership:
    """The masks of one backfill, carried from each date to the next (see above)."""

    def __init__(self, logged: set[tuple[str, dt.date]], runner: Runner):
        self._logged = logged  # snapshots logged before the backfill, from its first date on
        self._masks: dict[str, _Mask] = {}  # entity -> its mask on the previous date
        self._tables = itertools.count(1)
        self._runner = runner
        self._unique: dict[str, bool] = {}  # entity -> whether no key is in its table twice

    def flips(
        self,
        entity: Entity,
        names: Sequence[str],
        plan: SnapshotPlan,
        default: Callable[[], exp.Expr],
    ) -> list[exp.Expr]:
        """Statements filling segsql_flips for the entity's segments on plan.as_of (`default`,
        the FULL JOIN, when the previous mask does not hold what history covers) and keeping
        the date's mask for the next date."""
        mask = _Mask(f"{MASK_TABLE}_{next(self._tables)}", tuple(names), plan.as_of)
        if entity.name not in self._unique:
            self._unique[entity.name] = _unique_keys(self._runner, entity)
        query = mask_query(entity, mask, plan, self._unique[entity.name])
        statements: list[exp.Expr] = [temp_table(mask.table, query)]
        before = self._masks.get(entity.name)
        if self.carries(entity, names, plan.as_of):
            assert before is not None
            statements += mask_flips(mask, before)
        else:
            statements.append(default())
        if before is not None:
            statements.append(drop(before.table))
        self._masks[entity.name] = mask
        return statements

    def carries(self, entity: Entity, names: Sequence[str], day: dt.date) -> bool:
        """Whether the flips on `day` come from the previous date's mask (`flips`): then the
        date's mask is the only reader of the entity's features."""
        before = self._masks.get(entity.name)
        return before is not None and self._covers(before, tuple(names), day)

    def appends(self, names: Sequence[str], day: dt.date) -> bool:
        """Whether no snapshot of the segments is logged on or after `day` (`append_statements`).
        The backfill's own earlier dates come before `day`."""
        return not any(name in names and logged >= day for name, logged in self._logged)

    def close(self) -> list[exp.Expr]:
        return [drop(mask.table) for mask in self._masks.values()]

    def _covers(self, before: _Mask, names: tuple[str, ...], day: dt.date) -> bool:
        """Whether the intervals covering `day` are the members of before.as_of: the same
        segments, none of them logged in between (or on `day`, a date run again)."""
        if before.names != names:
            return False
        return not any(
            name in names and before.as_of < logged <= day for name, logged in self._logged
        )


def _mask_words(count: int) -> range:
    return range((count + MASK_BITS - 1) // MASK_BITS)


def mask_query(
    entity: Entity, mask: _Mask, plan: SnapshotPlan, unique_keys: bool = False
) -> exp.Select:
    """Per key of the date's features: word w has bit b set when the key is a member of
    names[w * MASK_BITS + b]. BIT_OR over a key's rows: a key twice in the entity table is a
    member when one of its rows is (as in `member_select`); with `unique_keys` (checked by
    `_unique_keys`) each row is a key's and needs no GROUP BY (~0.1 s of a 1M-key date)."""
    key = exp.column(entity.key)
    query = exp.select(exp.alias_(key, KEY_ALIAS)).from_(features_scratch(entity))
    for word in _mask_words(len(mask.names)):
        names = mask.names[word * MASK_BITS : (word + 1) * MASK_BITS]
        total: exp.Expr = exp.cast(exp.Literal.number(0), exp.DataType.Type.BIGINT)
        for bit, name in enumerate(names):
            member = exp.If(this=plan.predicates[name].copy(), true=exp.Literal.number(1 << bit))
            total = exp.Add(this=total, expression=exp.Case(ifs=[member], default=_zero()))
        word_value = total if unique_keys else exp.func("BIT_OR", total)
        query = query.select(exp.alias_(word_value, f"segsql_mask_{word}"))
    return query if unique_keys else query.group_by(key.copy())


def _unique_keys(runner: Runner, entity: Entity) -> bool:
    """Whether no key is in the entity's table twice: then none is in any date's rows (a subset
    of the table's: `time:` keeps those that existed on the date)."""
    relation = feature_query(entity, runner.target)  # its source named as the target reads it
    rows = next((cte.this for cte in relation.ctes if cte.alias == ENTITY_ROWS), None)
    if not isinstance(rows, exp.Select) or rows.args.get("from_") is None:
        return False
    key = exp.column(entity.key)
    distinct = exp.Count(this=exp.Distinct(expressions=[key]))
    same = exp.EQ(this=exp.Count(this=exp.Star()), expression=distinct)
    try:
        found = runner.query(exp.select(same).from_(rows.args["from_"].this.copy()))
    except ExecutionError:  # unknown is not unique: the masks group a key's rows, as always
        return False
    return bool(found and found[0][0])


def _zero() -> exp.Expr:
    return exp.Literal.number(0)


def mask_flips(now: _Mask, before: _Mask) -> list[exp.Expr]:
    """INSERT INTO segsql_flips the keys whose bit of a segment differs between the masks."""
    columns: list[exp.Expr] = [
        exp.alias_(exp.func("COALESCE", _key_of("n"), _key_of("b")), KEY_ALIAS)
    ]
    differs: list[exp.Expr] = []
    for word in _mask_words(len(now.names)):
        values = {
            side: exp.func("COALESCE", _word_of(table, word), _zero())
            for side, table in (("now", "n"), ("before", "b"))
        }
        columns += [exp.alias_(value, f"{side}_{word}") for side, value in values.items()]
        differs.append(exp.NEQ(this=values["now"].copy(), expression=values["before"].copy()))
    changes = (
        exp.select(*columns)
        .from_(exp.to_table(now.table).as_("n"))
        .join(
            exp.to_table(before.table).as_("b"),
            on=_key_of("n").eq(_key_of("b")),
            join_type="FULL OUTER",
        )
        .where(exp.or_(*differs))
    )
    branches: list[exp.Expr] = [_flips_of(n, index) for index, n in enumerate(now.names)]
    insert = exp.insert(
        _union_all(branches) if len(branches) > 1 else branches[0],
        FLIPS_SCRATCH,
        columns=[c for c, _, _ in FLIPS_COLUMNS],
    )
    return [temp_table(MASK_CHANGES, changes), insert, drop(MASK_CHANGES)]


def _key_of(table: str) -> exp.Column:
    return exp.column(KEY_ALIAS, table=table)


def _word_of(table: str, word: int) -> exp.Column:
    return exp.column(f"segsql_mask_{word}", table=table)


def _flips_of(name: str, index: int) -> exp.Select:
    """The changed keys whose bit of segment `name` (bit `index` of all) flipped."""
    word, bit = divmod(index, MASK_BITS)

    def bit_of(side: str) -> exp.Expr:
        value = exp.BitwiseAnd(
            this=exp.column(f"{side}_{word}"), expression=exp.Literal.number(1 << bit)
        )
        return exp.paren(value)

    is_member = exp.Case(
        ifs=[
            exp.If(this=exp.NEQ(this=bit_of("now"), expression=_zero()), true=exp.Literal.number(1))
        ],
        default=_zero(),
    )
    return (
        exp.select(
            exp.alias_(exp.Literal.string(name), "segment"),
            exp.alias_(exp.cast(exp.column(KEY_ALIAS), exp.DataType.Type.TEXT), "entity_key"),
            exp.alias_(is_member, "is_member"),
        )
        .from_(MASK_CHANGES)
        .where(exp.NEQ(this=bit_of("now"), expression=bit_of("before")))
    )


# ---------------------------------------------------------------------------------------------
# reading history: growth and flows


# Over intervals: an interval starting on D is a key that entered on D (valid_from is the first
# snapshot of a run of memberships), one ending on D a key that left on D (valid_to is the first
# snapshot without it), so entered/exited are counts grouped by date, and a segment's size on each
# of its snapshots is the running sum of entries minus exits. No interval is joined with a date:
# the query reads each interval once, whatever the number of snapshots.
GROWTH_SQL = """
WITH logged AS (
  SELECT segment, as_of, LAG(as_of) OVER (PARTITION BY segment ORDER BY as_of) AS previous_as_of
  FROM segment_snapshots
  WHERE :segments
),
starts AS (
  SELECT segment, valid_from AS as_of, COUNT(*) AS n
  FROM segment_history WHERE :segments GROUP BY segment, valid_from
),
ends AS (
  SELECT segment, valid_to AS as_of, COUNT(*) AS n
  FROM segment_history WHERE :segments AND valid_to IS NOT NULL GROUP BY segment, valid_to
),
changes AS (
  SELECT l.segment, l.as_of, l.previous_as_of,
         COALESCE(s.n, 0) AS entered, COALESCE(e.n, 0) AS exited
  FROM logged AS l
  LEFT JOIN starts AS s ON s.segment = l.segment AND s.as_of = l.as_of
  LEFT JOIN ends AS e ON e.segment = l.segment AND e.as_of = l.as_of
),
sized AS (
  SELECT segment, as_of, previous_as_of, entered, exited,
         SUM(entered - exited) OVER (
           PARTITION BY segment ORDER BY as_of ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
         ) AS size
  FROM changes
),
periods AS (
  SELECT segment, previous_as_of, as_of, size,
         LAG(size) OVER (PARTITION BY segment ORDER BY as_of) AS previous_size,
         entered, exited
  FROM sized
)
SELECT segment, previous_as_of, as_of, size,
       CASE WHEN previous_as_of IS NOT NULL THEN previous_size END AS previous_size,
       CASE WHEN previous_as_of IS NOT NULL THEN entered END AS entered,
       CASE WHEN previous_as_of IS NOT NULL THEN exited END AS exited,
       CASE WHEN previous_as_of IS NOT NULL THEN size - entered END AS retained,
       size - previous_size AS net_growth,
       CAST(size - previous_size AS DOUBLE PRECISION) / NULLIF(previous_size, 0) AS growth_rate
FROM periods
WHERE :period
ORDER BY segment, as_of
"""

FLOWS_SQL = """
WITH from_members AS (
  SELECT segment, entity_key FROM segment_history WHERE :on_from AND :segments
),
to_members AS (
  SELECT segment, entity_key FROM segment_history WHERE :on_to AND :segments
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

    return _parsed(sql).transform(fill)  # transform copies: the parsed template is kept


@functools.lru_cache(maxsize=64)
def _parsed(sql: str) -> exp.Expr:
    """A fixed query parsed once (the splice's statements are filled in on every date)."""
    return sqlglot.parse_one(sql, read=TEMPLATE_DIALECT)


def _segment_filter(names: Sequence[str], table: str | None = None) -> exp.Expr:
    literals = [exp.Literal.string(n) for n in names]
    return exp.column("segment", table=table).isin(*literals, copy=False)


def growth_query(
    target: Target, names: Sequence[str], start: dt.date | None, end: dt.date | None
) -> exp.Expr:
    """Per segment and period between consecutive snapshots: size, entered, exited, retained..."""
    period: list[exp.Expr] = []
    if start is not None:
        period.append(exp.column("as_of") >= date_literal(start))
    if end is not None:
        period.append(exp.column("as_of") <= date_literal(end))
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
    """Members per (segment, date) recorded by `runs` (0 for an empty segment): the growth
    query's sizes (counting covering intervals date by date would join every interval with
    every date)."""
    days = [r.as_of for r in runs]
    written = sorted({n for r in runs for n in r.segments})
    if not written:
        return {}
    rows = growth(runner, written, min(days), max(days))
    counts = {(g.segment, g.as_of): g.size for g in rows}
    return {(n, r.as_of): counts.get((n, r.as_of), 0) for r in runs for n in r.segments}


def flows_query(target: Target, names: Sequence[str], start: dt.date, end: dt.date) -> exp.Expr:
    values = {
        "segments": _segment_filter(names),
        "on_from": covering(date_literal(start)),
        "on_to": covering(date_literal(end)),
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
    return runner.table_columns(_qualified(runner.target, SNAPSHOTS_TABLE)) is not None


def _qualified(target: Target, table: str) -> str:
    schema = target.schema
    qualified = f"{target.config.project}.{schema}" if target.config.project else schema
    return f"{qualified}.{table}"


def _refuse_row_layout(runner: Runner) -> None:
    """Stop before writing intervals into a history table of the earlier row-per-date layout
    (segment, entity_key, as_of), which `CREATE TABLE IF NOT EXISTS` would leave as it is."""
    columns = runner.table_columns(_qualified(runner.target, HISTORY_TABLE))
    if columns is not None and "valid_from" not in [c.lower() for c in columns]:
        relation = to_sql(runner.target.relation(HISTORY_TABLE), runner.target)
        raise ExecutionError(
            f"{relation} has the row-per-date layout of an earlier segsql "
            "(one row per segment, key and as_of); history is now stored as validity intervals",
            hint=f"rename it (ALTER TABLE {relation} RENAME TO {HISTORY_TABLE}_rows) and the "
            f"{SNAPSHOTS_TABLE} table likewise, then re-run the backfill (docs/history.md)",
        )


def sibling_groups(compiled: CompiledProject, names: Sequence[str]) -> list[list[str]]:
    """Selected segments grouped by (entity, parent): the sets whose members move between them."""
    groups: dict[tuple[str, str | None], list[str]] = {}
    for name in names:
        segment = compiled.segments[name]
        parent = segment.definition.parent
        groups.setdefault((segment.entity, parent.name if parent else None), []).append(name)
    return list(groups.values())


# ---------------------------------------------------------------------------------------------
# KPI trend: each KPI of each segment's recorded members, date by date

HISTORY_MEMBERS = "segsql_history_members"
MEMBER_KEY = "segsql_key_text"
MEMBER_SEGMENT = "segsql_segment"


@dataclass(frozen=True)
class KpiTrend:
    """KPI values per (segment, snapshot date); None where a segment had no members."""

    kpis: tuple[str, ...]
    formats: Mapping[str, str]  # KPI -> number | percent | currency (display only)
    values: Mapping[tuple[str, dt.date], Mapping[str, Any]]

    def of(self, segment: str, day: dt.date) -> dict[str, Any]:
        row = self.values.get((segment, day), {})
        return {name: row.get(name) for name in self.kpis}


def kpi_plans(
    compiled: CompiledProject, names: Sequence[str], only: Sequence[str] | None
) -> list[KpiPlan]:
    """The selected segments' entities that have (the requested) KPIs, with those KPIs."""
    structural = [n for n in only or [] if n in STRUCTURAL]
    if structural:
        raise SpecError(
            f"growth has no KPI trend for {', '.join(structural)}",
            hint="size is growth's own `size` column; ask for KPIs defined under `kpis:`",
        )
    defined = build_kpis(compiled)
    if not any(defined.values()):
        raise SpecError(
            "the project defines no KPIs", hint="define some under `kpis:` (docs/kpis.md)"
        )
    plans = plan_kpis(compiled, list(names), defined, list(only) if only else None)
    return [plan for plan in plans if plan.kpis]


def kpi_columns(plans: Sequence[KpiPlan]) -> tuple[str, ...]:
    """The KPI columns of `kpi_trend_query`, after `segment`: every plan's KPIs, each once."""
    return tuple(dict.fromkeys(kpi.name for plan in plans for kpi in plan.kpis))


def kpi_trend_query(plans: Sequence[KpiPlan], target: Target, day: dt.date) -> exp.Query:
    """One query for one date: per segment, every KPI over the members recorded in history on
    that date, with the features evaluated as of that date (the plans come from the project
    compiled for it). Each entity is a subquery with its own feature CTEs, so their CTE names
    never clash; KPIs another entity does not have are NULL in its rows."""
    parts = [_entity_kpis(plan, target, day, kpi_columns(plans)) for plan in plans]
    if len(parts) == 1:
        return parts[0]
    query: exp.Query = exp.select("*").from_(parts[0].subquery("segsql_entity_1"))
    for index, part in enumerate(parts[1:], start=2):
        branch = exp.select("*").from_(part.subquery(f"segsql_entity_{index}"))
        query = exp.union(query, branch, distinct=False, copy=False)
    return query


def _entity_kpis(plan: KpiPlan, target: Target, day: dt.date, names: Sequence[str]) -> exp.Select:
    """SELECT segment, KPIs FROM the features JOIN the members recorded on `day` GROUP BY segment."""
    members = (
        exp.select(
            exp.alias_(exp.column("entity_key"), MEMBER_KEY),
            exp.alias_(exp.column("segment"), MEMBER_SEGMENT),
        )
        .from_(target.relation(HISTORY_TABLE))
        .where(covering(date_literal(day)))
        .where(_segment_filter(plan.shown))
    )
    own = {kpi.name: kpi for kpi in plan.kpis}
    columns: list[exp.Expr] = [exp.alias_(exp.column(MEMBER_SEGMENT, table="m"), "segment")]
    for name in names:
        kpi = own.get(name)
        value = lower_portable(kpi.expression.copy(), target.engine) if kpi else exp.null()
        columns.append(exp.alias_(exp.cast(value, exp.DataType.build(OUTPUT_DECIMAL)), name))
    relation = plan.entity.relation_name
    # the members' own column names are prefixed, so the KPIs' unqualified columns stay unique
    joined = _key_text_of(relation, plan.entity.key).eq(exp.column(MEMBER_KEY, table="m"))
    query = (
        exp.select(*columns)
        .from_(relation)
        .join(exp.alias_(exp.to_table(HISTORY_MEMBERS), "m", table=True), on=joined)
        .group_by(exp.column(MEMBER_SEGMENT, table="m"))
    )
    for alias, body in feature_ctes(plan.entity, target):
        query = query.with_(alias, as_=body, copy=False)
    return query.with_(HISTORY_MEMBERS, as_=members, copy=False)


def _key_text_of(relation: str, key: str) -> exp.Expr:
    return exp.cast(exp.column(key, table=relation), exp.DataType.Type.TEXT)


def kpi_trend(
    runner: Runner,
    compile_at: Compile,
    names: Sequence[str],
    days: Iterable[dt.date],
    only: Sequence[str] | None = None,
) -> KpiTrend:
    """The KPIs (all, or `only`) of each segment's recorded members on each date: one query per
    date, with the project compiled for that date (features are not stored in history, so they
    are evaluated from the sources as of each date, like `segsql kpis --as-of`)."""
    values: dict[tuple[str, dt.date], dict[str, Any]] = {}
    kpis: tuple[str, ...] = ()
    formats: dict[str, str] = {}
    for day in sorted(set(days)):
        compiled = compile_at(day)
        plans = kpi_plans(compiled, names, only)
        if not plans:
            break
        columns = kpi_columns(plans)
        kpis = tuple(n for n in only if n in columns) if only else columns  # in the order asked
        formats = {k: v for k, v in result_formats(plans).items() if k in kpis}
        for segment, *row in runner.query(kpi_trend_query(plans, runner.target, day)):
            values[(str(segment), day)] = dict(zip(columns, row, strict=True))
    return KpiTrend(kpis, formats, values)
