"""Unit tests with fixtures: a few input rows in YAML, the exact members expected at an as_of.

They always run on embedded, in-memory DuckDB, whatever the production target: the project is
built for the test's as_of, every source relation the feature queries read is swapped (in the AST)
for a CTE of the fixture rows, and one query per test returns the members of every segment it
checks (plus one per entity whose feature values it checks). Columns a fixture row leaves out are
NULL, cast to the type declared under `tables:`, so a test names only the columns that matter.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from segsql.build import (
    ColumnLookup,
    CompiledProject,
    Entity,
    build_project,
    relation_expression,
)
from segsql.dialects import ENGINES, lower_portable
from segsql.emit import Target
from segsql.errors import SpecError, did_you_mean
from segsql.model import Expectation, ExpectedMember, Project, TargetConfig, UnitTestDef
from segsql.pipeline import effective_vars
from segsql.run import DuckDBRunner
from segsql.testing import CheckResult

UNIT_TARGET = TargetConfig("unit_tests", "duckdb", path=":memory:")
KEY = "segsql_key"


def unit_test_target() -> Target:
    return Target(UNIT_TARGET, ENGINES["duckdb"])


def selected_unit_tests(project: Project, selected: set[str]) -> list[UnitTestDef]:
    """Unit tests that expect members of at least one selected segment."""
    return [
        test
        for test in project.unit_tests.values()
        if any(e.segment.name in selected for e in test.expect)
    ]


def check_unit_tests(compiled: CompiledProject) -> None:
    """Raise what `segsql test` would reject in a unit test before running it (given tables and
    columns that are not declared, expected columns an entity lacks), so `validate` and the
    pre-commit hook catch it too. Runs nothing: the checks are the ones `run_unit_test` makes,
    on the fixtures' ASTs; they do not depend on as_of or vars, so any build of the project does."""
    for test in compiled.project.unit_tests.values():
        fixtures = FixtureSet(compiled.project, compiled, test)  # given tables and columns
        for entity_name in fixtures.entities_read():
            _expected_values(compiled, test, entity_name)  # expected members' keys and columns


def run_unit_tests(project: Project, tests: list[UnitTestDef]) -> list[CheckResult]:
    if not tests:
        return []
    runner = DuckDBRunner(unit_test_target(), project.config.root)
    # naive fixture timestamps mean UTC, whatever the machine's zone (TIMESTAMPTZ prints in it)
    runner.connection.execute("SET TimeZone = 'UTC'")
    builds: dict[str, CompiledProject] = {}
    try:
        return [run_unit_test(runner, project, test, builds) for test in tests]
    finally:
        runner.close()


def run_unit_test(
    runner: DuckDBRunner,
    project: Project,
    test: UnitTestDef,
    builds: dict[str, CompiledProject] | None = None,
) -> CheckResult:
    """One unit test; `builds` shares a build between tests with the same as_of, vars and columns."""
    started = time.perf_counter()
    builds = {} if builds is None else builds
    key = _build_key(project, test)
    compiled = builds.get(key) or builds.setdefault(key, _build_for(project, test))
    fixtures = FixtureSet(project, compiled, test)
    entities = fixtures.entities_read()
    actual = _actual_members(runner, compiled, fixtures, test)
    problems: list[list[str]] = []  # one block of lines per difference
    for expectation in test.expect:
        problems += [[line] for line in member_diff(expectation, actual[expectation.segment.name])]
    for entity_name in entities:
        wanted = _expected_values(compiled, test, entity_name)
        if wanted:
            found = _actual_values(runner, compiled, fixtures, entity_name, wanted)
            problems += value_diff(wanted, found)
    seconds = time.perf_counter() - started
    checked = ", ".join(e.segment.name for e in test.expect)
    if not problems:
        return CheckResult(
            "unit", test.name, test.name, True, f"as expected: {checked}", (), test.loc, seconds
        )
    message = f"{len(problems)} difference(s) in {checked} (as_of {compiled.as_of})"
    lines = tuple(line for block in problems for line in block)
    return CheckResult("unit", test.name, test.name, False, message, lines, test.loc, seconds)


def _build_key(project: Project, test: UnitTestDef) -> str:
    """What a unit test's build depends on: as_of, vars, the columns of undeclared tables."""
    undeclared = {
        f.table: _row_columns(f.rows)
        for f in test.given
        if f.table not in project.tables or not project.tables[f.table].columns
    }
    as_of = test.as_of.isoformat() if test.as_of else None
    return json.dumps([as_of, test.vars, undeclared], sort_keys=True, default=str)


def _build_for(project: Project, test: UnitTestDef) -> CompiledProject:
    """The project built at the test's as_of, with undeclared tables' columns taken from its rows."""
    as_of = test.as_of.isoformat() if test.as_of else None
    day, variables = effective_vars(project, dict(test.vars), as_of)
    given = {f.table: f for f in test.given}

    def fixture_columns(relation: str) -> list[str] | None:
        fixture = given.get(relation)
        return _row_columns(fixture.rows) if fixture else None

    return build_project(project, day, variables, fixture_columns)


def fixture_columns(project: Project, fallback: ColumnLookup) -> ColumnLookup:
    """Columns of an undeclared table as the unit tests' rows name them, else from `fallback`."""

    def lookup(relation: str) -> Sequence[str] | None:
        rows = [
            row
            for test in project.unit_tests.values()
            for f in test.given
            if f.table == relation
            for row in f.rows
        ]
        return _row_columns(tuple(rows)) if rows else fallback(relation)

    return lookup


def _row_columns(rows: tuple[dict[str, Any], ...]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return columns


# ---------------------------------------------------------------------------------------------
# fixtures: a CTE per input table, swapped in for the real relation


class FixtureSet:
    """The fixture CTEs of one unit test and the source relations they stand in for."""

    def __init__(self, project: Project, compiled: CompiledProject, test: UnitTestDef):
        self.project = project
        self.compiled = compiled
        self.test = test
        self.given = {f.table: f for f in test.given}
        self._check_given_tables()
        self.ctes: dict[str, tuple[str, exp.Select]] = {}  # source SQL -> (cte name, body)
        for number, table in enumerate(self._tables_read(), start=1):
            source = self._source_of(table)
            self.ctes[source.sql()] = (f"segsql_given_{number}", self._fixture_query(table))

    def entities_read(self) -> list[str]:
        names = {self.compiled.segments[e.segment.name].entity for e in self.test.expect}
        return sorted(names)

    def _tables_read(self) -> list[str]:
        """Tables (declared names or raw relations) the tested entities read, in a stable order."""
        tables: list[str] = []
        for name in self.entities_read():
            entity = self.compiled.entities[name].definition
            reads = [entity.table] + [f.source.table for f in entity.features if f.source]
            tables += [t for t in reads if t not in tables]
        return tables

    def _source_of(self, table: str) -> exp.Expr:
        declared = self.project.tables.get(table)
        return relation_expression(
            declared.relation if declared else table, self.project.config.dialect
        )

    def _check_given_tables(self) -> None:
        known = set(self.project.tables) | {e.table for e in self.project.entities.values()}
        known |= {
            f.source.table for e in self.project.entities.values() for f in e.features if f.source
        }
        for fixture in self.test.given:
            if fixture.table not in known:
                raise SpecError(
                    f"unit test '{self.test.name}' gives rows for unknown table '{fixture.table}'",
                    fixture.loc,
                    did_you_mean(fixture.table, known)
                    or "name a table under `tables:` or an entity's table",
                )

    def _fixture_query(self, table: str) -> exp.Select:
        columns = self._columns(table)
        fixture = self.given.get(table)
        rows = fixture.rows if fixture else ()
        if not rows:  # an empty table of the declared shape
            return exp.select(*[_value(None, c, t) for c, t in columns]).where(exp.false())
        parts = [exp.select(*[_value(row.get(c), c, t) for c, t in columns]) for row in rows]
        query = parts[0]
        for part in parts[1:]:
            query = exp.union(query, part, distinct=False, copy=False)  # type: ignore[assignment]
        return query

    def _columns(self, table: str) -> list[tuple[str, exp.DataType | None]]:
        declared = self.project.tables.get(table)
        fixture = self.given.get(table)
        rows = fixture.rows if fixture else ()
        if declared is not None and declared.columns:
            types = {n: _type(t, self.project.config.dialect) for n, t in declared.columns}
            for column in _row_columns(rows):
                if column not in types:
                    raise SpecError(
                        f"unit test '{self.test.name}': '{column}' is not a column of table '{table}'",
                        fixture.loc if fixture else self.test.loc,
                        did_you_mean(column, types) or f"columns: {', '.join(types)}",
                    )
            return list(types.items())
        if not rows:
            raise SpecError(
                f"unit test '{self.test.name}' gives no rows for table '{table}', whose columns are not declared",
                self.test.loc,
                f"add `given: {{{table}: [...]}}`, or declare '{table}' under `tables:` so it defaults to empty",
            )
        columns = _row_columns(rows)
        for entity in self.compiled.entities.values():  # an entity's listed columns, even unnamed
            if entity.definition.table == table:
                columns += [c for c in entity.columns if c not in columns]
        return [(c, None) for c in columns]

    def substitute(self, query: exp.Expr) -> exp.Expr:
        """The query with every source relation replaced by its fixture CTE."""

        def swap(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Table | exp.Anonymous) and node.sql() in self.ctes:
                return exp.to_table(self.ctes[node.sql()][0])
            return node

        return query.transform(swap, copy=True)

    def with_fixtures(self, query: exp.Query, entity: Entity) -> exp.Query:
        """Fixture CTEs, then the entity's feature relation (its own CTEs hoisted), then `query`."""
        features = lower_portable(self.substitute(entity.query), ENGINES["duckdb"])
        assert isinstance(features, exp.Select)
        body = features.copy()
        body.set("with_", None)
        ctes: list[tuple[str, exp.Query]] = [(a, body.copy()) for a, body in self.ctes.values()]
        ctes += [(cte.alias, cte.this) for cte in features.ctes]
        ctes.append((entity.relation_name, body))
        for alias, cte_body in ctes:
            query = query.with_(alias, as_=cte_body, copy=False)
        return query


def _type(declared: str | None, dialect: str) -> exp.DataType | None:
    return exp.DataType.build(declared, dialect=dialect) if declared else None


def _value(value: Any, column: str, kind: exp.DataType | None) -> exp.Expr:
    literal: exp.Expr = exp.null() if value is None else exp.convert(value)
    if isinstance(value, dict | list):
        literal = exp.Literal.string(str(value))
    if kind is not None:
        literal = exp.cast(literal, kind.copy())
    return exp.alias_(literal, column)


# ---------------------------------------------------------------------------------------------
# actual members and values


def _actual_members(
    runner: DuckDBRunner, compiled: CompiledProject, fixtures: FixtureSet, test: UnitTestDef
) -> dict[str, set[str]]:
    """Every checked segment's members (keys as text), one query per entity."""
    members: dict[str, set[str]] = {e.segment.name: set() for e in test.expect}
    for entity_name in fixtures.entities_read():
        entity = compiled.entities[entity_name]
        parts: list[exp.Select] = []
        for name in members:
            segment = compiled.segments[name]
            if segment.entity != entity_name:
                continue
            predicate = lower_portable(segment.predicate, ENGINES["duckdb"])
            parts.append(
                exp.select(
                    exp.alias_(exp.Literal.string(name), "segment"),
                    exp.alias_(exp.cast(exp.column(entity.key), exp.DataType.Type.TEXT), KEY),
                )
                .from_(entity.relation_name)
                .where(predicate)
            )
        query: exp.Query = parts[0]
        for part in parts[1:]:
            query = exp.union(query, part, distinct=False, copy=False)
        for segment_name, key in runner.query(fixtures.with_fixtures(query, entity)):
            members[str(segment_name)].add(str(key))
    return members


@dataclass(frozen=True)
class WantedValues:
    """Expected columns of one member (several segments may name the same member)."""

    segment: str
    member: ExpectedMember


def _expected_values(
    compiled: CompiledProject, test: UnitTestDef, entity_name: str
) -> list[WantedValues]:
    entity = compiled.entities[entity_name]
    wanted = []
    for expectation in test.expect:
        if compiled.segments[expectation.segment.name].entity != entity_name:
            continue
        for member in expectation.members:
            _check_member_columns(member, entity, test)
            if member.values:
                wanted.append(WantedValues(expectation.segment.name, member))
    return wanted


def _check_member_columns(member: ExpectedMember, entity: Entity, test: UnitTestDef) -> None:
    if member.key_column is not None and member.key_column != entity.key:
        raise SpecError(
            f"unit test '{test.name}': an expected member must start with the key '{entity.key}', not '{member.key_column}'",
            member.loc,
            f"e.g. `- {{{entity.key}: 1, ...}}`",
        )
    for column in member.values:
        if column not in entity.output_columns:
            raise SpecError(
                f"unit test '{test.name}': '{column}' is not a column or feature of entity '{entity.name}'",
                member.loc,
                did_you_mean(column, entity.output_columns)
                or f"known: {', '.join(entity.output_columns)}",
            )


def _actual_values(
    runner: DuckDBRunner,
    compiled: CompiledProject,
    fixtures: FixtureSet,
    entity_name: str,
    wanted: list[WantedValues],
) -> dict[str, dict[str, Any]]:
    """Key (as text) -> the wanted columns' values, read from the entity's feature relation."""
    entity = compiled.entities[entity_name]
    columns = sorted({c for w in wanted for c in w.member.values})
    key_text = exp.cast(exp.column(entity.key), exp.DataType.Type.TEXT)
    # as text: every type compares the same way (and TIMESTAMPTZ needs no time-zone module)
    values = [exp.alias_(exp.cast(exp.column(c), exp.DataType.Type.TEXT), c) for c in columns]
    query = exp.select(exp.alias_(key_text, KEY), *values).from_(entity.relation_name)
    rows = runner.query(fixtures.with_fixtures(query, entity))
    return {str(row[0]): dict(zip(columns, row[1:], strict=True)) for row in rows}


# ---------------------------------------------------------------------------------------------
# readable differences


def member_diff(expectation: Expectation, actual: set[str]) -> list[str]:
    expected = {_key_text(m.key) for m in expectation.members}
    name = expectation.segment.name
    lines = []
    missing = sorted(expected - actual, key=_natural)
    unexpected = sorted(actual - expected, key=_natural)
    if missing:
        lines.append(
            f"{name}: missing {len(missing)} (expected, not members): {', '.join(missing)}"
        )
    if unexpected:
        lines.append(
            f"{name}: unexpected {len(unexpected)} (members, not expected): {', '.join(unexpected)}"
        )
    return lines


def value_diff(wanted: list[WantedValues], found: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Per member whose values differ, a side-by-side table of those columns."""
    blocks: list[list[str]] = []
    for item in wanted:
        key = _key_text(item.member.key)
        actual = found.get(key)
        if actual is None:
            blocks.append([f"{item.segment}, member {key}: no such entity at this as_of"])
            continue
        wrong = [
            (column, expected, actual[column])
            for column, expected in item.member.values.items()
            if not same_value(expected, actual[column])
        ]
        if not wrong:
            continue
        width = max(len("column"), *(len(c) for c, _, _ in wrong))
        cells = [(c, _show(e), _show(a)) for c, e, a in wrong]
        value_width = max(len("expected"), *(len(e) for _, e, _ in cells))
        block = [f"{item.segment}, member {key}: {len(wrong)} value(s) differ"]
        block.append(f"    {'column':<{width}}  {'expected':<{value_width}}  actual")
        block += [f"    {c:<{width}}  {e:<{value_width}}  {a}" for c, e, a in cells]
        blocks.append(block)
    return blocks


def same_value(expected: Any, actual: str | None) -> bool:
    """A YAML value vs DuckDB's text of a value: numbers compare numerically, times as instants."""
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool):
        return actual.lower() == str(expected).lower()
    if isinstance(expected, int | float):
        number = _number(actual)
        return number is not None and math.isclose(expected, number, rel_tol=1e-9, abs_tol=1e-9)
    if str(expected) == actual:
        return True
    wanted, found = _instant(str(expected)), _instant(actual)
    return wanted is not None and wanted == found


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _instant(text: str) -> dt.datetime | None:
    """A date or timestamp as a UTC instant (naive means UTC, as the unit-test session is)."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _show(value: Any) -> str:
    return "NULL" if value is None else str(value)


def _key_text(key: Any) -> str:
    return str(key)


def _natural(text: str) -> tuple[int, float, str]:
    """Numeric keys in numeric order, then text."""
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)
