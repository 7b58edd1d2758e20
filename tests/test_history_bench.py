"""bench/snapshot_bench.py on a tiny copy of the example project (not timed): what it measures
is the real example project, and its methods record the same memberships."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from conftest import load_bench

bench = load_bench("snapshot_bench")


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
