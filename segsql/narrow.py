"""A snapshot's feature relation narrowed to what its segments read.

A snapshot materializes each entity's feature relation once per date (`history.features_statement`),
keeping only the columns the segments read. Two rewrites make that statement cheaper without
changing a value it holds:

1. `prune_unread` (every engine): features no kept column depends on are dropped from the derived
   layers and the aggregate CTEs, and an aggregate CTE none of whose features is read is dropped
   with its LEFT JOIN (it has one row per key, so the join never changed the row count). DuckDB
   keeps such joins: on the example project that was a `count(distinct ...)` over a month of
   events, and four other source scans, on every date.
2. `ntile_by_boundaries` (DuckDB): `NTILE(n) OVER (ORDER BY ..., key)` over the whole relation is
   one sort of every row carrying every column through the window operator (three of them took
   ~1.5 s of a 1M-customer date). A row's bucket only depends on its position among the N rows:
   bucket b starts at position (b-1) * (N // n) + least(b-1, N % n), as in DuckDB's NTILE. So the
   rows at those n-1 positions (the boundaries) are found by a narrow sort of the ORDER BY values,
   and each row's bucket is 1 + the number of boundaries it sorts at or after, compared value by
   value in the window's order (direction and NULL placement). Only windows ending in the entity
   key are rewritten: the key breaks every tie, so positions, hence buckets, are those NTILE gives.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from sqlglot import exp

from segsql.build import KEY_ALIAS

NTILE_CTE = "segsql_ntile"  # + _<derived CTE>: the boundaries of its NTILE windows, one row
ROW_COUNT = "segsql_rows"
RANK = "segsql_rank"  # 0-based position in the window's order
BUCKET = "segsql_bucket"
START = "segsql_start"  # the position of the bucket's first row
BOUNDARY = "segsql_boundaries"  # + _<window number>: that window's boundary columns


# ---------------------------------------------------------------------------------------------
# 1. features no kept column reads


def prune_unread(query: exp.Select) -> None:
    """Drop, in place, the features of `query`'s CTEs that its outer SELECT does not depend on,
    then the aggregate CTEs (and their joins) left unread."""
    # column names, not (CTE, name) pairs: a superset of what is read, so nothing read is dropped
    needed = _columns_in(query.expressions)
    for cte in reversed(query.ctes):  # each CTE reads only earlier ones
        select = cte.this
        if _is_layer(select):
            kept = [e for e in select.expressions if e.alias_or_name in needed]
            select.set("expressions", kept or select.expressions[:1])
            _drop_unread_joins(select, query)
        elif _is_aggregate(select):  # the key, and the aggregates read
            kept = [e for e in select.expressions if e.alias in needed or e.alias == KEY_ALIAS]
            select.set("expressions", kept)
        needed |= _columns_in([select])
    _drop_unread_ctes(query)


def _is_layer(select: exp.Expr) -> bool:
    """A SELECT of named columns with no DISTINCT, GROUP BY or HAVING: dropping one of its
    columns changes no other column and no row."""
    if not isinstance(select, exp.Select) or not select.args.get("from_"):
        return False
    if any(select.args.get(arg) for arg in ("distinct", "group", "having", "qualify")):
        return False
    return not any(isinstance(e, exp.Star) or e.is_star for e in select.expressions)


def _is_aggregate(select: exp.Expr) -> bool:
    """An aggregate per key (`SELECT key AS segsql_key, aggregates ... GROUP BY key`): dropping
    one of its aggregates changes no other and no row."""
    if not isinstance(select, exp.Select) or not select.args.get("group"):
        return False
    if any(select.args.get(arg) for arg in ("distinct", "having", "qualify")):
        return False
    return bool(select.expressions) and select.expressions[0].alias == KEY_ALIAS


def _columns_in(trees: Sequence[exp.Expr]) -> set[str]:
    return {c.name for tree in trees for c in tree.find_all(exp.Column)}


def _drop_unread_joins(select: exp.Select, query: exp.Select) -> None:
    """Remove the LEFT JOINs of one-row-per-key aggregate CTEs no column is read from."""
    ctes = {cte.alias: cte.this for cte in query.ctes}
    for join in list(select.args.get("joins") or []):
        name = join.this.alias_or_name if isinstance(join.this, exp.Table) else None
        if name is None or not _one_row_per_key(join, ctes.get(name), name):
            continue
        others = [e for e in select.iter_expressions() if e is not join]
        if not any(c.table == name for tree in others for c in tree.find_all(exp.Column)):
            join.pop()


def _one_row_per_key(join: exp.Join, cte: exp.Expr | None, name: str) -> bool:
    """Whether the join is `LEFT JOIN cte ON cte.segsql_key = ...` of a CTE grouped by that key
    alone (so it matches at most one row per left row)."""
    if join.side != "LEFT" or join.kind or not isinstance(cte, exp.Select):
        return False
    on = join.args.get("on")
    if not isinstance(on, exp.EQ):
        return False
    sides = [on.this, on.expression]
    if not any(isinstance(s, exp.Column) and (s.table, s.name) == (name, KEY_ALIAS) for s in sides):
        return False
    group = cte.args.get("group")
    if group is None or len(group.expressions) != 1:
        return False
    keys = [e.this for e in cte.expressions if e.alias == KEY_ALIAS]
    return bool(keys == group.expressions)


def _drop_unread_ctes(query: exp.Select) -> None:
    """Remove the CTEs no remaining part of the query reads (until none is left to remove)."""
    while True:
        read = {t.name for t in query.find_all(exp.Table) if not t.db}
        unread = [cte for cte in query.ctes if cte.alias not in read]
        if not unread:
            return
        for cte in unread:
            cte.pop()


# ---------------------------------------------------------------------------------------------
# 2. NTILE windows by their boundaries


def ntile_by_boundaries(query: exp.Select, key: str) -> None:
    """Rewrite, in place, the whole-relation NTILE windows of `query`'s derived layers (see the
    module's docstring), adding one CTE of boundaries per layer that has some."""
    for cte in list(query.ctes):
        select = cte.this
        if not _is_layer(select) or select.args.get("joins") or select.args.get("where"):
            continue
        windows = [w for w in select.find_all(exp.Window) if _is_whole_ntile(w, key)]
        if not windows:
            continue
        source = select.args["from_"].this
        if not isinstance(source, exp.Table):
            continue
        name = f"{NTILE_CTE}_{cte.alias}"
        orders: dict[str, int] = {}  # printed (buckets, ORDER BY) -> its number
        for window in windows:
            number = orders.setdefault(_window_key(window), len(orders))
            window.replace(_bucket(window, number))
        boundaries = _boundaries(_distinct(windows, orders), source)
        _insert_cte_before(query, cte, name, boundaries)
        select.join(exp.to_table(name), join_type="CROSS", copy=False)


def _is_whole_ntile(window: exp.Window, key: str) -> bool:
    """NTILE(literal n) OVER (ORDER BY ..., key): no PARTITION BY, no frame, the key last."""
    ntile = window.this
    if (
        not isinstance(ntile, exp.Ntile)
        or window.args.get("partition_by")
        or window.args.get("spec")
    ):
        return False
    buckets = ntile.this
    if not (isinstance(buckets, exp.Literal) and buckets.is_int and int(buckets.name) > 0):
        return False
    order = window.args.get("order")
    ordered = order.expressions if order else []
    last = ordered[-1].this if ordered else None
    return isinstance(last, exp.Column) and not last.table and last.name == key


def _buckets(window: exp.Window) -> int:
    return int(window.this.this.name)


def _ordered(window: exp.Window) -> list[exp.Ordered]:
    return list(window.args["order"].expressions)


def _window_key(window: exp.Window) -> str:
    return f"{_buckets(window)}:{window.args['order'].sql('duckdb')}"


def _distinct(windows: Sequence[exp.Window], orders: dict[str, int]) -> list[exp.Window]:
    """One window per number, in number order (the first of each)."""
    first: dict[int, exp.Window] = {}
    for window in windows:
        first.setdefault(orders[_window_key(window)], window)
    return [first[n] for n in sorted(first)]


def _value(number: int, position: int) -> str:
    return f"segsql_v{number}_{position}"


def _boundary(number: int, bucket: int, position: int | None = None) -> str:
    """A boundary column: the row starting `bucket`'s value at ORDER BY `position`, or (None)
    whether the bucket has a row at all."""
    return f"segsql_b{number}_{bucket}_" + ("has" if position is None else str(position))


def _start(bucket: exp.Expr, buckets: int) -> exp.Expr:
    """The 0-based position of the first row of `bucket` (1-based) among ROW_COUNT rows."""
    rows = exp.column(ROW_COUNT)
    size = exp.IntDiv(this=rows, expression=exp.Literal.number(buckets))
    larger = exp.Mod(this=rows.copy(), expression=exp.Literal.number(buckets))
    before = exp.paren(exp.Sub(this=bucket, expression=exp.Literal.number(1)))
    return exp.Add(
        this=exp.Mul(this=before, expression=exp.paren(size)),
        expression=exp.func("LEAST", before.copy(), larger),
    )


def _boundaries(windows: Sequence[exp.Window], source: exp.Table) -> exp.Select:
    """One row: for each window (numbered by position) and each bucket after the first, the
    ORDER BY values of the row that starts the bucket and whether there is such a row. Each
    window's rows are ranked on their own and joined to the few positions that start a bucket:
    DuckDB then sorts only the ORDER BY values and keeps n-1 rows (filtering every ranked row in
    one aggregate, or ranking every window in one SELECT, took ~7x longer)."""
    parts = [
        _window_boundaries(number, window, source).subquery(f"{BOUNDARY}_{number}")
        for number, window in enumerate(windows)
        if _buckets(window) > 1  # NTILE(1) has no boundary: every row is in bucket 1
    ]
    if not parts:
        return exp.select(exp.alias_(exp.true(), f"{BOUNDARY}_none"))
    query = exp.select("*").from_(parts[0])
    for part in parts[1:]:
        query = query.join(part, join_type="CROSS")
    return query


def _window_boundaries(number: int, window: exp.Window, source: exp.Table) -> exp.Select:
    """The boundary columns of one window, from its ranked ORDER BY values at the start rows."""
    values = exp.select().from_(source.copy())  # only the ORDER BY values go through the sort
    order: list[exp.Expr] = []
    for position, ordered in enumerate(_ordered(window)):
        name = _value(number, position)
        values = values.select(exp.alias_(ordered.this.copy(), name))
        by_value = ordered.copy()
        by_value.set("this", exp.column(name))
        order.append(by_value)
    row_number = exp.Window(this=exp.RowNumber(), order=exp.Order(expressions=order))
    rank = exp.alias_(exp.Sub(this=row_number, expression=exp.Literal.number(1)), RANK)
    ranked = exp.select("*", rank).from_(values.subquery("segsql_values"))
    starts = (
        exp.select("*")
        .from_(ranked.subquery("segsql_ranked"))
        .join(_starts(window, source), on=exp.column(RANK).eq(exp.column(START)))
    )
    columns: list[exp.Expr] = []
    for bucket in range(2, _buckets(window) + 1):
        starting = exp.column(BUCKET).eq(exp.Literal.number(bucket))
        has = exp.GT(
            this=_filtered(exp.Count(this=exp.Star()), starting), expression=exp.Literal.number(0)
        )
        columns.append(exp.alias_(has, _boundary(number, bucket)))
        for position in range(len(order)):
            value = _filtered(exp.Max(this=exp.column(_value(number, position))), starting)
            columns.append(exp.alias_(value, _boundary(number, bucket, position)))
    return exp.select(*columns).from_(starts.subquery("segsql_starts"))


def _starts(window: exp.Window, source: exp.Table) -> exp.Subquery:
    """(bucket, the position of its first row) for buckets 2..n, from the relation's row count."""
    buckets = _buckets(window)
    counted = exp.select(exp.alias_(exp.Count(this=exp.Star()), ROW_COUNT)).from_(source.copy())
    numbers = exp.Values(
        expressions=[exp.Tuple(expressions=[exp.Literal.number(b)]) for b in range(2, buckets + 1)],
        alias=exp.TableAlias(
            this=exp.to_identifier("segsql_buckets"), columns=[exp.to_identifier(BUCKET)]
        ),
    )
    starts = exp.select(BUCKET, exp.alias_(_start(exp.column(BUCKET), buckets), START))
    starts = starts.from_(counted.subquery("segsql_counted")).join(numbers, join_type="CROSS")
    return starts.subquery("segsql_bucket_starts")


def _filtered(aggregate: exp.Expr, condition: exp.Expr) -> exp.Filter:
    return exp.Filter(this=aggregate, expression=exp.Where(this=condition.copy()))


def _bucket(window: exp.Window, number: int) -> exp.Expr:
    """1 + the number of boundaries the row sorts at or after, as NTILE's BIGINT."""
    ordered = _ordered(window)
    terms: list[exp.Expr] = [exp.Literal.number(1)]
    for bucket in range(2, _buckets(window) + 1):
        bound = [exp.column(_boundary(number, bucket, p)) for p in range(len(ordered))]
        reached = exp.and_(
            exp.column(_boundary(number, bucket)), _at_or_after(ordered, bound), copy=False
        )
        terms.append(
            exp.Case(
                ifs=[exp.If(this=reached, true=exp.Literal.number(1))],
                default=exp.Literal.number(0),
            )
        )
    total = functools.reduce(lambda a, b: exp.Add(this=a, expression=b), terms)
    return exp.cast(exp.paren(total), exp.DataType.Type.BIGINT)


def _at_or_after(ordered: Sequence[exp.Ordered], bound: Sequence[exp.Expr]) -> exp.Expr:
    """Whether the row's ORDER BY values sort at or after `bound` (lexicographically: the first
    value that differs decides; all equal is `at`)."""
    result: exp.Expr = exp.true()
    for item, value in reversed(list(zip(ordered, bound, strict=True))):
        same = exp.NullSafeEQ(this=item.this.copy(), expression=value.copy())
        # copy=False: every part is a fresh tree (copying the growing result is quadratic)
        result = exp.or_(_after(item, value), exp.and_(same, result, copy=False), copy=False)
    return exp.paren(result)


def _after(item: exp.Ordered, bound: exp.Expr) -> exp.Expr:
    """Whether the row's value sorts strictly after `bound` in this ORDER BY item: never NULL
    (NULLs sort together, first or last as the item says)."""
    mine = item.this.copy()
    beyond = mine < bound.copy() if item.args.get("desc") else mine > bound.copy()
    if item.args.get("nulls_first"):  # NULLs come first: a NULL is after nothing
        return exp.and_(
            mine.copy().is_(exp.null()).not_(),
            exp.paren(exp.or_(bound.copy().is_(exp.null()), beyond, copy=False)),
            copy=False,
        )
    return exp.and_(
        bound.copy().is_(exp.null()).not_(),
        exp.paren(exp.or_(mine.copy().is_(exp.null()), beyond, copy=False)),
        copy=False,
    )


def _insert_cte_before(query: exp.Select, before: exp.CTE, name: str, body: exp.Select) -> None:
    with_ = query.args["with_"]
    ctes = list(with_.expressions)
    ctes.insert(
        ctes.index(before), exp.CTE(this=body, alias=exp.TableAlias(this=exp.to_identifier(name)))
    )
    with_.set("expressions", ctes)
