"""`segsql compile --watch` (segsql/watch.py): every compile of a watch writes exactly what a cold
`segsql compile` of the same files writes, a broken file is reported like a compile reports it
and leaves the output as it was, and Ctrl-C ends the watch with exit code 0.

The loop runs in a thread of the test (`watch(..., stop=...)`), or as the real command in a
subprocess; each test waits for the compile it caused (its report, or its line) with a generous
timeout, never for a fixed time, so a busy machine makes them slower, not flaky.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import Invoke, copy_project, load_bench, read_tree

from segsql.build import CompiledProject
from segsql.emit import all_targets
from segsql.pipeline import CacheSetup, compile_project
from segsql.watch import (
    EMPTY_SETTLE_SECONDS,
    SETTLE_SECONDS,
    CompileReport,
    Recompiler,
    WatchedFiles,
    watch,
)

TIMEOUT = 120  # seconds for one compile to be reported: far more than it takes on a busy machine


def builder(project: Path) -> Callable[[CacheSetup], CompiledProject]:
    """What `segsql compile` builds, with the compile cache (the CLI adds column lookups)."""

    def build(cache: CacheSetup) -> CompiledProject:
        known = cache.segments.known()
        return compile_project(project, None, {}, None, known, cache.definitions)

    return build


class Watching:
    """A watch running in a thread: its reports arrive in order."""

    def __init__(self, project: Path):
        self.project = project
        self.reports: queue.Queue[CompileReport] = queue.Queue()
        self.stopped = threading.Event()
        recompiler = Recompiler(project / "target", builder(project), all_targets)
        self.thread = threading.Thread(
            target=watch,
            args=(recompiler, WatchedFiles(project), self.reports.put),
            kwargs={"stop": self.stopped.is_set, "interval": 0.02, "tidy": recompiler.tidy},
            daemon=True,
        )

    def next_report(self) -> CompileReport:
        return self.reports.get(timeout=TIMEOUT)

    def change(self, edit: Callable[[], None]) -> CompileReport:
        """Make an edit once the watch is idle, and return the report of the compile it caused."""
        assert self.reports.empty(), "a compile nobody asked for"
        edit()
        return self.next_report()


@contextmanager
def watching(project: Path) -> Iterator[Watching]:
    watcher = Watching(project)
    watcher.thread.start()
    try:
        yield watcher
    finally:
        watcher.stopped.set()
        watcher.thread.join(TIMEOUT)


def edit(path: Path, old: str, new: str) -> Callable[[], None]:
    def apply() -> None:
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return apply


def output(project: Path) -> dict[str, bytes]:
    return read_tree(project / "target", with_cache=False)


def cold_output(segsql_cli: Invoke, project: Path, tmp_path: Path) -> dict[str, bytes]:
    """What `segsql compile --all-targets` writes for the project's files, from nothing."""
    fresh = copy_project(project, tmp_path / f"cold-{time.monotonic_ns()}")
    result = segsql_cli(fresh, "compile", "--all-targets")
    assert result.exit_code == 0, result.output
    return output(fresh)


def differing(before: dict[str, bytes], after: dict[str, bytes]) -> int:
    return sum(before.get(rel) != after.get(rel) for rel in before.keys() | after.keys())


def assert_cold_output(segsql_cli: Invoke, project: Path, tmp_path: Path) -> dict[str, bytes]:
    written, cold = output(project), cold_output(segsql_cli, project, tmp_path)
    assert sorted(written) == sorted(cold)
    for rel, data in cold.items():
        assert written[rel] == data, f"{rel}: the watch wrote other bytes than a cold compile"
    return written


# Edits a watch meets, in the order made: each output is compared with a cold compile.
EDITS = [
    # a where of a segment with children: the snapshot script is laid out with new parts
    ("segments/value.yml", "revenue_quintile = 5", "revenue_quintile >= 4"),
    # the same segment again (the layout of the previous recompile is reused)
    ("segments/value.yml", "revenue_quintile >= 4", "revenue_quintile >= 3"),
    # a description: headers and the manifest change, line numbers below it shift
    (
        "segments/value.yml",
        "\n    where: revenue_quintile",
        "\n    # a note\n    where: revenue_quintile",
    ),
    # a segment frozen on a date: the snapshot reads its recorded members
    (
        "segments/value.yml",
        "    where: revenue_quintile",
        "    freeze: 2024-01-31\n    where: revenue_quintile",
    ),
    # a feature's window: the entity is built again (and every segment reading it changes)
    ("segments/entities.yml", "window: 30 days", "window: 31 days"),
    # a KPI's expression: kpis.sql alone changes
    ("segments/kpis.yml", "sum(active_users)\n", "sum(active_users) + 0\n"),
    # a macro every user of it must pick up
    ("macros/regions.sql", "'DE'", "'DE', 'AT'"),
    # settings: another as_of (in every header), then another schema for the local target
    ("segsql.yml", 'as_of: "2024-06-30"', 'as_of: "2024-07-31"'),
    ("segsql.yml", "schema: segments}", "schema: audiences}"),
]


def test_each_recompile_writes_what_a_cold_compile_writes(
    example_project: Path, segsql_cli: Invoke, tmp_path: Path
) -> None:
    with watching(example_project) as watcher:
        first = watcher.next_report()
        assert first.error is None, first.error
        before = assert_cold_output(segsql_cli, example_project, tmp_path)
        assert first.targets == 3 and first.changed == len(before)  # every file was new
        for file, old, new in EDITS:
            report = watcher.change(edit(example_project / file, old, new))
            assert report.error is None, report.error.render() if report.error else ""
            after = assert_cold_output(segsql_cli, example_project, tmp_path)
            assert after != before, f"editing {file} should change the output"
            # only the files whose text changed were written
            assert report.changed == differing(before, after)
            before = after


def test_new_and_deleted_files_are_compiled(
    mini_project: Path, segsql_cli: Invoke, tmp_path: Path
) -> None:
    extra = mini_project / "segments" / "extra.yml"
    with watching(mini_project) as watcher:
        assert watcher.next_report().error is None
        text = "segments:\n  - name: big_spenders\n    entity: customer\n    where: lifetime_revenue > 500\n"
        report = watcher.change(lambda: extra.write_text(text, encoding="utf-8"))
        assert report.error is None
        written = assert_cold_output(segsql_cli, mini_project, tmp_path)
        assert "compiled/local/segments/big_spenders.sql" in written
        report = watcher.change(extra.unlink)
        assert report.error is None
        written = assert_cold_output(segsql_cli, mini_project, tmp_path)
        assert "compiled/local/segments/big_spenders.sql" not in written


def test_a_broken_file_is_reported_and_a_fix_compiles_again(
    example_project: Path, segsql_cli: Invoke, tmp_path: Path
) -> None:
    value = example_project / "segments" / "value.yml"
    with watching(example_project) as watcher:
        assert watcher.next_report().error is None
        before = output(example_project)
        report = watcher.change(edit(value, "revenue_quintile = 5", "revenue_quintile = = 5"))
        assert report.error is not None
        # the message a compile of the broken files prints
        broken = segsql_cli(copy_project(example_project, tmp_path / "broken"), "compile")
        assert broken.exit_code == 2
        assert report.error.render(example_project) in broken.output
        assert "segments/value.yml:" in report.error.render(example_project)
        assert output(example_project) == before  # not a byte written
        report = watcher.change(edit(value, "revenue_quintile = = 5", "revenue_quintile = 4"))
        assert report.error is None
        assert assert_cold_output(segsql_cli, example_project, tmp_path) != before


def test_a_selection_is_watched_like_it_compiles(
    mini_project: Path, segsql_cli: Invoke, tmp_path: Path
) -> None:
    """--select: only the selected segments' files are written, the others' left alone."""
    recompiler = Recompiler(
        mini_project / "target", builder(mini_project), all_targets, ["active+"]
    )
    assert recompiler().error is None
    edit(mini_project / "segments" / "core.yml", "orders_90d > 0", "orders_90d > 1")()
    assert recompiler().error is None
    fresh = copy_project(mini_project, tmp_path / "cold")
    result = segsql_cli(fresh, "compile", "--all-targets", "--select", "active+")
    assert result.exit_code == 0, result.output
    assert output(mini_project) == output(fresh)


def test_an_edit_while_compiling_is_compiled_next(mini_project: Path) -> None:
    """The files are looked at before each compile: what changes during one is seen after it."""
    core = mini_project / "segments" / "core.yml"
    changes = iter([edit(core, "orders_90d > 0", "orders_90d > 1")])
    reports: list[CompileReport] = []

    def compile_and_edit() -> CompileReport:
        report = recompiler()
        reports.append(report)
        next(changes, lambda: None)()  # the first compile is followed by an edit
        return report

    recompiler = Recompiler(mini_project / "target", builder(mini_project), all_targets)
    deadline = time.monotonic() + TIMEOUT
    watch(
        compile_and_edit,
        WatchedFiles(mini_project),
        lambda report: None,
        stop=lambda: len(reports) >= 2 or time.monotonic() > deadline,
        interval=0.02,
    )
    assert len(reports) == 2 and all(r.error is None for r in reports)
    compiled = (mini_project / "target" / "compiled" / "local" / "segments").glob("*.sql")
    assert any("orders_90d > 1" in path.read_text() for path in compiled)


def test_a_file_just_emptied_is_given_time_to_be_written(mini_project: Path) -> None:
    """An editor truncates a file, then writes it: the watch waits for the text (a compile of
    the empty file would remove its segments' output for a moment, or report false errors)."""
    core = mini_project / "segments" / "core.yml"
    text = core.read_text(encoding="utf-8")
    files = WatchedFiles(mini_project)
    before = files.stamps()
    core.write_text("", encoding="utf-8")  # truncated: the editor is paused before writing
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        core.write_text(text + "\n", encoding="utf-8")  # ... and writes while the watch waits

    settled = files.settled(files.stamps(), before, sleep)
    assert pauses[0] == EMPTY_SETTLE_SECONDS
    assert settled[str(core)][1] == len(text.encode()) + 1
    # a file that was empty already is compiled as it is
    core.write_text("", encoding="utf-8")
    empty = files.stamps()
    time.sleep(2 * SETTLE_SECONDS)  # written long enough ago
    assert files.settled(empty, empty, sleep) == empty


# ---------------------------------------------------------------------------------------------
# the command


class Lines:
    """Lines of a process's stream, read by a thread as they come."""

    def __init__(self, stream: object):
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put(line)

    def wait_for(self, text: str) -> list[str]:
        """The lines up to the first holding `text`."""
        seen: list[str] = []
        while not seen or text not in seen[-1]:
            seen.append(self.lines.get(timeout=TIMEOUT))
        return seen


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT is how a terminal stops a watch")
def test_the_command_watches_reports_errors_and_exits_0_on_ctrl_c(mini_project: Path) -> None:
    command = [sys.executable, "-m", "segsql", "-p", str(mini_project), "compile"]
    process = subprocess.Popen(
        [*command, "--all-targets", "--watch", "--watch-interval", "0.02"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out, err = Lines(process.stdout), Lines(process.stderr)
        first = out.wait_for("compiled ")[-1]
        assert first.startswith("compiled 27 segments x 3 targets in ")
        core = mini_project / "segments" / "core.yml"
        edit(core, "orders_90d > 0", "orders_90d > 1")()
        assert "files changed)" in out.wait_for("compiled ")[-1]
        edit(core, "orders_90d > 1", "orders_90d >> 1")()
        message = "".join(err.wait_for("segments/core.yml:"))
        assert "error:" in message
        edit(core, "orders_90d >> 1", "orders_90d > 2")()
        out.wait_for("compiled ")
        process.send_signal(signal.SIGINT)
        assert process.wait(TIMEOUT) == 0
        rest = process.stderr.read() if process.stderr else ""
        assert "Traceback" not in message + rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_watch_and_check_do_not_go_together(starter_project: Path, segsql_cli: Invoke) -> None:
    result = segsql_cli(starter_project, "compile", "--watch", "--check")
    assert result.exit_code == 2
    assert "--check" in result.output


# ---------------------------------------------------------------------------------------------
# what the watch relies on, in a compile of its own process


def test_the_benchmark_times_a_watch(tmp_path: Path) -> None:
    """bench/compile_bench.py's watch measurement, on a tiny project (not timed here)."""
    bench = load_bench("compile_bench")
    timed = bench.measure_watch(tmp_path / "project", 30, 2, 0.02)
    assert timed["edits"] == 2 and timed["affected"] >= 1, timed
    assert 0 < timed["compile_min_s"] <= timed["compile_median_s"]
    # the line comes after the compile (whose time it prints rounded to 10 ms)
    assert timed["min_s"] >= timed["compile_min_s"] - 0.005
