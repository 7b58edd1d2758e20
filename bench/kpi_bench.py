"""Benchmark: KPIs for 50 segments, naive (one query per segment) vs one pass vs the feature floor.

    python bench/kpi_bench.py --customers 1000000            # ~10M orders, ~20M events
    python bench/kpi_bench.py --customers 100000 --memory-limit 1GB

Generates the synthetic shop (bench/datagen.py, Parquet) into a temporary DuckDB project whose
customer entity has the features the standard KPI pack reads, 50 segments (nested, exclusive
groups, set operations) and `kpis: [standard]`, then times on DuckDB (memory_limit set):
(a) naive: one query per segment, each computing the features and that segment's KPIs;
(b) the one-pass query of `segsql kpis` (segsql.kpis.kpi_query) for the same 50 segments, in
    DuckDB's shape ("union" over the materialized features) and, for comparison, in BigQuery's
    ("unnest": rows fanned out to their segment ids);
(c) the floor: one scan computing the same features and the whole-entity KPIs, no segment logic.
It checks (a) and (b) agree on every number, prints (a)/(b), (b)/(c) and the peak memory (of the
process loading the seeds and running the queries, and of the data generator), and writes
bench/out/kpi_bench.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
COUNTRIES = [
    "US",
    "GB",
    "DE",
    "FR",
    "CA",
    "AU",
    "NL",
    "ES",
    "IT",
    "SE",
    "BR",
    "MX",
    "IN",
    "JP",
    "PL",
]
PLANS = ["free", "basic", "pro", "enterprise"]
ORDERS = "{table: orders, key: customer_id, time: ordered_at}"
EVENTS = "{table: events, key: customer_id, time: occurred_at}"
FEATURES = [
    f"{{name: order_count, from: {ORDERS}, expr: count(*), default: 0}}",
    f"{{name: lifetime_revenue, from: {ORDERS}, expr: sum(amount), default: 0}}",
    f"{{name: period_revenue, from: {ORDERS}, expr: sum(amount), window: 30 days, default: 0}}",
    f"{{name: orders_30d, from: {ORDERS}, expr: count(*), window: 30 days, default: 0}}",
    f"{{name: orders_60d, from: {ORDERS}, expr: count(*), window: 60 days, default: 0}}",
    f"{{name: active_days, from: {EVENTS}, expr: count(distinct cast(occurred_at as date)), window: 30 days, default: 0}}",
    "{name: sessions, from: {table: events, key: customer_id, time: occurred_at, where: \"event_type = 'session_start'\"}, expr: count(*), window: 30 days, default: 0}",
    "{name: active_now, expr: orders_30d > 0}",
    "{name: active_before, expr: orders_60d - orders_30d > 0}",
]


def segments() -> list[str]:
    """50 segments: two roots, a country split under each (exclusive), plans, devices, tiers..."""
    lines = [
        "{name: buyers, entity: customer, where: order_count > 0}",
        "{name: active, entity: customer, where: active_now}",
    ]
    for c in COUNTRIES:
        lines.append(
            f"{{name: buyers_{c.lower()}, parent: buyers, where: \"country = '{c}'\", exclusive: buyer_country}}"
        )
        lines.append(
            f"{{name: active_{c.lower()}, parent: active, where: \"country = '{c}'\", exclusive: active_country}}"
        )
    for p in PLANS:
        lines.append(
            f"{{name: active_{p}, parent: active, where: \"plan = '{p}'\", exclusive: plan}}"
        )
    for d in ("ios", "android", "web"):
        lines.append(f"{{name: device_{d}, entity: customer, where: \"device = '{d}'\"}}")
    for s in ("bargain", "value", "premium"):
        lines.append(f"{{name: price_{s}, entity: customer, where: \"price_sensitivity = '{s}'\"}}")
    lines += [
        "{name: spent_100, parent: buyers, where: lifetime_revenue >= 100}",
        "{name: spent_500, parent: spent_100, where: lifetime_revenue >= 500}",
        "{name: spent_2000, parent: spent_500, where: lifetime_revenue >= 2000}",
        "{name: churned, entity: customer, where: active_before and not active_now}",
        "{name: opted_in, entity: customer, where: marketing_opt_in}",
        "{name: frequent, parent: buyers, where: order_count >= 10}",
        "{name: one_timers, parent: buyers, where: order_count = 1}",
        "{name: engaged_not_buying, entity: customer, where: sessions >= 3, exclude: [active]}",
    ]
    assert len(lines) == 50, len(lines)
    return lines


def write_project(root: Path, customers: int) -> None:
    (root / "segments").mkdir(parents=True)
    command = [sys.executable, str(HERE / "datagen.py"), "--customers", str(customers)]
    command += ["--out", str(root / "data"), "--format", "parquet"]
    subprocess.run(command, check=True, capture_output=True)
    (root / "data" / "accounts.parquet").unlink(missing_ok=True)
    (root / "segsql.yml").write_text(
        "name: kpi_bench\nvars: {as_of: '2024-06-30'}\nseeds: data\n"
        "targets: {local: {engine: duckdb, path: bench.duckdb, schema: segments}}\n"
    )
    lines = ["entities:", "  - name: customer", "    table: customers", "    key: customer_id"]
    lines += ["    features:", *(f"      - {f}" for f in FEATURES), "segments:"]
    lines += [f"  - {s}" for s in segments()]
    lines += ["kpis: [standard]"]
    (root / "segments" / "bench.yml").write_text("\n".join(lines) + "\n")


def timed(step: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = step()
        best = min(best, time.perf_counter() - started)
    return best, result


def measure(root: Path, repeat: int, memory_limit: str, threads: int) -> dict[str, Any]:

    from segsql.emit import resolve_target, to_sql
    from segsql.kpis import KpiPlan, Shape, build_kpis, kpi_query, plan_kpis, result_columns
    from segsql.load import load_project
    from segsql.pipeline import compile_project
    from segsql.run import DuckDBRunner, load_seeds

    project = load_project(root)
    target = resolve_target(project.config, None)
    runner = DuckDBRunner(target, root)
    # limits first: loading the seeds is bounded too, so the process's peak memory means something
    runner.connection.execute(f"SET memory_limit = '{memory_limit}'")
    runner.connection.execute(f"SET threads = {threads}")
    load_seeds(runner, project, only_missing=True)
    compiled = compile_project(root, introspect=runner.table_columns)
    names = list(compiled.segments)
    [plan] = plan_kpis(compiled, names, build_kpis(compiled))

    def sql(single: KpiPlan, shape: Shape | None = None) -> tuple[str, tuple[str, ...]]:
        return to_sql(kpi_query(compiled, single, target, shape), target), result_columns(single)

    def rows(prepared: list[tuple[str, tuple[str, ...]]]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for text, columns in prepared:
            for row in runner.connection.execute(text).fetchall():
                found[row[1]] = dict(zip(columns, row, strict=True))
        return found

    # SQL is generated before timing: the engine's work is measured, not sqlglot's.
    together_sql = [sql(plan)]  # DuckDB's shape: "union" over the materialized features
    unnest_sql = [sql(plan, "unnest")]  # BigQuery's shape, measured here for comparison
    # (a) one query per segment: the same KPIs restricted to that segment (and its parent, for
    # the lift), features recomputed each time, as a report per segment would
    separate_sql = []
    for name in names:
        parent = compiled.segments[name].definition.parent
        computed = (parent.name, name) if parent else (name,)
        separate_sql.append(sql(KpiPlan(plan.entity, (name,), computed, plan.kpis)))
    # (c) the features and the whole-entity KPIs only: no segment logic at all
    floor_sql = [sql(KpiPlan(plan.entity, (), (), plan.kpis))]

    seconds: dict[str, float] = {}
    seconds["c_floor"], base = timed(lambda: rows(floor_sql), repeat)
    seconds["b_one_pass"], together = timed(lambda: rows(together_sql), repeat)
    seconds["b_one_pass_unnest_shape"], fanned_out = timed(lambda: rows(unnest_sql), repeat)
    seconds["a_naive"], separate = timed(lambda: rows(separate_sql), 1)
    runner.close()
    mismatched = [n for n in names if not together[n] == separate[n] == fanned_out[n]]
    assert together["(all)"] == base["(all)"]
    return {
        "segments": len(names),
        "kpis": len(plan.kpis),
        "seconds": {k: round(v, 3) for k, v in sorted(seconds.items())},
        "naive_over_one_pass": round(seconds["a_naive"] / seconds["b_one_pass"], 1),
        "one_pass_over_floor": round(seconds["b_one_pass"] / seconds["c_floor"], 2),
        "mismatched_segments": mismatched,
        "baseline_size": together["(all)"]["size"],
        "peak_memory_mb": peak_memory_mb(resource.RUSAGE_SELF),
    }


def peak_memory_mb(who: int) -> float:
    """Peak resident set size (Linux reports ru_maxrss in KiB): of this process, which loads the
    seeds and runs every query, or the largest of its finished children (the data generator)."""
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of (b) and (c); best kept")
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="segsql-kpi-bench-") as tmp:
        root = Path(tmp) / "project"
        started = time.perf_counter()
        write_project(root, args.customers)
        generated = time.perf_counter() - started
        report = measure(root, args.repeat, args.memory_limit, args.threads)
    report.update(
        datagen_peak_memory_mb=peak_memory_mb(resource.RUSAGE_CHILDREN),
        customers=args.customers,
        memory_limit=args.memory_limit,
        threads=args.threads,
        data_seconds=round(generated, 1),
        python=platform.python_version(),
    )
    print(f"{args.customers:,} customers, {report['segments']} segments, {report['kpis']} KPIs")
    for name, value in report["seconds"].items():
        print(f"  {name:<12} {value:8.3f} s")
    print(
        f"  (a)/(b) = {report['naive_over_one_pass']}x   (b)/(c) = {report['one_pass_over_floor']}x"
    )
    print(
        f"  segments whose numbers differ between (a), (b) and unnest: {report['mismatched_segments']}"
    )
    print(
        f"  peak memory: {report['peak_memory_mb']:,} MB (seeds + queries, memory_limit "
        f"{args.memory_limit}), data generator {report['datagen_peak_memory_mb']:,} MB"
    )
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "kpi_bench.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
