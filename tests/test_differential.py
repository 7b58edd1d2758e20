"""Differential testing: Hypothesis generates projects (typed data with NULLs, quotes and unicode;
time windows crossing month and year ends; random predicate trees; nested parents; union,
intersect and exclude), each written as YAML and compiled through the real loader, then deployed
on DuckDB and PostgreSQL over the same rows. Both engines must return the same members for every
segment, the same feature values and the same KPIs (integers exactly, decimals and floats to one
unit of the 9th decimal, the precision KPIs leave the query with), and ZetaSQL must accept every
BigQuery deploy statement (and the KPI query of every 10th case).

One PostgreSQL database and the ZetaSQL service are shared by all examples; `derandomize=True`
makes the run reproducible in CI.
"""

from __future__ import annotations

import datetime as dt
import decimal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from segsql.bigquery_check import BigQueryAnalyzer, project_catalog
from segsql.build import CompiledProject
from segsql.emit import deploy_statements, resolve_target, to_sql
from segsql.kpis import build_kpis, kpi_query, plan_kpis, result_columns
from segsql.pipeline import compile_project
from segsql.postgres import PostgresRunner
from segsql.run import DuckDBRunner, Runner, deploy

pytest_plugins = ["pg_server"]

MAX_EXAMPLES = 300  # "a few hundred" generated projects
# The BigQuery KPI query (~9 KB, its features inlined) takes ZetaSQL ~0.35 s, longer than the rest
# of a case: it is analysed for every 10th case (the segment predicates it repeats are analysed in
# every case's deploy statements; the example's KPI query in test_kpis.py).
KPI_ANALYSIS_EVERY = 10
RUNS = {"examples": 0, "segments": 0}

CUSTOMER_COLUMNS = {
    "customer_id": "bigint",
    "name": "varchar",
    "score": "integer",
    "balance": "decimal(10,2)",
    "signup_on": "date",
    "vip": "boolean",
}
ORDER_COLUMNS = {
    "order_id": "bigint",
    "customer_id": "bigint",
    "ordered_at": "timestamp",
    "amount": "decimal(10,2)",
    "status": "varchar",
}
# feature relation columns by type, for the predicate generator
INT_COLUMNS = [
    "score",
    "orders_w",
    "completed_orders",
    "revenue_rank",
    "days_since_order",
    "score_third",
]
DECIMAL_COLUMNS = ["balance", "revenue_w", "max_amount", "balance_per_score"]
STRING_COLUMNS = ["name"]
DATE_COLUMNS = ["signup_on"]
TIMESTAMP_COLUMNS = ["last_order_at"]
BOOL_COLUMNS = ["vip", "any_big_order"]

TRICKY_STRINGS = [
    "",
    "O'Brien",
    "o'brien",
    "Zoë",
    "ZOË",
    "東京",
    "a%b",
    "a_b",
    "a\\_b",
    "back\\slash",
    " padded ",
    "NULL",
    'say "hi"',
    "émile",
    "Émile",
    "complete'd",
]
AS_OF_DATES = ["2023-12-31", "2024-01-01", "2024-01-31", "2024-02-29", "2024-03-01", "2024-12-31"]
WINDOWS = [
    "1 days",
    "7 days",
    "30 days",
    "31 days",
    "90 days",
    "2 weeks",
    "1 months",
    "3 months",
    "1 years",
]
LIKE_PATTERNS = ["%", "O%", "%b", "a_b", "a\\_b", "%'%", "_", "%ë", "Z%", "%\\%", "a\\%"]


# ---------------------------------------------------------------------------------------------
# data

text = st.one_of(  # the tricky strings twice as often: predicates compare with them
    st.none(),
    st.sampled_from(TRICKY_STRINGS),
    st.sampled_from(TRICKY_STRINGS),
    st.text(
        alphabet=st.characters(
            codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="{}%"
        ),
        max_size=5,
    ),
)
money = st.one_of(
    st.none(),
    st.decimals(min_value=-500, max_value=5000, places=2, allow_nan=False, allow_infinity=False),
)
day = st.dates(min_value=dt.date(2022, 12, 1), max_value=dt.date(2025, 1, 31))
edge_instants = st.sampled_from(
    [
        dt.datetime(2023, 12, 31, 23, 59, 59, 999999),
        dt.datetime(2024, 1, 1, 0, 0),
        dt.datetime(2024, 1, 31, 23, 59, 59),
        dt.datetime(2024, 2, 29, 12, 0),
        dt.datetime(2024, 3, 1, 0, 0, 0, 1),
        dt.datetime(2024, 12, 31, 23, 59, 59),
        dt.datetime(2023, 12, 1, 0, 0),
    ]
)
instant = st.one_of(
    st.none(),
    edge_instants,
    st.datetimes(min_value=dt.datetime(2022, 12, 1), max_value=dt.datetime(2025, 1, 31)),
)


@st.composite
def customers(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    count = draw(st.integers(0, 8))
    return [
        (
            key,
            draw(text),
            draw(st.one_of(st.none(), st.integers(-20, 20))),
            draw(money),
            draw(st.one_of(st.none(), day)),
            draw(st.one_of(st.none(), st.booleans())),
        )
        for key in range(1, count + 1)
    ]


@st.composite
def orders(draw: st.DrawFn, customer_count: int) -> list[tuple[Any, ...]]:
    count = draw(st.integers(0, 14))
    return [
        (
            number,
            draw(st.one_of(st.none(), st.integers(1, customer_count + 2))),
            draw(instant),
            draw(money),
            draw(st.one_of(st.none(), st.sampled_from(["complete'd", "open", "Complete'd"]))),
        )
        for number in range(1, count + 1)
    ]


# ---------------------------------------------------------------------------------------------
# predicates (DuckDB dialect text, literals quoted by sqlglot)


def lit(value: Any) -> str:
    if isinstance(value, str):
        return exp.Literal.string(value).sql("duckdb")
    if value is None:
        return "NULL"
    return str(value)


comparison = st.sampled_from(["=", "<>", "<", "<=", ">", ">="])
small_int = st.integers(-5, 25)
decimal_literal = st.decimals(
    min_value=-100, max_value=1000, places=2, allow_nan=False, allow_infinity=False
)


@st.composite
def int_atom(draw: st.DrawFn) -> str:
    column = draw(st.sampled_from(INT_COLUMNS))
    shape = draw(st.integers(0, 6))
    if shape == 0:
        return f"{column} {draw(comparison)} {draw(small_int)}"
    if shape == 1:
        low, high = sorted([draw(small_int), draw(small_int)])
        return f"{column} BETWEEN {low} AND {high}"
    if shape == 2:
        values = draw(st.lists(st.one_of(st.none(), small_int), min_size=1, max_size=4))
        negate = draw(st.sampled_from(["", "NOT "]))
        return f"{column} {negate}IN ({', '.join(lit(v) for v in values)})"
    if shape == 3:
        return f"{column} IS {draw(st.sampled_from(['', 'NOT ']))}NULL"
    if shape == 4:
        return f"{column} % 3 = {draw(st.integers(-2, 2))}"
    if shape == 5:
        return f"{column} // 4 {draw(comparison)} {draw(st.integers(-3, 5))}"
    return f"coalesce({column}, 0) {draw(comparison)} {draw(small_int)}"


@st.composite
def decimal_atom(draw: st.DrawFn) -> str:
    column = draw(st.sampled_from(DECIMAL_COLUMNS))
    if draw(st.booleans()):
        return f"{column} {draw(comparison)} {draw(decimal_literal)}"
    return f"{column} IS {draw(st.sampled_from(['', 'NOT ']))}NULL"


@st.composite
def string_atom(draw: st.DrawFn) -> str:
    column = draw(st.sampled_from(STRING_COLUMNS))
    value = draw(st.sampled_from(TRICKY_STRINGS))
    shape = draw(st.integers(0, 6))
    if shape == 0:
        return f"{column} {draw(comparison)} {lit(value)}"
    if shape == 1:
        return f"{column} {draw(st.sampled_from(['LIKE', 'NOT LIKE']))} {lit(draw(st.sampled_from(LIKE_PATTERNS)))}"
    if shape == 2:
        values = draw(st.lists(st.sampled_from(TRICKY_STRINGS), min_size=1, max_size=3))
        return f"{column} IN ({', '.join(lit(v) for v in values)})"
    if shape == 3:
        return f"length({column}) {draw(comparison)} {draw(st.integers(0, 6))}"
    if shape == 4:
        return f"({column} || '!') = {lit(value + '!')}"
    if shape == 5:
        return f"concat({column}, '!') = {lit(value + '!')}"
    return f"{column} IS NULL"


@st.composite
def date_atom(draw: st.DrawFn) -> str:
    column = draw(st.sampled_from(DATE_COLUMNS + TIMESTAMP_COLUMNS))
    shape = draw(st.integers(0, 4))
    if shape == 0:
        return f"{column} {draw(comparison)} DATE {lit(draw(day).isoformat())}"
    if shape == 1:
        return f"segsql_days_between({column}, DATE '{{{{ as_of }}}}') {draw(comparison)} {draw(st.integers(0, 400))}"
    if shape == 2:
        return f"dayofweek({column}) = {draw(st.integers(0, 6))}"
    if shape == 3:
        return f"extract(month from {column}) = {draw(st.integers(1, 12))}"
    return f"isodow({column}) {draw(comparison)} {draw(st.integers(1, 7))}"


@st.composite
def bool_atom(draw: st.DrawFn) -> str:
    column = draw(st.sampled_from(BOOL_COLUMNS))
    return draw(
        st.sampled_from(
            [column, f"NOT {column}", f"{column} IS NULL", f"{column} IS NOT DISTINCT FROM false"]
        )
    )


atom = st.one_of(int_atom(), decimal_atom(), string_atom(), date_atom(), bool_atom())
predicate = st.recursive(
    atom,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        inner.map(lambda p: f"NOT ({p})"),
    ),
    max_leaves=4,
)


@st.composite
def segment_list(draw: st.DrawFn) -> list[dict[str, Any]]:
    segments: list[dict[str, Any]] = []
    for index in range(draw(st.integers(1, 5))):
        segment: dict[str, Any] = {"name": f"seg_{index}"}
        earlier = [s["name"] for s in segments]
        if earlier and draw(st.booleans()):
            segment["parent"] = draw(st.sampled_from(earlier))
        for operation in ("union", "intersect", "exclude"):
            if earlier and draw(st.integers(0, 4)) == 0:
                segment[operation] = draw(
                    st.lists(st.sampled_from(earlier), min_size=1, max_size=2, unique=True)
                )
        if "union" not in segment or draw(st.booleans()):
            terms = draw(st.lists(predicate, min_size=1, max_size=2))
            segment["where"] = terms[0] if len(terms) == 1 else terms
        if not any(k in segment for k in ("parent", "union", "intersect", "exclude")):
            segment["entity"] = "customer"
        if draw(st.integers(0, 5)) == 0:
            segment["materialize"] = "table"
        segments.append(segment)
    return segments


@dataclass(frozen=True)
class Case:
    as_of: str
    window: str
    customers: list[tuple[Any, ...]]
    orders: list[tuple[Any, ...]]
    segments: list[dict[str, Any]]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    people = draw(customers())
    return Case(
        draw(st.sampled_from(AS_OF_DATES)),
        draw(st.sampled_from(WINDOWS)),
        people,
        draw(orders(len(people))),
        draw(segment_list()),
    )


# ---------------------------------------------------------------------------------------------
# the project, on disk through the real loader


def project_files(case: Case) -> dict[str, Any]:
    orders_from = {"table": "orders", "key": "customer_id", "time": "ordered_at"}
    config = {
        "name": "differential",
        "dialect": "duckdb",
        "vars": {"as_of": case.as_of},
        "targets": {
            "local": {"engine": "duckdb", "schema": "segments"},
            "pg": {"engine": "postgres", "schema": "segments"},
            "bq": {"engine": "bigquery", "project": "segsql-test", "dataset": "segments"},
        },
        "default_target": "local",
    }
    definitions = {
        "tables": [
            {"name": "customers", "columns": CUSTOMER_COLUMNS},
            {"name": "orders", "columns": ORDER_COLUMNS},
        ],
        "entities": [
            {
                "name": "customer",
                "table": "customers",
                "key": "customer_id",
                "features": [
                    {
                        "name": "orders_w",
                        "from": orders_from,
                        "expr": "count(*)",
                        "window": case.window,
                        "default": 0,
                    },
                    {
                        "name": "revenue_w",
                        "from": orders_from,
                        "expr": "sum(amount)",
                        "window": case.window,
                        "default": 0,
                    },
                    {
                        "name": "completed_orders",
                        "from": {**orders_from, "where": "status = 'complete''d'"},
                        "expr": "count(*)",
                        "default": 0,
                    },
                    {"name": "max_amount", "from": orders_from, "expr": "max(amount)"},
                    {"name": "last_order_at", "from": orders_from, "expr": "max(ordered_at)"},
                    {"name": "any_big_order", "from": orders_from, "expr": "bool_or(amount > 100)"},
                    {
                        "name": "days_since_order",
                        "expr": "segsql_days_between(last_order_at, DATE '{{ as_of }}')",
                    },
                    {"name": "revenue_rank", "expr": "ntile(3) over (order by revenue_w desc)"},
                    {"name": "score_third", "expr": "score // 3"},
                    {"name": "balance_per_score", "expr": "segsql_safe_divide(balance, score)"},
                ],
            }
        ],
        "segments": case.segments,
        # KPIs of every segment: integer, decimal and floating-point aggregates, NULLs included
        "kpis": [
            {"name": "revenue", "expr": "sum(revenue_w)"},
            {"name": "avg_balance", "expr": "avg(balance)"},
            {"name": "avg_score", "expr": "avg(score)"},
            {"name": "vips", "expr": "sum(case when vip then 1 else 0 end)"},
            {"name": "best_rank", "expr": "min(revenue_rank)"},
            {"name": "ratio", "expr": "segsql_safe_divide(sum(revenue_w), count(*))"},
        ],
    }
    return {"segsql.yml": config, "segments/definitions.yml": definitions}


def write_project(root: Path, case: Case) -> None:
    for relative, content in project_files(case).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            yaml.safe_dump(content, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )


# ---------------------------------------------------------------------------------------------
# engines


def load_rows(runner: Runner, case: Case) -> None:
    statements: list[exp.Expr] = []
    for table, columns, rows in (
        ("customers", CUSTOMER_COLUMNS, case.customers),
        ("orders", ORDER_COLUMNS, case.orders),
    ):
        statements.append(
            exp.Drop(tables=[exp.to_table(table)], kind="TABLE", exists=True, cascade=True)
        )
        schema = exp.Schema(
            this=exp.to_table(table),
            expressions=[
                exp.ColumnDef(
                    this=exp.to_identifier(name), kind=exp.DataType.build(kind, dialect="duckdb")
                )
                for name, kind in columns.items()
            ],
        )
        statements.append(exp.Create(this=schema, kind="TABLE"))
        if rows:
            values = exp.values([tuple(exp.convert(v) for v in row) for row in rows])
            statements.append(exp.insert(values, table))
    runner.execute_all(statements)


def members(runner: Runner, compiled: CompiledProject) -> dict[str, set[Any]]:
    found = {}
    for name, segment in compiled.segments.items():
        key = compiled.entities[segment.entity].key
        rows = runner.query(exp.select(key).from_(runner.target.relation(name)))
        keys = [row[0] for row in rows]
        assert len(keys) == len(set(keys)), f"{name} lists a member twice"
        found[name] = set(keys)
    return found


def feature_rows(runner: Runner, compiled: CompiledProject) -> list[tuple[Any, ...]]:
    entity = compiled.entities["customer"]
    query = (
        exp.select(*entity.output_columns)
        .from_(runner.target.relation(entity.relation_name))
        .order_by(entity.key)
    )
    return runner.query(query)


def kpi_rows(runner: Runner, compiled: CompiledProject) -> dict[str, dict[str, Any]]:
    """Every KPI of every segment and of the whole entity, by segment name."""
    rows = {}
    for plan in plans(compiled):
        for row in runner.query(kpi_query(compiled, plan, runner.target)):
            values = dict(zip(result_columns(plan), row, strict=True))
            rows[str(values["segment"])] = values
    return rows


def plans(compiled: CompiledProject) -> list[Any]:
    return plan_kpis(compiled, list(compiled.segments), build_kpis(compiled))


def same_kpi(left: Any, right: Any) -> bool:
    """Integers exactly; decimals and floats to one unit of the 9th decimal (KPIs leave the query
    as DECIMAL(38, 9): DuckDB rounds a DOUBLE into it, PostgreSQL an exact NUMERIC)."""
    if left is None or right is None or (isinstance(left, int) and isinstance(right, int)):
        return bool(left == right)
    if isinstance(left, decimal.Decimal | float) and isinstance(right, decimal.Decimal | float):
        return abs(decimal.Decimal(left) - decimal.Decimal(right)) <= decimal.Decimal("1e-9")
    return bool(left == right)


def same_value(left: Any, right: Any) -> bool:
    if isinstance(left, float) or isinstance(right, float):
        return (
            left is not None
            and right is not None
            and abs(float(left) - float(right)) <= 1e-9 * max(1.0, abs(float(left)))
        )
    if isinstance(left, decimal.Decimal) or isinstance(right, decimal.Decimal):
        return (
            left is not None
            and right is not None
            and decimal.Decimal(left) == decimal.Decimal(right)
        )
    return bool(left == right)


@pytest.fixture(scope="module")
def pg_dsn(pg_module_database: str) -> Iterator[str]:
    yield pg_module_database
    # shown with `pytest -s`: how many generated cases ran
    print(f"\ndifferential: {RUNS['examples']} generated projects, {RUNS['segments']} segments")


def check_case(case: Case, pg_dsn: str) -> None:
    with tempfile.TemporaryDirectory(prefix="segsql-diff-") as folder:
        root = Path(folder)
        write_project(root, case)
        compiled = compile_project(root)
        config = compiled.project.config
        duck = DuckDBRunner(resolve_target(config, "local"), root)
        pg = PostgresRunner(resolve_target(config, "pg"), pg_dsn)
        try:
            for runner in (duck, pg):
                load_rows(runner, case)
                deploy(runner, compiled, list(compiled.segments))
            on_duck, on_pg = members(duck, compiled), members(pg, compiled)
            duck_features, pg_features = feature_rows(duck, compiled), feature_rows(pg, compiled)
            duck_kpis, pg_kpis = kpi_rows(duck, compiled), kpi_rows(pg, compiled)
        finally:
            duck.close()
            pg.close()
        assert on_pg == on_duck
        assert len(duck_features) == len(pg_features) == len(case.customers)
        for duck_row, pg_row in zip(duck_features, pg_features, strict=True):
            assert all(same_value(a, b) for a, b in zip(duck_row, pg_row, strict=True)), (
                duck_row,
                pg_row,
            )
        assert duck_kpis.keys() == pg_kpis.keys() == {"(all)", *compiled.segments}
        for segment, duck_kpi in duck_kpis.items():
            for column, value in duck_kpi.items():
                assert same_kpi(value, pg_kpis[segment][column]), (segment, column, duck_kpi)
        assert duck_kpis["(all)"]["size"] == len(case.customers)
        check_set_algebra(compiled, on_duck)
        assert analyse_on_bigquery(compiled) == []
    RUNS["examples"] += 1
    RUNS["segments"] += len(case.segments)


_ANALYSER: list[BigQueryAnalyzer] = []
_ACCEPTED: set[str] = set()


def analyse_on_bigquery(compiled: CompiledProject) -> list[tuple[str, str]]:
    """Every deploy statement through ZetaSQL. One analyser serves all examples (the declared
    tables never change); a statement already accepted (the feature relation, for the same window
    and as_of) is not analysed again."""
    target = resolve_target(compiled.project.config, "bq")
    if not _ANALYSER:
        _ANALYSER.append(BigQueryAnalyzer(project_catalog(compiled.project, target)))
    rejected = []
    statements: list[exp.Expr] = list(deploy_statements(compiled, target))
    if RUNS["examples"] % KPI_ANALYSIS_EVERY == 0:
        statements += [kpi_query(compiled, plan, target) for plan in plans(compiled)]
    for statement in statements:
        sql = to_sql(statement, target)
        if sql in _ACCEPTED:
            continue
        message = _ANALYSER[0].analyse(sql)
        if message is None:
            _ACCEPTED.add(sql)
        else:
            rejected.append((sql, message))
    return rejected


def check_set_algebra(compiled: CompiledProject, found: dict[str, set[Any]]) -> None:
    """Independent of the SQL: a segment's members obey its parent and set operands."""
    for name, segment in compiled.segments.items():
        d = segment.definition
        if d.parent:
            assert found[name] <= found[d.parent.name]
        for operand in d.intersect:
            assert found[name] <= found[operand.name]
        for operand in d.exclude:
            assert not found[name] & found[operand.name]
        if d.union:
            assert found[name] <= set().union(*(found[o.name] for o in d.union))


@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(case=cases())
@example(  # found by hand: LIKE '\\_' escapes on PostgreSQL/BigQuery, not on DuckDB (fixed in dialects.py)
    case=Case(
        "2024-01-31",
        "1 months",
        [(1, "a_b", 3, None, dt.date(2024, 1, 1), True), (2, "a\\_b", None, None, None, None)],
        [],
        [{"name": "seg_0", "entity": "customer", "where": "name LIKE 'a\\_b'"}],
    )
)
def test_duckdb_and_postgres_agree_and_bigquery_analyses(case: Case, pg_dsn: str) -> None:
    check_case(case, pg_dsn)
