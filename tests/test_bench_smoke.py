"""The compile benchmark's project generator, on a tiny project (not timed).

bench/compile_bench.py measures `segsql compile --all-targets` on a generated project; these tests
check that what it measures is a valid project doing the real work: it validates, compiles for
the three targets, its deploy script runs on DuckDB, nesting and edits behave as the benchmark
assumes, and the parallel emit path gives byte-identical output.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from conftest import load_bench
from typer.testing import CliRunner

from segsql import pipeline
from segsql.cli import app
from segsql.emit import all_targets, target_files
from segsql.pipeline import compile_project, emit_targets
from segsql.select import select_segments

SEGMENTS = 30


bench = load_bench("compile_bench")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench") / "project"
    bench.generate_project(root, SEGMENTS)
    return root


def _compile(root: Path) -> None:
    result = CliRunner().invoke(app, ["--project-dir", str(root), "compile", "--all-targets"])
    assert result.exit_code == 0, result.output


def test_generation_is_deterministic(project: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    bench.generate_project(again, SEGMENTS)
    files = sorted(p.relative_to(project) for p in project.rglob("*.yml"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.yml"))
    for rel in files:
        assert (project / rel).read_bytes() == (again / rel).read_bytes()


def test_project_validates_and_compiles_for_three_targets(project: Path) -> None:
    result = CliRunner().invoke(app, ["--project-dir", str(project), "validate"])
    assert result.exit_code == 0, result.output
    assert f"{SEGMENTS} segments, 2 entities, 9 features" in result.output
    _compile(project)
    for target in ("local", "pg", "bq"):
        compiled = project / "target" / "compiled" / target
        assert len(list((compiled / "segments").glob("*.sql"))) == SEGMENTS
        assert (compiled / "deploy.sql").is_file()
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    depths = [s["depth"] for s in manifest["segments"].values()]
    assert max(depths) <= bench.MAX_DEPTH and max(depths) >= 3  # really nested
    macros = {m for s in manifest["segments"].values() for m in s["macros"]}
    assert macros & {"days_since", "is_region", "recent"}  # macros really used


def test_deploy_script_runs_on_duckdb(project: Path, tmp_path: Path) -> None:
    """Every generated segment binds against the declared columns (empty tables, real engine)."""
    _compile(project)
    connection = duckdb.connect(str(tmp_path / "bench.duckdb"))
    connection.execute(
        "CREATE TABLE customers (customer_id BIGINT, country VARCHAR, birth_date DATE,"
        " signup_at TIMESTAMP, plan VARCHAR, device VARCHAR);"
        "CREATE TABLE orders (order_id BIGINT, customer_id BIGINT, ordered_at TIMESTAMP,"
        " amount DECIMAL(12,2), channel VARCHAR);"
        "CREATE TABLE events (event_id BIGINT, customer_id BIGINT, occurred_at TIMESTAMP,"
        " kind VARCHAR);"
        "CREATE TABLE accounts (account_id BIGINT, industry VARCHAR, employees INTEGER,"
        " created_at TIMESTAMP, region VARCHAR);"
        "CREATE TABLE invoices (invoice_id BIGINT, account_id BIGINT, issued_at TIMESTAMP,"
        " amount DECIMAL(12,2));"
    )
    connection.execute((project / "target/compiled/local/deploy.sql").read_text())
    views = connection.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'segments'"
    ).fetchall()
    assert {name for (name,) in views} >= {f"seg_{i:05d}" for i in range(SEGMENTS)}
    assert connection.execute("SELECT count(*) FROM segments.seg_00010").fetchone() == (0,)


def test_changing_one_segment_changes_it_and_its_descendants_only(
    project: Path, tmp_path: Path
) -> None:
    root = tmp_path / "edited"
    bench.generate_project(root, SEGMENTS)
    _compile(root)
    before = _segment_files(root)
    name, affected = bench.segment_to_change(root)
    bench.change_segment(root, name)
    _compile(root)
    after = _segment_files(root)
    changed = {n for n in before if before[n] != after[n]}
    assert name in changed and len(changed) == affected
    assert "1 = 1" in after[name]


def test_the_example_project_is_measured_with_an_edit_of_a_one_line_where(
    example_project: Path,
) -> None:
    """The benchmark also measures the example project (it has KPIs): its edit is a `where`
    written on one line, and reaches the segment's children and kpis.sql."""
    _compile(example_project)
    kpis = example_project / "target" / "compiled" / "local" / "kpis.sql"
    before, kpis_before = _segment_files(example_project), kpis.read_text()
    bench.change_segment(example_project, bench.EXAMPLE_EDITED)
    bench.change_segment(example_project, bench.EXAMPLE_EDITED)  # the watch edits again and again
    _compile(example_project)
    after = _segment_files(example_project)
    changed = {n for n in before if before[n] != after[n]}
    assert {bench.EXAMPLE_EDITED, "vip_active"} <= changed < set(before)
    assert after[bench.EXAMPLE_EDITED].count("1 = 1") == 2
    assert kpis.read_text().count("1 = 1") > kpis_before.count("1 = 1")


def _segment_files(root: Path) -> dict[str, str]:
    folder = root / "target" / "compiled" / "pg" / "segments"
    # The header names the definition hash; compare the SQL below it.
    return {p.stem: p.read_text().split("\nSELECT", 1)[1] for p in folder.glob("*.sql")}


def test_parallel_emit_is_byte_identical(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = compile_project(project)
    targets = all_targets(compiled.project.config)
    names = select_segments(compiled, None)
    sequential = {t.name: target_files(compiled, t, names) for t in targets}
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_SEGMENTS", 1)
    assert emit_targets(compiled, targets, names) == sequential


def test_naive_floor_generates_sql_for_every_segment(project: Path) -> None:
    assert bench.naive_floor(project) > SEGMENTS * 3 * len("SELECT DISTINCT")


def test_a_user_error_in_a_parallel_worker_is_reported_as_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Postgres cannot read a CSV path in place: found while emitting, in a worker process."""
    root = tmp_path / "file_entity"
    bench.generate_project(root, SEGMENTS)
    entities = root / "segments" / "_entities.yml"
    text = entities.read_text()
    declared = "    table: customers\n    key: customer_id\n"
    assert declared in text
    entities.write_text(
        text.replace(
            declared,
            "    table: data/customers.csv\n    key: customer_id\n"
            "    columns: [customer_id, country, birth_date, signup_at, plan, device]\n",
        )
    )
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_SEGMENTS", 1)
    result = CliRunner().invoke(app, ["--project-dir", str(root), "compile", "--all-targets"])
    assert result.exit_code == 2, result.output
    assert "cannot read in place" in result.output
    assert "Traceback" not in result.output
    assert not (root / "target").exists()
