"""Raw definitions: what the YAML says, validated for shape but not yet resolved.

These are frozen so later stages cannot change them; resolved forms (`segsql.build`) live apart,
as SQLMesh keeps its raw models apart from rendered ones.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from segsql.errors import Location

SEGMENT_KINDS = (
    "demographic",
    "geographic",
    "behavioral",
    "psychographic",
    "value",
    "needs",
    "firmographic",
    "technographic",
    "lifecycle",
)
ENGINES = ("duckdb", "postgres", "bigquery")
Materialize = Literal["view", "table"]
WindowUnit = Literal["day", "week", "month", "year"]


@dataclass(frozen=True)
class Expr:
    """A piece of user SQL (possibly with Jinja) and where its text starts in the file."""

    text: str
    loc: Location


@dataclass(frozen=True)
class Ref:
    """A reference to another definition by name, located for 'not found' errors."""

    name: str
    loc: Location


@dataclass(frozen=True)
class Window:
    """A trailing time window `N unit`, ending at (and including) the as-of date."""

    amount: int
    unit: WindowUnit

    def start(self, as_of: dt.date) -> dt.date:
        """The exclusive lower bound: rows are in the window when as_of - window < date <= as_of."""
        if self.unit == "day":
            return as_of - dt.timedelta(days=self.amount)
        if self.unit == "week":
            return as_of - dt.timedelta(weeks=self.amount)
        months = self.amount * (12 if self.unit == "year" else 1)
        return _minus_months(as_of, months)

    def __str__(self) -> str:
        return f"{self.amount} {self.unit}{'s' if self.amount != 1 else ''}"


def _minus_months(day: dt.date, months: int) -> dt.date:
    """Calendar month arithmetic, clamping the day (2024-03-31 minus 1 month is 2024-02-29)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(day.day, last_day))


@dataclass(frozen=True)
class TableDef:
    name: str
    relation: str
    columns: tuple[tuple[str, str | None], ...]  # (name, SQL type or None), in declared order
    description: str | None
    loc: Location

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


@dataclass(frozen=True)
class FeatureSource:
    table: str
    key: str
    time: str | None
    where: Expr | None
    loc: Location


@dataclass(frozen=True)
class FeatureDef:
    name: str
    expr: Expr
    source: FeatureSource | None
    window: Window | None
    default: Any
    description: str | None
    loc: Location


@dataclass(frozen=True)
class EntityDef:
    name: str
    table: str
    key: str
    time: str | None  # when set, entities whose time is after as_of do not exist yet
    columns: tuple[str, ...] | None
    features: tuple[FeatureDef, ...]
    description: str | None
    materialize: Materialize
    loc: Location


@dataclass(frozen=True)
class SegmentDef:
    name: str
    entity: Ref | None
    kind: str | None
    description: str | None
    where: tuple[Expr, ...]
    parent: Ref | None
    union: tuple[Ref, ...]
    intersect: tuple[Ref, ...]
    exclude: tuple[Ref, ...]
    owner: str | None
    tags: tuple[str, ...]
    materialize: Materialize
    definition_hash: str  # of this definition's own YAML, so a diff shows exactly what changed
    loc: Location
    freeze: dt.date | None = None  # static segment: membership as recorded on this date (history)
    tests: tuple[DataTest, ...] = ()  # declared data tests (`segsql test`)
    # group of mutually exclusive segments this one belongs to: a name the YAML gives, or the
    # `sibling_group` that `exclusive: true` stands for
    exclusive: str | None = None

    @property
    def references(self) -> tuple[Ref, ...]:
        """Every segment this one is defined in terms of."""
        parent = (self.parent,) if self.parent else ()
        return parent + self.union + self.intersect + self.exclude


def sibling_group(parent: str | None, entity: str | None) -> str | None:
    """The group `exclusive: true` puts a segment in: its siblings under the same parent that say
    `exclusive: true` too (for top-level segments, those of the same entity). The name has spaces,
    so it cannot collide with a group named in YAML; None when there is nothing to group by."""
    if parent:
        return f"children of {parent}"
    if entity:
        return f"top-level {entity} segments"
    return None


# Data tests a segment may declare: name -> whether it takes a number (`{min_size: 100}`).
DATA_TESTS = {
    "not_empty": False,
    "min_size": True,
    "max_size": True,
    "min_share_of_parent": True,
    "max_share_of_parent": True,
}


@dataclass(frozen=True)
class DataTest:
    """A declared check on a segment's size: `not_empty`, `{min_size: 100}`, ..."""

    kind: str
    value: float | None
    loc: Location

    def __str__(self) -> str:
        return self.kind if self.value is None else f"{self.kind}({self.value:g})"


@dataclass(frozen=True)
class Fixture:
    """Rows of one input table in a unit test; unnamed columns are NULL."""

    table: str
    rows: tuple[dict[str, Any], ...]
    loc: Location


@dataclass(frozen=True)
class ExpectedMember:
    key: Any
    key_column: str | None  # as written in a mapping member (must be the entity key)
    values: dict[str, Any]  # optional expected columns/features of this member
    loc: Location


@dataclass(frozen=True)
class Expectation:
    """The exact members a unit test expects in one segment."""

    segment: Ref
    members: tuple[ExpectedMember, ...]
    loc: Location


@dataclass(frozen=True)
class UnitTestDef:
    name: str
    description: str | None
    as_of: dt.date | None
    vars: dict[str, Any]
    given: tuple[Fixture, ...]
    expect: tuple[Expectation, ...]
    loc: Location


KPI_FORMATS = ("number", "percent", "currency")


@dataclass(frozen=True)
class KpiDef:
    """A KPI: an aggregate over an entity's feature relation (`segsql.kpis`).

    Without `expr` it names a KPI of the standard pack (or the whole pack: `standard`)."""

    name: str
    entity: Ref | None
    expr: Expr | None
    format: str | None  # one of KPI_FORMATS; None: the standard KPI's own, else "number"
    description: str | None
    loc: Location


@dataclass(frozen=True)
class TargetConfig:
    name: str
    engine: str
    path: str | None = None
    schema: str | None = None
    dsn_env: str | None = None
    project: str | None = None
    dataset: str | None = None
    # where the source tables named without a schema (dataset) are, on this target
    source_schema: str | None = None
    source_dataset: str | None = None
    loc: Location | None = None


@dataclass(frozen=True)
class ProjectConfig:
    root: Path
    name: str
    dialect: str
    vars: dict[str, Any]
    seeds: Path | None
    targets: dict[str, TargetConfig]
    default_target: str
    loc: Location


@dataclass(frozen=True)
class Project:
    config: ProjectConfig
    tables: dict[str, TableDef] = field(default_factory=dict)
    entities: dict[str, EntityDef] = field(default_factory=dict)
    segments: dict[str, SegmentDef] = field(default_factory=dict)
    macro_files: tuple[Path, ...] = ()
    unit_tests: dict[str, UnitTestDef] = field(default_factory=dict)
    kpis: dict[str, KpiDef] = field(default_factory=dict)
