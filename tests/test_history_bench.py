"""bench/snapshot_bench.py and bench/snapshot_pg_bench.py on a tiny copy of the example project
(not timed): what they measure is the real example project, and their methods record the same
memberships."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from conftest import load_bench

bench = load_bench("snapshot_bench")

pytest_plugins = ["pg_server"]  # the `pg_database` fixture: a fresh database on a real server


def test_example_project_backfill_equals_independent_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert bench.generate(data, 1500, 10) == "bench/datagen.py"
    root = bench.make_example_project(tmp_path / "project", data)
    assert len(list((root / "segments").glob("*.yml"))) >= 10  # the repository's own project
    dates = [dt.date(2024, 6, 16), dt.date(2024, 6, 23), dt.date(2024, 6, 30)]
    bench.run_backfill(root, dates)
    shared = bench.history(root)
    assert shared.dates > 0 and shared.members > shared.table_rows > 0  # intervals: fewer rows
    bench.run_independent(root, dates)
    assert bench.history(root) == shared


def test_postgres_backfill_equals_independent_runs(tmp_path: Path, pg_database: str) -> None:
    # loaded here, not on import: it imports tests/pg_server.py, which pytest loads first as a
    # plugin (so that its asserts are rewritten)
    pg_bench = load_bench("snapshot_pg_bench")
    data = tmp_path / "data"
    bench.generate(data, 1500, 10)
    root = pg_bench.copy_example_project(tmp_path / "project", data)
    pg_bench.seed(root, pg_database)
    dates = [dt.date(2024, 6, 16), dt.date(2024, 6, 23), dt.date(2024, 6, 30)]
    pg_bench.run_backfill(root, pg_database, dates, share_work=True)
    shared = pg_bench.memberships(pg_database)
    assert shared[0] > 0
    pg_bench.run_independent(root, pg_database, dates)
    assert pg_bench.memberships(pg_database) == shared
    pg_bench.run_backfill(root, pg_database, dates, share_work=False)
    assert pg_bench.memberships(pg_database) == shared
