"""Benchmark: backfilling N weekly snapshots vs N independent single-date runs (issue #7).

    python bench/snapshot_bench.py --customers 1000000 --weeks 52          # the example project
    python bench/snapshot_bench.py --customers 100000 --project toy        # 5-segment toy project

`--project example` (the default) copies the repository's own project (`segsql.yml`,
`segments/`, `macros/`: ~45 segments, ~30 features over customers, orders, events and accounts)
into a temporary folder whose seeds are bench/datagen.py's Parquet files (1M customers: ~10M
orders, ~20M events); the seeds are loaded into the DuckDB file once, before anything is timed.
`--project toy` is the earlier 5-segment project reading the Parquet files in place.

Four ways to record the same history, each into a fresh DuckDB file:
- backfill: one `segsql snapshot --from --to --every week` (project loaded once, one connection),
  which carries decomposable feature aggregates from date to date (segsql/history.py,
  `RunningAggregates`);
- backfill, per date: the same without sharing work across dates (`share_work=False`: every
  feature aggregated from the source rows on every date, what the backfill did before);
- independent, in process: N calls that each load the project, open the database and snapshot
  one date (what a scheduler calling the library each week does);
- independent, CLI: N `segsql snapshot --as-of D` processes (what a cron job does);
and checks that all histories are identical: the members of every (segment, as_of) in the log,
whatever the storage form. `--profile` also times every statement of the backfill (grouped by
kind) to show where a date's time goes.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from segsql.emit import resolve_target, to_sql
from segsql.history import Every, backfill, compiler_for, growth, snapshot_dates
from segsql.load import load_project
from segsql.run import DuckDBRunner, load_seeds

REPO = Path(__file__).resolve().parent.parent

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
    """The toy project: 5 segments over customers and orders, reading the Parquet files in place."""
    (folder / "segments").mkdir(parents=True, exist_ok=True)
    (folder / "segsql.yml").write_text(PROJECT)
    (folder / "segments" / "bench.yml").write_text(SEGMENTS)
    (folder / "data").symlink_to(data, target_is_directory=True)
    return folder


def copy_example_project(folder: Path, data: Path) -> Path:
    """The repository's example project (its segsql.yml, segments/ and macros/ as they are), with
    datagen's Parquet files as its seeds."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "segsql.yml", folder / "segsql.yml")
    for part in ("segments", "macros"):
        shutil.copytree(REPO / part, folder / part)
    (folder / "data").mkdir()
    for table in ("accounts", "customers", "orders", "events"):
        (folder / "data" / f"{table}.parquet").symlink_to(data / f"{table}.parquet")
    return folder


def make_example_project(folder: Path, data: Path) -> Path:
    """The example project (`copy_example_project`), its seeds loaded into its DuckDB file once
    (not timed)."""
    copy_example_project(folder, data)
    project = load_project(folder)
    runner = DuckDBRunner(resolve_target(project.config, None), folder)
    try:
        load_seeds(runner, project, only_missing=False)
        runner.connection.execute("CHECKPOINT")
    finally:
        runner.close()
    return folder


def database(project_dir: Path) -> Path:
    project = load_project(project_dir)
    path = resolve_target(project.config, None).config.path
    assert path, "the bench needs a DuckDB file target"
    return project_dir / path


HISTORY_OBJECTS = ("segment_members", "segment_history", "segment_snapshots")


def clear_history(project_dir: Path) -> None:
    """Drop the history objects (the seeds stay), so every method starts from no history."""
    with duckdb.connect(str(database(project_dir))) as con:
        for name in HISTORY_OBJECTS:
            kinds = con.execute(
                "SELECT table_type FROM information_schema.tables"
                " WHERE table_schema = 'segments' AND table_name = ?",
                [name],
            ).fetchall()
            if kinds:
                kind = "VIEW" if kinds[0][0] == "VIEW" else "TABLE"
                con.execute(f"DROP {kind} segments.{name}")
        con.execute("CHECKPOINT")


class ProfilingRunner(DuckDBRunner):
    """A DuckDB runner that times every statement, by kind (see `statement_kind`)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.seconds: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()

    def execute_all(self, statements: Any) -> None:
        sql = [to_sql(s, self.target) for s in statements]
        self.connection.execute("BEGIN TRANSACTION")
        try:
            for text in sql:
                started = time.perf_counter()
                self.connection.execute(text)
                kind = statement_kind(text)
                self.seconds[kind] += time.perf_counter() - started
                self.calls[kind] += 1
            started = time.perf_counter()
            self.connection.execute("COMMIT")
            self.seconds["COMMIT"] += time.perf_counter() - started
            self.calls["COMMIT"] += 1
        except Exception:
            self.connection.execute("ROLLBACK")
            raise

    def query(self, statement: Any) -> list[tuple[Any, ...]]:
        started = time.perf_counter()
        try:
            return super().query(statement)
        finally:
            self.seconds["query"] += time.perf_counter() - started
            self.calls["query"] += 1


def statement_kind(sql: str) -> str:
    """The statement's verb and the table it writes, scratch tables numbered N."""
    words = sql.replace("(", " ").split()
    verb = " ".join(words[:3] if words[:2] == ["CREATE", "TEMPORARY"] else words[:2])
    if verb.startswith("UPDATE"):
        verb = "UPDATE"
    target = next((w for w in words[1:6] if "segsql" in w or "segment" in w), "")
    target = re.sub(r"_\d+$", "_N", target)
    return f"{verb} {target}".strip()


def fresh_runner(project_dir: Path, profile: bool = False) -> tuple[DuckDBRunner, object]:
    clear_history(project_dir)
    project = load_project(project_dir)
    kind = ProfilingRunner if profile else DuckDBRunner
    runner = kind(resolve_target(project.config, None), project_dir)
    return runner, project


def run_backfill(
    project_dir: Path, dates: list[dt.date], share_work: bool = True, profile: bool = False
) -> float:
    runner, project = fresh_runner(project_dir, profile)
    start = time.perf_counter()
    try:
        compile_at = compiler_for(project, {}, runner)  # type: ignore[arg-type]
        backfill(runner, compile_at, dates, None, share_work=share_work)
    finally:
        runner.close()
    seconds = time.perf_counter() - start
    if isinstance(runner, ProfilingRunner):
        print_profile(runner, seconds, len(dates))
        print(f"  segsql growth over every segment and date: {time_growth(project_dir):.2f} s")
    return seconds


def time_growth(project_dir: Path) -> float:
    """Seconds of `segsql growth` (the growth query over every segment and date)."""
    project = load_project(project_dir)
    runner = DuckDBRunner(resolve_target(project.config, None), project_dir)
    try:
        names = [
            str(s)
            for (s,) in runner.connection.execute(
                "SELECT DISTINCT segment FROM segments.segment_snapshots"
            ).fetchall()
        ]
        start = time.perf_counter()
        growth(runner, names, None, None)
        return time.perf_counter() - start
    finally:
        runner.close()


def print_profile(runner: ProfilingRunner, seconds: float, dates: int) -> None:
    sql = sum(runner.seconds.values())
    print(f"  profile of the backfill: {seconds:.2f} s, {sql:.2f} s in SQL, per date:")
    for kind, spent in runner.seconds.most_common():
        print(f"    {spent / dates:7.3f} s  {runner.calls[kind] / dates:5.1f}x  {kind}")
    print(f"    {(seconds - sql) / dates:7.3f} s         Python (build, print, plan)")


def run_independent(project_dir: Path, dates: list[dt.date]) -> float:
    clear_history(project_dir)
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
    clear_history(project_dir)
    segsql = [sys.executable, "-m", "segsql", "--project-dir", str(project_dir), "snapshot"]
    start = time.perf_counter()
    for day in dates:
        subprocess.run([*segsql, "--as-of", day.isoformat()], check=True, capture_output=True)
    return time.perf_counter() - start


@dataclass(frozen=True)
class Recorded:
    """What a method recorded: members per (segment, as_of), and the history table's size."""

    members: int  # (segment, key, as_of) memberships, i.e. sum of the sizes
    checksum: int  # of the memberships, independent of how they are stored
    dates: int  # (segment, as_of) pairs in the log
    table_rows: int  # rows of segment_history as stored


def history(project_dir: Path) -> Recorded:
    """Every (segment, key, as_of) membership, read through the history's own reader."""
    with duckdb.connect(str(database(project_dir)), read_only=True) as con:
        names = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'segments'"
            ).fetchall()
        }
        relation = "segment_members" if "segment_members" in names else "segment_history"
        members, checksum = con.execute(
            f"SELECT count(*), sum(hash(segment, entity_key, as_of)) FROM segments.{relation}"
        ).fetchone()
        (logged,) = con.execute("SELECT count(*) FROM segments.segment_snapshots").fetchone()
        (stored,) = con.execute("SELECT count(*) FROM segments.segment_history").fetchone()
    return Recorded(int(members), int(checksum or 0), int(logged), int(stored))


def print_timings(timings: dict[str, float], dates: int) -> None:
    """Each method's time, per date, and its ratio to the backfill's."""
    for name, seconds in timings.items():
        ratio = seconds / timings["backfill"]
        print(f"{name:30s} {seconds:8.2f} s  {seconds / dates:6.3f} s/date  {ratio:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", choices=["example", "toy"], default="example")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders-per-customer", type=int, default=10, help="toy generator only")
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--data", type=Path, help="reuse generated data from this folder")
    parser.add_argument("--skip-cli", action="store_true", help="skip the N-processes run")
    parser.add_argument("--skip-per-date", action="store_true", help="skip share_work=False")
    parser.add_argument("--only-backfill", action="store_true", help="time the backfill only")
    parser.add_argument("--profile", action="store_true", help="time each statement kind")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="segsql-snapshot-bench-"))
    try:
        data = args.data or work / "data"
        source = "given" if args.data else generate(data, args.customers, args.orders_per_customer)
        make = make_example_project if args.project == "example" else make_project
        project_dir = make(work / "project", data.resolve())
        dates = snapshot_dates(LAST - dt.timedelta(weeks=args.weeks - 1), LAST, Every.week)
        print(
            f"{args.project} project; data: {source}; {len(dates)} weekly dates {dates[0]} .. {dates[-1]}"
        )
        timings = {"backfill": run_backfill(project_dir, dates, profile=args.profile)}
        reference = history(project_dir)
        print(
            f"history: {reference.members:,} memberships over {reference.dates:,} (segment, date)"
            f" pairs, stored as {reference.table_rows:,} rows of segment_history"
        )
        checks = []
        if not args.skip_per_date and not args.only_backfill:
            timings["backfill, per date"] = run_backfill(project_dir, dates, share_work=False)
            checks.append(("the per-date backfill", history(project_dir)))
        if not args.only_backfill:
            timings["independent (in process)"] = run_independent(project_dir, dates)
            checks.append(("independent runs", history(project_dir)))
        if not args.skip_cli and not args.only_backfill:
            timings["independent (CLI processes)"] = run_cli(project_dir, dates)
            checks.append(("CLI runs", history(project_dir)))
        for who, recorded in checks:
            same = (recorded.members, recorded.checksum, recorded.dates)
            assert same == (reference.members, reference.checksum, reference.dates), (
                f"{who} recorded another history: {recorded} vs {reference}"
            )
        print("memberships identical for every method")
        print_timings(timings, len(dates))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
