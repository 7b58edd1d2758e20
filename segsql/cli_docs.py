"""`segsql docs`: build the static documentation site (see `segsql.docs_site`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from segsql.build import CompiledProject
from segsql.cli import AsOfOpt, TargetOpt, VarOpt, _compile, _root, app, err, out, user_errors
from segsql.emit import _swap_in_folder, all_targets, resolve_target
from segsql.errors import ExecutionError
from segsql.history import Growth, growth, history_exists
from segsql.kpis import BASELINE, build_kpis, kpi_query, plan_kpis, result_columns
from segsql.load import load_project
from segsql.pipeline import effective_vars, parse_vars
from segsql.run import DuckDBRunner, Runner, deploy, load_seeds, member_counts, open_runner

if TYPE_CHECKING:  # the site builder is imported by `segsql docs` only: other commands start faster
    from segsql.docs_site import KpiColumn, SiteData


@app.command("docs")
def docs_command(
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder of the site (replaced whole).")
    ] = Path("target/docs"),
    with_data: Annotated[
        bool,
        typer.Option(
            "--with-data", help="Run every segment on a target and show member counts (DuckDB)."
        ),
    ] = False,
    target: TargetOpt = None,
    as_of: AsOfOpt = None,
    var: VarOpt = None,
) -> None:
    """Build a static docs site: a searchable segment catalogue, one page per segment, SVG lineage."""
    from segsql.docs_site import build_site

    with user_errors():
        compiled, data = (
            _with_data(target, as_of, var) if with_data else (_compile(as_of, var), None)
        )
        config = compiled.project.config
        targets = all_targets(config) or [resolve_target(config, None)]
        files = build_site(compiled, targets, data)
        folder = out_dir if out_dir.is_absolute() else _root() / out_dir
        try:
            _swap_in_folder(folder, files)
        except OSError as exc:
            raise ExecutionError(
                f"cannot write the docs site: {exc}", hint=f"check that {folder} is writable"
            ) from None
        pages = sum(1 for name in files if name.endswith(".html"))
        out.print(f"wrote {pages} pages to {folder}; open {folder / 'index.html'} in a browser")


def _with_data(
    target: str | None, as_of: str | None, var: list[str] | None
) -> tuple[CompiledProject, SiteData]:
    """Compile against the target's tables, create every segment there, count members, compute
    every KPI (one query per entity) and read the growth history if snapshots were recorded."""
    from segsql.docs_site import SiteData

    root = _root()
    project = load_project(root)
    effective_vars(project, parse_vars(var), as_of)  # a bad date fails before connecting
    chosen = resolve_target(project.config, target)
    runner = open_runner(chosen, root)
    try:
        if isinstance(runner, DuckDBRunner):
            seeded = load_seeds(runner, project, only_missing=True)
            if seeded:
                err.print(f"seeded {len(seeded)} table(s): {', '.join(seeded)}")
        compiled = _compile(as_of, var, runner)
        names = list(compiled.segments)
        deploy(runner, compiled, names)
        counts = member_counts(runner, compiled, names)
        kpis, kpi_columns = _kpi_values(runner, compiled, names)
        history = _growth_by_segment(runner, names)
    finally:
        runner.close()
    return compiled, SiteData(chosen.name, counts, kpis, kpi_columns, history)


def _kpi_values(
    runner: Runner, compiled: CompiledProject, names: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[KpiColumn, ...]]]:
    """`segsql kpis` for every segment: rows keyed by segment ("entity:<name>" for the entity)."""
    from segsql.docs_site import KpiColumn

    rows: dict[str, dict[str, Any]] = {}
    columns: dict[str, tuple[KpiColumn, ...]] = {}
    for plan in plan_kpis(compiled, names, build_kpis(compiled)):
        entity = plan.entity.name
        columns[entity] = tuple(KpiColumn(k.name, k.format, k.description) for k in plan.kpis)
        header = result_columns(plan)
        for values in runner.query(kpi_query(compiled, plan, runner.target)):
            row = dict(zip(header, values, strict=True))
            key = f"entity:{entity}" if row["segment"] == BASELINE else str(row["segment"])
            rows[key] = row
    return rows, columns


def _growth_by_segment(runner: Runner, names: list[str]) -> dict[str, tuple[Growth, ...]]:
    """Each segment's recorded sizes over time; nothing when no snapshot was ever taken."""
    if not history_exists(runner):
        return {}
    by_segment: dict[str, list[Growth]] = {}
    for row in growth(runner, names, None, None):
        by_segment.setdefault(row.segment, []).append(row)
    return {name: tuple(rows) for name, rows in by_segment.items()}
