"""Benchmark: how fast `segsql compile --all-targets` is on a large synthetic project (issue #2).

    python bench/compile_bench.py                      # 1,000 segments, 10,000 for peak memory
    python bench/compile_bench.py --segments 300 --memory-segments 0 --repeat 1

The project is generated deterministically (same seed, same files): two entities with declared
columns and features (windowed, derived, macro-based), 1,000 segments nested up to 5 deep with
2-3 `where` terms each, some calling the standard library or project macros, a few `exclude`
operands. Every measurement but the watch runs in a fresh process, timed from outside (interpreter
start and imports included):

- cold: `segsql compile --all-targets` (3 targets) with no previous output and no cache;
- recompile: the same command after one segment's `where` changed (its descendants change too);
- watch recompile: `segsql compile --all-targets --watch` running in one process, timed from
  writing the same edit to the file until the process prints that it wrote the recompile (its
  polling interval included), and the compile time it prints;
- floor: the naive pipeline the issue compares against (C YAML loader + Jinja + sqlglot parse +
  generate for 3 dialects, no validation, no files), same project, same process conditions;
- memory: peak resident memory of a cold compile of a 10,000-segment project.

Prints a table and writes `bench/out/compile_bench.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SEED = 20240630
MAX_DEPTH = 5
SEGMENTS_PER_FILE = 40
TIME_BIN = Path("/usr/bin/time")

PROJECT_YML = """name: bench
dialect: duckdb
vars: {as_of: "2024-06-30", min_orders: 2}
targets:
  local: {engine: duckdb, path: bench.duckdb, schema: segments}
  pg: {engine: postgres, dsn_env: SEGSQL_PG_DSN, schema: segments}
  bq: {engine: bigquery, project: acme-prod, dataset: segments}
default_target: local
"""

MACROS_SQL = """{% macro is_region(column, region) -%}
{%- if region == 'eu' -%}{{ column }} IN ('DE', 'FR', 'GB', 'ES', 'IT', 'NL')
{%- elif region == 'na' -%}{{ column }} IN ('US', 'CA', 'MX')
{%- else -%}{{ column }} IN ('JP', 'KR', 'SG', 'AU'){%- endif -%}
{%- endmacro %}

{% macro recent(column, window) -%}
{{ in_window(column, window) }}
{%- endmacro %}
"""

ENTITIES_YML = """tables:
  - name: customers
    columns: {customer_id: bigint, country: varchar, birth_date: date, signup_at: timestamp, plan: varchar, device: varchar}
  - name: orders
    columns: {order_id: bigint, customer_id: bigint, ordered_at: timestamp, amount: "decimal(12,2)", channel: varchar}
  - name: events
    columns: {event_id: bigint, customer_id: bigint, occurred_at: timestamp, kind: varchar}
  - name: accounts
    columns: {account_id: bigint, industry: varchar, employees: integer, created_at: timestamp, region: varchar}
  - name: invoices
    columns: {invoice_id: bigint, account_id: bigint, issued_at: timestamp, amount: "decimal(12,2)"}

entities:
  - name: customer
    table: customers
    key: customer_id
    time: signup_at
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
      - name: web_orders
        from: {table: orders, key: customer_id, time: ordered_at, where: "channel = 'web'"}
        expr: count(*)
        default: 0
      - name: days_since_last_order
        from: {table: orders, key: customer_id, time: ordered_at}
        expr: "{{ days_since('max(ordered_at)') }}"
      - name: sessions_30d
        from: {table: events, key: customer_id, time: occurred_at}
        expr: count(*)
        window: 30 days
        default: 0
      - name: age
        expr: "{{ age_from_birth_date('birth_date') }}"
      - name: revenue_quintile
        expr: "{{ quintile('lifetime_revenue') }}"
  - name: account
    table: accounts
    key: account_id
    features:
      - name: mrr
        from: {table: invoices, key: account_id, time: issued_at}
        expr: sum(amount)
        window: 30 days
        default: 0
      - name: invoices_1y
        from: {table: invoices, key: account_id, time: issued_at}
        expr: count(*)
        window: 1 year
        default: 0
"""

KINDS = ("behavioral", "value", "demographic", "geographic", "lifecycle", "technographic")
OWNERS = ("growth", "crm", "finance", "product")


def _customer_term(rng: random.Random) -> str:
    choice = rng.randrange(12)
    if choice == 0:
        return f"orders_90d >= {rng.randint(1, 6)}"
    if choice == 1:
        return f"lifetime_revenue > {rng.randint(1, 100) * 50}"
    if choice == 2:
        return f"plan = '{rng.choice(['free', 'pro', 'team', 'enterprise'])}'"
    if choice == 3:
        return f"device <> '{rng.choice(['ios', 'android', 'web'])}'"
    if choice == 4:
        return f"{{{{ days_since('signup_at') }}}} > {rng.randint(7, 720)}"
    if choice == 5:
        return f"days_since_last_order <= {rng.randint(7, 365)}"
    if choice == 6:
        return f"{{{{ is_region('country', '{rng.choice(['eu', 'na', 'apac'])}') }}}}"
    if choice == 7:
        return f"revenue_quintile >= {rng.randint(2, 5)}"
    if choice == 8:
        low = rng.randint(18, 60)
        return f"age BETWEEN {low} AND {low + 15}"
    if choice == 9:
        return f"sessions_30d >= {rng.randint(1, 20)}"
    if choice == 10:
        return "web_orders >= {{ var('min_orders') }}"
    return f"{{{{ recent('signup_at', '{rng.randint(1, 24)} months') }}}}"


def _account_term(rng: random.Random) -> str:
    choice = rng.randrange(5)
    if choice == 0:
        return f"employees >= {rng.randint(1, 50) * 10}"
    if choice == 1:
        return f"industry = '{rng.choice(['retail', 'saas', 'finance', 'health'])}'"
    if choice == 2:
        return f"mrr > {rng.randint(1, 200) * 25}"
    if choice == 3:
        return f"invoices_1y >= {rng.randint(1, 12)}"
    return f"{{{{ days_since('created_at') }}}} > {rng.randint(30, 900)}"


@dataclass(frozen=True)
class _Seg:
    name: str
    entity: str
    parent: str | None
    depth: int
    where: tuple[str, ...]
    exclude: str | None


def _plan(count: int, seed: int) -> list[_Seg]:
    """Segments in definition order: parents first; ~15% roots, the rest nested up to 5 deep."""
    rng = random.Random(seed)
    planned: list[_Seg] = []
    open_parents: list[_Seg] = []
    for index in range(count):
        name = f"seg_{index:05d}"
        if index < 4 or not open_parents or rng.random() < 0.15:
            entity = "account" if rng.random() < 0.15 else "customer"
            parent = None
            depth = 1
        else:
            chosen = rng.choice(open_parents[-200:])  # local families, like real projects
            entity, parent, depth = chosen.entity, chosen.name, chosen.depth + 1
        term = _account_term if entity == "account" else _customer_term
        where = tuple(term(rng) for _ in range(2 if parent is None else rng.randint(2, 3)))
        siblings = [s for s in planned[-50:] if s.parent == parent and s.entity == entity]
        exclude = siblings[-1].name if parent and siblings and rng.random() < 0.05 else None
        seg = _Seg(name, entity, parent, depth, where, exclude)
        planned.append(seg)
        if depth < MAX_DEPTH:
            open_parents.append(seg)
    return planned


def _yaml_text(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid double-quoted YAML scalar


def _segment_yaml(seg: _Seg, rng: random.Random) -> str:
    lines = [f"  - name: {seg.name}"]
    if seg.parent is None:
        lines.append(f"    entity: {seg.entity}")
    else:
        lines.append(f"    parent: {seg.parent}")
    lines.append(f"    kind: {rng.choice(KINDS)}")
    lines.append(f"    description: Synthetic segment {seg.name} at depth {seg.depth}.")
    lines.append(f"    owner: {rng.choice(OWNERS)}")
    lines.append(f"    tags: [bench, d{seg.depth}]")
    lines.append("    where:")
    lines += [f"      - {_yaml_text(term)}" for term in seg.where]
    if seg.exclude:
        lines.append(f"    exclude: [{seg.exclude}]")
    return "\n".join(lines) + "\n"


def generate_project(root: Path, segments: int = 1000, seed: int = SEED) -> list[str]:
    """Write the synthetic project under `root` (replacing it); returns segment names in order."""
    if root.exists():
        shutil.rmtree(root)
    (root / "segments").mkdir(parents=True)
    (root / "macros").mkdir()
    (root / "segsql.yml").write_text(PROJECT_YML, encoding="utf-8")
    (root / "macros" / "bench.sql").write_text(MACROS_SQL, encoding="utf-8")
    (root / "segments" / "_entities.yml").write_text(ENTITIES_YML, encoding="utf-8")
    planned = _plan(segments, seed)
    rng = random.Random(seed + 1)
    for start in range(0, len(planned), SEGMENTS_PER_FILE):
        chunk = planned[start : start + SEGMENTS_PER_FILE]
        text = "segments:\n" + "".join(_segment_yaml(s, rng) for s in chunk)
        path = root / "segments" / f"group_{start // SEGMENTS_PER_FILE:04d}.yml"
        path.write_text(text, encoding="utf-8")
    return [s.name for s in planned]


def segment_to_change(root: Path) -> tuple[str, int]:
    """A depth-2 segment with descendants (a realistic edit), and how many segments it affects."""
    planned = _plan(_count_segments(root), SEED)
    children: dict[str, list[str]] = {}
    for seg in planned:
        if seg.parent:
            children.setdefault(seg.parent, []).append(seg.name)
        if seg.exclude:
            children.setdefault(seg.exclude, []).append(seg.name)
    for seg in planned[len(planned) // 2 :]:
        if seg.depth == 2 and seg.name in children:
            affected, stack = {seg.name}, [seg.name]
            while stack:
                for child in children.get(stack.pop(), []):
                    if child not in affected:
                        affected.add(child)
                        stack.append(child)
            return seg.name, len(affected)
    return planned[-1].name, 1


def _count_segments(root: Path) -> int:
    return sum(
        p.read_text(encoding="utf-8").count("  - name: seg_")
        for p in (root / "segments").glob("group_*.yml")
    )


def change_segment(root: Path, name: str) -> None:
    """Edit one segment's `where` in place: `(term) AND 1 = 1` for its first term (a list's first
    item, or the whole `where` when it is one line)."""
    for path in sorted((root / "segments").glob("*.yml")):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        for index, line in enumerate(lines):
            if line == f"  - name: {name}\n":
                where = next(
                    i for i in range(index, len(lines)) if lines[i].startswith("    where:")
                )
                if lines[where] == "    where:\n":
                    term = _yaml_value(lines[where + 1].strip()[2:])
                    lines[where + 1] = f"      - {_yaml_text(f'({term}) AND 1 = 1')}\n"
                else:
                    term = _yaml_value(lines[where].split(":", 1)[1].strip())
                    lines[where] = f"    where: {_yaml_text(f'({term}) AND 1 = 1')}\n"
                path.write_text("".join(lines), encoding="utf-8")
                return
    raise ValueError(f"segment {name} not found")


def _yaml_value(text: str) -> str:
    """A one-line YAML scalar as written by `_yaml_text` (JSON) or by hand (plain)."""
    return str(json.loads(text)) if text.startswith('"') else text


# ---------------------------------------------------------------------------------------------
# the naive floor: what the "C YAML + Jinja + sqlglot parse + generate x3" means


def naive_floor(root: Path) -> int:
    """No validation, no resolution, no files: text in, three dialects' SQL out. Returns bytes."""
    import jinja2
    import sqlglot
    import yaml

    import segsql

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.globals.update(as_of="2024-06-30", window_start=lambda w: "2024-01-01")
    env.globals["var"] = lambda name: {"min_orders": 2}[name]
    macro_files = sorted((Path(segsql.__file__).parent / "stdlib").glob("*.sql"))
    for path in [*macro_files, root / "macros" / "bench.sql"]:
        module = env.from_string(path.read_text(encoding="utf-8")).module
        env.globals.update({k: v for k, v in vars(module).items() if not k.startswith("_")})
    definitions: dict[str, dict] = {}  # type: ignore[type-arg]
    for path in sorted((root / "segments").glob("*.yml")):
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
        for seg in data.get("segments") or []:
            definitions[seg["name"]] = seg
    predicates: dict[str, list[str]] = {}
    size = 0
    for name, seg in definitions.items():  # parents are defined first
        inherited = list(predicates[seg["parent"]]) if seg.get("parent") else []
        own = [env.from_string(w).render() for w in seg["where"]]
        predicates[name] = inherited + [f"({w})" for w in own]
        entity = seg.get("entity") or "customer"
        text = f"SELECT DISTINCT {entity}_id FROM segments.{entity}_features WHERE " + " AND ".join(
            predicates[name]
        )
        tree = sqlglot.parse_one(text, read="duckdb")
        for dialect in ("duckdb", "postgres", "bigquery"):
            size += len(tree.sql(dialect=dialect, pretty=True))
    return size


# ---------------------------------------------------------------------------------------------
# measuring child processes


@dataclass(frozen=True)
class Run:
    seconds: float  # wall clock, interpreter start included
    cpu_seconds: float  # user + sys of the process and its workers: steadier on a busy machine
    peak_mb: float  # the largest resident set of one process (forked workers are not summed)


def run_child(args: list[str], cwd: Path, first_path: Path | None = None) -> Run:
    """Wall time, CPU time and peak RSS of one fresh process tree (`first_path` goes first on
    its sys.path)."""
    paths = [str(first_path)] if first_path else []
    env = {
        **os.environ,
        "PYTHONHASHSEED": "0",
        "PYTHONPATH": os.pathsep.join([*paths, str(HERE.parent)]),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measured as installed: bytecode cached
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        timed = [str(TIME_BIN), "-f", "%M", "-o", report.name] if TIME_BIN.exists() else []
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run([*timed, *args], cwd=cwd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        # Without GNU time, ru_maxrss of children is a running maximum over every child so far.
        peak_kb = float(report.read().split()[-1]) if timed else float(after.ru_maxrss)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(seconds, cpu, peak_kb / 1024)


PYTHON = [sys.executable]


def segsql_command() -> list[str]:
    return [*PYTHON, "-m", "segsql"]


def compile_cold(project: Path) -> Run:
    shutil.rmtree(project / "target", ignore_errors=True)
    return run_child([*segsql_command(), "compile", "--all-targets"], project)


def compile_again(project: Path) -> Run:
    return run_child([*segsql_command(), "compile", "--all-targets"], project)


WATCH_INTERVAL = 0.2  # `compile --watch`'s default
WATCHED_LINE = re.compile(r"^compiled .* in (\d+\.\d+) s \((\d+) files? changed\)$")


@dataclass(frozen=True)
class WatchedEdit:
    seconds: float  # from writing the edit until the watch printed the recompile's line
    compile_seconds: float  # what the line says: the compile alone, files written
    other_lines: tuple[str, ...]  # lines of compiles that did not hold the edit (none expected)


def watch_recompiles(project: Path, name: str, edits: int, interval: float) -> list[WatchedEdit]:
    """Start `segsql compile --all-targets --watch` on the (compiled) project, then edit the
    segment `edits` times, each once the previous recompile is reported and the watch is idle.
    An edit's time ends at the first line after it whose compile holds it (its segment's file
    has as many edits): a line of any other compile is kept apart, not timed."""
    command = [*segsql_command(), "compile", "--all-targets", "--watch"]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(HERE.parent)}
    command += ["--watch-interval", str(interval)]
    process = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    compiled = project / "target" / "compiled" / "local" / "segments" / f"{name}.sql"
    try:
        _watched_line(lines)  # the first compile
        timed, phases = [], random.Random(SEED)
        for count in range(1, edits + 1):
            # idle (the cache written, the previous heap freed), then at a random point of the
            # polling cycle: a fixed pause would always edit just before (or after) a look
            time.sleep(3 * interval + 0.3 + phases.uniform(0, interval))
            others = _drained(lines)
            start = time.perf_counter()
            change_segment(project, name)
            compile_seconds = _watched_line(lines)
            seconds = time.perf_counter() - start
            while compiled.read_text(encoding="utf-8").count("1 = 1") != count:
                others.append(f"{compile_seconds} s, before the edit was compiled")
                compile_seconds = _watched_line(lines)
                seconds = time.perf_counter() - start
            timed.append(WatchedEdit(seconds, compile_seconds, tuple(others)))
        return timed
    finally:
        process.send_signal(signal.SIGINT)
        if process.wait(60) != 0:
            raise RuntimeError(f"the watch exited with {process.returncode}")


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _drained(lines: queue.Queue[str]) -> list[str]:
    """Lines printed while the watch should have been idle."""
    found = []
    while not lines.empty():
        found.append(lines.get().rstrip("\n") + " (while idle)")
    return found


def _watched_line(lines: queue.Queue[str]) -> float:
    """The compile time of the next compile the watch reports (it must succeed)."""
    line = lines.get(timeout=600).rstrip("\n")
    found = WATCHED_LINE.match(line)
    if found is None:
        raise RuntimeError(f"the watch printed {line!r}")
    return float(found.group(1))


def floor(project: Path, pure: Path | None = None) -> Run:
    return run_child([*PYTHON, __file__, "--naive-floor", str(project)], project, pure)


def pure_sqlglot(work: Path) -> Path | None:
    """A copy of the measured interpreter's sqlglot without its compiled modules (sqlglotc
    installs them beside the .py files, and Python prefers them): the issue's floor is pure
    Python. None when that sqlglot is pure Python already."""
    probe = "import pathlib, sqlglot; print(pathlib.Path(sqlglot.__file__).parent)"
    done = subprocess.run([PYTHON[0], "-c", probe], capture_output=True, text=True, check=True)
    package = Path(done.stdout.strip())
    if not any(package.rglob("*.so")):
        return None
    folder = work / "pure-sqlglot"
    shutil.copytree(package, folder / "sqlglot", ignore=shutil.ignore_patterns("*.so", "*.pyd"))
    return folder


# ---------------------------------------------------------------------------------------------


def _stats(runs: list[Run]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(r.seconds for r in runs), 3),
        "min_s": round(min(r.seconds for r in runs), 3),
        "cpu_s": round(statistics.median(r.cpu_seconds for r in runs), 3),
        "peak_mb": round(max(r.peak_mb for r in runs), 1),
        "runs": len(runs),
    }


def _watch_stats(edits: list[WatchedEdit], interval: float) -> dict[str, Any]:
    return {
        "median_s": round(statistics.median(e.seconds for e in edits), 3),
        "min_s": round(min(e.seconds for e in edits), 3),
        "compile_median_s": round(statistics.median(e.compile_seconds for e in edits), 3),
        "compile_min_s": round(min(e.compile_seconds for e in edits), 3),
        "poll_interval_s": interval,
        "edits": len(edits),
        "other_compiles": [line for e in edits for line in e.other_lines],
    }


def measure_watch(project: Path, segments: int, edits: int, interval: float) -> dict[str, object]:
    """The watch on the project compiled once (as the recompile measurement starts)."""
    generate_project(project, segments)
    compile_cold(project)
    changed, affected = segment_to_change(project)
    timed = watch_recompiles(project, changed, edits, interval)
    return {**_watch_stats(timed, interval), "changed": changed, "affected": affected}


EXAMPLE_FILES = ("segsql.yml", "segments", "macros", "data")
EXAMPLE_EDITED = "active"  # nested under all_customers, with children: edits reach several


def example_project(folder: Path) -> Path:
    """A fresh copy of the repository's example project (it defines KPIs: kpis.sql too)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in EXAMPLE_FILES:
        source = HERE.parent / name
        if source.is_dir():
            shutil.copytree(source, folder / name)
        else:
            shutil.copy2(source, folder / name)
    return folder


def measure_example(work: Path, repeat: int) -> dict[str, object]:
    """Cold, recompile and watch on the example project, the shape of a small real project."""
    folder = work / "example"
    cold = [compile_cold(example_project(folder)) for _ in range(repeat)]
    recompile = []
    for _ in range(repeat):
        compile_cold(example_project(folder))
        change_segment(folder, EXAMPLE_EDITED)
        recompile.append(compile_again(folder))
    compile_cold(example_project(folder))
    watched = watch_recompiles(folder, EXAMPLE_EDITED, max(5, 3 * repeat), WATCH_INTERVAL)
    return {
        "cold_compile": _stats(cold),
        "recompile_one_changed": {**_stats(recompile), "changed": EXAMPLE_EDITED},
        "watch_recompile": _watch_stats(watched, WATCH_INTERVAL),
    }


def measure(segments: int, memory_segments: int, repeat: int, work: Path) -> dict[str, object]:
    project = work / f"project_{segments}"
    generate_project(project, segments)
    cold = [compile_cold(project) for _ in range(repeat)]
    naive = [floor(project) for _ in range(repeat)]
    pure = pure_sqlglot(work)
    naive_pure = [floor(project, pure) for _ in range(repeat)] if pure else []
    changed, affected = segment_to_change(project)
    recompile = []
    for _ in range(repeat):
        generate_project(project, segments)
        compile_cold(project)
        change_segment(project, changed)
        recompile.append(compile_again(project))
    results: dict[str, object] = {
        "segments": segments,
        "targets": 3,
        "cold_compile": _stats(cold),
        "naive_floor": _stats(naive),
        **({"naive_floor_pure_sqlglot": _stats(naive_pure)} if naive_pure else {}),
        "recompile_one_changed": {**_stats(recompile), "changed": changed, "affected": affected},
        "watch_recompile": measure_watch(project, segments, max(5, 3 * repeat), WATCH_INTERVAL),
        "example_project": measure_example(work, repeat),
    }
    if memory_segments:
        big = work / f"project_{memory_segments}"
        generate_project(big, memory_segments)
        results["memory"] = {"segments": memory_segments, **_stats([compile_cold(big)])}
    return results


def _table(results: dict[str, object]) -> str:
    cold = results["cold_compile"]
    naive = results["naive_floor"]
    again = results["recompile_one_changed"]
    assert isinstance(cold, dict) and isinstance(naive, dict) and isinstance(again, dict)
    pure = results.get("naive_floor_pure_sqlglot")
    rows: list[tuple[object, ...]] = [
        ("step", "median s", "min s", "cpu s", "peak MB", "note"),
        (*_cells("naive floor", naive), "no validation, no files"),
    ]
    note = f"{cold['median_s'] / naive['median_s']:.2f}x floor"
    if isinstance(pure, dict):
        rows.append((*_cells("naive floor, pure sqlglot", pure), "the issue's floor"))
        note += f", {cold['median_s'] / pure['median_s']:.2f}x pure floor"
    rows += [
        (*_cells("cold compile", cold), note),
        (
            *_cells("recompile, 1 changed", again),
            f"{again['median_s'] / cold['median_s']:.2f}x cold ({again['affected']} segments affected)",
        ),
    ]
    watched = results.get("watch_recompile")
    if isinstance(watched, dict):
        rows += _watch_rows(watched, cold)
    memory = results.get("memory")
    if isinstance(memory, dict):
        rows.append((*_cells(f"cold, {memory['segments']} segs", memory), "peak memory run"))
    example = results.get("example_project")
    if isinstance(example, dict):
        rows += _example_rows(example)
    widths = [max(len(str(row[i])) for row in rows) for i in range(6)]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def _example_rows(example: dict[str, Any]) -> list[tuple[object, ...]]:
    """The example project's rows (it has KPIs): its cold compile is the ratios' base."""
    cold, again = example["cold_compile"], example["recompile_one_changed"]
    rows: list[tuple[object, ...]] = [
        (*_cells("example: cold compile", cold), "the bundled project, with KPIs"),
        (
            *_cells("example: recompile", again),
            f"{again['median_s'] / cold['median_s']:.2f}x its cold ({again['changed']} edited)",
        ),
    ]
    return rows + [
        (f"example: {row[0]}", *row[1:]) for row in _watch_rows(example["watch_recompile"], cold)
    ]


def _cells(step: str, stats: dict[str, float]) -> tuple[object, ...]:
    return (step, stats["median_s"], stats["min_s"], stats["cpu_s"], stats["peak_mb"])


def _watch_rows(watched: dict[str, Any], cold: dict[str, Any]) -> list[tuple[object, ...]]:
    """Edit to reported line (polling included), and the compile alone as the watch reports it."""
    edited = (watched["median_s"], watched["min_s"], "", "")
    compiled = (watched["compile_median_s"], watched["compile_min_s"], "", "")
    polled = f"polls every {watched['poll_interval_s']} s, {watched['edits']} edits"
    return [
        (
            "watch: edit to line",
            *edited,
            f"{watched['median_s'] / cold['median_s']:.2f}x cold, {polled}",
        ),
        (
            "watch: recompile",
            *compiled,
            f"{watched['compile_median_s'] / cold['median_s']:.2f}x cold (files written)",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=1000)
    parser.add_argument("--memory-segments", type=int, default=10000, help="0 to skip")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--keep", type=Path, help="generate the projects here and keep them")
    parser.add_argument("--generate", type=Path, help="only write the project to this folder")
    parser.add_argument("--python", help="interpreter to measure with (e.g. a venv with sqlglotc)")
    parser.add_argument("--naive-floor", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.python:
        PYTHON[:] = [args.python]
    if args.naive_floor:
        naive_floor(args.naive_floor)
        return
    if args.generate:
        generate_project(args.generate, args.segments)
        return
    # An installed package has its bytecode compiled (pip does it); a checkout may not, and then
    # every measured process would compile segsql's source first (~60 ms).
    subprocess.run([PYTHON[0], "-m", "compileall", "-q", str(HERE.parent / "segsql")], check=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="segsql-bench-"))
    try:
        results = measure(args.segments, args.memory_segments, args.repeat, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    results["sqlglot"] = _sqlglot_build(PYTHON[0])
    print(_table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "compile_bench.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def _sqlglot_build(python: str) -> str:
    """sqlglot's version in the measured interpreter, and whether it is the compiled build."""
    probe = "import sqlglot, sqlglot.expressions.core as c; print(sqlglot.__version__, c.__file__)"
    version, path = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    return f"{version} ({'sqlglotc, compiled' if path.endswith('.so') else 'pure Python'})"


if __name__ == "__main__":
    main()
