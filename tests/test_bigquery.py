"""BigQuery by analysis: every emitted statement passes Google's ZetaSQL analyser (offline, WASM),
against a catalog of the project's declared tables; statements BigQuery would reject are rejected.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segsql.bigquery_check import (
    BigQueryAnalyzer,
    check_deploy,
    check_files,
    googlesql_type,
    project_catalog,
)
from segsql.cli import app
from segsql.dialects import ENGINES
from segsql.emit import Target, resolve_target, target_files
from segsql.load import load_project
from segsql.model import TargetConfig
from segsql.pipeline import compile_project

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "segsql" / "templates" / "init"
EXAMPLES = {
    "init-template": TEMPLATE,
    "repo-example": REPO,
}  # the bundled example and `segsql init`'s


def template_copy(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(TEMPLATE, root)
    return root


def template_analyzer() -> BigQueryAnalyzer:
    """The init project's tables, plus `events` whose `happened_at` is a BigQuery TIMESTAMP (UTC instant)."""
    plain = Target(TargetConfig(name="bigquery", engine="bigquery"), ENGINES["bigquery"])
    catalog = project_catalog(load_project(TEMPLATE), plain)  # tables as named, no dataset
    catalog.add(["events"], [("happened_at", googlesql_type("timestamptz", "duckdb"))])
    return BigQueryAnalyzer(catalog)


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_every_emitted_bigquery_statement_passes_zetasql(example: str) -> None:
    """deploy.sql, snapshot.sql, and each feature and segment file, statement by statement."""
    compiled = compile_project(EXAMPLES[example])
    target = resolve_target(compiled.project.config, "bigquery")
    assert check_deploy(compiled, target) == []
    files = target_files(compiled, target, list(compiled.segments))
    assert {"deploy.sql", "snapshot.sql"} <= set(files)
    assert check_files(compiled, target, files) == []


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        # the classic trap: TIMESTAMP compared with DATE arithmetic (a DATETIME in GoogleSQL)
        (
            "SELECT 1 FROM events WHERE happened_at >= DATE '2024-06-30' - INTERVAL 30 DAY",
            "No matching signature for operator >=",
        ),
        ("SELECT CAST(order_id AS INT32) FROM orders", "Type not found: INT32"),
        ("SELECT order_id::int FROM orders", "Syntax error"),
        ("SELECT order_id FROM orders WHERE status ILIKE 'x%'", "Syntax error"),
        ("SELECT order_total FROM orders", "Unrecognized name: order_total"),
        ("SELECT order_id FROM payments", "Table not found: payments"),
        ("SELECT order_id FROM orders WHERE amount > 'many'", "No matching signature"),
    ],
)
def test_statements_bigquery_rejects_are_rejected(sql: str, reason: str) -> None:
    message = template_analyzer().analyse(sql)
    assert message is not None
    assert reason in message


def test_the_same_statements_written_for_bigquery_pass() -> None:
    analyzer = template_analyzer()
    for sql in [
        "SELECT 1 FROM events WHERE CAST(happened_at AS DATE) >= DATE '2024-06-30' - INTERVAL 30 DAY",
        "SELECT CAST(order_id AS INT64) FROM orders",
        "SELECT order_id FROM orders WHERE amount > 100",
    ]:
        assert analyzer.analyse(sql) is None, sql


def test_created_relations_become_visible_to_later_statements() -> None:
    analyzer = template_analyzer()
    assert analyzer.analyse("SELECT x FROM `p`.d.made") is not None
    create = "CREATE TABLE `p`.d.made AS SELECT customer_id AS x, SUM(amount) AS total FROM orders GROUP BY 1"
    assert analyzer.analyse(create) is None
    assert analyzer.analyse("SELECT x FROM `p`.d.made WHERE total > 1.5") is None
    assert "No matching signature" in str(
        analyzer.analyse("SELECT x FROM `p`.d.made WHERE total > 'a'")
    )


@pytest.mark.parametrize(
    ("declared", "googlesql"),
    [
        ("bigint", "TYPE_INT64"),
        ("integer", "TYPE_INT64"),
        ("decimal(12,2)", "TYPE_NUMERIC"),
        ("double", "TYPE_DOUBLE"),
        ("varchar", "TYPE_STRING"),
        ("boolean", "TYPE_BOOL"),
        ("date", "TYPE_DATE"),
        ("timestamp", "TYPE_DATETIME"),  # naive timestamp: BigQuery's DATETIME
        ("timestamptz", "TYPE_TIMESTAMP"),
    ],
)
def test_declared_types_map_to_googlesql(declared: str, googlesql: str) -> None:
    assert googlesql_type(declared, "duckdb").type_kind.name == googlesql


def test_compile_check_sql_reports_the_rejected_segment(tmp_path: Path) -> None:
    """DuckDB compares a string with a number by casting; BigQuery refuses: caught before pushing."""
    root = template_copy(tmp_path)
    spec = root / "segments" / "customers.yml"
    spec.write_text(
        spec.read_text().replace(
            "where: lifetime_revenue >= {{ big_spender_threshold() }}", "where: country > 5"
        )
    )
    result = CliRunner().invoke(
        app, ["--project-dir", str(root), "compile", "--target", "bq", "--check-sql"]
    )
    assert result.exit_code == 2, result.output
    assert "segment 'active_big_spenders'" in result.output
    assert "No matching signature for operator >" in result.output
    assert "customers.yml" in result.output
    assert not (root / "target").exists()  # nothing written when the check fails


def test_compile_check_sql_passes_and_writes(tmp_path: Path) -> None:
    root = template_copy(tmp_path)
    result = CliRunner().invoke(
        app, ["--project-dir", str(root), "compile", "--target", "bq", "--check-sql"]
    )
    assert result.exit_code == 0, result.output
    deploy = root / "target" / "compiled" / "bq" / "deploy.sql"
    assert deploy.exists()
    # one statement per segment file, plus the deploy script's (schema, features, views)
    files = list((root / "target" / "compiled" / "bq").rglob("*.sql"))
    statements = sum(p.read_text().count(";\n") for p in files)
    assert f"ZetaSQL analysis passed: {statements} BigQuery statement(s) of bq" in result.output
