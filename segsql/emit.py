"""Stage 5, emit: resolved ASTs -> SQL text per target, files on disk, and the manifest.

Each target gets, under `target/compiled/<target>/`:
- `features/<entity>.sql`: the feature relation query;
- `segments/<segment>.sql`: the segment's members (one row per key), reading the feature relation;
- `deploy.sql`: the whole build in order (schema, feature relations, one view/table per segment),
  which is exactly what `segsql run` executes and what a warehouse runs directly.
Output is deterministic, and files are replaced atomically: a failed compile leaves the old ones.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from sqlglot import exp

from segsql.build import CompiledProject, Entity, Segment
from segsql.cache import SegmentCache, TextCache, target_fingerprint, text_fingerprint
from segsql.dialects import ENGINES, Engine, lower_portable, needs_lowering, sqlglot_dialect
from segsql.errors import SpecError, did_you_mean
from segsql.files import FOLDER_MODE, write_atomic
from segsql.lineage import Lineage
from segsql.model import ProjectConfig, SegmentDef, TargetConfig

MANIFEST_VERSION = 1
# The DuckDB readers `build.relation_expression` uses for a table given as a file path.
FILE_READERS = {"read_csv_auto", "read_parquet", "read_json_auto"}


# ---------------------------------------------------------------------------------------------
# targets and relation names


@dataclass(frozen=True)
class Target:
    config: TargetConfig
    engine: Engine

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def dialect(self) -> str:
        return self.engine.sqlglot_dialect

    @property
    def schema(self) -> str:
        return self.config.dataset or self.config.schema or self.engine.default_schema

    def relation(self, name: str) -> exp.Table:
        """Where segsql puts an object of this name: schema.name, or project.dataset.name on BigQuery."""
        return exp.table_(name, db=self.schema, catalog=self.config.project, quoted=None)

    def schema_expression(self) -> exp.Table:
        return exp.table_(self.schema, db=self.config.project)

    def source(self, relation: str) -> exp.Table:
        """A source table as this target names it: in the target's `source_schema` (BigQuery:
        `source_dataset`) when the project names it without a schema, else as named."""
        table = exp.to_table(relation, dialect=self.dialect)
        return _in_source_schema(table, self) if not table.db else table

    @property
    def source_schema(self) -> str | None:
        return self.config.source_dataset or self.config.source_schema


def _in_source_schema(table: exp.Table, target: Target) -> exp.Table:
    """`table` (named without a schema) in the target's source schema, in place; BigQuery's
    `source_dataset` may name its project too (`project.dataset`)."""
    if target.source_schema is None:
        return table
    schema = exp.to_table(target.source_schema, dialect=target.dialect)
    table.set("db", exp.to_identifier(schema.name))
    table.set("catalog", exp.to_identifier(schema.db) if schema.db else None)
    return table


def resolve_target(config: ProjectConfig, name: str | None) -> Target:
    """A target by its name in segsql.yml, or by engine name (`postgres`) with default settings."""
    name = name or config.default_target
    if name in config.targets:
        target = config.targets[name]
    else:
        by_engine = [t for t in config.targets.values() if t.engine == name]
        if by_engine:
            target = by_engine[0]
        elif name in ENGINES:
            target = TargetConfig(name=name, engine=name)
        else:
            raise SpecError(
                f"unknown target '{name}'",
                hint=did_you_mean(name, [*config.targets, *ENGINES])
                or "targets: " + ", ".join([*config.targets, *ENGINES]),
            )
    return Target(target, ENGINES[target.engine])


def all_targets(config: ProjectConfig) -> list[Target]:
    return [resolve_target(config, name) for name in config.targets]


# ---------------------------------------------------------------------------------------------
# queries and statements


def feature_query(entity: Entity, target: Target) -> exp.Select:
    """The entity's feature relation for the target: portable functions lowered, and source
    tables named without a schema put in the target's source schema (`Target.source`)."""
    _check_file_sources(entity, target)
    query: exp.Select = lower_portable(entity.query, target.engine)  # type: ignore[assignment]
    return _qualify_sources(query, target) if target.source_schema else query


def feature_ctes(entity: Entity, target: Target) -> list[tuple[str, exp.Query]]:
    """The feature relation inlined as CTEs (its own CTEs first, then its query under the
    relation's name), so a query that reads it stands alone. The trees are fresh."""
    features = feature_query(entity, target)  # a copy: its parts are ours
    ctes: list[tuple[str, exp.Query]] = [(cte.alias, cte.this) for cte in features.ctes]
    features.set("with_", None)
    return [*ctes, (entity.relation_name, features)]


def _qualify_sources(query: exp.Select, target: Target) -> exp.Select:
    """Source tables of a feature query (a fresh copy) in the target's source schema, in place:
    every table named without a schema that is not one of the query's own CTEs."""
    ctes = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
    for table in query.find_all(exp.Table):
        if not table.db and table.name.lower() not in ctes and table.name:
            _in_source_schema(table, target)
    return query


def _check_file_sources(entity: Entity, target: Target) -> None:
    """A CSV/Parquet path read in place (`read_csv_auto(...)`) exists on DuckDB only."""
    if target.engine.reads_files:
        return
    for node in entity.query.find_all(exp.Anonymous):
        if str(node.this).lower() in FILE_READERS:
            raise SpecError(
                f"entity '{entity.name}' reads the file {node.expressions[0].sql()}, which "
                f"{target.engine.name} cannot read in place",
                entity.definition.loc,
                f"load the file into {target.engine.name} (`segsql seed --target {target.name}`)"
                " and name that table instead; file paths work on DuckDB targets only",
            )


# (segment, kind of text, how to print it) -> the text, from a cache or printed
StoredText = Callable[[str, str, Callable[[], str]], str]


class Lowering:
    """Membership predicates for one target, each distinct term lowered once.

    build.py shares a parent's terms with its children, so lowering (or copying) a segment's
    whole predicate repeats every ancestor's work in every descendant: most of a compile's time
    at 1,000 segments. Here each term object is lowered once per target (copied only when the
    target's form differs), and each predicate is a fresh AND over the shared terms. Shared
    subtrees are only ever printed, never rewritten: their reserved names are quoted here, once,
    and `to_sql(..., lowering=...)` skips them when it quotes the rest of a tree.
    """

    def __init__(self, target: Target):
        self.target = target
        self._lowered: dict[int, tuple[exp.Expr, exp.Expr]] = {}  # id(term) -> (term, lowered)
        self._lowered_ids: set[int] = set()

    def term(self, term: exp.Expr) -> exp.Expr:
        """The term in the target's form, reserved names quoted (the original is kept alive so
        its id stays unique)."""
        found = self._lowered.get(id(term))
        if found is None:
            engine = self.target.engine
            lowered = term
            if needs_lowering(term, engine) or _unquoted_reserved(term, engine.reserved_words):
                # a copy only when the target's form differs: most terms print as they are,
                # and sharing them between targets keeps 10,000 segments' trees in memory once
                lowered = _quote_reserved(lower_portable(term, engine), engine, in_place=True)
            found = (term, lowered)
            self._lowered[id(term)] = found
            self._lowered_ids.add(id(lowered))
        return found[1]

    def is_lowered(self, node: exp.Expr) -> bool:
        """Whether `node` is one of the lowered terms (so `to_sql` need not walk into it)."""
        return id(node) in self._lowered_ids

    def predicate(self, segment: Segment) -> exp.Expr:
        terms = [self.term(t) for t in segment.terms]
        return exp.and_(*terms, copy=False) if terms else exp.true()


class PrintedLowering(Lowering):
    """A Lowering whose predicates come printed: each segment's membership predicate is printed
    once per target, and its query, deploy statement and snapshot part reuse that text.

    It goes in their trees as an opaque leaf (a `Var`, which sqlglot prints verbatim). That
    gives the same bytes as printing the condition in place because sqlglot prints a WHERE
    condition on its own and then indents it (`Generator.where_sql`); tests/test_emit.py's
    golden files and tests/test_cache.py would see any difference.
    """

    def __init__(self, target: Target, stored: StoredText | None = None):
        super().__init__(target)
        self._printed: dict[str, str] = {}
        # the compile cache's text of a segment, when one is at hand (SegmentPrinter._text)
        self._stored: StoredText = stored or (lambda _name, _kind, make: make())
        self.leaks: Leaks | None = None  # set while a snapshot layout is recorded
        self._in_predicate = False

    def predicate(self, segment: Segment) -> exp.Expr:
        if self.leaks is not None and not self.leaks.in_part:
            self.leaks.segments.add(segment.name)
        text = self._printed.get(segment.name)
        if text is None:
            text = self._stored(segment.name, "predicate", lambda: self._print_predicate(segment))
            self._printed[segment.name] = text
        return exp.Var(this=text)

    def _print_predicate(self, segment: Segment) -> str:
        self._in_predicate = True
        try:
            tree = super().predicate(segment)
        finally:
            self._in_predicate = False
        return to_sql(tree, self.target, copy=False, lowering=self)

    def term(self, term: exp.Expr) -> exp.Expr:
        if self.leaks is not None and not self.leaks.in_part and not self._in_predicate:
            self.leaks.terms = True
        return super().term(term)


@dataclass
class Leaks:
    """What a script's own text (outside its segments' parts) took from segments' `where`: the
    segments whose predicate it read, and whether it lowered a term of unknown origin."""

    segments: set[str] = field(default_factory=set)
    terms: bool = False
    in_part: int = 0  # > 0 while a part is being built: what it reads is the part's


def with_where(query: exp.Select, predicate: exp.Expr) -> exp.Select:
    """`query` (which has no WHERE yet) filtered by `predicate`, in place.

    Not `query.where(...)`: compiled sqlglot (sqlglotc) checks that its argument is a Condition,
    and a PrintedLowering predicate is an opaque `Var`.
    """
    query.set("where", exp.Where(this=predicate))
    return query


def segment_query(
    segment: Segment,
    entity: Entity,
    target: Target,
    standalone: bool = False,
    lowering: Lowering | None = None,
) -> exp.Select:
    """SELECT DISTINCT key FROM <feature relation> WHERE <membership>.

    `standalone` inlines the feature relation as a CTE, for pasting into a warehouse console.
    `lowering` shares lowered terms with the target's other queries (see `Lowering`).
    """
    source: exp.Expr = (
        exp.to_table(entity.relation_name) if standalone else target.relation(entity.relation_name)
    )
    predicate = (lowering or Lowering(target)).predicate(segment)
    # fresh nodes: the builders need not copy them (twice per segment per target)
    query = (
        exp.select(exp.column(entity.key), copy=False)
        .distinct(copy=False)
        .from_(source, copy=False)
    )
    query = with_where(query, predicate)
    if standalone:
        for alias, body in feature_ctes(entity, target):
            query = query.with_(alias, as_=body, copy=False)
    return query


def create_statement(target: Target, name: str, query: exp.Expr, kind: str) -> exp.Create:
    return exp.Create(this=target.relation(name), kind=kind.upper(), replace=True, expression=query)


def replace_statements(target: Target, name: str, query: exp.Expr, kind: str) -> list[exp.Expr]:
    """(Re)create one object: CREATE OR REPLACE, or DROP ... CASCADE + CREATE where the engine
    cannot replace in place (the deploy runs in one transaction, so nothing is lost on failure)."""
    if not target.engine.replaces_by_drop:
        return [create_statement(target, name, query, kind)]
    drop = exp.Drop(tables=[target.relation(name)], kind=kind.upper(), exists=True, cascade=True)
    create = exp.Create(this=target.relation(name), kind=kind.upper(), expression=query)
    return [drop, create]


def _with_dropped_dependents(
    compiled: CompiledProject, target: Target, wanted: list[str]
) -> list[str]:
    """On drop-and-create engines, recreating a feature relation drops (CASCADE) every segment view
    over it: redeploy all segments of the affected entities, in dependency order."""
    if not target.engine.replaces_by_drop:
        return wanted
    entities = {compiled.segments[s].entity for s in wanted}
    return [name for name, s in compiled.segments.items() if s.entity in entities]


def deploy_statements(
    compiled: CompiledProject,
    target: Target,
    segments: Iterable[str] | None = None,
) -> list[exp.Expr]:
    """Everything `run` creates, in dependency order: schema, feature relations, segments."""
    wanted = deploy_order(compiled, target, segments)
    statements = deploy_prelude(compiled, target, wanted)
    lowering = Lowering(target)
    for name in wanted:
        statements += segment_statements(compiled, target, name, lowering)
    return statements


def segment_statements(
    compiled: CompiledProject, target: Target, name: str, lowering: Lowering
) -> list[exp.Expr]:
    """The statements that (re)create one segment's view or table."""
    segment = compiled.segments[name]
    query = segment_query(segment, compiled.entities[segment.entity], target, lowering=lowering)
    return replace_statements(target, name, query, segment.definition.materialize)


def deploy_order(
    compiled: CompiledProject, target: Target, segments: Iterable[str] | None
) -> list[str]:
    """The segments a deploy (re)creates, parents first."""
    wanted = list(compiled.segments if segments is None else segments)
    return _with_dropped_dependents(compiled, target, wanted)


def deploy_prelude(
    compiled: CompiledProject,
    target: Target,
    wanted: list[str],
    features: Callable[[Entity], exp.Expr] | None = None,
) -> list[exp.Expr]:
    """The schema and the feature relations the segments in `wanted` read (`features` gives
    an entity's relation query: by default built here)."""
    statements: list[exp.Expr] = [
        exp.Create(this=target.schema_expression(), kind="SCHEMA", exists=True)
    ]
    for name in sorted({compiled.segments[s].entity for s in wanted}):
        entity = compiled.entities[name]
        kind = entity.definition.materialize
        query = features(entity) if features else feature_query(entity, target)
        statements += replace_statements(target, entity.relation_name, query, kind)
    return statements


def to_sql(
    expression: exp.Expr, target: Target, copy: bool = True, lowering: Lowering | None = None
) -> str:
    """Pretty SQL for the target. `copy=False` for a tree built only to be printed: sqlglot's
    defensive copy of it costs more than generating its text. `lowering`: the tree's terms came
    from it, already quoted, so their (shared) subtrees need no second look."""
    skip = lowering.is_lowered if lowering else None
    expression = _quote_reserved(expression, target.engine, in_place=not copy, skip=skip)
    return expression.sql(dialect=sqlglot_dialect(target.dialect), pretty=True, copy=copy)


def _quote_reserved(
    expression: exp.Expr,
    engine: Engine,
    in_place: bool = False,
    skip: Callable[[exp.Expr], bool] | None = None,
) -> exp.Expr:
    """Quote names that are reserved words on the engine (sqlglot does so for DuckDB and BigQuery
    but not for PostgreSQL). Quoted names are case-sensitive there, so the unquoted name's folded
    (lower-case) spelling is kept. `skip` prunes subtrees known to be done already."""
    reserved = engine.reserved_words
    found = _unquoted_reserved(expression, reserved, skip)
    if not found:
        return expression
    if not in_place:
        expression = expression.copy()
        found = _unquoted_reserved(expression, reserved)
    for identifier in found:
        identifier.replace(exp.to_identifier(identifier.name.lower(), quoted=True))
    return expression


def _unquoted_reserved(
    tree: exp.Expr, reserved: frozenset[str], skip: Callable[[exp.Expr], bool] | None = None
) -> list[exp.Identifier]:
    if not reserved:  # sqlglot quotes them itself for this engine: no walk needed
        return []
    return [
        node
        for node in tree.walk(prune=skip)
        if isinstance(node, exp.Identifier) and not node.quoted and node.name.lower() in reserved
    ]


# ---------------------------------------------------------------------------------------------
# files


def _comment(text: str) -> str:
    """User text made safe for a `--` comment line (no line breaks can end the comment early)."""
    return " ".join(str(text).split())


def segment_header(compiled: CompiledProject, segment: Segment, target: Target) -> str:
    definition = segment.definition
    root = compiled.project.config.root
    source = f"{_relative(definition.loc.path, root)}:{definition.loc.line}"
    lines = [
        f"segment: {segment.name} ({source})",
        f"entity: {segment.entity} | kind: {definition.kind or '-'} | parent: {definition.parent.name if definition.parent else '-'}",
        f"definition: {definition.definition_hash} | as_of: {compiled.as_of.isoformat()} | target: {target.name} ({target.engine.name})",
    ]
    if definition.description:
        lines.append(f"description: {_comment(definition.description)}")
    return "".join(f"-- {line}\n" for line in lines)


def entity_header(compiled: CompiledProject, entity: Entity, target: Target) -> str:
    definition = entity.definition
    source = f"{_relative(definition.loc.path, compiled.project.config.root)}:{definition.loc.line}"
    lines = [
        f"feature relation of entity: {entity.name} ({source}) - one row per {entity.key}",
        f"as_of: {compiled.as_of.isoformat()} | target: {target.name} ({target.engine.name})",
    ]
    return "".join(f"-- {line}\n" for line in lines)


@functools.cache  # a project has few files and thousands of definitions in them
def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


class SegmentPrinter:
    """Each segment's SQL text for one target, printed once per compile or taken from a cache.

    A segment has three texts: its query (the body of its file), its deploy statements, and its
    part of the snapshot query. Without a cache every text is printed; with one, a segment whose
    fingerprint is known is not even lowered (see segsql/cache.py for what the key covers).
    """

    def __init__(
        self,
        compiled: CompiledProject,
        target: Target,
        cache: TextCache | None = None,
        fingerprints: Mapping[str, str] | None = None,
    ):
        self.compiled = compiled
        self.target = target
        self.lowering = PrintedLowering(target, self._text)
        self.cache = cache
        self._prefix = prefix = target_fingerprint(target.engine.name, repr(target.config))
        self._keys = {n: prefix + f for n, f in (fingerprints or {}).items()} if cache else {}
        # Snapshot parts are keyed apart: their text also depends on which segments are frozen
        # (history.py then assembles every predicate from lookups and own terms).
        frozen = _frozen_segments(compiled) if self._keys else ""
        self._part_keys = {n: k + frozen for n, k in self._keys.items()} if frozen else self._keys
        self._queries: dict[str, str] = {}  # printed once: the file and the deploy share it
        self._features: dict[str, str] = {}
        self._recorded: list[tuple[str, str, exp.Var]] | None = None  # see snapshot_body

    def header(self, name: str) -> str:
        """The segment file's header, as the previous compile of this process printed it when
        nothing it is made of changed (headers are not cached on disk: they are cheap, but a
        recompile prints thousands)."""
        segment = self.compiled.segments[name]
        root = self.compiled.project.config.root
        made_for = f"{segment.entity}\0{self.compiled.as_of}\0{self._prefix}\0{root}"
        known = self.cache.headers.get(name) if self.cache is not None else None
        if known is not None and known[0] is segment.definition and known[1] == made_for:
            text = known[2]
        else:
            text = segment_header(self.compiled, segment, self.target)
        if self.cache is not None:
            self.cache.remember_header(name, (segment.definition, made_for, text))
        return text

    def query(self, name: str) -> str:
        text = self._queries.get(name)
        if text is None:
            text = self._text(name, "query", lambda: self._print(self._query(name)))
            self._queries[name] = text
        return text

    def deploy(self, name: str) -> str:
        """The segment's deploy statements, each followed by `;` and a blank line."""

        def make() -> str:
            # The view's query as printed for the segment's file, reused verbatim: sqlglot
            # prints a CREATE's query on its own, so the bytes are the same (golden files).
            kind = self.compiled.segments[name].definition.materialize
            query = exp.Var(this=self.query(name))
            statements = replace_statements(self.target, name, query, kind)
            return "".join(self._print(s) + ";\n\n" for s in statements)

        return self._text(name, "deploy", make)

    def features(self, entity: str) -> str:
        """The entity's feature relation query, printed once per target (and cached by the
        entity's fingerprint: it changes with the entity's definition, not with segments)."""
        text = self._features.get(entity)
        if text is None:

            def make() -> str:
                relation = feature_query(self.compiled.entities[entity], self.target)
                return to_sql(relation, self.target, copy=False)  # a fresh tree (lowered copy)

            key = self.compiled.entity_fingerprints.get(entity)
            text = self._cached(self._prefix + key if key else None, "features", make)
            self._features[entity] = text
        return text

    def feature_ctes(self, entity: str) -> tuple[tuple[str, str], ...]:
        """The entity's feature relation as (name, printed body) CTEs, its own CTEs first and
        then its query: how a script that stands alone (kpis.sql) inlines it. Cached like
        `features`."""

        def make() -> tuple[tuple[str, str], ...]:
            ctes = feature_ctes(self.compiled.entities[entity], self.target)
            return tuple((name, to_sql(query, self.target, copy=False)) for name, query in ctes)

        key = self.compiled.entity_fingerprints.get(entity)
        if key is None or self.cache is None:
            return make()
        key = self._prefix + key
        stored = self.cache.value(key, FEATURE_CTES_KIND)
        if isinstance(stored, tuple):
            self.cache.touch(key)
            return stored
        made = make()
        self.cache.put_value(key, FEATURE_CTES_KIND, made)
        return made

    def snapshot_part(self, name: str, kind: str, build: Callable[[], exp.Expr]) -> exp.Expr:
        """A part of the snapshot script for the segment (its SELECT, its log row), as printed
        text: sqlglot's own output, reused verbatim (a part prints as it does alone)."""

        def make() -> str:
            leaks = self.lowering.leaks
            if leaks is not None:
                leaks.in_part += 1
            try:
                return self._print(build())
            finally:
                if leaks is not None:
                    leaks.in_part -= 1

        part = exp.Var(this=self._cached(self._part_keys.get(name), PART_PREFIX + kind, make))
        if self._recorded is not None:
            self._recorded.append((name, f"{PART_PREFIX}{kind}", part))
        return part

    def snapshot_body(self, segments: list[str]) -> str:
        """snapshot.sql's statements as text: laid out from the previous compile's layout when
        one fits (see SnapshotLayout), else built and printed (recording a layout if it can)."""
        key = self._layout_key(segments)
        text = self._from_layout(key, segments) if key is not None else None
        return text if text is not None else self._print_snapshot(segments, key)

    def _layout_key(self, segments: list[str]) -> str | None:
        """Layouts need the full cache: a --select compile keeps other entries, not layouts."""
        if self.cache is None or self.cache.keep_unused or not self._keys:
            return None
        return self._prefix + layout_basis(self.compiled, segments)

    def _print_snapshot(self, segments: list[str], layout_key: str | None) -> str:
        from segsql.history import compiled_snapshot_statements  # history builds on this module

        leaks = Leaks() if layout_key is not None else None
        recorded: list[tuple[str, str, exp.Var]] = []
        self.lowering.leaks, self._recorded = leaks, recorded if leaks else None
        try:
            statements = compiled_snapshot_statements(
                self.compiled, self.target, segments, self.lowering, self.snapshot_part
            )
        finally:
            self.lowering.leaks, self._recorded = None, None
        texts = [self._print(s) + ";\n\n" for s in statements]
        if layout_key is not None and leaks is not None and self.cache is not None:
            layout = self._record_layout(statements, texts, recorded, leaks)
            if layout is not None:
                self.cache.put_value(layout_key, LAYOUT_KIND, layout)
        return "".join(texts)

    def _record_layout(
        self,
        statements: list[exp.Expr],
        printed: list[str],
        recorded: list[tuple[str, str, exp.Var]],
        leaks: Leaks,
    ) -> SnapshotLayout | None:
        """The layout of the `printed` statements: those holding parts printed again with a
        marker for each part, kept only if it gives the text back with the parts put in."""
        leaked = [(name, self._part_keys.get(name)) for name in sorted(leaks.segments)]
        if leaks.terms or any(key is None for _, key in leaked):
            return None
        texts = [str(part.this) for _, _, part in recorded]
        holding = {id(part.root()) for _, _, part in recorded}
        for index, (_, _, part) in enumerate(recorded):
            part.set("this", _MARKER.format(index))
        marked = [
            self._print(s) + ";\n\n" if id(s) in holding else text
            for s, text in zip(statements, printed, strict=True)
        ]
        pieces = _MARKERS.split("".join(marked))
        holes = []
        for marker, middle, last in zip(pieces[1::4], pieces[2::4], pieces[3::4], strict=True):
            name, kind, _ = recorded[int(marker)]
            part_text, key = texts[int(marker)], self._part_keys.get(name)
            if key is None:
                return None
            chunk = _laid_out(part_text, middle, last)
            holes.append(_Hole(name, kind, key, chunk, (middle, last), "\n" in part_text))
        layout = SnapshotLayout(tuple(pieces[0::4]), tuple(holes), tuple(leaked))  # type: ignore[arg-type]
        return layout if layout.text() == "".join(printed) else None

    def _from_layout(self, layout_key: str, segments: list[str]) -> str | None:
        """The statements' text from the stored layout, with the parts of the segments that
        changed since put in (printed first if no cache has them); None if it does not fit."""
        assert self.cache is not None
        layout = self.cache.value(layout_key, LAYOUT_KIND)
        if not isinstance(layout, SnapshotLayout):
            return None
        keys = self._part_keys
        if any(keys.get(name) != key for name, key in layout.leaked):
            return None
        stale = [hole for hole in layout.holes if keys.get(hole.name) != hole.key]
        missing = {h.name for h in stale if self._part_text(h) is None}
        if missing:
            self._print_parts(missing, segments)
        holes = list(layout.holes)
        for index, hole in enumerate(holes):
            if keys.get(hole.name) == hole.key:
                continue  # the segment did not change: its part stands as laid out before
            text = self._part_text(hole)
            if text is None or ("\n" in text) != hole.multiline:
                return None
            key, chunk = keys[hole.name], _laid_out(text, *hole.margins)
            holes[index] = replace(hole, key=key, chunk=chunk)
        updated = replace(layout, holes=tuple(holes))
        self.cache.put_value(layout_key, LAYOUT_KIND, updated)
        return updated.text()

    def _part_text(self, hole: _Hole) -> str | None:
        key = self._part_keys.get(hole.name)
        return self.cache.get(key, hole.kind) if key and self.cache else None

    def _print_parts(self, names: set[str], segments: list[str]) -> None:
        """Print the parts of the segments `names` (into the cache): the snapshot statements
        of those segments alone hold the same parts (a part prints as it does alone). An
        entity's only segment is no part of a union, so a second one joins it."""
        from segsql.history import compiled_snapshot_parts

        wanted = set(names)
        alone = Counter(self.compiled.segments[name].entity for name in names)
        for name in segments:
            entity = self.compiled.segments[name].entity
            if alone.get(entity) == 1 and name not in wanted:
                wanted.add(name)
                alone[entity] = 2
        subset = [name for name in segments if name in wanted]
        compiled_snapshot_parts(
            self.compiled, self.target, subset, self.lowering, self.snapshot_part
        )

    def _text(self, name: str, kind: str, make: Callable[[], str]) -> str:
        return self._cached(self._keys.get(name), kind, make)

    def made_of(self, kind: str, texts: tuple[str, ...], make: Callable[[], str]) -> str:
        """A text that is a function of `texts` alone (and of the target), e.g. a kpis.sql branch
        built around printed pieces: taken from the cache while they are the same."""
        key = self._prefix + text_fingerprint(kind, *texts) if self.cache is not None else None
        return self._cached(key, kind, make)

    def _cached(self, key: str | None, kind: str, make: Callable[[], str]) -> str:
        if key is None or self.cache is None:
            return make()
        text = self.cache.get(key, kind)
        if text is None:
            text = make()
            self.cache.put(key, kind, text)
        else:
            self.cache.touch(key)
        return text

    def _query(self, name: str) -> exp.Select:
        segment = self.compiled.segments[name]
        entity = self.compiled.entities[segment.entity]
        return segment_query(segment, entity, self.target, lowering=self.lowering)

    def _print(self, expression: exp.Expr) -> str:
        return to_sql(expression, self.target, copy=False, lowering=self.lowering)


def target_files(
    compiled: CompiledProject,
    target: Target,
    segments: list[str],
    cache: TextCache | None = None,
    fingerprints: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Relative path -> file text for one target (texts reused from `cache` where unchanged)."""
    printer = SegmentPrinter(compiled, target, cache, fingerprints)
    files: dict[str, str] = {}
    entity_names = sorted({compiled.segments[s].entity for s in segments})
    for name in entity_names:
        entity = compiled.entities[name]
        header = entity_header(compiled, entity, target)
        files[f"features/{name}.sql"] = header + printer.features(name) + ";\n"
    for name in segments:
        files[f"segments/{name}.sql"] = printer.header(name) + printer.query(name) + ";\n"
    files["deploy.sql"] = deploy_script(compiled, target, segments, printer)
    files["snapshot.sql"] = snapshot_script(compiled, target, segments, printer)
    if compiled.project.kpis:
        from segsql.kpis import kpis_script  # KPIs build on this module

        files["kpis.sql"] = kpis_script(compiled, target, segments, printer)
    return files


def deploy_script(
    compiled: CompiledProject, target: Target, segments: list[str], printer: SegmentPrinter
) -> str:
    """deploy.sql: what `segsql run` executes, as one script a warehouse runs directly."""
    header = f"-- segsql deploy script for project {compiled.project.config.name}, target {target.name} ({target.engine.name}), as_of {compiled.as_of.isoformat()}\n"
    wanted = deploy_order(compiled, target, segments)

    def printed_features(entity: Entity) -> exp.Expr:
        return exp.Var(this=printer.features(entity.name))  # as printed for its file

    prelude = deploy_prelude(compiled, target, wanted, printed_features)
    texts = [to_sql(s, target, copy=False) + ";\n\n" for s in prelude]
    texts += [printer.deploy(name) for name in wanted]
    return header + "".join(texts).rstrip("\n") + "\n"


def snapshot_script(
    compiled: CompiledProject,
    target: Target,
    segments: list[str],
    printer: SegmentPrinter | None = None,
) -> str:
    """The history tables and as_of's snapshot (DELETE + INSERT in one transaction)."""
    header = f"-- segsql snapshot of project {compiled.project.config.name} as_of {compiled.as_of.isoformat()}, target {target.name} ({target.engine.name}): re-running replaces that date's history\n"
    printer = printer or SegmentPrinter(compiled, target)
    return header + printer.snapshot_body(segments).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------
# snapshot.sql laid out from its previous text


LAYOUT_KIND = "snapshot-layout"
FEATURE_CTES_KIND = "feature-ctes"
PART_PREFIX = "snapshot-"  # a snapshot part's kind in the text cache: snapshot-member, ...
_MARKER = "\0{}\0\n\1\n\2"  # stands for part {}: three lines, to see how each line is indented
_MARKERS = re.compile("\0(\\d+)\0\n( *)\1\n( *)\2")


@dataclass(frozen=True)
class _Hole:
    name: str  # the segment
    kind: str  # of part, as cached
    key: str  # the segment's cache key when `chunk` was laid out
    chunk: str  # the part's text as it stands in the script (its lines indented)
    margins: tuple[str, str]  # what precedes its middle lines, and its last line, there
    multiline: bool


@dataclass(frozen=True)
class SnapshotLayout:
    """snapshot.sql's statements as text with a hole for each segment's part (its SELECT, its
    log row), so that a recompile after an edit lays out the script with the edited segments'
    new parts rather than building its statements (history.py) and printing them again, which
    took 40 ms per target at 1,000 segments.

    It is made from the printed statements themselves: printed again with a marker in place of
    each part, which shows where each part stands and how sqlglot indented its lines, and kept
    only if putting the parts back gives exactly the printed text. It is reused only while
    everything else the statements are made of is unchanged (`layout_basis`: every definition
    but its `where`, entities, settings, code, the segments compiled), and while the segments
    whose predicate the statements read outside any part (an entity's only segment is no
    union branch: `leaked`) keep their key. So history.py may build the statements as it
    likes, as long as a segment's `where` reaches them only through its predicate
    (`Lowering.predicate`) or its parts; tests/test_watch.py compares with cold compiles.
    """

    literals: tuple[str, ...]  # the text around the holes: one more than holes
    holes: tuple[_Hole, ...]
    leaked: tuple[tuple[str, str], ...]  # (segment, key) of predicates in the literal text

    def text(self) -> str:
        chunks = [self.literals[0]]
        for hole, literal in zip(self.holes, self.literals[1:], strict=True):
            chunks += (hole.chunk, literal)
        return "".join(chunks)


def _frozen_segments(compiled: CompiledProject) -> str:
    """A digest of the frozen segments and their dates ("" when none is)."""
    frozen = sorted(
        f"{name}@{segment.definition.freeze}"
        for name, segment in compiled.segments.items()
        if segment.definition.freeze is not None
    )
    return hashlib.blake2b("\0".join(frozen).encode(), digest_size=8).hexdigest() if frozen else ""


def _laid_out(text: str, middle: str, last: str) -> str:
    """A part's text as it stands in the script: its first line where the marker's was, the
    others indented as the marker's second (middle) and third (last) lines were."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return ("\n" + middle).join(lines[:-1]) + "\n" + last + lines[-1]


_UNSHAPED = frozenset({"where", "definition_hash", "loc"})


def _shape(value: object) -> object:
    """A definition without its `where` (and hash) or locations: what a layout depends on."""
    names = _field_names(type(value))
    if names is not None:
        return (type(value).__name__, *[_shape(getattr(value, name)) for name in names])
    if type(value) is tuple:
        return tuple([_shape(item) for item in value])
    return value


_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _field_names(kind: type) -> tuple[str, ...] | None:
    """A dataclass's fields but those a layout ignores; None for any other type."""
    if kind not in _FIELDS:
        dataclass_ = is_dataclass(kind)
        shaped = [f.name for f in fields(kind) if f.name not in _UNSHAPED] if dataclass_ else None
        _FIELDS[kind] = tuple(shaped) if shaped is not None else None
    return _FIELDS[kind]


_basis: tuple[CompiledProject, tuple[str, ...], str] | None = None  # the last one computed
# id(definition) -> (definition, its shape): a watch's definitions stay the same objects while
# their file is unchanged (the definitions cache serves them), so they are shaped once.
_shapes: dict[int, tuple[SegmentDef, str]] = {}


def layout_basis(compiled: CompiledProject, segments: list[str]) -> str:
    """A digest of what snapshot.sql is made of besides the parts of its segments: entities
    (their fingerprints cover settings, macros, variables, as_of and code), the segments
    compiled, and every segment's definition but its `where` (see SnapshotLayout)."""
    global _basis, _shapes
    last, before = _basis, _shapes  # read once: another thread may compile too (tests do)
    if last is not None and last[0] is compiled and last[1] == tuple(segments):
        return last[2]  # one compile's targets share it
    shapes: dict[int, tuple[SegmentDef, str]] = {}
    digest = hashlib.blake2b(digest_size=16)
    for name, key in sorted(compiled.entity_fingerprints.items()):
        digest.update(f"{name}={key}\0".encode())
    digest.update("\0".join(["", *segments, ""]).encode())
    for name, segment in compiled.segments.items():
        definition = segment.definition
        known = before.get(id(definition))
        if known is None or known[0] is not definition:
            known = (definition, repr(_shape(definition)))
        shapes[id(definition)] = known
        digest.update(f"{name}\0{segment.entity}\0{segment.depth}\0{known[1]}\0".encode())
    _basis, _shapes = (compiled, tuple(segments), digest.hexdigest()), shapes
    return digest.hexdigest()


def manifest(
    compiled: CompiledProject,
    targets: list[Target],
    out_dir: Path,
    cache: SegmentCache | None = None,
) -> dict[str, Any]:
    """target/manifest.json: every segment and entity, with lineage (taken from `cache` for
    segments that did not change, and recorded there for the others)."""
    root = compiled.project.config.root
    lineage = Lineage(compiled)
    segments: dict[str, Any] = {}
    compiled_dirs = {t.name: _relative(out_dir / "compiled" / t.name, root) for t in targets}
    for name in compiled.segments:
        segments[name] = _manifest_entry(compiled, name, lineage, targets, compiled_dirs, cache)
    entities = {
        name: {
            "table": e.definition.table,
            "key": e.key,
            "columns": list(e.columns),
            "features": [f.name for f in e.features],
            "relation": e.relation_name,
        }
        for name, e in compiled.entities.items()
    }
    return {
        "manifest_version": MANIFEST_VERSION,
        "project": compiled.project.config.name,
        "as_of": compiled.as_of.isoformat(),
        "targets": {t.name: t.engine.name for t in targets},
        "entities": entities,
        "segments": segments,
    }


def _manifest_entry(
    compiled: CompiledProject,
    name: str,
    lineage: Lineage,
    targets: list[Target],
    compiled_dirs: dict[str, str],
    cache: SegmentCache | None,
) -> dict[str, Any]:
    """The segment's entry; with `cache`, the one the previous compile of this process built if
    nothing it is made of changed: the same definition object (a file served from the
    definitions cache keeps its objects), the same key (which covers every segment it reads),
    the same children and compiled folders."""
    if cache is None:
        return _segment_entry(compiled, name, lineage, targets, compiled_dirs, cache)
    key = compiled.fingerprints.get(name)
    definition = compiled.segments[name].definition
    made_of = (key, compiled.graph.downstream(name), compiled_dirs)
    known = cache.entries_built.get(name)
    if known is not None and key is not None and known[0] is definition and known[1] == made_of:
        entry = known[2]
        cache.lineage(key)  # read: kept in the cache
    else:
        entry = _segment_entry(compiled, name, lineage, targets, compiled_dirs, cache)
    cache.entries_built_used[name] = (definition, made_of, entry)
    return entry


def _segment_entry(
    compiled: CompiledProject,
    name: str,
    lineage: Lineage,
    targets: list[Target],
    compiled_dirs: dict[str, str],
    cache: SegmentCache | None,
) -> dict[str, Any]:
    """The segment's entry in the manifest."""
    root = compiled.project.config.root
    segment = compiled.segments[name]
    d = segment.definition
    reads = _segment_reads(lineage, name, compiled.fingerprints.get(name), cache)
    return {
        "file": _relative(d.loc.path, root),
        "line": d.loc.line,
        "entity": segment.entity,
        "kind": d.kind,
        "description": d.description,
        "owner": d.owner,
        "tags": list(d.tags),
        "parent": d.parent.name if d.parent else None,
        "union": [r.name for r in d.union],
        "intersect": [r.name for r in d.intersect],
        "exclude": [r.name for r in d.exclude],
        "depends_on": sorted(compiled.graph.upstream(name)),
        "children": compiled.graph.downstream(name),
        **reads,
        "depth": segment.depth,
        "definition_hash": d.definition_hash,
        "compiled": {t.name: f"{compiled_dirs[t.name]}/segments/{name}.sql" for t in targets},
    }


_SEGMENTS_SLOT = "\0segments\0"  # stands for the segments in the manifest's layout


def manifest_text(data: dict[str, Any], cache: SegmentCache | None = None) -> str:
    """manifest.json's text: exactly `json.dumps(data, indent=2, sort_keys=True)` + newline.

    With `indent`, the json module encodes in pure Python, which took a recompile of 1,000
    segments ~30 ms; so each segment's entry is printed once and kept in `cache`, keyed by a
    digest of the entry's compact form (the C encoder's: fast), and only new entries are
    indented. The entries are then laid out as json.dumps would.
    """
    segments: dict[str, Any] = data["segments"]
    texts = [
        f"    {json.dumps(name)}: {_entry_text(name, segments[name], cache)}"
        for name in sorted(segments)
    ]
    layout = json.dumps({**data, "segments": _SEGMENTS_SLOT}, indent=2, sort_keys=True)
    block = "{\n" + ",\n".join(texts) + "\n  }" if texts else "{}"
    return layout.replace(json.dumps(_SEGMENTS_SLOT), block, 1) + "\n"


def _entry_text(name: str, entry: dict[str, Any], cache: SegmentCache | None) -> str:
    """One segment's manifest entry, indented; an entry equal to the one the previous compile
    of this process printed needs no digest either (a dict comparison is cheaper)."""
    known = cache.entries.get(name) if cache else None
    if known is not None and known[0] == entry:
        digest, text = known[1], known[2]
    else:
        compact = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
        digest = hashlib.blake2b(compact, digest_size=16).hexdigest()
        found = cache.manifest_text(digest) if cache else None
        text = found or json.dumps(entry, indent=2, sort_keys=True).replace("\n", "\n    ")
    if cache:
        cache.manifest_texts[digest] = text
        cache.entries_used[name] = (entry, digest, text)
    return text


def _segment_reads(
    lineage: Lineage, name: str, key: str | None, cache: SegmentCache | None
) -> dict[str, list[str]]:
    """What the segment reads: its own columns, features, source columns and macros."""
    found = cache.lineage(key) if cache and key else None
    if found is None:
        segment, reads = lineage.compiled.segments[name], lineage.segment(name)
        found = {
            "columns": list(segment.columns),
            "features": list(reads.features),
            "source_columns": [str(c) for c in reads.source_columns],
            "macros": list(reads.macros),
        }
        if cache and key:
            cache.put(key, found)
    return found


@dataclass
class _Written:
    """What a process last wrote into one output folder (see `WrittenOutput`)."""

    texts: dict[str, str]  # relative path -> text
    stamps: dict[str, tuple[int, int]]  # subfolder -> (inode, mtime) once written


@dataclass
class WrittenOutput:
    """What this process last wrote into the output folders, for the next compile of the same
    process (`segsql compile --watch`): a file whose new text is the one it was given last time
    is neither read nor compared (3,000 files took 40-60 ms to compare).

    Only while the folders are as that compile left them: creating, deleting or renaming a file
    in a folder changes its mtime, and a folder that was replaced has another inode; then its
    files are compared with their new text as on a first compile.
    """

    folders: dict[str, _Written] = field(default_factory=dict)
    manifest: tuple[str, tuple[int, int, int]] | None = None  # text, (inode, mtime, size)


def write_compiled(
    out_dir: Path,
    per_target: dict[str, dict[str, str]],
    manifest_data: dict[str, Any],
    replace: bool,
    cache: SegmentCache | None = None,
    staged: Mapping[str, Path] | None = None,
    written: WrittenOutput | None = None,
) -> int:
    """Write every target's files, then the manifest; with `replace`, a target's folder ends up
    holding exactly its files (stale ones removed). `staged`: folders already written for
    targets that had none (`stage_folder`, by the workers that printed them): renamed in.
    `written` remembers what was written, for the next compile. Returns how many files were
    written or removed. An OSError goes up as it is: `pipeline.write_targets`, which also
    stages the folders, turns it into the user's error."""

    def write_target(target_name: str) -> int:
        final, files = compiled_folder(out_dir, target_name), per_target[target_name]
        ready = (staged or {}).get(target_name)
        before = written.folders.pop(str(final), None) if written else None
        if replace and not final.is_dir():
            swap_in(final, ready or stage_folder(final, files))
            changed = len(files)
        else:
            changed = _update_folder(final, files, replace, before)
        if written is not None:
            stamps = _folder_stamps(final, _subfolders(files) | {""})
            written.folders[str(final)] = _Written(dict(files), stamps)
        return changed

    out_dir.mkdir(parents=True, exist_ok=True)
    changed = sum(write_target(target_name) for target_name in per_target)
    text = manifest_text(manifest_data, cache)
    return changed + _write_manifest(out_dir / "manifest.json", text, written)


def _write_manifest(path: Path, text: str, written: WrittenOutput | None) -> int:
    """Write the manifest (unless this process wrote that very text there last); 1 if written."""
    if written is not None and written.manifest is not None and written.manifest[0] == text:
        with contextlib.suppress(OSError):
            if _file_stamp(path) == written.manifest[1]:
                return 0
    write_atomic(path, text)
    if written is not None:
        written.manifest = (text, _file_stamp(path))
    return 1


def _file_stamp(path: Path) -> tuple[int, int, int]:
    stat = os.stat(path)
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _subfolders(files: Iterable[str]) -> set[str]:
    return {os.path.dirname(rel) for rel in files}


def _folder_stamps(final: Path, subfolders: Iterable[str]) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of each of the folder's `subfolders` ("" for itself)."""
    stamps = {}
    for name in sorted(subfolders):
        stat = os.stat(os.path.join(final, name))
        stamps[name] = (stat.st_ino, stat.st_mtime_ns)
    return stamps


def _update_folder(
    final: Path, files: dict[str, str], remove_stale: bool, before: _Written | None = None
) -> int:
    """Rewrite only the files whose text changed, each atomically (written beside, renamed over);
    returns how many were written or removed.

    A recompile changes a few files of thousands, and rebuilding the folder (a hard link per
    file, then deleting the old folder) cost more than the rest of it. Every file is whole at
    any moment; if the compile is interrupted here, the manifest and the cache, written after,
    still describe the previous compile, and the next one rewrites whatever differs. `before`
    (what this process wrote there last) is trusted only while the folder is as it left it.
    """
    folder = str(final)
    if before is not None and _stamps_now(final, before.stamps) != before.stamps:
        before = None
    for name in sorted(_subfolders(files)):
        if before is None or name not in before.stamps:
            os.makedirs(os.path.join(folder, name), exist_ok=True)
    known = before.texts if before is not None else {}
    changed = 0
    for rel, text in files.items():
        if known.get(rel) == text:
            continue
        path = os.path.join(folder, rel)
        data = text.encode("utf-8")
        if before is None and _holds(path, data):
            continue
        write_atomic(Path(path), data)
        changed += 1
    if remove_stale and (before is None or not known.keys() <= files.keys()):
        changed += _remove_stale(folder, set(files))
    return changed


def _stamps_now(final: Path, stamps: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    try:
        return _folder_stamps(final, stamps)
    except OSError:  # a folder is gone
        return {}


def _holds(path: str, data: bytes) -> bool:
    """Whether the file at `path` holds exactly `data` (False when there is none)."""
    try:
        if os.stat(path).st_size != len(data):
            return False
        with open(path, "rb") as handle:
            return handle.read() == data
    except OSError:
        return False


def _remove_stale(folder: str, wanted: set[str]) -> int:
    """Delete the files segsql no longer writes (a deleted segment), then emptied folders;
    returns how many files were deleted."""
    removed = 0
    for parent, _folders, names in os.walk(folder, topdown=False):
        relative = os.path.relpath(parent, folder)
        for name in names:
            rel = name if relative == "." else os.path.join(relative, name)
            if rel.replace(os.sep, "/") not in wanted:
                os.unlink(os.path.join(parent, name))
                removed += 1
        if parent != folder and not os.listdir(parent):
            os.rmdir(parent)
    return removed


def _stage_file(path: str, current: str, text: str) -> None:
    """Write `text` at `path`, or hard-link the current file when it already holds that text:
    creating a file costs far more than linking one, and a recompile changes few files.
    (Plain `os` calls on strings: pathlib's objects cost more than the system calls here.)"""
    data = text.encode("utf-8")
    if _holds(current, data):
        try:
            os.link(current, path)
            return
        except OSError:
            pass  # no hard links here: write it
    with open(path, "wb") as handle:
        handle.write(data)


def _swap_in_folder(final: Path, files: dict[str, str]) -> None:
    """Build the new folder beside the old one, then swap it in with two renames."""
    swap_in(final, stage_folder(final, files))


STAGED_PREFIX = ".new."  # `.<name>.new.<random>`: a folder being written, not yet swapped in


def compiled_folder(out_dir: Path, target_name: str) -> Path:
    return out_dir / "compiled" / target_name


def remove_staged(out_dir: Path, created: Iterable[Path] = ()) -> None:
    """Delete staged target folders that were not swapped in (a compile that failed after
    writing them, or one that was killed), and the `created` folders if that left them empty."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(out_dir / "compiled"):
            if entry.name.startswith(".") and STAGED_PREFIX in entry.name and entry.is_dir():
                shutil.rmtree(entry.path, ignore_errors=True)
    for folder in sorted(created, key=lambda f: len(f.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty: a successful compile's folders stay


def stage_folder(final: Path, files: dict[str, str]) -> Path:
    """A new folder beside `final` holding `files` (unchanged files hard-linked from `final`)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}{STAGED_PREFIX}"))
    try:
        os.chmod(staging, FOLDER_MODE)  # it becomes the output folder
        for folder in sorted({os.path.dirname(rel) for rel in files} - {""}):
            os.makedirs(os.path.join(staging, folder), exist_ok=True)
        new, current = str(staging), str(final)
        for rel, text in files.items():
            _stage_file(os.path.join(new, rel), os.path.join(current, rel), text)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def swap_in(final: Path, staging: Path) -> None:
    """Replace `final` by the staged folder with two renames; the old one is then deleted."""
    try:
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
