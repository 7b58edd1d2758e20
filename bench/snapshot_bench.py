"""Benchmark: backfilling N weekly snapshots vs N independent single-date runs (issue #7).

    python bench/snapshot_bench.py --customers 1000000 --orders-per-customer 10 --weeks 52

Data comes from bench/datagen.py when it exists (`--customers N --out DIR --format parquet`),
otherwise from a small built-in DuckDB generator. The project reads the Parquet files in place.

Four ways to record the same history, each into a fresh DuckDB file:
- backfill: one `segsql snapshot --from --to --every week` (project loaded once, one connection),
  which carries decomposable feature aggregates from date to date (segsql/history.py,
  `RunningAggregates`);
- backfill, per date: the same without sharing work across dates (`share_work=False`: every
  feature aggregated from the source rows on every date, what the backfill did before);
- independent, in process: N calls that each load the project, open the database and snapshot
  one date (what a scheduler calling the library each week does);
- independent, CLI: N `segsql snapshot --as-of D` processes (what a cron job does);
and checks that all histories are identical.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from segsql.emit import resolve_target
from segsql.history import Every, backfill, compiler_for, snapshot_dates
from segsql.load import load_project
from segsql.run import DuckDBRunner

ROOT = Path(__file__).resolve().parent
LAST = dt.date(2024, 6, 30)  # the example project's as_of; datagen.py data ends 2024-07-31

PROJECT = """name: bench
dialect: duckdb
vars: {as_of: "2024-06-30"}
targets:
  local: {engine: duckdb, path: bench.duckdb, schema: segments}
default_target: local
"""

SEGMENTS = """
tables:
  - name: customers
    table: data/customers.parquet
  - name: orders
    table: data/orders.parquet
entities:
  - name: customer
    table: customers
    key: customer_id
    time: signup_at
    columns: [customer_id, country, signup_at]
    features:
      - name: orders_90d
        from: {table: orders, key: customer_id, time: ordered_at}
        expr: count(*)
        window: 90 days
        default: 0
      - name: lifetime_revenue
        from: {table: orders, key: customer_id, time: ordered_at}
        expr: sum(amount)
        default: 0
      - name: orders_total
        from: {table: orders, key: customer_id, time: ordered_at}
        expr: count(*)
        default: 0
segments:
  - {name: new, entity: customer, kind: lifecycle, where: "orders_total = 0"}
  - {name: active, entity: customer, kind: lifecycle, where: "orders_90d > 0"}
  - {name: lapsed, entity: customer, kind: lifecycle, where: ["orders_total > 0", "orders_90d = 0"]}
  - {name: vip, parent: active, kind: value, where: "lifetime_revenue >= 1000"}
  - {name: eu_active, parent: active, kind: geographic, where: "country in ('DE', 'FR', 'ES')"}
"""


def generate(data: Path, customers: int, per_customer: int) -> str:
    datagen = ROOT / "datagen.py"
    if datagen.exists():
        command = [sys.executable, str(datagen), "--customers", str(customers)]
        subprocess.run([*command, "--out", str(data), "--format", "parquet"], check=True)
        if (data / "customers.parquet").exists() and (data / "orders.parquet").exists():
            return "bench/datagen.py"
    builtin_generate(data, customers, customers * per_customer)
    return "built-in generator"


def builtin_generate(data: Path, customers: int, orders: int) -> None:
    """Customers signing up over 2022-2024, orders spread over 2023-2024."""
    data.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        con.execute(
            f"""COPY (SELECT i AS customer_id, ['DE','US','FR','ES','GB'][1 + i % 5] AS country,
                TIMESTAMP '2022-01-01' + to_days(CAST(hash(i) % 1090 AS INTEGER)) AS signup_at
                FROM range({customers}) t(i)) TO '{data / "customers.parquet"}' (FORMAT parquet)"""
        )
        con.execute(
            f"""COPY (SELECT i AS order_id, CAST(hash(i * 7) % {customers} AS BIGINT) AS customer_id,
                TIMESTAMP '2023-01-01' + to_seconds(CAST(hash(i * 13) % (730 * 86400) AS BIGINT)) AS ordered_at,
                CAST((hash(i) % 40000) / 100.0 AS DECIMAL(12, 2)) AS amount
                FROM range({orders}) t(i)) TO '{data / "orders.parquet"}' (FORMAT parquet)"""
        )


def make_project(folder: Path, data: Path) -> Path:
    (folder / "segments").mkdir(parents=True, exist_ok=True)
    (folder / "segsql.yml").write_text(PROJECT)
    (folder / "segments" / "bench.yml").write_text(SEGMENTS)
    (folder / "data").symlink_to(data, target_is_directory=True)
    return folder


def fresh_runner(project_dir: Path) -> tuple[DuckDBRunner, object]:
    (project_dir / "bench.duckdb").unlink(missing_ok=True)
    project = load_project(project_dir)
    runner = DuckDBRunner(resolve_target(project.config, None), project_dir)
    return runner, project


def run_backfill(project_dir: Path, dates: list[dt.date], share_work: bool = True) -> float:
    runner, project = fresh_runner(project_dir)
    start = time.perf_counter()
    try:
        compile_at = compiler_for(project, {}, runner)  # type: ignore[arg-type]
        backfill(runner, compile_at, dates, None, share_work=share_work)
    finally:
        runner.close()
    return time.perf_counter() - start


def run_independent(project_dir: Path, dates: list[dt.date]) -> float:
    (project_dir / "bench.duckdb").unlink(missing_ok=True)
    start = time.perf_counter()
    for day in dates:
        project = load_project(project_dir)
        runner = DuckDBRunner(resolve_target(project.config, None), project_dir)
        try:
            backfill(runner, compiler_for(project, {}, runner), [day], None)
        finally:
            runner.close()
    return time.perf_counter() - start


def run_cli(project_dir: Path, dates: list[dt.date]) -> float:
    (project_dir / "bench.duckdb").unlink(missing_ok=True)
    segsql = [sys.executable, "-m", "segsql", "--project-dir", str(project_dir), "snapshot"]
    start = time.perf_counter()
    for day in dates:
        subprocess.run([*segsql, "--as-of", day.isoformat()], check=True, capture_output=True)
    return time.perf_counter() - start


def history(project_dir: Path) -> tuple[int, int]:
    """(rows, checksum) of the recorded history, to check every method recorded the same."""
    with duckdb.connect(str(project_dir / "bench.duckdb"), read_only=True) as con:
        rows, checksum = con.execute(
            "SELECT count(*), sum(hash(segment, entity_key, as_of)) FROM segments.segment_history"
        ).fetchone()
    return int(rows), int(checksum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders-per-customer", type=int, default=10)
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--data", type=Path, help="reuse generated data from this folder")
    parser.add_argument("--skip-cli", action="store_true", help="skip the N-processes run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="segsql-snapshot-bench-"))
    try:
        data = args.data or work / "data"
        source = "given" if args.data else generate(data, args.customers, args.orders_per_customer)
        project_dir = make_project(work / "project", data.resolve())
        dates = snapshot_dates(LAST - dt.timedelta(weeks=args.weeks - 1), LAST, Every.week)
        print(f"data: {source}; {len(dates)} weekly dates {dates[0]} .. {dates[-1]}")
        timings = {"backfill": run_backfill(project_dir, dates)}
        reference = history(project_dir)
        timings["backfill, per date"] = run_backfill(project_dir, dates, share_work=False)
        assert history(project_dir) == reference, "the per-date backfill recorded another history"
        timings["independent (in process)"] = run_independent(project_dir, dates)
        assert history(project_dir) == reference, "independent runs recorded another history"
        if not args.skip_cli:
            timings["independent (CLI processes)"] = run_cli(project_dir, dates)
            assert history(project_dir) == reference, "CLI runs recorded another history"
        print(f"history rows: {reference[0]:,} (identical for every method)")
        for name, seconds in timings.items():
            ratio = seconds / timings["backfill"]
            print(f"{name:30s} {seconds:8.2f} s  {seconds / len(dates):6.3f} s/date  {ratio:5.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
