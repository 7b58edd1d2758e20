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
