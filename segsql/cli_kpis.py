"""`segsql kpis` and `segsql overlap`: sizing and comparing segments, one query per entity."""

from __future__ import annotations

import csv
import decimal
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from segsql.build import CompiledProject
from segsql.cli import (
    AsOfOpt,
    SelectOpt,
    TargetOpt,
    VarOpt,
    _compile,
    _root,
    app,
    err,
    out,
    rich_table,
    user_errors,
)
from segsql.drawing import check_plot_path, write_drawing
from segsql.emit import resolve_target
from segsql.kpis import (
    BASELINE,
    KpiPlan,
    build_kpis,
    format_kpi,
    kpi_query,
    plan_kpis,
    result_columns,
    result_formats,
    split_values,
)
from segsql.load import load_project
from segsql.overlap import heatmap, overlap_pairs, overlap_query, plan_overlap
from segsql.pipeline import effective_vars, parse_vars
from segsql.run import DuckDBRunner, Runner, load_seeds, open_runner
from segsql.select import select_segments

if TYPE_CHECKING:
    from rich.table import Table


class TableFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class Metric(StrEnum):
    jaccard = "jaccard"
    containment = "containment"
    shared = "shared"


HEADERS = {"share_of_entity": "% of entity", "share_of_parent": "% of parent"}
TableFormatOpt = Annotated[TableFormat, typer.Option("--format", "-f", help="Output format.")]


@contextmanager
def _runner(target: str | None, as_of: str | None, var: list[str] | None) -> Iterator[Runner]:
    """A connection to the target; on DuckDB the project's seeds are loaded where missing."""
    root = _root()
    project = load_project(root)
    effective_vars(project, parse_vars(var), as_of)  # fail on a bad date before connecting
    runner = open_runner(resolve_target(project.config, target), root)
    try:
        if isinstance(runner, DuckDBRunner):
            load_seeds(runner, project, only_missing=True)
        yield runner
    finally:
        runner.close()


# ---------------------------------------------------------------------------------------------
# segsql kpis


@app.command("kpis")
def kpis_command(
    select: SelectOpt = None,
    kpis: Annotated[
        str | None, typer.Option("--kpis", help="Only these KPIs, comma-separated: a,b.")
    ] = None,
    target: TargetOpt = None,
    as_of: AsOfOpt = None,
    var: VarOpt = None,
    output: TableFormatOpt = TableFormat.table,
) -> None:
    """Every KPI of every selected segment, with share of entity / parent and lift vs parent, in one query per entity."""
    with user_errors(), _runner(target, as_of, var) as runner:
        compiled = _compile(as_of, var, runner)
        names = select_segments(compiled, select)
        only = [k for k in (kpis or "").replace(" ", "").split(",") if k] or None
        plans = plan_kpis(compiled, names, build_kpis(compiled), only)
        rows = [row for plan in plans for row in _kpi_rows(runner, compiled, plan)]
        _print_kpis(compiled, plans, rows, runner.target.name, output)


def _kpi_rows(runner: Runner, compiled: CompiledProject, plan: KpiPlan) -> list[dict[str, Any]]:
    columns = result_columns(plan)
    result = runner.query(kpi_query(compiled, plan, runner.target))
    return [dict(zip(columns, row, strict=True)) for row in result]


def _print_kpis(
    compiled: CompiledProject,
    plans: list[KpiPlan],
    rows: list[dict[str, Any]],
    target: str,
    output: TableFormat,
) -> None:
    splits = split_values(rows, compiled) if any("segment_value" in r for r in rows) else []
    if output is TableFormat.json:
        data = {"target": target, "as_of": compiled.as_of.isoformat(), "rows": rows}
        if splits:
            data["splits"] = splits
        out.print_json(json.dumps(data, default=_json_value))
        return
    columns = list(dict.fromkeys(c for plan in plans for c in result_columns(plan)))
    if output is TableFormat.csv:
        _write_csv(columns, rows)
        return
    formats = result_formats(plans)
    kpi_columns = [c for c in columns[4:] if not c.startswith("lift_")]
    lift_columns = [c for c in columns if c.startswith("lift_")]
    _print_tables(f"KPIs on {target} as of {compiled.as_of}", rows, kpi_columns, formats)
    if lift_columns:
        _print_tables("lift vs parent (KPI / parent KPI)", rows, lift_columns, formats)
    if splits:
        title = "segment value of each split of the base (exclusive group)"
        table = rich_table("split", "segments", "segment value", title=title)
        for split in splits:
            value = format_kpi(split["segment_value"], "currency")
            table.add_row(split["split"], str(split["segments"]), value)
        out.print(table)


def _print_tables(
    title: str, rows: list[dict[str, Any]], columns: list[str], formats: dict[str, str]
) -> None:
    """As many tables as it takes to fit the terminal: squeezed into one, 15 KPI columns would
    wrap every number one character per line."""
    chunks = _fitting_chunks(rows, columns, formats, out.width)
    for index, chunk in enumerate(chunks):
        part = f" ({index + 1}/{len(chunks)})" if len(chunks) > 1 else ""
        out.print(_table(title + part, rows, chunk, formats))


def _header(column: str) -> str:
    return HEADERS.get(column, column.removeprefix("lift_"))


def _label(row: dict[str, Any]) -> str:
    label = f"all {row['entity']}" if row["segment"] == BASELINE else row["segment"]
    return "  " * int(row["depth"]) + label


def _fitting_chunks(
    rows: list[dict[str, Any]], columns: list[str], formats: dict[str, str], width: int
) -> list[list[str]]:
    """Consecutive groups of columns whose natural widths (plus the segment column) fit `width`."""
    padding = 3  # a cell's two spaces and its border
    used = max((len(_label(r)) for r in rows), default=7) + padding + 1
    chunks: list[list[str]] = [[]]
    taken = used
    for column in columns:
        cells = [format_kpi(r.get(column), formats.get(column, "number")) for r in rows]
        need = max(len(_header(column)), *(len(c) for c in cells)) + padding
        if chunks[-1] and taken + need > width:
            chunks.append([])
            taken = used
        chunks[-1].append(column)
        taken += need
    return chunks


def _table(
    title: str, rows: list[dict[str, Any]], columns: list[str], formats: dict[str, str]
) -> Table:
    table = rich_table(title=title)
    table.add_column("segment", no_wrap=True)
    for column in columns:
        table.add_column(_header(column), justify="right", overflow="fold")
    for row in rows:
        cells = [format_kpi(row.get(c), formats.get(c, "number")) for c in columns]
        table.add_row(_label(row), *cells)
    return table


def _json_value(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _write_csv(columns: list[str], rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    sys.stdout.write(buffer.getvalue())


# ---------------------------------------------------------------------------------------------
# segsql overlap


@app.command("overlap")
def overlap_command(
    select: SelectOpt = None,
    metric: Annotated[
        Metric, typer.Option("--metric", help="What the matrix shows (table format).")
    ] = Metric.jaccard,
    target: TargetOpt = None,
    as_of: AsOfOpt = None,
    var: VarOpt = None,
    output: TableFormatOpt = TableFormat.table,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also write a heat map of the --metric (.svg or .png)."),
    ] = None,
) -> None:
    """Pairwise shared members, Jaccard and containment of the selected segments (one query per entity)."""
    with user_errors(), _runner(target, as_of, var) as runner:
        if plot is not None:
            check_plot_path(plot, "overlap")  # before the query: a typo costs no scan
        compiled = _compile(as_of, var, runner)
        pairs = []
        for plan in plan_overlap(compiled, select_segments(compiled, select)):
            [counts] = runner.query(overlap_query(compiled, plan, runner.target))
            pairs += overlap_pairs(plan, counts)
        if plot is not None and pairs:
            write_drawing(plot, heatmap(pairs, metric.value))
            err.print(f"wrote {plot}")
    if output is TableFormat.json:
        out.print_json(json.dumps({"as_of": compiled.as_of.isoformat(), "pairs": pairs}))
    elif output is TableFormat.csv:
        _write_csv(list(pairs[0]) if pairs else ["a", "b"], pairs)
    else:
        _print_matrix(pairs, metric)


def _print_matrix(pairs: list[dict[str, Any]], metric: Metric) -> None:
    """Rows a, columns b; containment reads "share of a's members also in b"."""
    if not pairs:
        err.print("overlap needs at least two segments of one entity")
        return
    names = list(dict.fromkeys(p["a"] for p in pairs))
    cell = {(p["a"], p["b"]): p[metric.value] for p in pairs}
    table = rich_table(title=f"{metric.value} (row a, column b)")
    table.add_column("a \\ b", no_wrap=True)
    for name in names:
        table.add_column(name, justify="right")
    for a in names:
        values = ["-" if a == b else _matrix_cell(cell.get((a, b)), metric) for b in names]
        table.add_row(a, *values)
    out.print(table)


def _matrix_cell(value: Any, metric: Metric) -> str:
    if value is None:
        return ""
    return f"{value:,}" if metric is Metric.shared else f"{value:.3f}"
