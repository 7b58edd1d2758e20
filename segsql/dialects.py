"""Per-engine differences, in one place (after Ibis's tables of per-dialect rules).

sqlglot transpiles most SQL faithfully. Where it cannot know what we mean (date differences
between values of unknown type, hashing...), expressions use `segsql_*` portable functions, which
`lower_portable` replaces per engine with a form that means the same thing everywhere.
An engine overrides only what differs from `DEFAULT_LOWERINGS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlglot import exp

Lowering = Callable[[list[exp.Expr]], exp.Expr]


def _as_date(value: exp.Expr) -> exp.Expr:
    if isinstance(value, exp.Cast) and value.to.is_type(exp.DataType.Type.DATE):
        return value
    return exp.cast(value, exp.DataType.Type.DATE)


def _days_between(args: list[exp.Expr]) -> exp.Expr:
    """Whole days from args[0] to args[1], both taken as calendar dates (DATE vs TIMESTAMP safe)."""
    start, end = args
    return exp.DateDiff(this=_as_date(end), expression=_as_date(start), unit=exp.var("DAY"))


DEFAULT_LOWERINGS: dict[str, tuple[int, Lowering]] = {
    # name: (number of arguments, builder)
    "segsql_days_between": (2, _days_between),
}


@dataclass(frozen=True)
class Engine:
    """What segsql needs to know about one warehouse engine."""

    name: str
    sqlglot_dialect: str
    default_schema: str = "segments"
    lowerings: dict[str, tuple[int, Lowering]] = field(default_factory=dict)
    reads_files: bool = False  # CSV/Parquet paths usable as tables in place

    def lowering(self, name: str) -> tuple[int, Lowering] | None:
        return self.lowerings.get(name) or DEFAULT_LOWERINGS.get(name)


ENGINES: dict[str, Engine] = {
    "duckdb": Engine("duckdb", "duckdb", reads_files=True),
    "postgres": Engine("postgres", "postgres"),
    "bigquery": Engine("bigquery", "bigquery"),
}

PORTABLE_FUNCTIONS = tuple(sorted(DEFAULT_LOWERINGS))


def portable_name(node: exp.Expr) -> str | None:
    """The segsql_* name of a portable function call, else None."""
    if isinstance(node, exp.Anonymous) and str(node.this).lower().startswith("segsql_"):
        return str(node.this).lower()
    return None


def lower_portable(expression: exp.Expr, engine: Engine) -> exp.Expr:
    """Replace every `segsql_*` call with the engine's own form (bottom-up, so calls may nest)."""

    def lower(node: exp.Expr) -> exp.Expr:
        name = portable_name(node)
        if name is None:
            return node
        _arity, build = engine.lowering(name) or (0, None)
        if build is None:
            return node
        return build(list(node.expressions))

    return expression.transform(lower, copy=True)
