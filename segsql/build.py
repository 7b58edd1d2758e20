"""Stage 4, build: raw definitions -> resolved entities and segments, as sqlglot ASTs.

For each entity it builds one *feature relation* query (one row per entity key: the entity's
columns plus every feature), and for each segment a *membership predicate* over that relation:
the conjunction of its parent's predicate, its own `where` terms and its set operands. SQL is
never pasted together as text: user expressions are parsed by sqlglot and checked (single scalar
expression, known columns, aggregates only where they belong), then assembled as trees.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, TypeVar

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import TokenType

from segsql.cache import entity_fingerprint, project_fingerprint, segment_fingerprint
from segsql.dialects import DEFAULT_LOWERINGS, portable_name, sqlglot_dialect
from segsql.errors import ErrorCollector, Location, SpecError, did_you_mean
from segsql.graph import DAG, CycleError
from segsql.model import EntityDef, Expr, FeatureDef, Project, SegmentDef, TableDef
from segsql.render import Renderer, renderer_for

T = TypeVar("T")
ColumnLookup = Callable[[str], Sequence[str] | None]
FILE_SUFFIXES = (".csv", ".parquet", ".json", ".csv.gz", ".tsv")
FORBIDDEN_NODES: tuple[type[exp.Expr], ...] = (
    exp.Query,
    exp.Table,
    exp.DDL,
    exp.DML,
    exp.Command,
)
ENTITY_ALIAS = "e"
ENTITY_ROWS = "entity_rows"  # the feature relation's CTE of the entity's rows on as_of
KEY_ALIAS = "segsql_key"


# ---------------------------------------------------------------------------------------------
# resolved forms


@dataclass(frozen=True)
class Feature:
    name: str
    expression: exp.Expr
    definition: FeatureDef
    depends_on: tuple[str, ...]  # other features (derived features only)
    macros: tuple[str, ...]


@dataclass(frozen=True)
class Entity:
    name: str
    definition: EntityDef
    source: exp.Expr  # the entity's table (or file reader), as a FROM-able expression
    source_table: str | None  # the declared table's name, when declared
    key: str
    columns: tuple[str, ...]  # the entity table's columns, key first
    features: tuple[Feature, ...]
    query: exp.Select  # the feature relation: one row per key

    @property
    def relation_name(self) -> str:
        return f"{self.name}_features"

    @property
    def output_columns(self) -> tuple[str, ...]:
        return self.columns + tuple(f.name for f in self.features)


@dataclass(frozen=True, eq=False)
class Segment:
    """A resolved segment. Its expressions are resolved when first read: a compile that finds
    the segment unchanged in its cache (segsql/cache.py) never renders or parses it."""

    name: str
    definition: SegmentDef
    entity: str
    depth: int
    resolve: Callable[[], ResolvedSegment] = field(repr=False, compare=False)

    @functools.cached_property
    def resolved(self) -> ResolvedSegment:
        return self.resolve()

    @property
    def terms(self) -> tuple[exp.Expr, ...]:
        """AND-ed: the whole membership predicate, inherited terms first."""
        return self.resolved.terms

    @property
    def own_terms(self) -> tuple[exp.Expr, ...]:
        return self.resolved.own_terms

    @property
    def columns(self) -> tuple[str, ...]:
        """Feature-relation columns its own `where` reads."""
        return self.resolved.columns

    @property
    def macros(self) -> tuple[str, ...]:
        return self.resolved.macros

    @property
    def predicate(self) -> exp.Expr:
        return exp.and_(*self.terms) if self.terms else exp.true()


@dataclass(frozen=True)
class ResolvedSegment:
    terms: tuple[exp.Expr, ...]
    own_terms: tuple[exp.Expr, ...]
    columns: tuple[str, ...]
    macros: tuple[str, ...]


@dataclass(frozen=True)
class CompiledProject:
    project: Project
    as_of: dt.date
    variables: dict[str, Any]
    entities: dict[str, Entity]
    segments: dict[str, Segment]  # in dependency order: parents before children
    graph: DAG[str]
    macro_origin: dict[str, str] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)  # segment -> key (cache.py)
    entity_fingerprints: dict[str, str] = field(default_factory=dict)  # entity -> key


# ---------------------------------------------------------------------------------------------
# entry point


def build_project(
    project: Project,
    as_of: dt.date,
    variables: dict[str, Any],
    introspect: ColumnLookup | None = None,
    known: Container[str] | None = None,
) -> CompiledProject:
    """Resolve and check everything; raises SpecErrors listing every problem found.

    With `known` (the compile cache's fingerprints, segsql/cache.py) every segment gets a
    fingerprint, and one whose fingerprint is known (it was built from exactly these inputs
    before, and passed every check) is resolved only when something reads its expressions.
    Without it (every command but compile) no fingerprint is computed.
    """
    errors = ErrorCollector()
    renderer = renderer_for(project.macro_files, variables, as_of)
    context = _Context(project, renderer, errors, as_of, known)
    entities: dict[str, Entity] = {}
    looked_up: set[str] = set()  # entities whose columns came from a database
    for entity_def in project.entities.values():
        entity = context.capture(_entity_of_last_build, entity_def, context, introspect, looked_up)
        if entity is not None:
            entities[entity.name] = entity
    errors.raise_if_any()
    _LAST_ENTITIES[:] = [
        (_entity_key(e.definition, context), e) for n, e in entities.items() if n not in looked_up
    ]
    if known is not None:
        base = project_fingerprint(project, as_of, variables)
        context.entity_prints = {n: entity_fingerprint(e, base) for n, e in entities.items()}
    graph = segment_graph(project, errors)
    errors.raise_if_any()
    segments: dict[str, Segment] = {}
    for name in graph.sorted():
        definition = project.segments[name]
        if any(r.name not in segments for r in definition.references):
            continue  # a segment it reads failed: that error is reported, this one would echo it
        segment = context.capture(build_segment, definition, entities, segments, context)
        if segment is not None:
            segments[name] = segment
    errors.raise_if_any()
    return CompiledProject(
        project,
        as_of,
        variables,
        entities,
        segments,
        graph,
        dict(renderer.macro_origin),
        context.segment_prints,
        context.entity_prints,
    )


@dataclass
class _Context:
    project: Project
    renderer: Renderer
    errors: ErrorCollector
    as_of: dt.date
    known: Container[str] | None = None
    entity_prints: dict[str, str] = field(default_factory=dict)
    segment_prints: dict[str, str] = field(default_factory=dict)

    def capture(self, step: Callable[..., T], *args: Any) -> T | None:
        """Run one definition's step; its spec error is collected and the next definition goes on."""
        try:
            return step(*args)
        except SpecError as exc:
            self.errors.extend([exc])
            return None

    @property
    def dialect(self) -> str:
        return self.project.config.dialect


# ---------------------------------------------------------------------------------------------
# expressions: render, parse, check


@dataclass(frozen=True)
class ParsedExpr:
    tree: exp.Expr
    macros: tuple[str, ...]


def parse_expression(expr: Expr, context: _Context, what: str) -> ParsedExpr:
    """Render Jinja, parse one scalar expression and refuse statements, subqueries and tables."""
    rendered = context.renderer.render(expr)
    changed = rendered.text != expr.text
    try:
        statements = [
            s
            for s in sqlglot.parse(rendered.text, read=sqlglot_dialect(context.dialect))
            if s is not None
        ]
    except (ParseError, TokenError) as exc:
        raise _parse_error(exc, expr, rendered.text if changed else None, what) from None
    if len(statements) != 1 or _has_semicolon(rendered.text, context.dialect):
        found = f"{len(statements)} statements" if len(statements) != 1 else "a ';' after it"
        raise SpecError(
            f"{what} must be a single expression, found {found}",
            expr.loc,
            "remove the ';' - an expression cannot hold several statements",
        )
    tree = statements[0]
    keyword = _statement_keyword(tree, rendered.text, context.dialect)
    if keyword is not None:  # COMMIT, ATTACH 'x': statements that read no table
        article = "an" if keyword[0] in "AEIOU" else "a"
        raise SpecError(
            f"{what} must be a scalar expression, but contains {article} {keyword} statement",
            expr.loc,
            _NO_STATEMENTS,
        )
    forbidden = tree if isinstance(tree, FORBIDDEN_NODES) else tree.find(*FORBIDDEN_NODES)
    if forbidden is not None:
        description, hint = _describe(forbidden, tree)
        raise SpecError(
            f"{what} must be a scalar expression, but contains {description}", expr.loc, hint
        )
    _check_portable_calls(tree, expr)
    return ParsedExpr(tree, rendered.macros)


def _has_semicolon(text: str, dialect: str) -> bool:
    """A ';' outside string literals (sqlglot drops the empty statement after a trailing one)."""
    return ";" in text and any(
        token.token_type == TokenType.SEMICOLON
        for token in sqlglot.tokenize(text, read=sqlglot_dialect(dialect))
    )


def _statement_keyword(tree: exp.Expr, text: str, dialect: str) -> str | None:
    """The statement keyword a parsed statement starts with, e.g. COMMIT; None for expressions
    (a condition or a window is never a statement, even over a column named `comment`)."""
    if isinstance(tree, exp.Condition | exp.Window):
        return None
    tokens = sqlglot.tokenize(text, read=sqlglot_dialect(dialect))
    if not tokens:
        return None
    parser = Dialect.get_or_raise(dialect).parser_class
    first = tokens[0]
    is_statement = (
        first.token_type in parser.STATEMENT_PARSERS or first.token_type == TokenType.COMMAND
    )
    return first.text.upper() if is_statement else None


_READ_THROUGH_FEATURES = "read related tables through an entity feature (`from:`), not a subquery"
_NO_STATEMENTS = "write one condition over the entity's columns and features, e.g. `orders_90d > 0`; statements are never run"


def _describe(node: exp.Expr, tree: exp.Expr) -> tuple[str, str]:
    """What the forbidden node is, and the hint for it."""
    if isinstance(node, exp.Table) and not isinstance(tree, exp.Condition):
        node = tree  # `drop table customers`: the statement is the problem, not its table
    if isinstance(node, exp.Table):
        return f"a table reference ({node.sql()})", _READ_THROUGH_FEATURES
    if isinstance(node, exp.Query):
        return "a subquery", _READ_THROUGH_FEATURES
    keyword = {"truncatetable": "truncate"}.get(node.key, node.key).upper()
    article = "an" if keyword[0] in "AEIOU" else "a"
    return f"{article} {keyword} statement", _NO_STATEMENTS


def _parse_error(
    exc: ParseError | TokenError, expr: Expr, rendered: str | None, what: str
) -> SpecError:
    details = exc.errors[0] if isinstance(exc, ParseError) and exc.errors else {}
    description = details.get("description") or str(exc).splitlines()[0]
    loc = expr.loc
    if rendered is None and details.get("line"):
        loc = expr.loc.shifted(int(details["line"]) - 1, int(details.get("col") or 1))
    message = f"invalid SQL in {what}: {description}"
    if rendered is not None:
        message += f"\n  after Jinja the expression reads: {rendered}"
    return SpecError(
        message, loc, "write one SQL expression in the project dialect, e.g. `orders_90d > 0`"
    )


def _check_portable_calls(tree: exp.Expr, expr: Expr) -> None:
    for node in tree.find_all(exp.Anonymous):
        name = portable_name(node)
        if name is None:
            continue
        if name not in DEFAULT_LOWERINGS:
            raise SpecError(
                f"unknown portable function {name}()",
                expr.loc,
                did_you_mean(name, DEFAULT_LOWERINGS),
            )
        arity = DEFAULT_LOWERINGS[name][0]
        if len(node.expressions) != arity:
            raise SpecError(
                f"{name}() takes {arity} arguments, got {len(node.expressions)}", expr.loc
            )


def resolve_columns(
    tree: exp.Expr, known: Iterable[str], expr: Expr, scope: str
) -> tuple[str, ...]:
    """Check every column against `known` (case-insensitive), normalise its spelling, return those read."""
    by_lower = {name.lower(): name for name in known}
    used: list[str] = []
    for column in tree.find_all(exp.Column):
        if column.table:
            raise SpecError(
                f"qualified column '{column.sql()}' is not allowed here",
                expr.loc,
                f"write the bare column name '{column.name}': expressions are resolved against {scope}",
            )
        identifier = column.this
        name = identifier.name if isinstance(identifier, exp.Identifier) else str(identifier)
        match = name if name in by_lower.values() else by_lower.get(name.lower())
        if match is None:
            hint = (
                did_you_mean(name, by_lower.values())
                or f"known: {', '.join(sorted(by_lower.values()))}"
            )
            raise SpecError(f"unknown column '{name}' in {scope}", expr.loc, hint)
        column.set("this", exp.to_identifier(match))
        if match not in used:
            used.append(match)
    return tuple(used)


def _check_no(
    tree: exp.Expr, node_type: type[exp.Expr], expr: Expr, message: str, hint: str
) -> None:
    if tree.find(node_type) is not None:
        raise SpecError(message, expr.loc, hint)


# ---------------------------------------------------------------------------------------------
# entities and their feature relation


# The entities of the last build, each with what it was built from (`_entity_key`).
_LAST_ENTITIES: list[tuple[tuple[Any, ...], Entity]] = []


def _entity_key(entity: EntityDef, context: _Context) -> tuple[Any, ...]:
    """Everything an entity is built from, but columns looked up in a database: its definition,
    the declared tables, the dialect and the renderer (one per macros, variables and as_of)."""
    tables = tuple(context.project.tables.values())
    return (entity, tables, context.dialect, context.renderer, context.as_of)


def _entity_of_last_build(
    entity: EntityDef,
    context: _Context,
    introspect: ColumnLookup | None,
    looked_up: set[str],
) -> Entity:
    """The entity as the last build of this process built it from the same inputs, else built
    (adding its name to `looked_up` if its columns came from a database).

    `segsql compile --watch` builds the project after every edit, and building an entity's
    feature relation (parsing each feature, one CTE per source) was a third of a recompile of
    the example project. Entities are never changed once built, so they can be shared; those
    whose columns were looked up are built again (the table may have changed since)."""
    key = _entity_key(entity, context)
    for known, built in _LAST_ENTITIES:
        if known == key:
            return built

    def lookup(relation: str) -> Sequence[str] | None:
        looked_up.add(entity.name)
        return introspect(relation) if introspect else None

    return build_entity(entity, context, lookup if introspect else None)


def build_entity(entity: EntityDef, context: _Context, introspect: ColumnLookup | None) -> Entity:
    table = context.project.tables.get(entity.table)
    relation = table.relation if table else entity.table
    columns = _entity_columns(entity, table, relation, introspect)
    if entity.key.lower() not in {c.lower() for c in columns}:
        raise SpecError(
            f"entity '{entity.name}': key '{entity.key}' is not a column of {relation}",
            entity.loc,
            did_you_mean(entity.key, columns) or f"columns: {', '.join(columns)}",
        )
    columns = (entity.key, *(c for c in columns if c.lower() != entity.key.lower()))
    if entity.time is not None and entity.time not in columns:
        raise SpecError(
            f"entity '{entity.name}': time '{entity.time}' is not a column of {relation}",
            entity.loc,
            did_you_mean(entity.time, columns)
            or "name the column holding when each entity was created",
        )
    _check_feature_names(entity, columns)
    features = _build_features(entity, columns, context)
    source = relation_expression(relation, context.dialect)
    query = feature_relation_query(entity, source, columns, features, context)
    return Entity(
        entity.name,
        entity,
        source,
        table.name if table else None,
        entity.key,
        columns,
        features,
        query,
    )


def _entity_columns(
    entity: EntityDef, table: TableDef | None, relation: str, introspect: ColumnLookup | None
) -> tuple[str, ...]:
    if entity.columns is not None:
        return entity.columns
    if table is not None and table.columns:
        return table.column_names
    found = introspect(relation) if introspect else None
    if not found:
        raise SpecError(
            f"entity '{entity.name}': the columns of '{relation}' are unknown",
            entity.loc,
            "declare them (`columns:` on the entity, or the table under `tables:`), or run against a DuckDB target that has the table",
        )
    return tuple(found)


def _check_feature_names(entity: EntityDef, columns: tuple[str, ...]) -> None:
    seen = {c.lower() for c in columns}
    for feature in entity.features:
        if feature.name.lower() in seen:
            raise SpecError(
                f"feature '{feature.name}' of entity '{entity.name}' clashes with a column or another feature",
                feature.loc,
                "rename the feature",
            )
        seen.add(feature.name.lower())


def relation_expression(relation: str, dialect: str) -> exp.Expr:
    """A table name (schema-qualified allowed) or, for a data file, a DuckDB reader of it in place."""
    if relation.lower().endswith(FILE_SUFFIXES):
        reader = "read_parquet" if relation.lower().endswith(".parquet") else "read_csv_auto"
        if relation.lower().endswith(".json"):
            reader = "read_json_auto"
        return exp.Anonymous(
            this=reader, expressions=[exp.Literal.string(str(PurePosixPath(relation)))]
        )
    return exp.to_table(relation, dialect=sqlglot_dialect(dialect))


def _build_features(
    entity: EntityDef, columns: tuple[str, ...], context: _Context
) -> tuple[Feature, ...]:
    names = [f.name for f in entity.features]
    built: dict[str, Feature] = {}
    for feature in entity.features:
        what = f"feature '{feature.name}'"
        parsed = parse_expression(feature.expr, context, what)
        if feature.source is None:
            built[feature.name] = _derived_feature(feature, parsed, columns, names, entity, what)
        else:
            built[feature.name] = _source_feature(feature, parsed, context, what)
    graph: DAG[str] = DAG({name: f.depends_on for name, f in built.items()})
    try:
        graph.check_acyclic()
    except CycleError as exc:
        raise SpecError(
            f"features of '{entity.name}' depend on each other in a cycle: {exc}", entity.loc
        ) from None
    return tuple(built[name] for name in names)


def _derived_feature(
    feature: FeatureDef,
    parsed: ParsedExpr,
    columns: tuple[str, ...],
    names: list[str],
    entity: EntityDef,
    what: str,
) -> Feature:
    known = [*columns, *(n for n in names if n != feature.name)]
    used = resolve_columns(parsed.tree, known, feature.expr, f"entity '{entity.name}'")
    for agg in parsed.tree.find_all(exp.AggFunc):
        if agg.find_ancestor(exp.Window) is None:
            raise SpecError(
                f"{what} aggregates ({agg.sql()}) but has no `from:`",
                feature.expr.loc,
                "add `from: {table: ..., key: ...}` to aggregate related rows, or use a window function (... OVER (...))",
            )
    tree = parsed.tree.transform(lambda n: _break_ties(n, entity.key), copy=False)
    depends = tuple(n for n in used if n in names)
    return Feature(feature.name, tree, feature, depends, parsed.macros)


def _break_ties(node: exp.Expr, key: str) -> exp.Expr:
    """Append the entity key to a window's ORDER BY so ranks are the same on every run and engine."""
    if not isinstance(node, exp.Window):
        return node
    order = node.args.get("order")
    if order is None:
        return node
    ordered = order.expressions
    if any(isinstance(o.this, exp.Column) and o.this.name == key for o in ordered):
        return node
    order.set("expressions", [*ordered, exp.Ordered(this=exp.column(key), nulls_first=False)])
    return node


def _source_feature(
    feature: FeatureDef, parsed: ParsedExpr, context: _Context, what: str
) -> Feature:
    assert feature.source is not None
    source_table = context.project.tables.get(feature.source.table)
    if source_table is not None and source_table.columns:
        known = source_table.column_names
        for column, role in ((feature.source.key, "key"), (feature.source.time, "time")):
            if column and column.lower() not in {c.lower() for c in known}:
                raise SpecError(
                    f"{what}: from.{role} '{column}' is not a column of table '{source_table.name}'",
                    feature.source.loc,
                    did_you_mean(column, known),
                )
        resolve_columns(parsed.tree, known, feature.expr, f"table '{source_table.name}'")
    if parsed.tree.find(exp.AggFunc) is None:
        raise SpecError(
            f"{what} reads table '{feature.source.table}' but does not aggregate its rows",
            feature.expr.loc,
            "wrap it in an aggregate, e.g. count(*), sum(amount), max(ordered_at)",
        )
    _check_no(
        parsed.tree,
        exp.Window,
        feature.expr,
        f"{what}: window functions are not allowed in a `from:` feature",
        "compute a derived feature (without `from:`) instead",
    )
    return Feature(feature.name, parsed.tree, feature, (), parsed.macros)


@dataclass(frozen=True)
class _SourceGroup:
    """Features that read the same rows (same table, key, time filter and window) share one scan."""

    table: str
    key: str
    time: str | None
    where: str | None
    window: str | None


def feature_relation_query(
    entity: EntityDef,
    source: exp.Expr,
    columns: tuple[str, ...],
    features: tuple[Feature, ...],
    context: _Context,
) -> exp.Select:
    """WITH entity rows, one aggregate per source group, then layers of derived features."""
    ctes: list[tuple[str, exp.Query]] = [
        (ENTITY_ROWS, _entity_rows(source, columns, entity.time, context.as_of))
    ]
    select: list[exp.Expr] = [exp.column(c, table=ENTITY_ALIAS) for c in columns]
    joins: list[tuple[str, exp.Expr]] = []
    groups: dict[_SourceGroup, list[Feature]] = {}
    for feature in features:
        if feature.definition.source is not None:
            groups.setdefault(_group_of(feature.definition), []).append(feature)
    for index, (group, members) in enumerate(groups.items(), start=1):
        alias = f"agg_{index}_{PurePosixPath(group.table).stem.split('.')[-1]}"
        ctes.append((alias, _aggregate_query(group, members, context)))
        joins.append(
            (
                alias,
                exp.column(KEY_ALIAS, table=alias).eq(exp.column(entity.key, table=ENTITY_ALIAS)),
            )
        )
        for feature in members:
            value: exp.Expr = exp.column(feature.name, table=alias)
            if feature.definition.default is not None:
                value = exp.func("COALESCE", value, exp.convert(feature.definition.default))
            select.append(exp.alias_(value, feature.name))
    base = exp.select(*select).from_(
        exp.alias_(exp.to_table(ENTITY_ROWS), ENTITY_ALIAS, table=True)
    )
    for alias, condition in joins:
        base = base.join(exp.to_table(alias), on=condition, join_type="left", copy=False)
    ctes.append(("source_features", base))
    available = [c for c in columns] + [f.name for f in features if f.definition.source is not None]
    last = "source_features"
    for layer_number, layer in enumerate(_derived_layers(features), start=1):
        name = f"derived_{layer_number}"
        ctes.append((name, _derived_layer(last, available, layer)))
        available += [f.name for f in layer]
        last = name
    order = [*columns, *(f.name for f in features)]
    final = exp.select(*[exp.column(c) for c in order]).from_(last)
    for name, query in ctes:  # fresh trees: copying the growing query per CTE is quadratic
        final = final.with_(name, as_=query, copy=False)
    return final


def _entity_rows(
    source: exp.Expr, columns: tuple[str, ...], time: str | None, as_of: dt.date
) -> exp.Select:
    """The entity's rows; with `time:`, only entities that existed on as_of (point in time)."""
    query = exp.select(*[exp.column(c) for c in columns]).from_(source)
    if time is not None:
        day = exp.cast(exp.column(time), exp.DataType.Type.DATE)
        query = query.where(day <= _date_literal(as_of))
    return query


def _group_of(feature: FeatureDef) -> _SourceGroup:
    src = feature.source
    assert src is not None
    return _SourceGroup(
        src.table,
        src.key,
        src.time,
        src.where.text if src.where else None,
        str(feature.window) if feature.window else None,
    )


def _aggregate_query(group: _SourceGroup, members: list[Feature], context: _Context) -> exp.Select:
    first = members[0].definition
    assert first.source is not None
    table = context.project.tables.get(group.table)
    relation = relation_expression(table.relation if table else group.table, context.dialect)
    query = exp.select(exp.alias_(exp.column(group.key), KEY_ALIAS))
    query = query.select(*[exp.alias_(f.expression.copy(), f.name) for f in members]).from_(
        relation
    )
    for condition in _source_filters(first, context, table):
        query = query.where(condition)
    return query.group_by(exp.column(group.key))


def _source_filters(
    feature: FeatureDef, context: _Context, table: TableDef | None
) -> list[exp.Expr]:
    """Point-in-time filters: rows after as_of never count; a window keeps (as_of - window, as_of]."""
    src = feature.source
    assert src is not None
    filters: list[exp.Expr] = []
    if src.time:
        day = exp.cast(exp.column(src.time), exp.DataType.Type.DATE)
        filters.append(day.copy() <= _date_literal(context.as_of))
        if feature.window is not None:
            filters.append(day > _date_literal(feature.window.start(context.as_of)))
    if src.where is not None:
        parsed = parse_expression(src.where, context, f"feature '{feature.name}' from.where")
        if table is not None and table.columns:
            resolve_columns(parsed.tree, table.column_names, src.where, f"table '{table.name}'")
        _check_no(
            parsed.tree,
            exp.AggFunc,
            src.where,
            "from.where filters rows: aggregates are not allowed",
            "move the aggregate into `expr`",
        )
        filters.append(exp.paren(parsed.tree))
    return filters


def _date_literal(day: dt.date) -> exp.Expr:
    return exp.cast(exp.Literal.string(day.isoformat()), exp.DataType.Type.DATE)


def _derived_layers(features: tuple[Feature, ...]) -> list[list[Feature]]:
    """Derived features grouped so each layer only reads columns computed by earlier layers."""
    derived = [f for f in features if f.definition.source is None]
    depth: dict[str, int] = {}
    remaining = list(derived)
    while remaining:
        for feature in list(remaining):
            deps = [d for d in feature.depends_on if d in {f.name for f in derived}]
            if all(d in depth for d in deps):
                depth[feature.name] = 1 + max((depth[d] for d in deps), default=0)
                remaining.remove(feature)
    layers: dict[int, list[Feature]] = {}
    for feature in derived:
        layers.setdefault(depth[feature.name], []).append(feature)
    return [layers[n] for n in sorted(layers)]


def _derived_layer(source: str, available: list[str], layer: list[Feature]) -> exp.Select:
    select: list[exp.Expr] = [exp.column(c) for c in available]
    select += [exp.alias_(f.expression.copy(), f.name) for f in layer]
    return exp.select(*select).from_(source)


# ---------------------------------------------------------------------------------------------
# segments


def segment_graph(project: Project, errors: ErrorCollector) -> DAG[str]:
    """The lineage DAG (segment -> parent and set operands); missing references and cycles are errors."""
    graph: DAG[str] = DAG()
    for segment in project.segments.values():
        refs = []
        for ref in segment.references:
            if ref.name in project.segments:
                refs.append(ref.name)
            else:
                errors.add(
                    f"segment '{segment.name}' refers to unknown segment '{ref.name}'",
                    ref.loc,
                    did_you_mean(ref.name, project.segments) or "define it, or fix the name",
                )
        graph.add(segment.name, refs)
    try:
        graph.check_acyclic()
    except CycleError as exc:
        first = project.segments[exc.path[0]]
        errors.add(
            f"segments form a cycle: {exc}",
            first.loc,
            "a segment cannot be (directly or indirectly) its own parent or operand",
        )
    return graph


def build_segment(
    definition: SegmentDef,
    entities: dict[str, Entity],
    built: dict[str, Segment],
    context: _Context,
) -> Segment:
    entity_name = _segment_entity(definition, built, context.project)
    entity = entities.get(entity_name)
    if entity is None:
        loc = definition.entity.loc if definition.entity else definition.loc
        raise SpecError(
            f"segment '{definition.name}': unknown entity '{entity_name}'",
            loc,
            did_you_mean(entity_name, entities),
        )
    _check_not_a_feature_relation(definition, entities)
    key = _fingerprint(definition, entity, context)
    parent = built[definition.parent.name] if definition.parent else None

    def resolve() -> ResolvedSegment:
        own, columns, macros = _resolve_own(definition, entity, built, context)
        # Inherited terms are shared with the parent, not copied (copying every ancestor's terms
        # into every segment is quadratic in depth): terms are never mutated.
        inherited = parent.terms if parent else ()
        return ResolvedSegment(inherited + own, own, columns, macros)

    depth = 1 + max((built[r.name].depth for r in definition.references), default=0)
    segment = Segment(definition.name, definition, entity.name, depth, resolve)
    if context.known is None or key not in context.known:
        segment.resolved  # noqa: B018 - resolve now: its errors are reported with the others
    return segment


def _fingerprint(definition: SegmentDef, entity: Entity, context: _Context) -> str | None:
    """The segment's compile-cache key (None when the build keeps no cache)."""
    if context.known is None:
        return None
    key = segment_fingerprint(
        context.entity_prints[entity.name],
        definition,
        [context.segment_prints[r.name] for r in definition.references],
    )
    context.segment_prints[definition.name] = key
    return key


def _resolve_own(
    definition: SegmentDef, entity: Entity, built: dict[str, Segment], context: _Context
) -> tuple[tuple[exp.Expr, ...], tuple[str, ...], tuple[str, ...]]:
    """The segment's own terms (its `where`, then its set operands), columns and macros."""
    own: list[exp.Expr] = []
    columns: list[str] = []
    macros: list[str] = []
    for expr in definition.where:
        parsed = parse_expression(expr, context, f"segment '{definition.name}' where")
        _check_condition(parsed.tree, expr, definition.name)
        for column in resolve_columns(
            parsed.tree,
            entity.output_columns,
            expr,
            f"entity '{entity.name}' (columns and features)",
        ):
            if column not in columns:
                columns.append(column)
        # windows first: rank() and sum() over () are aggregates inside a window
        _check_no(
            parsed.tree,
            exp.Window,
            expr,
            "window functions are not allowed in a segment's where",
            "define a derived feature with the window function and filter on it",
        )
        _check_no(
            parsed.tree,
            exp.AggFunc,
            expr,
            "aggregates are not allowed in a segment's where",
            "define a feature (e.g. `expr: sum(amount)` with `from:`) and filter on it",
        )
        macros += [m for m in parsed.macros if m not in macros]
        # the tree was just parsed for this term: wrapping it needs no defensive copy
        own.append(exp.Is(this=exp.paren(parsed.tree, copy=False), expression=exp.true()))
    if definition.union:
        own.append(
            exp.paren(exp.or_(*[exp.paren(built[r.name].predicate) for r in definition.union]))
        )
    own += [exp.paren(built[r.name].predicate) for r in definition.intersect]
    own += [exp.not_(exp.paren(built[r.name].predicate)) for r in definition.exclude]
    return tuple(own), tuple(columns), tuple(macros)


# Expressions whose value is a number or text, never a condition: DuckDB would take a number as
# true when non-zero, PostgreSQL and BigQuery refuse it, so `orders_90d >> 0` (a typo of `>`)
# or `a + 1` would mean something else, or fail, depending on the target.
NOT_CONDITIONS: tuple[type[exp.Expr], ...] = (
    exp.Literal, exp.Neg, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.IntDiv, exp.Mod, exp.DPipe,
    exp.BitwiseAnd, exp.BitwiseOr, exp.BitwiseXor, exp.BitwiseNot,
    exp.BitwiseLeftShift, exp.BitwiseRightShift,
)  # fmt: skip


def _check_condition(tree: exp.Expr, expr: Expr, segment: str) -> None:
    node = tree.unnest() if isinstance(tree, exp.Paren) else tree
    if isinstance(node, NOT_CONDITIONS):
        raise SpecError(
            f"segment '{segment}' where must be a condition (true or false), "
            f"but `{node.sql()}` computes a value",
            expr.loc,
            "compare it, e.g. `orders_90d > 0`",
        )


def _check_not_a_feature_relation(definition: SegmentDef, entities: dict[str, Entity]) -> None:
    """Segments and feature relations share the target schema: `customer_features` is taken."""
    for entity in entities.values():
        if definition.name.lower() == entity.relation_name.lower():
            raise SpecError(
                f"segment '{definition.name}' has the name of entity '{entity.name}''s feature relation",
                definition.loc,
                "rename the segment: `<entity>_features` is where segsql puts an entity's features",
            )


def _segment_entity(definition: SegmentDef, built: dict[str, Segment], project: Project) -> str:
    """The declared entity, else the one of its parent/operands; all of them must agree."""
    declared = definition.entity.name if definition.entity else None
    for ref in definition.references:
        other = built[ref.name].entity
        if declared is None:
            declared = other
        elif other != declared:
            raise SpecError(
                f"segment '{definition.name}' mixes entities: '{ref.name}' is a segment of '{other}', not '{declared}'",
                ref.loc,
                "parents and set operands must be segments of the same entity",
            )
    if declared is None:
        raise SpecError(
            f"segment '{definition.name}' has no entity", definition.loc, "add `entity: <name>`"
        )
    return declared


def segment_file(segment: SegmentDef) -> Location:
    return segment.loc
