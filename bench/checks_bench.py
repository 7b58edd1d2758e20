"""Benchmark: `segsql test` data tests and invariants, one query per entity vs one per check.

    python bench/checks_bench.py                   # 200,000 customers (~2M orders)
    python bench/checks_bench.py --customers 20000 --repeat 1

Generates the synthetic shop (bench/datagen.py) into a temporary DuckDB project with 22
segments: `active`, one child per country (15, one exclusive group), one per plan (4, a second
exclusive group), a union and an exclude; each declares `not_empty` and `max_share_of_parent`.
That is ~150 checks (sizes, subset / set-algebra invariants, 111 exclusive pairs). It times
`segsql.testing.run_checks` (all checks of the entity counted in one query) against running the
same checks one query each, both inline (feature relation computed in the query, as `segsql test`
does by default), and checks both give the same counts. Prints a table and writes
`bench/out/checks_bench.json`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def write_project(root: Path, customers: int) -> None:
    (root / "segments").mkdir(parents=True)
    subprocess.run(
        [
            sys.executable,
            str(HERE / "datagen.py"),
            "--customers",
            str(customers),
            "--out",
            str(root / "data"),
            "--format",
            "parquet",
        ],
        check=True,
        capture_output=True,
    )
    for extra in ("accounts", "events"):
        (root / "data" / f"{extra}.parquet").unlink(missing_ok=True)
    (root / "segsql.yml").write_text(
        "name: bench\nvars: {as_of: '2024-06-30'}\nseeds: data\n"
        "targets: {local: {engine: duckdb, path: bench.duckdb, schema: segments}}\n"
    )
    lines = [
        "entities:",
        "  - name: customer",
        "    table: customers",
        "    key: customer_id",
        "    features:",
        "      - {name: orders_90d, from: {table: orders, key: customer_id, time: ordered_at}, expr: count(*), window: 90 days, default: 0}",
        "      - {name: revenue, from: {table: orders, key: customer_id, time: ordered_at}, expr: sum(amount), default: 0}",
        "segments:",
        "  - {name: active, entity: customer, where: orders_90d > 0, tests: [not_empty]}",
    ]
    tests = "[not_empty, {max_share_of_parent: 0.9}]"
    for country in COUNTRIES:
        lines.append(
            f"  - {{name: active_{country.lower()}, parent: active, where: \"country = '{country}'\", exclusive: country, tests: {tests}}}"
        )
    for plan in PLANS:
        lines.append(
            f"  - {{name: active_{plan}, parent: active, where: \"plan = '{plan}'\", exclusive: plan, tests: {tests}}}"
        )
    lines.append(
        "  - {name: active_paying, union: [active_basic, active_pro, active_enterprise], tests: [not_empty]}"
    )
    lines.append(
        "  - {name: active_free_outside_us, parent: active_free, exclude: [active_us], tests: "
        + tests
        + "}"
    )
    (root / "segments" / "bench.yml").write_text("\n".join(lines) + "\n")


def measure(root: Path, repeat: int) -> dict[str, object]:
    from segsql.emit import resolve_target
    from segsql.load import load_project
    from segsql.pipeline import compile_project
    from segsql.run import DuckDBRunner, load_seeds
    from segsql.testing import EntityChecks, count_query, plan_checks, run_checks, with_members

    project = load_project(root)
    runner = DuckDBRunner(resolve_target(project.config, None), root)
    load_seeds(runner, project, only_missing=True)
    compiled = compile_project(root, introspect=runner.table_columns)
    names = list(compiled.segments)
    [plan] = plan_checks(compiled, names).values()

    def one_query() -> dict[str, bool]:
        return {f"{r.segment}:{r.name}": r.passed for r in run_checks(runner, compiled, names)}

    def per_check() -> dict[str, int]:
        counts: dict[str, int] = {}
        for check in plan.checks:
            single = EntityChecks(plan.entity, plan.segments, [check])
            query = with_members(count_query(single)[0], compiled, single, runner.target, False)
            for check_id, n in runner.query(query):
                counts[str(check_id)] = int(str(n))
        return counts

    timings: dict[str, list[float]] = {"one_query_per_entity": [], "one_query_per_check": []}
    for _ in range(repeat):
        started = time.perf_counter()
        results = one_query()
        timings["one_query_per_entity"].append(time.perf_counter() - started)
        started = time.perf_counter()
        separate = per_check()
        timings["one_query_per_check"].append(time.perf_counter() - started)
    runner.close()
    failed = sorted(k for k, ok in results.items() if not ok)
    return {
        "segments": len(names),
        "checks": len(plan.checks),
        "results": len(results),
        "failed": failed,
        "exclusive_overlaps_per_check": sum(
            1 for k, n in separate.items() if k.startswith("exclusive:") and n
        ),
        "seconds": {k: statistics.median(v) for k, v in timings.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="segsql-checks-bench-") as tmp:
        root = Path(tmp) / "project"
        started = time.perf_counter()
        write_project(root, args.customers)
        generated = time.perf_counter() - started
        report = measure(root, args.repeat)
    report.update(
        customers=args.customers, data_seconds=round(generated, 1), python=platform.python_version()
    )
    seconds = report["seconds"]
    assert isinstance(seconds, dict)
    print(f"{args.customers:,} customers, {report['segments']} segments, {report['checks']} checks")
    for name, value in seconds.items():
        print(f"  {name:<22} {value:8.3f} s (median of {args.repeat})")
    print(f"  failed checks: {report['failed']}")
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "checks_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
