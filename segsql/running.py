"""Running aggregates: a backfill's feature aggregates carried from one date to the next.

A feature aggregate over a time-filtered source (`count(*)` of orders up to as_of, or within a
window) changes little from one snapshot date to the next: only the rows of (previous date,
date] arrive and, with a window, those of (previous start, start] leave. For aggregates that can
be combined exactly (counts, sums of integers and decimals, and min/max when nothing leaves), a
backfill keeps a running state per key in a temporary table: on the first date it is the
aggregate itself; on each later date the arriving (+1) and leaving (-1) rows are aggregated per
key (a few days of rows) and added to the state (a new state table: the old one FULL JOIN the
change).
The aggregate CTEs over the same source rows (table, key and time: e.g. every windowed count
of orders) form one bundle: the rows they read are copied once, sorted by day, so each date's
arrivals are a range scan rather than a scan of the whole source, and one state table holds
every group's parts (a key with no row of a group reads as missing from its aggregate), kept up
by one pass over the rows arriving or leaving any of the windows. Each date's features scratch
table then reads the state in place of the aggregate CTEs; everything else (entity rows,
defaults, derived features, predicates, the splice) is the single-date snapshot's statements.
A floating-point sum is never combined: the total of partial sums can differ in the last bit
and flip a threshold, so such groups are aggregated per date as before.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot import exp

from segsql.build import KEY_ALIAS, CompiledProject, Entity
from segsql.emit import Target, to_sql
from segsql.errors import ExecutionError
from segsql.model import Window
from segsql.run import Runner
from segsql.scratch import date_literal, drop, range_index, temp_table

RUNNING_TABLE = "segsql_running"
DAY = "segsql_day"  # the staged rows' CAST(time AS DATE)
GROUP_ROWS = "segsql_group_rows"  # a group's row count, in a value decomposed into parts
# Types whose sums are exact, so adding and subtracting partial sums gives the same total
# (DuckDB's HUGEINT is INT128; PostgreSQL's numeric, with or without a precision, is DECIMAL).
_T = exp.DataType.Type
EXACT_SUM_TYPES = (_T.TINYINT, _T.SMALLINT, _T.INT, _T.BIGINT, _T.INT128, _T.DECIMAL)


def running_aggregates(runner: Runner, days: Sequence[dt.date]) -> RunningAggregates | None:
    # Every engine that runs (DuckDB, PostgreSQL) tells a query's types without running it
    # (`Runner.column_types`), which is how sums are checked to be exact.
    if len(days) > 1:
        return RunningAggregates(runner, days)
    return None


@dataclass(frozen=True)
class _Part:
    """A per-row expression kept per key in the running state, combined with SUM, MAX or MIN.
    (count(*) needs none: it is the group's row count, GROUP_ROWS in a decomposed value.)"""

    combine: str
    row_value: exp.Expr


@dataclass
class _RunningGroup:
    """One aggregate CTE of a feature relation, maintained across dates in its bundle's state:
    its columns there are g<index>_rows and g<index>_p<i>."""

    signature: str  # the CTE without its date filters: later dates must compile to the same
    key: exp.Expr
    source: exp.Expr  # the CTE's FROM
    row_filter: exp.Expr | None  # the source's own `where:`
    day: exp.Expr  # CAST(time AS DATE)
    window: Window | None
    parts: list[_Part]
    types: list[exp.DataType]  # the CTE's output types, its key's first
    features: tuple[str, ...]  # the CTE's feature columns
    index: int = 0  # its number in its bundle

    def rows(self) -> str:
        return f"g{self.index}_rows"

    def part(self, number: int) -> str:
        return f"g{self.index}_p{number}"


@dataclass
class _Bundle:
    """The running groups over the same source rows (table, key and time): one staged copy of
    those rows, one state table (one row per key), one upkeep per date."""

    groups: list[_RunningGroup]
    staged: str = ""
    state: str = ""
    as_of: dt.date | None = None


@dataclass(frozen=True)
class _Aggregate:
    """An aggregate CTE split into its date filters and the rest."""

    query: exp.Select
    day: exp.Expr
    window: Window | None
    row_filter: exp.Expr | None
    signature: str


class RunningAggregates:
    """The running states of one backfill's decomposable feature aggregates (see above)."""

    def __init__(self, runner: Runner, days: Sequence[dt.date]):
        self._runner = runner
        self._first, self._last = min(days), max(days)
        self._groups: dict[tuple[str, str], _RunningGroup | None] = {}  # None: per date
        self._bundles: dict[tuple[str, str, str], _Bundle] = {}
        self._of_group: dict[int, _Bundle] = {}  # id(group) -> its bundle
        self._tables = itertools.count(1)
        self._created: list[str] = []

    def advance(self, compiled: CompiledProject, statements: list[exp.Expr]) -> list[exp.Expr]:
        """Bring every state to compiled.as_of and point the feature relations' aggregate CTEs
        (in the CREATE of each entity's features scratch table) at them.

        The states' upkeep comes first in the returned statements: it runs in the date's
        transaction (one commit per date, and a failed date leaves the states as they were)."""
        reads: list[tuple[exp.CTE, _RunningGroup, list[exp.Expr]]] = []
        for statement in statements:
            query = statement.expression if isinstance(statement, exp.Create) else None
            if not isinstance(query, exp.Query) or not query.ctes:
                continue
            entity = _entity_of_ctes(compiled, [cte.alias for cte in query.ctes])
            if entity is None:
                continue
            for cte in query.ctes:
                found = self._group_for(compiled, entity, cte)
                if found is not None:
                    reads.append((cte, *found))
        upkeep: list[exp.Expr] = []
        for bundle in {id(b): b for _, g, _ in reads for b in [self._bundle_of(g)]}.values():
            upkeep += self._fold(bundle, compiled.as_of)
        for cte, group, values in reads:
            cte.set("this", self._state_read(group, values))
        bundled = [(cte, self._bundle_of(group)) for cte, group, _ in reads]
        for statement in statements:
            if isinstance(statement, exp.Create) and isinstance(statement.expression, exp.Query):
                _join_state_once(statement.expression, bundled)
        return upkeep + statements

    def shared(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """(entity, aggregate CTE) -> its features, for the aggregates carried across dates."""
        return {key: g.features for key, g in self._groups.items() if g is not None}

    def close(self) -> None:
        if self._created:
            self._runner.execute_all([drop(table) for table in self._created])

    def _table(self) -> str:
        name = f"{RUNNING_TABLE}_{next(self._tables)}"
        self._created.append(name)
        return name

    def _group_for(
        self, compiled: CompiledProject, entity: Entity, cte: exp.CTE
    ) -> tuple[_RunningGroup, list[exp.Expr]] | None:
        """The CTE's running group (created on its first date) and its values on this date."""
        aggregate = _split_aggregate(compiled, entity, cte, self._runner.target)
        if aggregate is None:
            return None
        key = (entity.name, cte.alias)
        if key not in self._groups:
            self._groups[key] = self._new_group(aggregate)
        group = self._groups[key]
        if group is None:
            return None
        values = _values_of(aggregate.query, group.types, group.window is None)
        if group.signature != aggregate.signature or values is None or values[0] != group.parts:
            self._groups[key] = None  # the definition moved with the date: aggregate per date
            return None
        # this date's values: a feature such as days_since(max(time)) reads as_of around its parts
        return group, values[1]

    def _state_read(self, group: _RunningGroup, values: list[exp.Expr]) -> exp.Select:
        """The aggregate CTE read from its bundle's state: a key with no rows of the group has
        NULL features, as a key missing from the aggregate would."""
        columns = {f"p{i}": group.part(i) for i in range(len(group.parts))}
        columns[GROUP_ROWS] = group.rows()

        def rename(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Column) and node.name in columns:
                return exp.column(columns[node.name])
            return node

        has_rows = exp.column(group.rows()) > exp.Literal.number(0)
        selects = [exp.alias_(KEY_ALIAS, KEY_ALIAS)]
        for value, name in zip(values, group.features, strict=True):
            read = exp.Case(ifs=[exp.If(this=has_rows.copy(), true=value.transform(rename))])
            selects.append(exp.alias_(read, name))
        return exp.select(*selects).from_(self._bundle_of(group).state)

    def _new_group(self, aggregate: _Aggregate) -> _RunningGroup | None:
        query = aggregate.query
        source = query.args["from_"].this
        try:
            types = self._runner.column_types(query)
        except ExecutionError:
            return None
        decomposed = _values_of(query, types, aggregate.window is None)
        if decomposed is None:
            return None
        parts = decomposed[0]
        summed = [p.row_value for p in parts if p.combine == "SUM"] or [exp.Literal.number(0)]
        check = exp.select(*[exp.alias_(v.copy(), f"v{i}") for i, v in enumerate(summed)])
        try:
            sum_types = self._runner.column_types(check.from_(source.copy()))
        except ExecutionError:
            return None
        if not all(t.is_type(*EXACT_SUM_TYPES) for t in sum_types):
            return None
        group = _RunningGroup(
            aggregate.signature,
            query.expressions[0].this,
            source,
            aggregate.row_filter,
            aggregate.day,
            aggregate.window,
            parts,
            types,
            tuple(s.alias for s in query.expressions[1:]),
        )
        if any(c.table for tree in _read_by(group) for c in tree.find_all(exp.Column)):
            return None  # a qualified column would not resolve against the staged copy
        return group

    def _bundle_of(self, group: _RunningGroup) -> _Bundle:
        """The group's bundle: the one of its source rows, joined on its first date."""
        if id(group) in self._of_group:
            return self._of_group[id(group)]
        target = self._runner.target
        key = (to_sql(group.source, target), to_sql(group.key, target), to_sql(group.day, target))
        bundle = self._bundles.get(key)
        if bundle is None or bundle.as_of is not None:  # a bundle already staged stays as it is
            bundle = self._bundles[key] = _Bundle([])
        group.index = len(bundle.groups)
        bundle.groups.append(group)
        self._of_group[id(group)] = bundle
        return bundle

    def _stage(self, bundle: _Bundle) -> list[exp.Expr]:
        """Copy the rows the bundle's groups read (their columns, the backfill's days) sorted
        by day, so each date's arrivals are a range scan (DuckDB skips row groups by their
        min/max; an engine without zone maps gets an index on the day)."""
        first = bundle.groups[0]
        columns = {
            c.name for g in bundle.groups for t in _read_by(g) for c in t.find_all(exp.Column)
        }
        starts = [g.window.start(self._first) if g.window else None for g in bundle.groups]
        earliest = None if None in starts else min(d for d in starts if d is not None)
        rows = _rows_between(first.source, first.day, earliest, self._last)
        staged = rows.select(*sorted(columns), exp.alias_(first.day.copy(), DAY), append=False)
        bundle.staged = self._table()
        statements: list[exp.Expr] = [temp_table(bundle.staged, staged.order_by(DAY))]
        if self._runner.target.engine.indexes_scratch:
            statements += range_index(bundle.staged, DAY)
        return statements

    def _fold(self, bundle: _Bundle, day: dt.date) -> list[exp.Expr]:
        """Statements making state(day) = state(previous day) + rows arriving - rows leaving
        each group's window (on the first date: the staged rows, and the aggregate itself)."""
        previous, bundle.as_of = bundle.as_of, day
        if previous is None:
            staging = self._stage(bundle)
            bundle.state = self._table()
            initial = _per_key(bundle, [_ranges(g, None, day) for g in bundle.groups])
            return [*staging, temp_table(bundle.state, initial)]
        if previous == day:
            return []
        change = _per_key(bundle, [_ranges(g, previous, day) for g in bundle.groups])
        return _add_to_state(bundle, change, self._table())


Ranges = list[tuple[dt.date | None, dt.date | None, int]]  # (after, until, sign)


def _join_state_once(query: exp.Query, reads: Sequence[tuple[exp.CTE, _Bundle]]) -> None:
    """In a feature relation whose aggregate CTEs read bundle states, let the first CTE of each
    bundle read all of its features (one LEFT JOIN of the state instead of one per CTE): the
    others are removed, with their joins, and their columns are read from the first."""
    mine = {id(cte) for cte in query.ctes}
    first: dict[int, exp.CTE] = {}
    renamed: dict[str, str] = {}
    for cte, bundle in reads:
        if id(cte) not in mine:
            continue
        kept = first.setdefault(id(bundle), cte)
        if kept is not cte:
            kept.this.set("expressions", [*kept.this.expressions, *cte.this.expressions[1:]])
            renamed[cte.alias] = kept.alias
            cte.pop()
    if not renamed:
        return
    for join in list(query.find_all(exp.Join)):
        if isinstance(join.this, exp.Table) and join.this.name in renamed:
            join.pop()
    for column in query.find_all(exp.Column):
        if column.table in renamed:
            column.set("table", exp.to_identifier(renamed[column.table]))


def _read_by(group: _RunningGroup) -> list[exp.Expr]:
    """The trees whose columns a group reads from its source rows."""
    read = [group.key, group.row_filter, *(p.row_value for p in group.parts)]
    return [tree for tree in read if tree is not None]


def _ranges(group: _RunningGroup, previous: dt.date | None, day: dt.date) -> Ranges:
    """The rows that move a group's state from `previous` (None: no state yet) to `day`: +1 for
    those arriving, -1 for those leaving its window."""
    start = group.window.start(day) if group.window else None
    if previous is None:
        return [(start, day, 1)]
    ranges: Ranges = [(previous, day, 1)]
    if group.window is not None:
        ranges.append((group.window.start(previous), start, -1))
    return ranges


def _per_key(bundle: _Bundle, ranges: Sequence[Ranges]) -> exp.Select:
    """Per key, for each group (with its ranges): the number of rows and each part over the
    rows of its ranges (after, until], each row counted with its sign. One pass over the staged
    rows of every range; each distinct sign (groups share windows) is computed once per row."""
    day = exp.column(DAY)
    key = bundle.groups[0].key
    signs: dict[str, tuple[str, exp.Expr]] = {}  # printed sign -> (its column, the sign)
    in_any: dict[str, exp.Expr] = {}
    columns: list[exp.Expr] = [exp.alias_(key.copy(), KEY_ALIAS)]
    for group, group_ranges in zip(bundle.groups, ranges, strict=True):
        terms: list[exp.Expr] = []
        for after, until, sign in group_ranges:
            condition = _in_range(day, after, until)
            in_any.setdefault(condition.sql(), condition)
            terms.append(_when(condition, exp.Literal.number(sign), exp.Literal.number(0)))
        # a sum, not one CASE: a row may both arrive and leave (a window shorter than the step)
        sign_of_row = functools.reduce(lambda a, b: exp.Add(this=a, expression=b), terms)
        name, _ = signs.setdefault(sign_of_row.sql(), (f"segsql_sign_{len(signs)}", sign_of_row))
        counted, sign_column = group.row_filter, exp.column(name)
        columns.append(exp.alias_(_summed(sign_column, counted), group.rows()))
        for number, part in enumerate(group.parts):
            columns.append(exp.alias_(_part_of(part, sign_column, counted), group.part(number)))
    rows_in_range = exp.or_(*[c.copy() for c in in_any.values()])
    not_null = key.copy().is_(exp.null()).not_()  # a NULL key joins no entity
    signed = (
        exp.select("*", *[exp.alias_(sign, name) for name, sign in signs.values()])
        .from_(bundle.staged)
        .where(exp.and_(not_null, exp.paren(rows_in_range)))
    )
    return exp.select(*columns).from_(signed.subquery("segsql_rows_in_range")).group_by(key.copy())


def _summed(sign: exp.Expr, counted: exp.Expr | None) -> exp.Expr:
    value = sign.copy() if counted is None else _when(counted, sign)
    return exp.func("COALESCE", exp.func("SUM", value), exp.Literal.number(0))


def _part_of(part: _Part, sign: exp.Expr, counted: exp.Expr | None) -> exp.Expr:
    """SUM parts add each row's value with its sign; MAX / MIN parts (lifetime groups, whose
    rows only arrive) take the arriving rows' values."""
    if part.combine == "SUM":
        value = exp.Mul(this=exp.paren(sign.copy()), expression=exp.paren(part.row_value.copy()))
        return exp.func("SUM", value if counted is None else _when(counted, value))
    arriving = sign.copy().eq(1)
    condition = arriving if counted is None else exp.and_(exp.paren(counted.copy()), arriving)
    return exp.func(part.combine, _when(condition, part.row_value))


def _when(condition: exp.Expr, value: exp.Expr, otherwise: exp.Expr | None = None) -> exp.Case:
    return exp.Case(ifs=[exp.If(this=condition.copy(), true=value.copy())], default=otherwise)


def _add_to_state(bundle: _Bundle, change: exp.Select, state: str) -> list[exp.Expr]:
    """Statements adding a per-key change to the state: a new state table (the old one FULL
    JOIN the change), which DuckDB writes faster than it UPDATEs the touched keys' columns."""
    old, new = "s", "d"

    def column(table: str, name: str) -> exp.Expr:
        return exp.column(name, table=table)

    zero = exp.Literal.number(0)
    key = exp.func("COALESCE", column(old, KEY_ALIAS), column(new, KEY_ALIAS))
    columns: list[exp.Expr] = [exp.alias_(key, KEY_ALIAS)]
    for group in bundle.groups:
        rows = [exp.func("COALESCE", column(side, group.rows()), zero) for side in (old, new)]
        columns.append(exp.alias_(exp.Add(this=rows[0], expression=rows[1]), group.rows()))
        for index, part in enumerate(group.parts):
            name = group.part(index)
            combined = _combined(part, column(old, name), column(new, name))
            columns.append(exp.alias_(combined, name))
    joined = (
        exp.select(*columns)
        .from_(exp.to_table(bundle.state).as_(old))
        .join(
            change.subquery(new),
            on=column(old, KEY_ALIAS).eq(column(new, KEY_ALIAS)),
            join_type="FULL OUTER",
        )
    )
    previous, bundle.state = bundle.state, state
    return [temp_table(state, _without_empty_keys(bundle, joined)), drop(previous)]


def _without_empty_keys(bundle: _Bundle, state: exp.Select) -> exp.Select:
    """The state without the keys that have no row left in any window, when every group has a
    window: such a key reads as one missing from the state (every feature NULL, then its
    default) and adds to a later change as zeros would (its parts are exact sums of no rows).
    Without this the state of a bundle of windows keeps every key that ever had a row: 812k of
    1M customers for the events of a 52-week backfill, against 487k with a row in a window."""
    if any(group.window is None for group in bundle.groups):
        return state  # a lifetime group's rows never leave
    zero = exp.Literal.number(0)
    kept = exp.or_(*[exp.column(group.rows()).neq(zero) for group in bundle.groups])
    return exp.select("*").from_(state.subquery("segsql_state")).where(kept)


def _combined(part: _Part, old: exp.Expr, new: exp.Expr) -> exp.Expr:
    if part.combine == "SUM":  # NULL sums (no non-NULL value yet) count as 0: see _decompose
        zero = exp.Literal.number(0)
        return exp.func("COALESCE", old, zero) + exp.func("COALESCE", new, zero)
    # MAX / MIN, lifetime only (nothing leaves): keep the larger / smaller
    better = new > old if part.combine == "MAX" else new < old
    return exp.Case(
        ifs=[
            exp.If(this=old.copy().is_(exp.null()), true=new.copy()),
            exp.If(this=better, true=new.copy()),
        ],
        default=old.copy(),
    )


def _rows_between(
    source: exp.Expr, day: exp.Expr, after: dt.date | None, until: dt.date | None
) -> exp.Select:
    """SELECT * FROM source WHERE after < day <= until (an open end without a bound)."""
    query = exp.select("*").from_(source.copy())
    if after is not None or until is not None:
        query = query.where(_in_range(day, after, until))
    return query


def _in_range(day: exp.Expr, after: dt.date | None, until: dt.date | None) -> exp.Expr:
    bounds: list[exp.Expr] = [] if after is None else [day.copy() > date_literal(after)]
    bounds += [] if until is None else [day.copy() <= date_literal(until)]
    return exp.and_(*bounds) if bounds else exp.true()


def _values_of(
    query: exp.Select, types: Sequence[exp.DataType], lifetime: bool
) -> tuple[list[_Part], list[exp.Expr]] | None:
    """The aggregate CTE's running parts, and its feature columns computed from them (cast to
    the CTE's types), or None when one of them cannot be combined across dates."""
    parts: list[_Part] = []
    values: list[exp.Expr] = []
    for select, kind in zip(query.expressions[1:], types[1:], strict=True):
        value = _decompose(select.this, parts, lifetime)
        if value is None:
            return None
        values.append(exp.cast(value, kind.copy()))
    return parts, values


def _decompose(expression: exp.Expr, parts: list[_Part], lifetime: bool) -> exp.Expr | None:
    """The feature's value computed from running parts (added to `parts`), or None when one of
    its aggregates cannot be combined exactly across dates."""
    if expression.find(exp.Window, exp.Filter, exp.Subquery, exp.Distinct) is not None:
        return None
    for column in expression.find_all(exp.Column):
        if column.find_ancestor(exp.AggFunc) is None:
            return None

    def part(combine: str, row_value: exp.Expr) -> exp.Expr:
        """A column for the part: the group's row count for count(*), an equal part once (the
        state's columns are written on every date)."""
        if combine == "SUM" and row_value == exp.Literal.number(1):
            return exp.column(GROUP_ROWS)
        for number, known in enumerate(parts):
            if (known.combine, known.row_value) == (combine, row_value):
                return exp.column(f"p{number}")
        parts.append(_Part(combine, row_value))
        return exp.column(f"p{len(parts) - 1}")

    unsupported: list[exp.Expr] = []

    def replace(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.AggFunc):
            return node
        argument = node.this
        if isinstance(node, exp.Count) and not node.expressions:
            if isinstance(argument, exp.Star):
                return part("SUM", exp.Literal.number(1))
            counted = exp.If(
                this=argument.copy().is_(exp.null()).not_(), true=exp.Literal.number(1)
            )
            return part("SUM", exp.Case(ifs=[counted], default=exp.Literal.number(0)))
        if isinstance(node, exp.Sum) and not node.expressions:
            total = part("SUM", argument.copy())
            present = exp.If(
                this=argument.copy().is_(exp.null()).not_(), true=exp.Literal.number(1)
            )
            count = part("SUM", exp.Case(ifs=[present], default=exp.Literal.number(0)))
            return exp.Case(ifs=[exp.If(this=count > 0, true=total)])
        if isinstance(node, (exp.Max, exp.Min)) and lifetime and not node.expressions:
            return part("MAX" if isinstance(node, exp.Max) else "MIN", argument.copy())
        unsupported.append(node)
        return node

    value = expression.copy().transform(replace)
    return None if unsupported else value


def _conjuncts(condition: exp.Expr) -> list[exp.Expr]:
    """The AND-ed conditions, in order (sqlglot's builder parenthesises each earlier AND)."""
    inner = condition.this if isinstance(condition, exp.Paren) else condition
    if isinstance(inner, exp.And):
        return [*_conjuncts(inner.this), *_conjuncts(inner.expression)]
    return [condition]


def _entity_of_ctes(compiled: CompiledProject, aliases: Sequence[str]) -> Entity | None:
    """The entity whose feature relation these CTEs inline (its relation is one of them)."""
    for entity in compiled.entities.values():
        if entity.relation_name in aliases:
            return entity
    return None


def _split_aggregate(
    compiled: CompiledProject, entity: Entity, cte: exp.CTE, target: Target
) -> _Aggregate | None:
    """The CTE as a time-filtered aggregate per key of one source, or None if it is not one."""
    query = cte.this
    if not isinstance(query, exp.Select) or query.args.get("joins") or query.args.get("having"):
        return None
    selects = query.expressions
    if not selects or selects[0].alias != KEY_ALIAS or query.args.get("from_") is None:
        return None
    group = query.args.get("group")
    if group is None or [g.sql() for g in group.expressions] != [selects[0].this.sql()]:
        return None
    features = {f.name: f for f in entity.features}
    definitions = [features[s.alias].definition for s in selects[1:] if s.alias in features]
    if not definitions or len(definitions) != len(selects) - 1:
        return None
    source = definitions[0].source
    if source is None or source.time is None:
        return None  # no time filter: nothing moves with the date
    window = definitions[0].window
    day = exp.cast(exp.column(source.time), exp.DataType.Type.DATE)
    expected: list[exp.Expr] = [day.copy() <= date_literal(compiled.as_of)]
    if window is not None:
        expected.append(day.copy() > date_literal(window.start(compiled.as_of)))
    where = query.args.get("where")
    conditions = _conjuncts(where.this) if where is not None else []
    printed = [c.sql(dialect=target.dialect) for c in conditions[: len(expected)]]
    if printed != [c.sql(dialect=target.dialect) for c in expected]:
        return None
    rest = conditions[len(expected) :]
    row_filter = exp.and_(*[c.copy() for c in rest]) if rest else None
    undated = query.copy()
    undated.set("where", exp.Where(this=row_filter.copy()) if row_filter is not None else None)
    # as_of in a feature's value (days_since(max(time))) moves with the date: the running
    # parts may still be the same, which RunningAggregates checks
    as_of = date_literal(compiled.as_of)
    signature = undated.transform(lambda n: exp.Placeholder(this="as_of") if n == as_of else n)
    return _Aggregate(query, day, window, row_filter, signature.sql(dialect=target.dialect))
