"""The `segsql` command line (typer). Commands are thin: they call `segsql.pipeline` and print.

User errors print `file:line:col`, the source line and a hint, and exit 2 (spec) or 1 (runtime);
never a Python traceback unless `--debug` is given.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Container, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

from segsql import __version__
from segsql.build import CompiledProject
from segsql.emit import (
    all_targets,
    manifest,
    remove_staged,
    resolve_target,
    segment_header,
    segment_query,
    to_sql,
    write_compiled,
)
from segsql.errors import ExecutionError, Location, SegsqlError, SpecError
from segsql.load import PROJECT_FILE, DefinitionReader, find_project_root, load_project
from segsql.model import Project
from segsql.pipeline import (
    CacheSetup,
    compile_heap,
    compile_project,
    effective_vars,
    emit_targets,
    parse_vars,
)
from segsql.run import DuckDBRunner, Runner, deploy, load_seeds, member_counts, open_runner
from segsql.select import select_segments
from segsql.yamlio import YMap, load_yaml

app = typer.Typer(
    name="segsql",
    help="Compile customer segments defined in YAML to warehouse SQL, and run them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# sqlglot logs a warning when it falls back to parsing text as a raw command ("'call f()' contains
# unsupported syntax"); segsql reports such an expression itself, located, so the log is noise.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


class _LazyConsole:
    """A rich Console made on first use: importing rich costs ~30 ms, which a command that
    prints one plain line (compile, after a one-line edit) need not pay."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


out = cast("Console", _LazyConsole(highlight=False, soft_wrap=True))
err = cast("Console", _LazyConsole(stderr=True, highlight=False, soft_wrap=True))


def rich_table(*headers: str, **options: Any) -> Table:
    """A rich Table (imported only by commands that print one)."""
    from rich.table import Table

    return Table(*headers, **options)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


class _State:
    project_dir: Path | None = None
    debug: bool = False
    exit_at_once: bool = False  # set by commands with nothing left to clean up (see main)


state = _State()

ProjectDir = Annotated[
    Path | None,
    typer.Option(
        "--project-dir",
        "-p",
        help="Project folder (default: nearest with segsql.yml).",
        envvar="SEGSQL_PROJECT_DIR",
    ),
]
TargetOpt = Annotated[
    str | None,
    typer.Option(
        "--target",
        "-t",
        help="Target name from segsql.yml, or an engine: duckdb, postgres, bigquery.",
    ),
]
SelectOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--select",
        "-s",
        help="Selectors: name, +name, name+, tag:x, kind:x, entity:x, owner:x, path:dir/.",
    ),
]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="Evaluation date YYYY-MM-DD (default: vars.as_of).")
]
VarOpt = Annotated[
    list[str] | None, typer.Option("--var", help="Override a var: --var name=value (repeatable).")
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]


@app.callback()
def main_options(
    project_dir: ProjectDir = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show Python tracebacks for errors.")
    ] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        out.print(f"segsql {__version__}")
        raise typer.Exit()
    state.project_dir = project_dir
    state.debug = debug


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn SegsqlError (and engine errors) into a located message and an exit code."""
    try:
        yield
    except SegsqlError as exc:
        if state.debug:
            raise
        root = state.project_dir or Path.cwd()
        err.print(exc.render(root), markup=False)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


def _root() -> Path:
    root = find_project_root(state.project_dir or Path.cwd())
    state.project_dir = root
    return root


def _compile(
    as_of: str | None,
    var: list[str] | None,
    runner: Runner | None = None,
    known: Container[str] | None = None,
    reader: DefinitionReader | None = None,
) -> CompiledProject:
    introspect = runner.table_columns if runner is not None else _lazy_duckdb_columns(_root())
    return compile_project(_root(), as_of, parse_vars(var), introspect, known, reader)


def _lazy_duckdb_columns(root: Path) -> Callable[[str], list[str] | None]:
    """Columns from the default DuckDB target, opened only if some entity's columns are undeclared."""
    runners: list[DuckDBRunner] = []

    def lookup(relation: str) -> list[str] | None:
        if not runners:
            project = load_project(root)
            target = resolve_target(project.config, None)
            if target.engine.name != "duckdb":
                return None
            runners.append(DuckDBRunner(target, root))
            load_seeds(runners[0], project, only_missing=True)
        return runners[0].table_columns(relation)

    return lookup


# ---------------------------------------------------------------------------------------------


@app.command()
def validate(as_of: AsOfOpt = None, var: VarOpt = None) -> None:
    """Check every definition (segments, features, KPIs): YAML, keys, references, cycles, Jinja, SQL and columns."""
    from segsql.kpis import build_kpis
    from segsql.unit import check_unit_tests

    with user_errors():
        compiled = _compile(as_of, var)
        check_unit_tests(compiled)  # what `segsql test` would reject, without running one
        # KPIs are only built by `segsql kpis` and `compile`: without this, a bad KPI expr,
        # column or standard name would pass validate and fail later
        kpis = build_kpis(compiled) if compiled.project.kpis else {}
        kpi_count = sum(len(entity_kpis) for entity_kpis in kpis.values())
        counted = f", {kpi_count} KPIs" if kpis else ""
        out.print(
            f"OK: {len(compiled.segments)} segments, {len(compiled.entities)} entities, {sum(len(e.features) for e in compiled.entities.values())} features{counted} (as_of {compiled.as_of})"
        )


@app.command("list")
def list_segments(
    select: SelectOpt = None,
    output: FormatOpt = OutputFormat.table,
    as_of: AsOfOpt = None,
    var: VarOpt = None,
) -> None:
    """List segments with their entity, kind, parent and owner."""
    with user_errors():
        compiled = _compile(as_of, var)
        rows = [_segment_row(compiled, name) for name in select_segments(compiled, select)]
        if output is OutputFormat.json:
            out.print_json(json.dumps(rows))
            return
        table = rich_table("segment", "entity", "kind", "parent", "owner", "tags", "defined at")
        for row in rows:
            table.add_row(
                row["name"],
                row["entity"],
                row["kind"] or "",
                row["parent"] or "",
                row["owner"] or "",
                ", ".join(row["tags"]),
                row["file"],
            )
        out.print(table)


def _segment_row(compiled: CompiledProject, name: str) -> dict[str, Any]:
    segment = compiled.segments[name]
    d = segment.definition
    root = compiled.project.config.root.resolve()
    path = d.loc.path.resolve()
    file = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    return {
        "name": name,
        "entity": segment.entity,
        "kind": d.kind,
        "parent": d.parent.name if d.parent else None,
        "owner": d.owner,
        "tags": list(d.tags),
        "description": d.description,
        "file": f"{file}:{d.loc.line}",
    }


@app.command()
def show(
    segment: Annotated[str, typer.Argument(help="Segment name.")],
    target: TargetOpt = None,
    standalone: Annotated[
        bool,
        typer.Option(
            "--standalone/--relation",
            help="Inline the feature relation as a CTE (paste-ready), or read the deployed one.",
        ),
    ] = True,
    as_of: AsOfOpt = None,
    var: VarOpt = None,
) -> None:
    """Print a segment's SQL for a target."""
    with user_errors():
        compiled = _compile(as_of, var)
        name = select_segments(compiled, [segment])[0]
        chosen = resolve_target(compiled.project.config, target)
        seg = compiled.segments[name]
        query = segment_query(seg, compiled.entities[seg.entity], chosen, standalone=standalone)
        sys.stdout.write(segment_header(compiled, seg, chosen) + to_sql(query, chosen) + ";\n")


@app.command("compile")
def compile_command(
    target: TargetOpt = None,
    all_targets_: Annotated[
        bool, typer.Option("--all-targets", help="Compile for every target in segsql.yml.")
    ] = False,
    select: SelectOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("target"),
    as_of: AsOfOpt = None,
    var: VarOpt = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 listing files that would change.")
    ] = False,
    check_sql: Annotated[
        bool,
        typer.Option(
            "--check-sql",
            # `\\[`: help is rich markup, which would swallow `[bigquery-check]`
            help="Analyse BigQuery targets' SQL offline with ZetaSQL (extra: segsql\\[bigquery-check]).",
        ),
    ] = False,
) -> None:
    """Write the SQL of every segment for a target (one file per segment, a deploy script, a manifest)."""
    with user_errors(), compile_heap() as settle:
        folder = out_dir if out_dir.is_absolute() else _root() / out_dir
        # --check writes nothing, not even the cache (segsql/cache.py).
        cache = None if check else CacheSetup(folder, partial=bool(select))
        compiled = (
            _compile(as_of, var, known=cache.segments.known(), reader=cache.definitions)
            if cache
            else _compile(as_of, var)
        )
        settle()
        config = compiled.project.config
        targets = all_targets(config) if all_targets_ else [resolve_target(config, target)]
        if check and target is None and not all_targets_:
            from segsql.cli_test import committed_targets

            # a plain --check checks what was committed, e.g. every target after --all-targets
            targets = committed_targets(config, folder) or targets
        names = select_segments(compiled, select)
        # a first compile's target folders are written by the workers that print them
        staged: dict[str, Path] | None = {} if cache is not None and not select else None
        created = [f for f in (folder, folder / "compiled") if not f.exists()]
        try:
            per_target = emit_targets(compiled, targets, names, cache, staged)
            if check_sql:
                from segsql.bigquery_check import check_targets
                from segsql.cli_test import check_sql_summary

                check_targets(compiled, targets, per_target)
                out.print(check_sql_summary(targets, per_target), markup=False)
            if check:
                from segsql.cli_test import check_drift

                data = manifest(compiled, targets, folder)
                return check_drift(folder, per_target, data, not select)
            segments = cache.segments if cache else None
            data = manifest(compiled, targets, folder, segments)
            write_compiled(folder, per_target, data, not select, segments, staged)
            if cache is not None:
                cache.install()  # only now: a failed compile leaves no cache behind either
        finally:
            if cache is not None:
                cache.discard()
            if staged is not None:
                remove_staged(folder, created)  # those not swapped in: the compile failed
        count = sum(len(files) for files in per_target.values())
        state.exit_at_once = True  # files written, caches installed, no connection open
        # plain: rich is not even imported for a compile that succeeds
        typer.echo(
            f"compiled {len(names)} segments for {', '.join(t.name for t in targets)}: {count} files in {folder}"
        )


@app.command()
def run(
    target: TargetOpt = None,
    select: SelectOpt = None,
    as_of: AsOfOpt = None,
    var: VarOpt = None,
    output: FormatOpt = OutputFormat.table,
) -> None:
    """Compile and execute: create the feature relations and one view (or table) per segment, then count members."""
    with user_errors():
        root = _root()
        project = load_project(root)
        effective_vars(project, parse_vars(var), as_of)  # fail on a bad date before connecting
        chosen = resolve_target(project.config, target)
        if chosen.engine.name == "duckdb":
            _check_seeds_folder(project)
        runner = open_runner(chosen, root)
        try:
            if isinstance(runner, DuckDBRunner):
                seeded = load_seeds(runner, project, only_missing=True)
                if seeded and output is OutputFormat.table:
                    err.print(
                        f"seeded {len(seeded)} table(s) from {project.config.seeds}: {', '.join(seeded)}"
                    )
            compiled = _compile(as_of, var, runner)
            names = select_segments(compiled, select)
            deploy(runner, compiled, names)
            counts = member_counts(runner, compiled, names)
        finally:
            runner.close()
        _print_counts(compiled, names, counts, chosen.name, output)


def _check_seeds_folder(project: Project) -> None:
    """`seeds:` naming a missing folder would otherwise surface as "table customers does not
    exist" from DuckDB; say what is wrong, where it is set."""
    folder, root = project.config.seeds, project.config.root
    if folder is None or folder.is_dir():
        return
    shown = folder.relative_to(root) if folder.is_relative_to(root) else folder
    config = root / PROJECT_FILE
    node = load_yaml(config)
    located = node.key_locs.get("seeds") if isinstance(node, YMap) else None
    raise SpecError(
        f"the seeds folder {shown} does not exist",
        located or Location(config),
        "create it and put the CSV/Parquet files of the source tables there, or remove `seeds:`",
    )


def _tree_order(compiled: CompiledProject, names: list[str]) -> list[tuple[str, int]]:
    """`names` as a tree, each segment right under its parent, with its level in the tree (the
    dependency order of `names` only guarantees parents come first). Segments without a parent
    among `names` are roots, grouped by entity."""
    chosen = set(names)
    children: dict[str | None, list[str]] = {}
    for name in names:
        parent = compiled.segments[name].definition.parent
        shown = parent.name if parent is not None and parent.name in chosen else None
        children.setdefault(shown, []).append(name)
    entities = list(dict.fromkeys(compiled.segments[name].entity for name in names))
    roots = sorted(
        children.get(None, []), key=lambda n: entities.index(compiled.segments[n].entity)
    )
    ordered: list[tuple[str, int]] = []

    def visit(name: str, level: int) -> None:
        ordered.append((name, level))
        for child in children.get(name, []):
            visit(child, level + 1)

    for root in roots:
        visit(root, 0)
    return ordered


def _print_counts(
    compiled: CompiledProject,
    names: list[str],
    counts: dict[str, int],
    target: str,
    output: OutputFormat,
) -> None:
    rows: list[dict[str, Any]] = []
    for name in names:
        segment = compiled.segments[name]
        total = counts.get(f"entity:{segment.entity}", 0)
        parent = segment.definition.parent.name if segment.definition.parent else None
        parent_count = counts.get(parent) if parent else None
        rows.append(
            {
                "segment": name,
                "entity": segment.entity,
                "kind": segment.definition.kind,
                "parent": parent,
                "members": counts[name],
                "share_of_entity": round(counts[name] / total, 4) if total else None,
                "share_of_parent": round(counts[name] / parent_count, 4) if parent_count else None,
            }
        )
    if output is OutputFormat.json:
        out.print_json(
            json.dumps({"target": target, "as_of": compiled.as_of.isoformat(), "segments": rows})
        )
        return
    table = rich_table(title=f"segments on {target} as of {compiled.as_of}")
    table.add_column("segment", no_wrap=True)
    for column in ("entity", "kind"):
        table.add_column(column)
    for column in ("members", "% of entity", "% of parent"):
        table.add_column(column, justify="right")
    by_name = {row["segment"]: row for row in rows}
    for name, level in _tree_order(compiled, names):
        row = by_name[name]
        table.add_row(
            "  " * level + row["segment"],
            row["entity"],
            row["kind"] or "",
            f"{row['members']:,}",
            _pct(row["share_of_entity"]),
            _pct(row["share_of_parent"]),
        )
    out.print(table)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


@app.command()
def seed(target: TargetOpt = None) -> None:
    """Load the project's seed files (CSV/Parquet under `seeds:`) into a target as tables."""
    with user_errors():
        root = _root()
        project = load_project(root)
        chosen = resolve_target(project.config, target)
        _check_seeds_folder(project)
        runner = open_runner(chosen, root)
        try:
            if isinstance(runner, DuckDBRunner):
                loaded = load_seeds(runner, project, only_missing=False)
            else:
                from segsql.postgres import load_seeds_postgres

                loaded = load_seeds_postgres(runner, project)
        finally:
            runner.close()
        if not loaded:
            raise ExecutionError(
                "no seed files found",
                hint="set `seeds: data` in segsql.yml and put CSV/Parquet files there",
            )
        out.print(f"seeded {len(loaded)} table(s) on {chosen.name}: {', '.join(loaded)}")


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new project.")] = Path("."),
) -> None:
    """Create a small runnable project (segsql.yml, segments/, macros/, data/)."""
    from segsql.scaffold import scaffold

    with user_errors():
        created = scaffold(directory)
        out.print(
            f"created a segsql project in {directory} ({len(created)} files). Next: cd {directory} && segsql run"
        )


def main() -> None:
    try:
        app()
    except SystemExit as done:
        if not state.exit_at_once:
            raise
        # Everything is written and closed; what is left is freeing the compiled project
        # object by object, which took a recompile of 1,000 segments 60-80 ms.
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        with contextlib.suppress(OSError):  # e.g. stdout piped into a closed `head`
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


# Command groups defined in their own modules register themselves on `app` when imported.
from segsql import cli_docs, cli_history, cli_kpis, cli_lineage, cli_test  # noqa: E402,F401
