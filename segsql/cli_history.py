"""`segsql snapshot`, `segsql growth`, `segsql flows`: segment membership over time."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from segsql.build import CompiledProject
from segsql.cli import (
    SelectOpt,
    TargetOpt,
    VarOpt,
    _root,
    app,
    err,
    out,
    rich_table,
    user_errors,
)
from segsql.drawing import check_plot_path
from segsql.emit import resolve_target
from segsql.errors import ExecutionError, SpecError
from segsql.history import (
    GROWTH_COLUMNS,
    Every,
    Flows,
    Growth,
    KpiTrend,
    SnapshotRun,
    backfill,
    compiler_for,
    flows,
    growth,
    history_exists,
    kpi_trend,
    sibling_groups,
    sizes,
    snapshot_dates,
)
from segsql.history_plot import write_plot
from segsql.kpis import format_kpi
from segsql.load import load_project
from segsql.model import Project
from segsql.pipeline import effective_vars, parse_as_of, parse_vars
from segsql.run import DuckDBRunner, Runner, load_seeds, open_runner
from segsql.select import select_segments

if TYPE_CHECKING:
    from rich.table import Table


class TableFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


FromOpt = Annotated[str | None, typer.Option("--from", help="First date YYYY-MM-DD.")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Last date YYYY-MM-DD (inclusive).")]


@contextmanager
def _history_runner(target: str | None) -> Iterator[tuple[Project, Runner]]:
    """The project and an open runner on the target (DuckDB: seeds loaded when missing)."""
    root = _root()
    project = load_project(root)
    runner = open_runner(resolve_target(project.config, target), root)
    try:
        if isinstance(runner, DuckDBRunner):
            load_seeds(runner, project, only_missing=True)
        yield project, runner
    finally:
        runner.close()


def _dates(
    project: Project,
    overrides: dict[str, Any],
    as_of: str | None,
    start: str | None,
    end: str | None,
    every: Every,
) -> list[dt.date]:
    if as_of is not None and (start or end):
        raise SpecError("give either --as-of or --from/--to, not both")
    if start is None and end is None:
        return [effective_vars(project, overrides, as_of)[0]]
    if start is None or end is None:
        raise SpecError(
            "--from and --to go together", hint="e.g. --from 2024-01-01 --to 2024-12-31"
        )
    return snapshot_dates(parse_as_of(start, "--from"), parse_as_of(end, "--to"), every)


@app.command()
def snapshot(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="One date (default: vars.as_of).")
    ] = None,
    start: FromOpt = None,
    end: ToOpt = None,
    every: Annotated[
        Every, typer.Option("--every", help="Step between --from and --to.")
    ] = Every.day,
    select: SelectOpt = None,
    target: TargetOpt = None,
    var: VarOpt = None,
) -> None:
    """Record segment membership as of each date in the history table (re-running a date replaces it)."""
    with user_errors(), _history_runner(target) as (project, runner):
        overrides = parse_vars(var)
        dates = _dates(project, overrides, as_of, start, end, every)

        def progress(run: SnapshotRun) -> None:
            err.print(f"snapshot {run.as_of}: {len(run.segments)} segment(s) recorded")

        runs = backfill(runner, compiler_for(project, overrides, runner), dates, select, progress)
        title = f"members recorded on {runner.target.name}"
        out.print(_sizes_table(sizes(runner, runs), [r.as_of for r in runs], title))


DATE_COLUMN = 13  # a date column's width: 10 characters, padding and border


def _sizes_table(counts: dict[tuple[str, dt.date], int], days: list[dt.date], title: str) -> Table:
    """One row per segment, one column per date (the last ones that fit the terminal): what a
    snapshot run recorded. Projects have more segments than a terminal has columns, so segments
    are the rows."""
    segments = list(dict.fromkeys(name for name, _ in counts))
    names = max((len(s) for s in segments), default=7) + 4
    shown = days[-max(1, (out.width - names) // DATE_COLUMN) :]
    if len(shown) < len(days):
        title += f" (last {len(shown)} of {len(days)} dates; all of them: segsql growth)"
    table = rich_table(title=title)
    table.add_column("segment", no_wrap=True)
    for day in shown:
        table.add_column(str(day), justify="right", no_wrap=True)
    for segment in segments:
        table.add_row(segment, *[_cell("size", counts.get((segment, d))) for d in shown])
    return table


@app.command("growth")
def growth_command(
    selector: Annotated[
        list[str] | None, typer.Argument(help="Segments (selector syntax); default: all.")
    ] = None,
    start: FromOpt = None,
    end: ToOpt = None,
    output: Annotated[TableFormat, typer.Option("--format", "-f")] = TableFormat.table,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also write a chart of size over time (.svg or .png)."),
    ] = None,
    kpis: Annotated[
        str | None,
        typer.Option(
            "--kpis",
            help="KPI trend: these KPIs (a,b) or all, per segment and date, over the members "
            "recorded on each date (features evaluated as of that date).",
        ),
    ] = None,
    target: TargetOpt = None,
    var: VarOpt = None,
) -> None:
    """Per segment and period: size, entered, exited, retained, net growth, growth rate (and KPIs)."""
    with user_errors(), _history_runner(target) as (project, runner):
        if plot is not None:
            check_plot_path(plot, "growth")  # before the queries: a typo costs no scan
        overrides = parse_vars(var)
        names = select_segments(_definitions(project, overrides, runner, end), selector)
        only = _kpi_names(kpis)
        _require_history(runner)
        rows = growth(
            runner,
            names,
            parse_as_of(start, "--from") if start else None,
            parse_as_of(end, "--to") if end else None,
        )
        trend = None
        if only is not None:
            compile_at = compiler_for(project, overrides, runner)
            trend = kpi_trend(runner, compile_at, names, [r.as_of for r in rows], only or None)
            _check_kpi_columns(trend)
        if plot is not None:
            write_plot(plot, rows)
            err.print(f"wrote {plot}")
        _print_growth(rows, output, trend)


def _kpi_names(option: str | None) -> list[str] | None:
    """None: no KPI trend; []: every KPI (`--kpis all`); else the named KPIs."""
    if option is None:
        return None
    names = [n for n in option.replace(" ", "").split(",") if n]
    if not names:
        raise SpecError(
            "--kpis needs KPI names", hint="e.g. --kpis revenue,churn_rate or --kpis all"
        )
    return [] if names == ["all"] else names


def _check_kpi_columns(trend: KpiTrend) -> None:
    clashes = [k for k in trend.kpis if k in GROWTH_COLUMNS]
    if clashes:
        raise SpecError(
            f"KPI {', '.join(clashes)} has the name of a growth column",
            hint="rename the KPI under `kpis:`",
        )


def _definitions(
    project: Project, overrides: dict[str, Any], runner: Runner, end: str | None
) -> CompiledProject:
    """The segments, to resolve selectors: built as of --to, else vars.as_of."""
    day = effective_vars(project, overrides, end)[0]
    return compiler_for(project, overrides, runner)(day)


def _require_history(runner: Runner) -> None:
    if not history_exists(runner):
        raise ExecutionError(
            f"no segment history on target '{runner.target.name}'",
            hint="record some first: segsql snapshot --from 2024-01-01 --to 2024-06-30 --every month",
        )


def _growth_dict(row: Growth) -> dict[str, Any]:
    return {
        "segment": row.segment,
        "previous_as_of": row.previous_as_of.isoformat() if row.previous_as_of else None,
        "as_of": row.as_of.isoformat(),
        "size": row.size,
        "previous_size": row.previous_size,
        "entered": row.entered,
        "exited": row.exited,
        "retained": row.retained,
        "net_growth": row.net_growth,
        "growth_rate": None if row.growth_rate is None else round(row.growth_rate, 6),
    }


def _print_growth(rows: Sequence[Growth], output: TableFormat, trend: KpiTrend | None) -> None:
    dicts = [_growth_dict(r) for r in rows]
    kpis = list(trend.kpis) if trend else []
    if trend is not None:
        for row, values in zip(rows, dicts, strict=True):
            values.update(trend.of(row.segment, row.as_of))
    if output is TableFormat.json:
        data = [{k: _json_number(v) for k, v in d.items()} for d in dicts]
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    columns = [*_growth_dict(_EMPTY), *kpis]
    if output is TableFormat.csv:
        sys.stdout.write(_csv(columns, [[_plain(d[c]) for c in columns] for d in dicts]))
        return
    table = rich_table(*[HEADERS.get(c, c) for c in GROWTH_COLUMNS])
    for d in dicts:
        table.add_row(*[_cell(c, d[c]) for c in GROWTH_COLUMNS])
    out.print(table)
    if trend is not None and kpis:
        _print_kpi_trend(dicts, trend)


def _print_kpi_trend(dicts: list[dict[str, Any]], trend: KpiTrend) -> None:
    """A second table: a KPI column per KPI would not fit beside the growth columns."""
    table = rich_table("segment", "as of", title="KPI trend (members recorded on each date)")
    for name in trend.kpis:
        table.add_column(name, justify="right")
    for d in dicts:
        cells = [format_kpi(d[k], trend.formats.get(k, "number")) for k in trend.kpis]
        table.add_row(d["segment"], d["as_of"], *cells)
    out.print(table)


def _json_number(value: Any) -> Any:
    """KPI values are DECIMAL(38, 9): whole ones as ints, the others as floats."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _plain(value: Any) -> Any:
    """A decimal without its trailing zeros (12.500000000 -> 12.5) for CSV."""
    if isinstance(value, decimal.Decimal):
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return value


HEADERS = {  # short table headers, so a period fits on one terminal line
    "previous_as_of": "from",
    "as_of": "to",
    "previous_size": "before",
    "net_growth": "net",
    "growth_rate": "growth",
}


_EMPTY = Growth("", None, dt.date(2000, 1, 1), 0, None, None, None, None, None, None)


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column == "growth_rate":
        return f"{value:+.1%}"
    if column == "net_growth":
        return f"{value:+,}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _csv(columns: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return buffer.getvalue()


@app.command("flows")
def flows_command(
    start: Annotated[str, typer.Option("--from", help="From date YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--to", help="To date YYYY-MM-DD.")],
    select: SelectOpt = None,
    output: Annotated[TableFormat, typer.Option("--format", "-f")] = TableFormat.table,
    target: TargetOpt = None,
    var: VarOpt = None,
) -> None:
    """Migration matrix between sibling segments: members moving from each to each, from and to none."""
    with user_errors(), _history_runner(target) as (project, runner):
        overrides = parse_vars(var)
        compiled = _definitions(project, overrides, runner, end)
        names = select_segments(compiled, select)
        groups = _flow_groups(compiled, names, explicit=bool(select))
        _require_history(runner)
        day1, day2 = parse_as_of(start, "--from"), parse_as_of(end, "--to")
        matrices = [flows(runner, group, day1, day2) for group in groups]
        _print_flows(matrices, output)


def _flow_groups(compiled: CompiledProject, names: list[str], explicit: bool) -> list[list[str]]:
    """--select: the selection is one group (one entity); default: every set of siblings."""
    if explicit:
        entities = sorted({compiled.segments[n].entity for n in names})
        if len(entities) > 1:
            raise SpecError(
                f"flows compares segments of one entity; the selection spans {', '.join(entities)}",
                hint="narrow --select, e.g. --select entity:customer",
            )
        return [names]
    groups = [g for g in sibling_groups(compiled, names) if len(g) > 1]
    if not groups:
        raise SpecError(
            "no sibling segments to compare",
            hint="pick the segments with --select, e.g. --select kind:lifecycle",
        )
    return groups


NONE_LABEL = "(none)"


def _flow_rows(matrix: Flows) -> list[dict[str, Any]]:
    labels: list[str | None] = [*matrix.segments, None]
    return [
        {
            "from": source or NONE_LABEL,
            "to": destination or NONE_LABEL,
            "members": matrix.count(source, destination),
        }
        for source in labels
        for destination in labels
        if (source, destination) != (None, None)
    ]


def _print_flows(matrices: list[Flows], output: TableFormat) -> None:
    if output is TableFormat.json:
        data = [
            {
                "from_date": m.start.isoformat(),
                "to_date": m.end.isoformat(),
                "segments": list(m.segments),
                "flows": _flow_rows(m),
            }
            for m in matrices
        ]
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    if output is TableFormat.csv:
        rows = [
            [m.start.isoformat(), m.end.isoformat(), r["from"], r["to"], r["members"]]
            for m in matrices
            for r in _flow_rows(m)
        ]
        sys.stdout.write(_csv(["from_date", "to_date", "from", "to", "members"], rows))
        return
    for matrix in matrices:
        out.print(_flow_table(matrix))


def _flow_table(matrix: Flows) -> Table:
    labels: list[str | None] = [*matrix.segments, None]
    table = rich_table(title=f"members moving from {matrix.start} (rows) to {matrix.end} (columns)")
    table.add_column("from \\ to", no_wrap=True)
    for label in labels:
        table.add_column(label or NONE_LABEL, justify="right")
    for source in labels:
        cells = [
            "" if (source, d) == (None, None) else f"{matrix.count(source, d):,}" for d in labels
        ]
        table.add_row(source or NONE_LABEL, *cells)
    return table
