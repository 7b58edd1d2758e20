"""Portable traps: expressions written as users write them (DuckDB dialect), lowered through
segsql's portable layer (dialects.py), executed on DuckDB and PostgreSQL over the same rows and
analysed on BigQuery with ZetaSQL. Row-wise expressions are also *evaluated* in BigQuery's
semantics: each row's values become typed literals and ZetaSQL's reference implementation computes
the BigQuery form, which must give the same values. Expected values are computed by hand or by
plain Python.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from sqlglot import exp

from segsql.bigquery_check import BigQueryAnalyzer, Catalog, evaluate_constant, googlesql_type
from segsql.dialects import ENGINES, lower_portable
from segsql.emit import Target
from segsql.model import TargetConfig
from segsql.postgres import PostgresRunner
from segsql.run import DuckDBRunner

pytest_plugins = ["pg_server"]

D, T = dt.date, dt.datetime
UTC = dt.UTC
COLUMNS = {
    "id": "integer",
    "d": "date",
    "ts": "timestamp",
    "tz": "timestamptz",
    "n": "integer",
    "m": "integer",
    "s": "varchar",
    "s2": "varchar",
    "b": "boolean",
    "x": "decimal(10,2)",
}
ROWS = [
    (
        1,
        D(2024, 6, 30),
        T(2024, 6, 30, 23, 30),
        T(2024, 1, 1, 3, 0, tzinfo=UTC),
        7,
        2,
        "Abc",
        None,
        True,
        decimal.Decimal("10.00"),
    ),
    (
        2,
        D(2024, 1, 1),
        T(2023, 12, 31, 23, 59, 59),
        T(2023, 12, 31, 23, 30, tzinfo=UTC),
        -7,
        2,
        "abc",
        "x",
        False,
        None,
    ),
    (3, D(2024, 12, 30), T(2024, 3, 1), None, None, 0, None, "y", None, decimal.Decimal("-3.50")),
    (
        4,
        D(2021, 1, 3),
        T(2024, 2, 29, 12, 0),
        T(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
        0,
        3,
        "a\\_b",
        "",
        True,
        decimal.Decimal("0.00"),
    ),
]


def column(name: str) -> list[Any]:
    index = list(COLUMNS).index(name)
    return [row[index] for row in ROWS]


@dataclass
class Engines:
    duck: DuckDBRunner
    pg: PostgresRunner
    bigquery: BigQueryAnalyzer


def _target(engine: str) -> Target:
    return Target(TargetConfig(name=engine, engine=engine), ENGINES[engine])


def _table_statements() -> list[exp.Expr]:
    schema = exp.Schema(
        this=exp.to_table("t"),
        expressions=[
            exp.ColumnDef(
                this=exp.to_identifier(name), kind=exp.DataType.build(kind, dialect="duckdb")
            )
            for name, kind in COLUMNS.items()
        ],
    )
    values = exp.values([tuple(exp.convert(v) for v in row) for row in ROWS])
    return [exp.Create(this=schema, kind="TABLE"), exp.insert(values, "t")]


@pytest.fixture(scope="module")
def engines(pg_module_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engines]:
    dsn = pg_module_database
    # a server whose default time zone is not UTC: the runner must still read dates in UTC
    with psycopg.connect(dsn, autocommit=True) as connection:
        name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        connection.execute(
            sql.SQL("ALTER DATABASE {} SET timezone = 'America/Los_Angeles'").format(
                sql.Identifier(str(name))
            )
        )
    duck = DuckDBRunner(_target("duckdb"), tmp_path_factory.mktemp("portable"))
    pg = PostgresRunner(_target("postgres"), dsn)
    catalog = Catalog()
    catalog.add(["t"], [(name, googlesql_type(kind, "duckdb")) for name, kind in COLUMNS.items()])
    analyzer = BigQueryAnalyzer(catalog)
    for runner in (duck, pg):
        runner.execute_all(_table_statements())
    try:
        yield Engines(duck, pg, analyzer)
    finally:
        duck.close()
        pg.close()
        analyzer.close()


def _normal(value: Any) -> Any:
    """One Python value per meaning: PostgreSQL's NUMERIC and DuckDB's DOUBLE/HUGEINT compare."""
    if isinstance(value, decimal.Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, float):
        return round(value, 9)
    return value


def typed_literal(value: Any, kind: str) -> exp.Expr:
    """A value of column type `kind` (DuckDB's name) as a CAST of a string literal."""
    to = exp.DataType.build(kind, dialect="duckdb")
    if value is None:
        return exp.cast(exp.null(), to)
    text = value.isoformat(sep=" ") if isinstance(value, T) else str(value)
    return exp.cast(exp.Literal.string(text.lower() if isinstance(value, bool) else text), to)


def on_bigquery(tree: exp.Expr, row: tuple[Any, ...]) -> Any:
    """The expression for one row, evaluated by ZetaSQL in BigQuery's semantics."""
    values = dict(zip(COLUMNS, row, strict=True))

    def bind(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and not node.table and node.name in COLUMNS:
            return typed_literal(values[node.name], COLUMNS[node.name])
        return node

    bound = lower_portable(tree.transform(bind), ENGINES["bigquery"])
    return _normal(evaluate_constant(bound.sql(dialect="bigquery")))


def evaluate(engines: Engines, expression: str, aggregate: bool = False) -> list[Any]:
    """The expression per row of t (by id), equal on DuckDB and PostgreSQL, accepted by ZetaSQL,
    and (row-wise expressions: no aggregate, no window) equal when ZetaSQL evaluates it."""
    tree = sqlglot.parse_one(expression, read="duckdb")
    results = []
    for runner in (engines.duck, engines.pg):
        query = exp.select(exp.alias_(lower_portable(tree, runner.target.engine), "v")).from_("t")
        if not aggregate:
            query = query.order_by("id")
        results.append([_normal(row[0]) for row in runner.query(query)])
    bigquery = _target("bigquery")
    query = exp.select(exp.alias_(lower_portable(tree, bigquery.engine), "v")).from_("t")
    message = engines.bigquery.analyse(query.sql(dialect="bigquery"))
    assert message is None, f"ZetaSQL rejects {query.sql(dialect='bigquery')}: {message}"
    assert results[0] == results[1], f"DuckDB {results[0]} != PostgreSQL {results[1]}"
    if not aggregate and tree.find(exp.Window) is None:
        on_zetasql = [on_bigquery(tree, row) for row in ROWS]
        assert on_zetasql == results[0], f"BigQuery {on_zetasql} != DuckDB {results[0]}"
    return results[0]


# ---------------------------------------------------------------------------------------------
# dates and time zones


def test_days_between_date_and_timestamp(engines: Engines) -> None:
    expected = [(d - ts.date()).days for d, ts in zip(column("d"), column("ts"), strict=True)]
    assert evaluate(engines, "segsql_days_between(ts, d)") == expected
    assert evaluate(engines, "segsql_days_between(d, ts)") == [-v for v in expected]


def test_window_filter_casts_timestamps_to_dates(engines: Engines) -> None:
    """segsql compares CAST(time AS DATE) with a DATE: valid for DATE, DATETIME and TIMESTAMP
    columns on BigQuery (a bare `ts >= DATE - INTERVAL` is not: see test_bigquery.py)."""
    start = D(2024, 2, 28)
    for name in ("d", "ts", "tz"):
        got = evaluate(engines, f"CAST({name} AS DATE) > DATE '{start.isoformat()}'")
        values = column(name)
        dates = [v.astimezone(UTC).date() if isinstance(v, T) and v.tzinfo else v for v in values]
        dates = [v.date() if isinstance(v, T) else v for v in dates]
        assert got == [None if v is None else v > start for v in dates]


def test_timestamptz_dates_are_utc_dates(engines: Engines) -> None:
    """The PostgreSQL database defaults to America/Los_Angeles; the runner reads in UTC, like
    BigQuery and the DuckDB runner (2024-01-01 03:00 UTC is still 2023-12-31 in Los Angeles)."""
    assert evaluate(engines, "CAST(tz AS DATE)") == [
        D(2024, 1, 1),
        D(2023, 12, 31),
        None,
        D(2024, 2, 29),
    ]


def test_day_of_week_and_iso_week_numbering(engines: Engines) -> None:
    days = column("d")
    sunday_zero = [d.isoweekday() % 7 for d in days]
    assert sunday_zero == [0, 1, 1, 0]  # 2024-06-30 Sunday, 2024-01-01 Monday...
    assert evaluate(engines, "dayofweek(d)") == sunday_zero
    assert evaluate(engines, "extract(dow from d)") == sunday_zero
    assert evaluate(engines, "isodow(d)") == [d.isoweekday() for d in days]
    assert evaluate(engines, "extract(isodow from d)") == [d.isoweekday() for d in days]
    iso_weeks = [d.isocalendar().week for d in days]
    assert iso_weeks == [26, 1, 1, 53]  # 2024-12-30 is in week 1 of 2025; 2021-01-03 in 53 of 2020
    assert evaluate(engines, "week(d)") == iso_weeks
    assert evaluate(engines, "weekofyear(d)") == iso_weeks


# ---------------------------------------------------------------------------------------------
# numbers


def test_integer_division_truncates_toward_zero(engines: Engines) -> None:
    assert evaluate(engines, "CASE WHEN m <> 0 THEN n // m END") == [3, -3, None, 0]
    assert evaluate(engines, "CASE WHEN m <> 0 THEN n % m END") == [1, -1, None, 0]


def test_slash_divides_as_floating_point(engines: Engines) -> None:
    """DuckDB's `/` never truncates integers; PostgreSQL's does unless told otherwise."""
    assert evaluate(engines, "CASE WHEN m <> 0 THEN n / m END") == [3.5, -3.5, None, 0]


def test_safe_division(engines: Engines) -> None:
    expected = [
        None if n in (None, 0) or x is None else round(float(x) / n, 9)
        for x, n in zip(column("x"), column("n"), strict=True)
    ]
    assert expected == [round(10 / 7, 9), None, None, None]
    assert evaluate(engines, "segsql_safe_divide(x, n)") == expected
    assert evaluate(engines, "segsql_safe_divide(n, m)") == [3.5, -3.5, None, 0]


# ---------------------------------------------------------------------------------------------
# NULLs


def test_null_ordering_in_window_functions(engines: Engines) -> None:
    """NULLs sort last ascending and descending (DuckDB's rule), on every engine."""
    # x: 10.00, NULL, -3.50, 0.00
    assert evaluate(engines, "row_number() over (order by x)") == [3, 4, 1, 2]
    assert evaluate(engines, "row_number() over (order by x desc)") == [1, 4, 3, 2]


def test_null_in_in_lists(engines: Engines) -> None:
    assert evaluate(engines, "n IN (7, NULL)") == [True, None, None, None]
    assert evaluate(engines, "n NOT IN (7, NULL)") == [False, None, None, None]
    # a segment's `where` counts NULL as not a member
    assert evaluate(engines, "(n NOT IN (7, NULL)) IS TRUE") == [False, False, False, False]


def test_string_concatenation_with_null(engines: Engines) -> None:
    assert evaluate(engines, "s || s2") == [None, "abcx", None, "a\\_b"]
    assert evaluate(engines, "concat(s, s2)") == ["Abc", "abcx", "y", "a\\_b"]


# ---------------------------------------------------------------------------------------------
# strings


def test_like_is_case_sensitive_and_ilike_is_not(engines: Engines) -> None:
    assert evaluate(engines, "s LIKE 'a%'") == [False, True, None, True]
    assert evaluate(engines, "s ILIKE 'a%'") == [True, True, None, True]


def test_like_backslash_is_not_an_escape(engines: Engines) -> None:
    """DuckDB's LIKE has no escape character; PostgreSQL's and BigQuery's default to backslash."""
    assert evaluate(engines, "s LIKE 'a\\_b'") == [False, False, None, True]
    assert evaluate(engines, "'a_b' LIKE 'a\\_b'") == [False] * 4
    assert evaluate(engines, "s LIKE s") == [True, True, None, True]


# ---------------------------------------------------------------------------------------------
# aggregates and hashing


def test_boolean_aggregates(engines: Engines) -> None:
    assert evaluate(engines, "bool_and(b)", aggregate=True) == [False]
    assert evaluate(engines, "bool_or(b)", aggregate=True) == [True]
    assert evaluate(engines, "bool_and(b) FILTER (WHERE id <> 2)", aggregate=True) == [True]


def python_bucket(key: Any, buckets: int) -> int | None:
    """The documented formula: the first 32 bits of MD5 of the key's text, modulo n."""
    if key is None:
        return None
    return int(hashlib.md5(str(key).encode("utf-8")).hexdigest()[:8], 16) % buckets


def test_hash_buckets_are_the_same_everywhere(engines: Engines) -> None:
    assert evaluate(engines, "segsql_hash_bucket(id, 10)") == [
        python_bucket(i, 10) for i in column("id")
    ]
    assert evaluate(engines, "segsql_hash_bucket(s, 7)") == [
        python_bucket(s, 7) for s in column("s")
    ]
    assert evaluate(engines, "segsql_hash_bucket(id * 1000003, 1000)") == [
        python_bucket(i * 1000003, 1000) for i in column("id")
    ]
    assert python_bucket(42, 100) == 0xA1D0C6E8 % 100  # md5('42') = a1d0c6e8...


def test_hash_bucket_of_unicode_keys(engines: Engines) -> None:
    keys = ["Zoë", "東京", "O'Brien"]
    for key in keys:
        literal = exp.Literal.string(key).sql("duckdb")
        assert (
            evaluate(engines, f"segsql_hash_bucket({literal}, 97)") == [python_bucket(key, 97)] * 4
        )


keys = st.one_of(
    st.integers(-(2**62), 2**62),
    st.text(
        alphabet=st.characters(
            codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"
        ),
        max_size=8,
    ),
)


def hash_call(key: int | str, buckets: int) -> exp.Expr:
    return exp.Anonymous(
        this="segsql_hash_bucket", expressions=[exp.convert(key), exp.convert(buckets)]
    )


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(values=st.lists(keys, min_size=1, max_size=12))
def test_hash_buckets_of_generated_keys(engines: Engines, values: list[int | str]) -> None:
    """Any integer or string key: the same bucket on DuckDB, PostgreSQL and BigQuery (evaluated by
    ZetaSQL) as in plain Python."""
    expected = [python_bucket(v, 1009) for v in values]
    bigquery = ENGINES["bigquery"]
    on_zetasql = [
        evaluate_constant(lower_portable(hash_call(v, 1009), bigquery).sql(dialect="bigquery"))
        for v in values
    ]
    assert on_zetasql == expected
    for runner in (engines.duck, engines.pg):
        columns = [
            exp.alias_(lower_portable(hash_call(v, 1009), runner.target.engine), f"b{i}")
            for i, v in enumerate(values)
        ]
        rows = runner.query(exp.select(*columns))
        assert [_normal(v) for v in rows[0]] == expected
