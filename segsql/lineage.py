"""Lineage: segments -> parents and set operands -> features -> source tables and columns.

Column-level lineage comes from the compiled feature relation itself: sqlglot's `lineage` traces
each output column through the CTEs to source columns, and the aggregate CTEs' filters (key, time
window, `from.where`) add the columns that decide *which* rows count. Nothing is guessed from text.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sqlglot import exp

from segsql.build import CompiledProject, Entity, Feature, Segment


@dataclass(frozen=True, order=True)
class SourceColumn:
    table: str
    column: str

    def __str__(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class SegmentLineage:
    name: str
    upstream: tuple[str, ...]  # parent and set operands, direct
    features: tuple[str, ...]  # features its membership reads (own and inherited terms)
    entity_columns: tuple[str, ...]  # entity-table columns its membership reads
    source_columns: tuple[SourceColumn, ...]
    macros: tuple[str, ...]


class Lineage:
    """Lineage of one compiled project; feature-column sources are computed once per entity."""

    def __init__(self, compiled: CompiledProject):
        self.compiled = compiled
        self._column_sources = cache(self._sources_of_entity)

    def segment(self, name: str) -> SegmentLineage:
        segment = self.compiled.segments[name]
        entity = self.compiled.entities[segment.entity]
        read = _columns_read(segment) | entity_filter_columns(entity)
        features = [f for f in entity.features if f.name in read]
        sources = self._column_sources(entity.name)
        columns: set[SourceColumn] = set()
        for column in read:
            columns |= sources.get(column, set())
        macros = set(segment.macros)
        for ancestor in self.compiled.graph.ancestors(name):
            macros |= set(self.compiled.segments[ancestor].macros)
        for feature in features:
            macros |= set(feature.macros)
        return SegmentLineage(
            name=name,
            upstream=tuple(self.compiled.graph.upstream(name)),
            features=tuple(f.name for f in features),
            entity_columns=tuple(c for c in entity.columns if c in read),
            source_columns=tuple(sorted(columns)),
            macros=tuple(sorted(macros)),
        )

    def feature_sources(self, entity: str) -> dict[str, set[SourceColumn]]:
        return self._column_sources(entity)

    def segments_reading(self, column: SourceColumn) -> list[str]:
        """Impact analysis: every segment whose membership depends on a source column."""
        return [n for n in self.compiled.segments if column in self.segment(n).source_columns]

    def _sources_of_entity(self, entity_name: str) -> dict[str, set[SourceColumn]]:
        # imported here: a recompile whose lineage is all cached never needs sqlglot's optimizer
        from sqlglot.lineage import lineage as sqlglot_lineage
        from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

        entity = self.compiled.entities[entity_name]
        schema = _schema(self.compiled)
        filters = _aggregate_filters(entity)
        dialect = self.compiled.project.config.dialect
        result: dict[str, set[SourceColumn]] = {}
        # One call for every output column: the query is qualified once and CTE work is shared
        # (a call per column re-qualified the whole query each time: most of a compile's time).
        nodes = sqlglot_lineage(None, entity.query, schema, dialect=dialect, trim_selects=False)
        for column in entity.output_columns:
            node = nodes[normalize_identifiers(column, dialect=dialect).name]
            found = {c for n in node.walk() if (c := _source_of(n)) is not None}
            result[column] = found | filters.get(column, set())
        derived = {f.name: f for f in entity.features if f.definition.source is None}
        for name in derived:  # a derived feature also depends on the row filters of what it reads
            for dep in _transitive(name, derived):
                result[name] |= filters.get(dep, set())
        return result


def _columns_read(segment: Segment) -> set[str]:
    return {c.name for term in segment.terms for c in term.find_all(exp.Column)}


def entity_filter_columns(entity: Entity) -> set[str]:
    """Columns every member of the entity is filtered on: `time` drops entities created later."""
    return {entity.definition.time} if entity.definition.time else set()


def _schema(compiled: CompiledProject) -> dict[str, dict[str, str]]:
    """Declared tables as sqlglot's lineage wants them, so unqualified columns resolve."""
    return {
        table.relation: {name: kind or "text" for name, kind in table.columns}
        for table in compiled.project.tables.values()
        if table.columns
    }


def _source_of(node: object) -> SourceColumn | None:
    expression = getattr(node, "expression", None)
    if not isinstance(expression, exp.Table):
        return None
    name = str(getattr(node, "name", ""))
    return SourceColumn(_table_name(expression), name.rsplit(".", 1)[-1])


def _table_name(table: exp.Table) -> str:
    return ".".join(part.name for part in table.parts)


def _aggregate_filters(entity: Entity) -> dict[str, set[SourceColumn]]:
    """Feature name -> source columns in its aggregate's WHERE and GROUP BY (which rows count)."""
    result: dict[str, set[SourceColumn]] = {}
    for cte in entity.query.ctes:
        select = cte.this
        if not isinstance(select, exp.Select) or select.args.get("group") is None:
            continue
        table = select.find(exp.Table)
        if table is None:
            continue
        name = _table_name(table)
        clauses = [select.args.get("where"), select.args.get("group")]
        columns = {
            SourceColumn(name, c.name)
            for clause in clauses
            if clause
            for c in clause.find_all(exp.Column)
        }
        for projection in select.expressions:
            result[projection.alias_or_name] = columns
    return result


def _transitive(name: str, derived: dict[str, Feature]) -> set[str]:
    """Every feature a derived feature reads, directly or through other derived features."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        feature = derived.get(todo.pop())
        for dep in feature.depends_on if feature else ():
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen
