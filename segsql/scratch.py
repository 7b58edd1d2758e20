"""SQL building blocks of a snapshot's scratch tables (segsql/history.py, segsql/running.py)."""

from __future__ import annotations

import datetime as dt

from sqlglot import exp


def date_literal(day: dt.date) -> exp.Expr:
    return exp.cast(exp.Literal.string(day.isoformat()), exp.DataType.Type.DATE)


def temporary() -> exp.Properties:
    return exp.Properties(expressions=[exp.TemporaryProperty()])


def temp_table(name: str, query: exp.Query, kind: str = "TABLE") -> exp.Create:
    return exp.Create(this=exp.to_table(name), kind=kind, expression=query, properties=temporary())


def drop(table: str, kind: str = "TABLE") -> exp.Drop:
    return exp.Drop(tables=[exp.to_table(table)], kind=kind, exists=True)


def range_index(table: str, column: str) -> list[exp.Expr]:
    """A BRIN index on `column` of a scratch table written sorted by it (a few kB: one entry
    per block range), then the table's statistics, so the planner uses the index for ranges."""
    index = exp.Index(
        table=exp.to_table(table),
        params=exp.IndexParameters(
            using=exp.var("brin"), columns=[exp.Ordered(this=exp.column(column), nulls_first=False)]
        ),
    )
    return [exp.Create(this=index, kind="INDEX"), exp.Analyze(tables=[exp.to_table(table)])]
