"""Emitted SQL: golden files per target, determinism, stale files, partial compiles with --select.

Golden files live in tests/golden/<engine>/ and hold the compiled SQL of tests/fixtures/mini (its
feature relation, one file per segment, deploy.sql). After an intended change of the emitted SQL,
rewrite them with `SEGSQL_UPDATE_GOLDEN=1 pytest tests/test_emit.py` and review the diff.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MINI_PROJECT, Invoke, copy_project, read_tree

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("SEGSQL_UPDATE_GOLDEN") == "1"
ENGINES = ("duckdb", "postgres", "bigquery")
# snapshot.sql belongs to the history feature and is checked by its own tests.
NOT_GOLDEN = {"snapshot.sql"}


def compile_ok(segsql_cli: Invoke, project: Path, *args: str) -> None:
    result = segsql_cli(project, "compile", *args)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def compiled_mini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture project compiled once for all its targets (local, pg, bq)."""
    from typer.testing import CliRunner

    from segsql.cli import app

    root = copy_project(MINI_PROJECT, tmp_path_factory.mktemp("emit") / "mini")
    result = CliRunner().invoke(app, ["--project-dir", str(root), "compile", "--all-targets"])
    assert result.exit_code == 0, result.output
    return root


def _engine_folder(root: Path, engine: str) -> Path:
    targets = json.loads((root / "target" / "manifest.json").read_text())["targets"]
    names = [name for name, target_engine in targets.items() if target_engine == engine]
    assert len(names) == 1, targets
    return root / "target" / "compiled" / names[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_golden_sql(compiled_mini: Path, engine: str) -> None:
    actual = {
        rel: data
        for rel, data in read_tree(_engine_folder(compiled_mini, engine)).items()
        if rel not in NOT_GOLDEN
    }
    golden = GOLDEN / engine
    if UPDATE:
        _rewrite_golden(golden, actual)
    expected = read_tree(golden)
    assert sorted(actual) == sorted(expected), "files differ: set SEGSQL_UPDATE_GOLDEN=1 to rewrite"
    for rel, data in expected.items():
        assert actual[rel].decode() == data.decode(), f"{engine}/{rel} differs from the golden file"


def _rewrite_golden(golden: Path, files: dict[str, bytes]) -> None:
    for stale in set(read_tree(golden)) - set(files) if golden.exists() else ():
        (golden / stale).unlink()
    for rel, data in files.items():
        path = golden / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_golden_sql_is_what_each_engine_expects(compiled_mini: Path) -> None:
    """Names are qualified per target: schema.relation, or project.dataset.relation on BigQuery."""
    duckdb = (_engine_folder(compiled_mini, "duckdb") / "segments" / "active.sql").read_text()
    bigquery = (_engine_folder(compiled_mini, "bigquery") / "segments" / "active.sql").read_text()
    assert "FROM segments.customer_features" in duckdb
    assert "FROM `acme-prod`.segments.customer_features" in bigquery
    assert duckdb.startswith("-- segment: active (segments/core.yml:6)\n")


def test_compile_is_byte_identical_across_processes(mini_project: Path, segsql_cli: Invoke) -> None:
    # A separate process with another hash seed: set and dict orders must not leak into the SQL.
    env = {**os.environ, "PYTHONHASHSEED": "1"}
    command = [sys.executable, "-m", "segsql", "-p", str(mini_project), "compile", "-t", "bq"]
    subprocess.run(command, check=True, env=env, capture_output=True)
    first = read_tree(mini_project / "target", with_cache=False)
    compile_ok(segsql_cli, mini_project, "-t", "bq")
    second = read_tree(mini_project / "target", with_cache=False)
    assert sorted(second) == sorted(first)
    for rel, data in first.items():
        diff = difflib.unified_diff(
            data.decode().splitlines(), second[rel].decode().splitlines(), lineterm=""
        )
        assert second[rel] == data, f"{rel} differs between processes:\n" + "\n".join(diff)
    assert len(first) > 20


def test_deleted_segment_leaves_no_stale_file(mini_project: Path, segsql_cli: Invoke) -> None:
    compile_ok(segsql_cli, mini_project, "--target", "duckdb")
    stale = mini_project / "target" / "compiled" / "local" / "segments" / "never_ordered.sql"
    assert stale.is_file()
    definitions = mini_project / "segments" / "lifecycle.yml"
    lines = definitions.read_text().splitlines(keepends=True)
    definitions.write_text("".join(line for line in lines if "never_ordered" not in line))
    compile_ok(segsql_cli, mini_project, "--target", "duckdb")
    assert not stale.exists()
    assert (stale.parent / "busy_month.sql").is_file()
    manifest = json.loads((mini_project / "target" / "manifest.json").read_text())
    assert "never_ordered" not in manifest["segments"]
    # no staging or temp files left; the compile cache (target/.cache) is meant to stay
    leftovers = [p for p in (mini_project / "target").rglob("*") if p.name.startswith(".")]
    assert [
        p.relative_to(mini_project / "target") for p in leftovers if ".cache" not in p.parts
    ] == []


def test_select_writes_only_the_selected_files(mini_project: Path, segsql_cli: Invoke) -> None:
    compile_ok(segsql_cli, mini_project, "--target", "duckdb")
    folder = mini_project / "target" / "compiled" / "local" / "segments"
    before = read_tree(folder)
    definitions = mini_project / "segments" / "lifecycle.yml"
    text = definitions.read_text()
    text = text.replace("orders_30d >= 2", "orders_30d >= 3").replace(
        "avg_order_value >= 200", "avg_order_value >= 250"
    )
    definitions.write_text(text)
    compile_ok(segsql_cli, mini_project, "--target", "duckdb", "--select", "busy_month")
    after = read_tree(folder)
    assert sorted(after) == sorted(before)  # nothing deleted by a partial compile
    changed = {rel for rel in before if before[rel] != after[rel]}
    assert changed == {"busy_month.sql"}
    assert "orders_30d >= 3" in after["busy_month.sql"].decode()
    assert (
        "avg_order_value >= 200" in after["high_aov.sql"].decode()
    )  # not selected: kept as it was


def test_file_paths_compile_for_duckdb_only(mini_project: Path, segsql_cli: Invoke) -> None:
    """An entity read from a CSV path in place: fine on DuckDB, a spec error elsewhere."""
    definitions = mini_project / "segments" / "customers.yml"
    path_and_columns = (
        "    table: data/customers.csv\n"
        "    columns: [customer_id, country, plan, birth_date, signup_at]\n"
    )
    text = definitions.read_text().replace("    table: customers\n", path_and_columns)
    definitions.write_text(text)
    compile_ok(segsql_cli, mini_project, "--target", "duckdb")
    feature_sql = mini_project / "target" / "compiled" / "local" / "features" / "customer.sql"
    assert "READ_CSV_AUTO('data/customers.csv')" in feature_sql.read_text()
    for target in ("pg", "bigquery"):
        result = segsql_cli(mini_project, "compile", "--target", target)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("segments/customers.yml:10:5: error: entity 'customer'")
        assert "cannot read in place" in result.output
    assert not (mini_project / "target" / "compiled" / "pg").exists()


def test_source_tables_are_read_from_the_targets_source_schema(tmp_path: Path) -> None:
    """Tables named without a schema move to the target's source schema (BigQuery: dataset, and
    project when given); the relation's own CTEs and names written with a schema stay."""
    from sqlglot import exp

    from segsql.emit import feature_query, resolve_target
    from segsql.pipeline import compile_project

    root = copy_project(MINI_PROJECT, tmp_path / "mini")
    settings = root / "segsql.yml"
    text = settings.read_text(encoding="utf-8").replace(
        "dataset: segments}", "dataset: segments, source_dataset: other-project.raw}"
    )
    settings.write_text(
        text.replace("_DSN, schema: segments}", "_DSN, schema: segments, source_schema: raw}")
    )
    compiled = compile_project(root)
    entity = compiled.entities["customer"]
    ctes = {cte.alias for cte in entity.query.find_all(exp.CTE)}

    def sources(target_name: str, dialect: str) -> set[str]:
        query = feature_query(entity, resolve_target(compiled.project.config, target_name))
        return {t.sql(dialect) for t in query.find_all(exp.Table) if t.name not in ctes}

    assert sources("local", "duckdb") == {"customers", "orders", "events"}  # no source_schema
    assert sources("pg", "postgres") == {"raw.customers", "raw.orders", "raw.events"}
    assert sources("bq", "bigquery") == {
        "`other-project`.raw.customers",
        "`other-project`.raw.orders",
        "`other-project`.raw.events",
    }
    table = resolve_target(compiled.project.config, "pg").source("archive.orders")
    assert table.sql() == "archive.orders"  # named with a schema: as written
