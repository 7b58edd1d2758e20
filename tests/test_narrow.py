"""The snapshot's feature relation narrowed (segsql/narrow.py) holds the same values as the
relation itself: unread features pruned, NTILE windows computed from their boundaries."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from segsql.emit import feature_query, resolve_target, to_sql
from segsql.history import _columns_read, compiler_for, features_statement, plan_snapshot
from segsql.load import load_project
from segsql.narrow import ntile_by_boundaries
from segsql.run import DuckDBRunner, load_seeds
from segsql.select import select_segments

WINDOWS = [
    "NTILE(5) OVER (ORDER BY x, k)",
    "NTILE(3) OVER (ORDER BY x DESC, k)",
    "NTILE(4) OVER (ORDER BY x NULLS FIRST, k DESC)",
    "NTILE(7) OVER (ORDER BY x DESC NULLS FIRST, y, k)",
    "NTILE(1) OVER (ORDER BY y DESC NULLS LAST, x NULLS FIRST, k)",
    "NTILE(2) OVER (ORDER BY x + y, k)",
    "(6 - NTILE(5) OVER (ORDER BY y, k)) * 10 + NTILE(5) OVER (ORDER BY x, k)",
]
LAYERED = """
WITH derived_1 AS (SELECT k, x, y, {windows} FROM src),
relation AS (SELECT * FROM derived_1)
SELECT * FROM relation ORDER BY k
"""

values = st.one_of(st.none(), st.integers(-2, 2))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(values, values), max_size=23))
def test_ntile_by_boundaries_equals_ntile(rows: list[tuple[int | None, int | None]]) -> None:
    """Ties, NULLs first and last, both directions, fewer rows than buckets, no rows at all."""
    windows = ", ".join(f"{w} AS w{i}" for i, w in enumerate(WINDOWS))
    query = sqlglot.parse_one(LAYERED.format(windows=windows), read="duckdb")
    assert isinstance(query, exp.Select)
    con = duckdb.connect()
    con.execute("CREATE TABLE src (k INTEGER, x INTEGER, y INTEGER)")
    if rows:
        con.executemany("INSERT INTO src VALUES (?, ?, ?)", [(i, *r) for i, r in enumerate(rows)])
    expected = con.execute(query.sql("duckdb")).fetchall()
    ntile_by_boundaries(query, "k")
    assert not any(isinstance(w.this, exp.Ntile) for w in query.find_all(exp.Window))
    assert con.execute(query.sql("duckdb")).fetchall() == expected
    assert con.execute(f"DESCRIBE {query.sql('duckdb')}").fetchall()[3][1] == "BIGINT"


def test_a_window_not_ending_in_the_key_is_left_as_it_is() -> None:
    query = sqlglot.parse_one(LAYERED.format(windows="NTILE(5) OVER (ORDER BY x) AS q"))
    assert isinstance(query, exp.Select)
    before = query.sql()
    ntile_by_boundaries(query, "k")
    assert query.sql() == before


ENTITIES_YML = """
entities:
  - name: customer
    table: customers
    key: customer_id
    time: signup_at
    features:
      - {name: orders_30d, from: {table: orders, key: customer_id, time: ordered_at},
         expr: count(*), window: 30 days, default: 0}
      - {name: revenue, from: {table: orders, key: customer_id, time: ordered_at},
         expr: sum(amount), default: 0}
      - {name: last_order_at, from: {table: orders, key: customer_id, time: ordered_at},
         expr: max(ordered_at)}
      - {name: order_days, from: {table: orders, key: customer_id, time: ordered_at},
         expr: count(distinct cast(ordered_at as date)), default: 0}
      - {name: unread_derived, expr: order_days * 2}
      - name: revenue_quintile
        expr: "{{ quintile('revenue') }}"
      - name: recency_tercile
        expr: ntile(3) over (order by last_order_at desc nulls first)
segments:
  - {name: top, entity: customer, where: [revenue_quintile = 5]}
  - {name: recent, entity: customer, where: [recency_tercile = 1, orders_30d > 0]}
"""


def write_project(root: Path) -> None:
    (root / "segments").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "segsql.yml").write_text(
        "name: narrow\ndialect: duckdb\nvars: {as_of: '2024-03-31'}\nseeds: data\n"
        "targets:\n  local: {engine: duckdb, path: n.duckdb, schema: segments}\n"
        "default_target: local\n"
    )
    (root / "segments" / "customers.yml").write_text(ENTITIES_YML)
    customers = "".join(f"{c},2024-0{1 + c % 3}-0{1 + c % 9}\n" for c in range(1, 41))
    (root / "data" / "customers.csv").write_text("customer_id,signup_at\n" + customers)
    orders = "".join(
        f"{o},{1 + o * 7 % 37},2024-0{1 + o % 3}-{10 + o % 19},{o % 5 * 10}.50\n" for o in range(90)
    )
    (root / "data" / "orders.csv").write_text("order_id,customer_id,ordered_at,amount\n" + orders)


def test_the_snapshot_features_hold_the_relation_s_values(tmp_path: Path) -> None:
    """features_statement (pruned, NTILE by boundaries) against the entity's full relation."""
    write_project(tmp_path)
    project = load_project(tmp_path)
    runner = DuckDBRunner(resolve_target(project.config, None), tmp_path)
    try:
        load_seeds(runner, project, only_missing=False)
        compiled = compiler_for(project, {}, runner)(dt.date(2024, 3, 31))
        names = select_segments(compiled, None)
        plan = plan_snapshot(compiled, names, set(), runner.target)
        entity = compiled.entities["customer"]
        columns = _columns_read(entity, [plan.predicates[n] for n in names])
        assert "order_days" not in columns and "unread_derived" not in columns
        statement = features_statement(entity, runner.target, columns)
        assert "COUNT(DISTINCT" not in to_sql(statement, runner.target)  # its CTE is pruned
        runner.execute_all([statement])
        listed = ", ".join(columns)
        narrowed = runner.connection.execute(
            f"SELECT {listed} FROM segsql_customer_features ORDER BY customer_id"
        ).fetchall()
        relation = to_sql(feature_query(entity, runner.target), runner.target)
        full = runner.connection.execute(
            f"SELECT {listed} FROM ({relation}) ORDER BY customer_id"
        ).fetchall()
        assert narrowed == full
        assert {row[columns.index("revenue_quintile")] for row in full} == {1, 2, 3, 4, 5}
    finally:
        runner.close()
