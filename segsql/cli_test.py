"""`segsql test`, `segsql diff` and `segsql schema`, and the report of `segsql compile --check`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import sqlglot
import typer

from segsql.cli import (
    AsOfOpt,
    FormatOpt,
    OutputFormat,
    SelectOpt,
    TargetOpt,
    VarOpt,
    _compile,
    _lazy_duckdb_columns,
    _root,
    app,
    err,
    out,
    rich_table,
    user_errors,
)
from segsql.dialects import ENGINES
from segsql.drift import compiled_drift
from segsql.emit import Target, resolve_target
from segsql.errors import SpecError
from segsql.files import write_output
from segsql.load import load_project
from segsql.model import ProjectConfig
from segsql.pipeline import compile_project, effective_vars, parse_vars
from segsql.run import DuckDBRunner, load_seeds, open_runner
from segsql.select import select_segments
from segsql.state import STATE_ENV, SegmentChange, compare, compile_base, size_changes

if TYPE_CHECKING:  # imported by `segsql test` itself, so that other commands start faster
    from segsql.testing import CheckResult


class Only(StrEnum):
    unit = "unit"
    data = "data"


class SchemaKind(StrEnum):
    project = "project"
    definitions = "definitions"
    manifest = "manifest"


StateOpt = Annotated[
    str | None,
    typer.Option(
        "--state",
        help=f"Git revision that `state:modified` compares with (default: ${STATE_ENV}).",
    ),
]


# ---------------------------------------------------------------------------------------------
# segsql test


@app.command("test")
def test_command(
    select: SelectOpt = None,
    target: TargetOpt = None,
    output: FormatOpt = OutputFormat.table,
    junit: Annotated[
        Path | None, typer.Option("--junit-xml", help="Also write a JUnit XML report here.")
    ] = None,
    only: Annotated[
        Only | None,
        typer.Option("--only", help="Run only unit tests (no warehouse) or only data checks."),
    ] = None,
    deployed: Annotated[
        bool,
        typer.Option(
            "--deployed/--inline",
            help="Check the views/tables `segsql run` created, or evaluate the definitions inline.",
        ),
    ] = False,
    state: StateOpt = None,
    as_of: AsOfOpt = None,
    var: VarOpt = None,
) -> None:
    """Run unit tests (fixtures, on DuckDB), data tests and invariants (on a target); exit 1 on failure."""
    with user_errors(), base_revision(state):
        _test(select, target, output, junit, only, deployed, as_of, var)


@contextmanager
def base_revision(ref: str | None) -> Iterator[None]:
    """$SEGSQL_STATE set to `ref` for the duration of one command (state:modified reads it)."""
    previous = os.environ.get(STATE_ENV)
    if ref:
        os.environ[STATE_ENV] = ref
    try:
        yield
    finally:
        if ref and previous is None:
            del os.environ[STATE_ENV]
        elif ref and previous is not None:
            os.environ[STATE_ENV] = previous


def _test(
    select: list[str] | None,
    target: str | None,
    output: OutputFormat,
    junit: Path | None,
    only: Only | None,
    deployed: bool,
    as_of: str | None,
    var: list[str] | None,
) -> None:
    from segsql.testing import junit_xml
    from segsql.unit import fixture_columns, run_unit_tests, selected_unit_tests

    root = _root()
    results: list[CheckResult] = []
    if only is not Only.data:
        project = load_project(root)
        lookup = fixture_columns(project, _lazy_duckdb_columns(root))
        compiled = compile_project(root, as_of, parse_vars(var), lookup)
        names = set(select_segments(compiled, select))
        results += run_unit_tests(compiled.project, selected_unit_tests(compiled.project, names))
    if only is not Only.unit:
        results += _data_checks(root, select, target, deployed, as_of, var)
    if junit is not None:
        report = junit if junit.is_absolute() else Path.cwd() / junit
        write_output(report, junit_xml(results, root), "the JUnit report")
    _print_results(results, output, root)
    if any(not r.passed for r in results):
        raise typer.Exit(1)


def _data_checks(
    root: Path,
    select: list[str] | None,
    target: str | None,
    deployed: bool,
    as_of: str | None,
    var: list[str] | None,
) -> list[CheckResult]:
    from segsql.testing import run_checks

    project = load_project(root)
    effective_vars(project, parse_vars(var), as_of)  # fail on a bad date before connecting
    runner = open_runner(resolve_target(project.config, target), root)
    try:
        if isinstance(runner, DuckDBRunner):
            load_seeds(runner, project, only_missing=True)
        compiled = _compile(as_of, var, runner)
        return run_checks(runner, compiled, select_segments(compiled, select), deployed)
    finally:
        runner.close()


def _print_results(results: list[CheckResult], output: OutputFormat, root: Path) -> None:
    failed = [r for r in results if not r.passed]
    if output is OutputFormat.json:
        rows = [_result_json(r, root) for r in results]
        summary = {"passed": len(results) - len(failed), "failed": len(failed), "results": rows}
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    table = rich_table(title="segsql test")
    for column in ("", "kind", "segment / test", "check", "result"):
        table.add_column(column)
    for r in results:
        mark = "[green]PASS[/green]" if r.passed else "[red]FAIL[/red]"
        name = "" if r.suite == "unit" else r.name
        table.add_row(mark, r.suite, r.segment, name, r.message)
    out.print(table)
    for r in failed:
        title = r.name if r.suite == "unit" else f"{r.segment}: {r.name}"
        out.print(f"\n[red]FAIL[/red] {r.suite} {title} ({_where(r, root)})")
        for line in r.details:
            out.print(f"  {line}", markup=False)
    colour = "red" if failed else "green"
    out.print(f"\n[{colour}]{len(results) - len(failed)} passed, {len(failed)} failed[/{colour}]")


def _where(result: CheckResult, root: Path) -> str | None:
    if result.loc is None:
        return None
    path = result.loc.path.resolve()
    shown = path.relative_to(root.resolve()) if path.is_relative_to(root.resolve()) else path
    return f"{shown.as_posix()}:{result.loc.line}"


def _result_json(result: CheckResult, root: Path) -> dict[str, Any]:
    return {
        "kind": result.suite,
        "segment": result.segment,
        "name": result.name,
        "passed": result.passed,
        "message": result.message,
        "details": list(result.details),
        "location": _where(result, root),
        "seconds": round(result.seconds, 4),
    }


# ---------------------------------------------------------------------------------------------
# segsql compile --check


def check_drift(
    folder: Path,
    per_target: dict[str, dict[str, str]],
    manifest_data: dict[str, Any],
    replace: bool,
) -> None:
    """Print the files that differ from what `compile` would write; exit 1 if any (writes nothing)."""
    drift = compiled_drift(folder, per_target, manifest_data, replace)
    if not drift:
        out.print(f"compiled SQL in {folder} is up to date")
        return
    root = _root()
    for item in drift:
        path = item.path.resolve()
        shown = path.relative_to(root.resolve()) if path.is_relative_to(root.resolve()) else path
        err.print(f"{item.state:>8}: {shown}", markup=False)
    err.print(
        f"{len(drift)} compiled file(s) differ from the definitions; run `segsql compile` and commit the result"
    )
    committed = _committed_targets(folder)
    if committed is not None and committed != set(per_target):
        # e.g. `compile --all-targets` committed, `compile --check` (default target) run
        err.print(
            f"hint: {folder.name}/ was compiled for {', '.join(sorted(committed))}, this check for "
            f"{', '.join(sorted(per_target))}: pass the same --target/--all-targets as `compile`",
            markup=False,
        )
    raise typer.Exit(1)


def committed_targets(config: ProjectConfig, folder: Path) -> list[Target]:
    """The targets the manifest in `folder` was compiled for, those segsql.yml still has (a removed
    one then shows as drift of the manifest); none without a readable manifest."""
    names = _committed_targets(folder) or set()
    return [resolve_target(config, n) for n in sorted(names) if n in config.targets or n in ENGINES]


def _committed_targets(folder: Path) -> set[str] | None:
    """The targets the committed manifest was compiled for, if it can be read."""
    try:
        data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    targets = data.get("targets") if isinstance(data, dict) else None
    return set(targets) if isinstance(targets, dict) else None


# ---------------------------------------------------------------------------------------------
# segsql compile --check-sql


def check_sql_summary(targets: list[Target], per_target: dict[str, dict[str, str]]) -> str:
    """The line `compile --check-sql` prints once ZetaSQL accepted every statement."""
    checked = [t.name for t in targets if t.engine.name == "bigquery"]
    count = sum(_statements(sql) for name in checked for sql in per_target[name].values())
    return f"ZetaSQL analysis passed: {count} BigQuery statement(s) of {', '.join(checked)}"


def _statements(sql: str) -> int:
    # counted as segsql.bigquery_check.check_files splits a file into the statements it analyses
    return sum(1 for statement in sqlglot.parse(sql, read="bigquery") if statement is not None)


# ---------------------------------------------------------------------------------------------
# segsql diff


@app.command("diff")
def diff_command(
    base: Annotated[str, typer.Option("--base", help="Git revision to compare with, e.g. main.")],
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="Also count members before and after.")
    ] = None,
    output: FormatOpt = OutputFormat.table,
    as_of: AsOfOpt = None,
    var: VarOpt = None,
) -> None:
    """Segments added, removed and changed since a git revision, and what they affect downstream."""
    with user_errors():
        root = _root()
        current = _compile(as_of, var)
        lookup = _lazy_duckdb_columns(root)  # the base may leave columns undeclared too
        before = compile_base(root, base, current.as_of.isoformat(), current.variables, lookup)
        changes = compare(before, current)
        sizes: dict[str, tuple[int | None, int | None]] = {}
        if target is not None and changes:
            runner = open_runner(resolve_target(current.project.config, target), root)
            try:
                if isinstance(runner, DuckDBRunner):
                    load_seeds(runner, current.project, only_missing=True)
                sizes = size_changes(runner, before, current, [c.name for c in changes])
            finally:
                runner.close()
        _print_changes(changes, sizes, base, output)


def _print_changes(
    changes: list[SegmentChange],
    sizes: dict[str, tuple[int | None, int | None]],
    base: str,
    output: OutputFormat,
) -> None:
    if output is OutputFormat.json:
        rows = []
        for c in changes:
            row: dict[str, Any] = {"segment": c.name, "change": c.change, "detail": c.detail}
            if c.name in sizes:
                row["members_before"], row["members_after"] = sizes[c.name]
            rows.append(row)
        sys.stdout.write(json.dumps({"base": base, "segments": rows}, indent=2) + "\n")
        return
    if not changes:
        out.print(f"no segment changed since {base}")
        return
    table = rich_table(title=f"changes since {base}")
    for column in ("segment", "change", "detail"):
        table.add_column(column)
    if sizes:
        for column in ("before", "after", "delta"):
            table.add_column(column, justify="right")
    for c in changes:
        cells = [c.name, c.change, c.detail]
        if sizes:
            cells += _size_cells(sizes.get(c.name, (None, None)))
        table.add_row(*cells)
    out.print(table)


def _size_cells(size: tuple[int | None, int | None]) -> list[str]:
    before, after = size
    delta = "" if before is None or after is None else f"{after - before:+,}"
    return ["" if before is None else f"{before:,}", "" if after is None else f"{after:,}", delta]


# ---------------------------------------------------------------------------------------------
# segsql schema


@app.command("schema")
def schema_command(
    kind: Annotated[
        SchemaKind, typer.Option("--kind", "-k", help="Which YAML file kind.")
    ] = SchemaKind.definitions,
) -> None:
    """Print the JSON Schema of a file kind (for editor validation and completion)."""
    with user_errors():
        sys.stdout.write(schema_text(kind.value))


def schema_text(kind: str) -> str:
    source = resources.files("segsql") / "schemas" / f"{kind}.schema.json"
    if not source.is_file():
        raise SpecError(f"no JSON Schema for '{kind}' in this installation")
    return source.read_text(encoding="utf-8")
