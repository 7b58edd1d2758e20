"""PostgreSQL for real: `segsql seed` and `segsql run` on a PostgreSQL 18 server the tests start.

Every project is seeded into PostgreSQL and DuckDB from the same files; members (and feature
values) must be identical, and the small init project's members are also checked by hand.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from typer.testing import CliRunner

from segsql.cli import app
from segsql.emit import resolve_target
from segsql.errors import ExecutionError
from segsql.load import load_project
from segsql.pipeline import compile_project
from segsql.postgres import PostgresRunner, load_seeds_postgres
from segsql.run import deploy

pytest_plugins = ["pg_server"]

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "segsql" / "templates" / "init"
EXAMPLES = {
    "init-template": TEMPLATE,
    "repo-example": REPO,
}  # the bundled example and `segsql init`'s


PROJECT_ENTRIES = ("segsql.yml", "segments", "macros", "data")


def copy_project(source: Path, folder: Path) -> Path:
    """The project's own files only (the repository root also holds the package and its tests)."""
    root = folder / "project"
    root.mkdir()
    for entry in PROJECT_ENTRIES:
        if (source / entry).is_dir():
            shutil.copytree(source / entry, root / entry)
        elif (source / entry).is_file():
            shutil.copy(source / entry, root / entry)
    return root


def cli(root: Path, dsn: str, *args: str) -> str:
    result = CliRunner().invoke(
        app, ["--project-dir", str(root), *args], env={"SEGSQL_PG_DSN": dsn}
    )
    assert result.exit_code == 0, result.output
    return result.output


def members(query: Any, root: Path, names: list[str]) -> dict[str, set[Any]]:
    """Member keys per segment, read from the deployed views with `query(sql_text)`."""
    project = load_project(root)
    schema = resolve_target(project.config, "local").schema
    return {name: {row[0] for row in query(f"SELECT * FROM {schema}.{name}")} for name in names}


def pg_rows(dsn: str, sql_text: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as connection:
        return list(connection.execute(sql_text).fetchall())


def duck_rows(root: Path, sql_text: str) -> list[tuple[Any, ...]]:
    project = load_project(root)
    path = root / str(resolve_target(project.config, "local").config.path)
    with duckdb.connect(str(path), read_only=True) as connection:
        return list(connection.execute(sql_text).fetchall())


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_example_runs_the_same_on_postgres_and_duckdb(
    example: str, tmp_path: Path, pg_database: str
) -> None:
    """Same member keys for every segment; feature relations equal row by row (integers and
    decimals exactly, floats to 1e-9 relative); the same KPIs of every segment."""
    root = copy_project(EXAMPLES[example], tmp_path)
    cli(root, pg_database, "seed", "--target", "pg")
    cli(root, pg_database, "run", "--target", "pg")
    cli(root, pg_database, "run", "--target", "local")
    compiled = compile_project(root)
    names = list(compiled.segments)
    assert names
    on_pg = members(lambda q: pg_rows(pg_database, q), root, names)
    on_duck = members(lambda q: duck_rows(root, q), root, names)
    assert on_pg == on_duck
    if example == "init-template":  # by hand: orders in (2024-04-01, 2024-06-30], revenue >= 100
        assert on_pg == {
            "active": {1, 2, 4},
            "active_big_spenders": {1},
            "active_in_europe": {1, 4},
        }
    else:
        assert any(on_pg.values()), "the example's segments should not all be empty"
    schema = resolve_target(compiled.project.config, "local").schema
    for entity in compiled.entities.values():
        columns = ", ".join(entity.output_columns)
        text = f"SELECT {columns} FROM {schema}.{entity.relation_name} ORDER BY 1"
        pg_features, duck_features = pg_rows(pg_database, text), duck_rows(root, text)
        assert len(pg_features) == len(duck_features) > 0
        for pg_row, duck_row in zip(pg_features, duck_features, strict=True):
            for pg_value, duck_value in zip(pg_row, duck_row, strict=True):
                assert_same_value(pg_value, duck_value)
    kpis_pg, kpis_duck = (
        json.loads(cli(root, pg_database, "kpis", "--target", target, "-f", "json"))["rows"]
        for target in ("pg", "local")
    )
    assert [row["segment"] for row in kpis_pg] == [row["segment"] for row in kpis_duck]
    assert len(kpis_pg) > len(names)  # every segment and each entity's "(all)" row
    for pg_kpi, duck_kpi in zip(kpis_pg, kpis_duck, strict=True):
        assert pg_kpi.keys() == duck_kpi.keys()
        for column, value in pg_kpi.items():
            assert_same_value(value, duck_kpi[column])


def assert_same_value(pg_value: Any, duck_value: Any) -> None:
    if isinstance(pg_value, float) or isinstance(duck_value, float):
        assert float(pg_value) == pytest.approx(float(duck_value), rel=1e-9)
    elif isinstance(pg_value, decimal.Decimal) or isinstance(duck_value, decimal.Decimal):
        assert decimal.Decimal(pg_value) == decimal.Decimal(duck_value)
    else:
        assert pg_value == duck_value


def test_seed_declared_and_inferred_types(tmp_path: Path, pg_database: str) -> None:
    """Declared tables get their declared types (transpiled); undeclared files DuckDB's inferred ones."""
    root = copy_project(TEMPLATE, tmp_path)
    (root / "data" / "notes.csv").write_text(
        "id,note,score,seen_on\n"
        '1,"it\'s ""quoted"", with comma",1.5,2024-02-29\n'
        "2,Zürich ✓ 東京,,2024-12-31\n"
        "3,,-2.25,\n",
        encoding="utf-8",
    )
    with duckdb.connect() as connection:  # a Parquet seed: types come from the file itself
        connection.execute(
            "COPY (SELECT 1::BIGINT AS id, TIMESTAMP '2024-02-29 23:59:59' AS at,"
            " 12.5::DECIMAL(8,3) AS price, true AS flag, NULL::VARCHAR AS missing)"
            f" TO '{root / 'data' / 'events.parquet'}' (FORMAT parquet)"
        )
    cli(root, pg_database, "seed", "--target", "pg")
    assert pg_rows(pg_database, "SELECT * FROM events") == [
        (1, dt.datetime(2024, 2, 29, 23, 59, 59), decimal.Decimal("12.500"), True, None)
    ]
    types = dict(
        pg_rows(
            pg_database,
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public'",
        )
    )
    assert types["orders.amount"] == "numeric"
    assert types["orders.ordered_at"] == "timestamp without time zone"
    assert types["customers.customer_id"] == "bigint"
    assert types["notes.seen_on"] == "date"
    assert types["notes.score"] == "double precision"
    assert types["events.at"] == "timestamp without time zone"
    assert types["events.flag"] == "boolean"
    assert types["events.missing"] == "text"
    amount = pg_rows(
        pg_database,
        "SELECT numeric_scale FROM information_schema.columns"
        " WHERE table_name = 'orders' AND column_name = 'amount'",
    )
    assert amount == [(2,)]
    assert pg_rows(pg_database, "SELECT id, note, score, seen_on FROM notes ORDER BY id") == [
        (1, 'it\'s "quoted", with comma', 1.5, dt.date(2024, 2, 29)),
        (2, "Zürich ✓ 東京", None, dt.date(2024, 12, 31)),
        (3, None, -2.25, None),
    ]
    # re-seeding replaces the rows instead of appending
    cli(root, pg_database, "seed", "--target", "pg")
    assert pg_rows(pg_database, "SELECT count(*) FROM orders") == [(6,)]


def test_failed_deploy_leaves_previous_objects_intact(tmp_path: Path, pg_database: str) -> None:
    root = copy_project(TEMPLATE, tmp_path)
    cli(root, pg_database, "seed", "--target", "pg")
    cli(root, pg_database, "run", "--target", "pg")
    before = pg_rows(pg_database, "SELECT * FROM segments.customer_features ORDER BY 1")
    # the last segment now calls a function PostgreSQL does not have: CREATE VIEW fails after
    # the feature table and the other views were already dropped and recreated in the transaction
    spec = root / "segments" / "customers.yml"
    spec.write_text(
        spec.read_text().replace(
            "where: \"{{ is_europe('country') }}\"", "where: no_such_function(country) > 0"
        )
    )
    compiled = compile_project(root)
    runner = PostgresRunner(resolve_target(compiled.project.config, "pg"), pg_database)
    try:
        with pytest.raises(ExecutionError, match="no_such_function"):
            deploy(runner, compiled, list(compiled.segments))
    finally:
        runner.close()
    assert pg_rows(pg_database, "SELECT * FROM segments.customer_features ORDER BY 1") == before
    assert {r[0] for r in pg_rows(pg_database, "SELECT * FROM segments.active_in_europe")} == {1, 4}
    assert {r[0] for r in pg_rows(pg_database, "SELECT * FROM segments.active")} == {1, 2, 4}


def test_redeploy_with_changed_columns_materialization_and_selection(
    tmp_path: Path, pg_database: str
) -> None:
    """What CREATE OR REPLACE cannot do on PostgreSQL: new feature columns, view -> table, and a
    --select run that recreates the feature relation without losing the other segments' views."""
    root = copy_project(TEMPLATE, tmp_path)
    cli(root, pg_database, "seed", "--target", "pg")
    cli(root, pg_database, "run", "--target", "pg")
    spec = root / "segments" / "customers.yml"
    text = spec.read_text()
    text = text.replace(
        "      - name: lifetime_revenue\n",
        "      - name: max_amount\n"
        "        from: {table: orders, key: customer_id, time: ordered_at}\n"
        "        expr: max(amount)\n"
        "      - name: lifetime_revenue\n",
    )
    text = text.replace(
        "    description: Ordered in the last 90 days.\n",
        "    description: Ordered in the last 90 days.\n    materialize: table\n",
    )
    spec.write_text(text)
    cli(root, pg_database, "run", "--target", "pg", "--select", "active")
    kinds = dict(
        pg_rows(
            pg_database,
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = 'segments'",
        )
    )
    assert kinds == {
        "customer_features": "r",
        "active": "r",
        "active_big_spenders": "v",
        "active_in_europe": "v",
    }
    assert pg_rows(
        pg_database, "SELECT customer_id, max_amount FROM segments.customer_features ORDER BY 1"
    ) == [
        (1, decimal.Decimal("120.00")),
        (2, decimal.Decimal("45.50")),
        (3, decimal.Decimal("80.00")),
        (4, decimal.Decimal("15.00")),
        (5, None),
    ]
    assert {r[0] for r in pg_rows(pg_database, "SELECT * FROM segments.active_in_europe")} == {1, 4}
    # and back: table -> view
    spec.write_text(text.replace("    materialize: table\n", ""))
    cli(root, pg_database, "run", "--target", "pg")
    assert {r[0] for r in pg_rows(pg_database, "SELECT * FROM segments.active")} == {1, 2, 4}


def test_source_tables_in_a_schema_of_their_own(tmp_path: Path, pg_database: str) -> None:
    """`source_schema` on a target: seeds go there and every query reads them there, on both
    engines, with the members computed by hand (the same definitions, no schema in them)."""
    root = copy_project(TEMPLATE, tmp_path)
    settings = root / "segsql.yml"
    text = settings.read_text(encoding="utf-8")
    text = text.replace("schema: segments}", "schema: segments, source_schema: raw}")
    settings.write_text(text, encoding="utf-8")
    cli(root, pg_database, "seed", "--target", "pg")
    cli(root, pg_database, "run", "--target", "pg")
    cli(root, pg_database, "run", "--target", "local")  # loads the seeds into raw too
    expected = {"active": {1, 2, 4}, "active_big_spenders": {1}, "active_in_europe": {1, 4}}
    assert members(lambda q: pg_rows(pg_database, q), root, list(expected)) == expected
    assert members(lambda q: duck_rows(root, q), root, list(expected)) == expected
    located = "SELECT to_regclass('raw.orders') IS NOT NULL, to_regclass('public.orders') IS NULL"
    assert pg_rows(pg_database, located) == [(True, True)]
    tables = "SELECT schema_name, table_name FROM duckdb_tables() WHERE table_name = 'orders'"
    assert duck_rows(root, tables) == [("raw", "orders")]
    cli(root, pg_database, "compile", "--target", "pg")
    features = (root / "target" / "compiled" / "pg" / "features" / "customer.sql").read_text()
    assert "FROM raw.orders" in features and "FROM raw.customers" in features


def test_seed_into_postgres_needs_no_duckdb_file(tmp_path: Path, pg_database: str) -> None:
    """load_seeds_postgres reads the files with an in-memory DuckDB: no database file appears."""
    root = copy_project(TEMPLATE, tmp_path)
    project = load_project(root)
    runner = PostgresRunner(resolve_target(project.config, "pg"), pg_database)
    try:
        loaded = load_seeds_postgres(runner, project)
    finally:
        runner.close()
    assert loaded == ["customers", "orders"]
    assert not list(root.glob("*.duckdb"))
    assert pg_rows(pg_database, "SELECT sum(amount) FROM orders") == [(decimal.Decimal("790.50"),)]


def test_run_on_postgres_without_a_dsn_is_a_spec_error(tmp_path: Path) -> None:
    root = copy_project(TEMPLATE, tmp_path)
    result = CliRunner().invoke(
        app, ["--project-dir", str(root), "run", "--target", "pg"], env={"SEGSQL_PG_DSN": ""}
    )
    assert result.exit_code == 2
    assert "SEGSQL_PG_DSN" in result.output


def test_unreachable_postgres_is_an_execution_error(tmp_path: Path) -> None:
    root = copy_project(TEMPLATE, tmp_path)
    missing = f"postgresql://postgres@/postgres?host={tmp_path}/nowhere"
    result = CliRunner().invoke(
        app, ["--project-dir", str(root), "run", "--target", "pg"], env={"SEGSQL_PG_DSN": missing}
    )
    assert result.exit_code == 1
    assert "cannot connect to PostgreSQL" in result.output
