"""Stage 1, load: `segsql.yml` + `segments/**/*.yml` + `macros/*.sql` -> a raw `Project`.

Every key is checked against the tables of allowed keys below (unknown keys suggest the closest
known one), names must be unique project-wide, and every error carries file:line:col. All errors of
the project are collected and raised together.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlglot

from segsql.errors import ErrorCollector, Location, SpecError, did_you_mean
from segsql.model import (
    DATA_TESTS,
    ENGINES,
    KPI_FORMATS,
    SEGMENT_KINDS,
    DataTest,
    EntityDef,
    Expectation,
    ExpectedMember,
    Expr,
    FeatureDef,
    FeatureSource,
    Fixture,
    KpiDef,
    Materialize,
    Project,
    ProjectConfig,
    Ref,
    SegmentDef,
    TableDef,
    TargetConfig,
    UnitTestDef,
    Window,
    WindowUnit,
    sibling_group,
)
from segsql.yamlio import YMap, YNode, YScalar, YSeq, load_yaml

PROJECT_FILE = "segsql.yml"
DEFINITION_DIRS = ("segments",)
MACRO_DIR = "macros"
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
WINDOW_PATTERN = re.compile(r"^\s*(\d+)\s*(day|week|month|year)s?\s*$", re.IGNORECASE)

# The allowed keys of each kind of mapping: the single source of truth for validation.
PROJECT_KEYS = {"name", "dialect", "vars", "seeds", "targets", "default_target", "version"}
TARGET_KEYS = {
    "engine",
    "path",
    "schema",
    "dsn_env",
    "project",
    "dataset",
    "source_schema",
    "source_dataset",
}
FILE_KEYS = {"tables", "entities", "segments", "kpis", "unit_tests"}
TABLE_KEYS = {"name", "table", "description", "columns"}
ENTITY_KEYS = {"name", "table", "key", "time", "columns", "features", "description", "materialize"}
FEATURE_KEYS = {"name", "expr", "from", "window", "default", "description"}
SOURCE_KEYS = {"table", "key", "time", "where"}
SEGMENT_KEYS = {
    "name", "entity", "kind", "description", "where", "parent", "union", "intersect",
    "exclude", "owner", "tags", "materialize", "freeze", "tests", "exclusive",
}  # fmt: skip
UNIT_TEST_KEYS = {"name", "description", "as_of", "vars", "given", "expect"}
KPI_KEYS = {"name", "entity", "expr", "format", "description"}

T = TypeVar("T")


class MapReader:
    """Typed access to one YAML mapping; reports wrong types and unknown keys to the collector."""

    def __init__(self, node: YNode, what: str, allowed: set[str], errors: ErrorCollector):
        self.what = what
        self.errors = errors
        self.loc = node.loc
        self.items: dict[str, YNode] = {}
        if not isinstance(node, YMap):
            errors.add(f"{what} must be a mapping, got a {node.kind}", node.loc)
            return
        self.items = node.items
        for key, key_loc in node.key_locs.items():
            if key not in allowed:
                hint = did_you_mean(key, allowed) or "allowed keys: " + ", ".join(sorted(allowed))
                errors.add(f"unknown key '{key}' in {what}", key_loc, hint)

    def has(self, key: str) -> bool:
        return key in self.items

    def scalar(self, key: str, required: bool = False) -> YScalar | None:
        node = self.items.get(key)
        if node is None:
            if required:
                self.errors.add(f"{self.what} is missing required key '{key}'", self.loc)
            return None
        if not isinstance(node, YScalar):
            self.errors.add(
                f"'{key}' in {self.what} must be a single value, got a {node.kind}", node.loc
            )
            return None
        return node

    def string(self, key: str, required: bool = False) -> str | None:
        node = self.scalar(key, required)
        if node is None or node.value is None:
            return None
        if isinstance(node.value, bool | dict | list):
            self.errors.add(f"'{key}' in {self.what} must be text, got {node.kind}", node.loc)
            return None
        return str(node.value)

    def name(self, key: str = "name") -> str | None:
        node = self.scalar(key, required=True)
        if node is None:
            return None
        value = str(node.value)
        if not NAME_PATTERN.match(value):
            self.errors.add(
                f"invalid name '{value}'",
                node.loc,
                "names start with a letter and contain only letters, digits and '_'",
            )
            return None
        return value

    def expr(self, key: str, required: bool = False) -> Expr | None:
        node = self.scalar(key, required)
        if node is None:
            return None
        return _expr_of(node)

    def exprs(self, key: str) -> tuple[Expr, ...]:
        """A single expression or a list of them."""
        return self._one_or_many(key, lambda n: _expr_of(n))

    def refs(self, key: str) -> tuple[Ref, ...]:
        return self._one_or_many(key, lambda n: Ref(str(n.value), n.loc))

    def strings(self, key: str) -> tuple[str, ...]:
        return self._one_or_many(key, lambda n: str(n.value))

    def choice(self, key: str, options: tuple[str, ...], default: str | None) -> str | None:
        value = self.string(key)
        if value is None:
            return default
        if value not in options:
            hint = did_you_mean(value, options) or "one of: " + ", ".join(options)
            self.errors.add(
                f"'{key}' must be one of {len(options)} values, got '{value}'",
                self.items[key].loc,
                hint,
            )
            return default
        return value

    def mapping(self, key: str) -> YMap | None:
        node = self.items.get(key)
        if node is None or (isinstance(node, YScalar) and node.value is None):
            return None
        if not isinstance(node, YMap):
            self.errors.add(
                f"'{key}' in {self.what} must be a mapping, got a {node.kind}", node.loc
            )
            return None
        return node

    def sequence(self, key: str) -> list[YNode]:
        node = self.items.get(key)
        if node is None or (isinstance(node, YScalar) and node.value is None):
            return []
        if not isinstance(node, YSeq):
            self.errors.add(f"'{key}' in {self.what} must be a list, got a {node.kind}", node.loc)
            return []
        return node.items

    def _one_or_many(self, key: str, convert: Callable[[YScalar], T]) -> tuple[T, ...]:
        node = self.items.get(key)
        if node is None:
            return ()
        nodes = node.items if isinstance(node, YSeq) else [node]
        out: list[T] = []
        for item in nodes:
            if not isinstance(item, YScalar) or item.value is None or isinstance(item.value, bool):
                self.errors.add(
                    f"'{key}' in {self.what} must hold text values, got a {item.kind}", item.loc
                )
                continue
            out.append(convert(item))
        return tuple(out)


def _expr_of(node: YScalar) -> Expr:
    text = node.value if isinstance(node.value, str) else json.dumps(node.value, default=str)
    return Expr(text, node.content_loc or node.loc)


def plain(node: YNode) -> Any:
    """The node as plain Python data (for hashing and for the manifest)."""
    if isinstance(node, YMap):
        return {key: plain(value) for key, value in node.items.items()}
    if isinstance(node, YSeq):
        return [plain(item) for item in node.items]
    value = node.value if isinstance(node, YScalar) else None
    return value.isoformat() if isinstance(value, dt.date) else value


def definition_hash(node: YNode, ignore: frozenset[str] = frozenset()) -> str:
    """A short hash of the definition's YAML; keys in `ignore` (e.g. its tests) do not count."""
    data = plain(node)
    if isinstance(data, dict):
        data = {key: value for key, value in data.items() if key not in ignore}
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# segsql.yml


def find_project_root(start: Path) -> Path:
    """The nearest folder at or above `start` holding segsql.yml (as git finds .git)."""
    start = start.resolve()
    if not start.is_dir():
        problem = "is not a folder" if start.exists() else "does not exist"
        raise SpecError(
            f"project folder {start} {problem}",
            hint="pass the folder holding segsql.yml to --project-dir (or $SEGSQL_PROJECT_DIR)",
        )
    for folder in (start, *start.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    raise SpecError(
        f"no {PROJECT_FILE} found in {start} or any parent folder",
        hint="run inside a segsql project, pass --project-dir, or create one with `segsql init`",
    )


def load_config(root: Path, errors: ErrorCollector) -> ProjectConfig:
    path = root / PROJECT_FILE
    node = load_yaml(path)
    if node is None:
        raise SpecError(f"{PROJECT_FILE} is empty", Location(path), "it needs at least `name:`")
    reader = MapReader(node, PROJECT_FILE, PROJECT_KEYS, errors)
    dialect = reader.string("dialect") or "duckdb"
    _check_dialect(dialect, reader, errors)
    targets = _read_targets(reader, errors)
    default_target = reader.string("default_target") or next(iter(targets))
    if default_target not in targets:
        errors.add(
            f"default_target '{default_target}' is not a target",
            reader.items["default_target"].loc,
            did_you_mean(default_target, targets) or "targets: " + ", ".join(targets),
        )
    seeds = reader.string("seeds")
    var_node = reader.mapping("vars")
    variables = plain(var_node) if var_node else {}
    return ProjectConfig(
        root=root,
        name=reader.string("name", required=True) or root.name,
        dialect=dialect,
        vars=variables,
        seeds=root / seeds if seeds else None,
        targets=targets,
        default_target=default_target,
        loc=node.loc,
    )


def _check_dialect(dialect: str, reader: MapReader, errors: ErrorCollector) -> None:
    try:
        sqlglot.Dialect.get_or_raise(dialect)
    except ValueError:
        errors.add(
            f"unknown SQL dialect '{dialect}'",
            reader.items["dialect"].loc,
            "e.g. duckdb, postgres, bigquery, snowflake",
        )


def _read_targets(reader: MapReader, errors: ErrorCollector) -> dict[str, TargetConfig]:
    node = reader.mapping("targets")
    if node is None:
        return {
            "local": TargetConfig(
                "local", "duckdb", path=f"{reader.string('name') or 'segsql'}.duckdb"
            )
        }
    targets = {}
    for name, target_node in node.items.items():
        target = MapReader(target_node, f"target '{name}'", TARGET_KEYS, errors)
        engine = target.choice("engine", ENGINES, None)
        if engine is None and not target.has("engine"):
            errors.add(
                f"target '{name}' is missing required key 'engine'",
                target_node.loc,
                "one of: " + ", ".join(ENGINES),
            )
        targets[name] = TargetConfig(
            name=name,
            engine=engine or "duckdb",
            path=target.string("path"),
            schema=target.string("schema"),
            dsn_env=target.string("dsn_env"),
            project=target.string("project"),
            dataset=target.string("dataset"),
            source_schema=target.string("source_schema"),
            source_dataset=target.string("source_dataset"),
            loc=target_node.loc,
        )
    return targets


# ---------------------------------------------------------------------------------------------
# definition files


@dataclass(frozen=True)
class FileDefinitions:
    """What one definition file declares, read and shape-checked, before names are checked
    across files. Error-free ones can be cached (see `DefinitionReader`)."""

    tables: tuple[TableDef, ...] = ()
    entities: tuple[EntityDef, ...] = ()
    segments: tuple[SegmentDef, ...] = ()
    unit_tests: tuple[UnitTestDef, ...] = ()
    kpis: tuple[KpiDef, ...] = ()


# read(path) -> (what the file declares, whether it was error-free)
ReadFile = Callable[[Path], tuple[FileDefinitions | None, bool]]


class DefinitionReader(Protocol):
    """Reads a definition file with `read`, or serves it from a cache of earlier error-free
    reads of the same content (segsql/cache.py)."""

    def __call__(self, path: Path, read: ReadFile) -> FileDefinitions | None: ...


def read_definition_file(path: Path, errors: ErrorCollector) -> FileDefinitions | None:
    """One `segments/**/*.yml` file; None when it is empty or is not YAML (errors say why)."""
    try:
        node = load_yaml(path)
    except SpecError as exc:
        errors.extend([exc])
        return None
    if node is None:
        return None
    reader = MapReader(node, f"definition file {path.name}", FILE_KEYS, errors)

    def each(key: str, read: Callable[[YNode, ErrorCollector], T | None]) -> tuple[T, ...]:
        found = (read(item, errors) for item in reader.sequence(key))
        return tuple(item for item in found if item is not None)

    return FileDefinitions(
        tables=each("tables", read_table),
        entities=each("entities", read_entity),
        segments=each("segments", read_segment),
        unit_tests=each("unit_tests", read_unit_test),
        kpis=each("kpis", read_kpi),
    )


def load_project(root: Path, reader: DefinitionReader | None = None) -> Project:
    """Load and shape-check the whole project; raises SpecErrors listing every problem found.

    `reader` may serve files unchanged since an earlier compile from its cache: a recompile
    then parses only the edited YAML (names are still checked across all files here).
    """
    errors = ErrorCollector()
    config = load_config(root, errors)
    tables: dict[str, TableDef] = {}
    entities: dict[str, EntityDef] = {}
    segments: dict[str, SegmentDef] = {}
    unit_tests: dict[str, UnitTestDef] = {}
    seen: dict[str, Location] = {}
    seen_tests: dict[str, Location] = {}  # unit tests have their own namespace
    kpis: dict[str, KpiDef] = {}
    seen_kpis: dict[str, Location] = {}  # KPIs too: they name output columns, not relations

    def read(path: Path) -> tuple[FileDefinitions | None, bool]:
        before = len(errors.errors)
        return read_definition_file(path, errors), len(errors.errors) == before

    for path in definition_files(root):
        found = reader(path, read) if reader else read(path)[0]
        if found is None:
            continue
        # registered in file order, then item order: the first of two duplicates is the one kept
        for table in found.tables:
            _register(table, tables, seen, errors, "table")
        for entity in found.entities:
            _register(entity, entities, seen, errors, "entity")
        for segment in found.segments:
            _register(segment, segments, seen, errors, "segment")
        for test in found.unit_tests:
            _register(test, unit_tests, seen_tests, errors, "unit test")
        for kpi in found.kpis:
            _register(kpi, kpis, seen_kpis, errors, "KPI")
    _check_expected_segments(unit_tests, segments, errors)
    errors.raise_if_any()
    return Project(
        config=config,
        tables=dict(sorted(tables.items())),
        entities=dict(sorted(entities.items())),
        segments=dict(sorted(segments.items())),
        macro_files=tuple(sorted(p for p in (root / MACRO_DIR).glob("**/*.sql") if p.is_file())),
        unit_tests=dict(sorted(unit_tests.items())),
        kpis=kpis,  # in declared order: the order of the KPI columns
    )


def definition_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for folder in DEFINITION_DIRS:
        for pattern in ("**/*.yml", "**/*.yaml"):
            # a folder that happens to be named like a file (`old.yml/`) holds no definitions
            files.extend(path for path in (root / folder).glob(pattern) if path.is_file())
    return sorted(files)


class _Named:
    name: str
    loc: Location


def _register(
    item: Any,
    registry: dict[str, Any],
    seen: dict[str, Location],
    errors: ErrorCollector,
    what: str,
) -> None:
    """Add a definition, refusing a name already used by any table, entity or segment."""
    if item is None:
        return
    # Case-insensitive, as warehouses are: `Active` and `active` would be one view.
    key = item.name.lower()
    if key in seen:
        first = seen[key]
        errors.add(
            f"duplicate name '{item.name}': already defined at {first}",
            item.loc,
            "names are unique across the whole project (tables, entities and segments), "
            "ignoring case; rename one",
        )
        return
    seen[key] = item.loc
    registry[item.name] = item


def read_table(node: YNode, errors: ErrorCollector) -> TableDef | None:
    reader = MapReader(node, "table", TABLE_KEYS, errors)
    name = reader.name()
    columns = _read_columns(reader.items.get("columns"), errors)
    if name is None:
        return None
    return TableDef(
        name=name,
        relation=reader.string("table") or name,
        columns=columns,
        description=reader.string("description"),
        loc=node.loc,
    )


def _read_columns(node: YNode | None, errors: ErrorCollector) -> tuple[tuple[str, str | None], ...]:
    if node is None:
        return ()
    if isinstance(node, YMap):
        return tuple(
            (name, None if _is_null(value) else str(plain(value)))
            for name, value in node.items.items()
        )
    if isinstance(node, YSeq):
        return tuple((str(plain(item)), None) for item in node.items)
    errors.add("'columns' must be a mapping of name: type, or a list of names", node.loc)
    return ()


def _is_null(node: YNode) -> bool:
    return isinstance(node, YScalar) and node.value is None


def read_entity(node: YNode, errors: ErrorCollector) -> EntityDef | None:
    reader = MapReader(node, "entity", ENTITY_KEYS, errors)
    name = reader.name()
    table = reader.string("table", required=True)
    key = reader.string("key", required=True)
    features = tuple(
        f for f in (read_feature(item, errors) for item in reader.sequence("features")) if f
    )
    columns = reader.strings("columns") if reader.has("columns") else None
    materialize = reader.choice("materialize", ("view", "table"), "table")
    time = reader.string("time")
    if name is None or table is None or key is None:
        return None
    return EntityDef(
        name=name,
        table=table,
        key=key,
        time=time,
        columns=None if columns is None else _with_key_and_time(columns, key, time),
        features=features,
        description=reader.string("description"),
        materialize=_materialize(materialize),
        loc=node.loc,
    )


def _with_key_and_time(columns: tuple[str, ...], key: str, time: str | None) -> tuple[str, ...]:
    """Declared entity columns, plus the key (first) and the time column when left out: both are
    columns of the entity's table by definition, so `columns: [country, plan]` is enough."""
    declared = {column.lower() for column in columns}
    with_key = columns if key.lower() in declared else (key, *columns)
    if time is None or time.lower() in declared:
        return with_key
    return (*with_key, time)


def read_feature(node: YNode, errors: ErrorCollector) -> FeatureDef | None:
    reader = MapReader(node, "feature", FEATURE_KEYS, errors)
    name = reader.name()
    expr = reader.expr("expr", required=True)
    source = _read_source(reader, errors)
    window = _read_window(reader, errors)
    if window is not None and (source is None or source.time is None):
        errors.add(
            "'window' needs a time column",
            reader.items["window"].loc,
            "add `time:` to `from:` (e.g. from: {table: orders, key: customer_id, time: ordered_at})",
        )
    default_node = reader.scalar("default")
    if name is None or expr is None:
        return None
    return FeatureDef(
        name=name,
        expr=expr,
        source=source,
        window=window,
        default=plain(default_node) if default_node else None,
        description=reader.string("description"),
        loc=node.loc,
    )


def _read_source(reader: MapReader, errors: ErrorCollector) -> FeatureSource | None:
    node = reader.mapping("from")
    if node is None:
        return None
    source = MapReader(node, "feature 'from'", SOURCE_KEYS, errors)
    table = source.string("table", required=True)
    key = source.string("key", required=True)
    if table is None or key is None:
        return None
    return FeatureSource(table, key, source.string("time"), source.expr("where"), node.loc)


def _read_window(reader: MapReader, errors: ErrorCollector) -> Window | None:
    node = reader.scalar("window")
    if node is None:
        return None
    match = WINDOW_PATTERN.match(str(node.value))
    if not match or int(match.group(1)) <= 0:
        errors.add(
            f"invalid window '{node.value}'",
            node.loc,
            "write `N days`, `N weeks`, `N months` or `N years`, e.g. `90 days`",
        )
        return None
    unit: WindowUnit = match.group(2).lower()  # type: ignore[assignment]
    return Window(int(match.group(1)), unit)


def read_segment(node: YNode, errors: ErrorCollector) -> SegmentDef | None:
    reader = MapReader(node, "segment", SEGMENT_KEYS, errors)
    name = reader.name()
    entity = reader.scalar("entity")
    parent = reader.scalar("parent")
    kind = reader.choice("kind", SEGMENT_KINDS, None)
    materialize = reader.choice("materialize", ("view", "table"), "view")
    segment = SegmentDef(
        name=name or "",
        entity=Ref(str(entity.value), entity.loc) if entity and entity.value else None,
        kind=kind,
        description=reader.string("description"),
        where=reader.exprs("where"),
        parent=Ref(str(parent.value), parent.loc) if parent and parent.value else None,
        union=reader.refs("union"),
        intersect=reader.refs("intersect"),
        exclude=reader.refs("exclude"),
        owner=reader.string("owner"),
        tags=reader.strings("tags"),
        materialize=_materialize(materialize),
        # tests check a segment but do not change who is in it: editing them is not a change
        definition_hash=definition_hash(node, ignore=frozenset({"tests"})),
        loc=node.loc,
        freeze=_read_freeze(reader, errors),
        tests=_read_data_tests(reader, errors),
        exclusive=_read_exclusive(reader, errors, parent, entity),
    )
    if not (segment.where or segment.references or segment.entity):
        errors.add(
            f"segment '{name}' selects nothing",
            node.loc,
            "give it `where:`, `parent:`, or `union:`/`intersect:`",
        )
    return segment if name else None


def _read_freeze(reader: MapReader, errors: ErrorCollector) -> dt.date | None:
    """`freeze: YYYY-MM-DD` (YAML may already give a date)."""
    node = reader.scalar("freeze")
    if node is None or node.value is None:
        return None
    if isinstance(node.value, dt.date) and not isinstance(node.value, dt.datetime):
        return node.value
    try:
        return dt.date.fromisoformat(str(node.value))
    except ValueError:
        errors.add(
            f"invalid freeze date '{node.value}'",
            node.loc,
            "write the date whose membership the segment keeps as YYYY-MM-DD, e.g. 2024-03-01",
        )
        return None


def read_kpi(node: YNode, errors: ErrorCollector) -> KpiDef | None:
    """A KPI mapping; a bare name (`- standard`, `- average_order_value`) names standard KPIs."""
    if isinstance(node, YScalar) and isinstance(node.value, str):
        if not NAME_PATTERN.match(node.value):
            errors.add(f"invalid KPI name '{node.value}'", node.loc, "e.g. `- standard`")
            return None
        return KpiDef(node.value, None, None, None, None, node.loc)
    reader = MapReader(node, "KPI", KPI_KEYS, errors)
    name = reader.name()
    entity = reader.scalar("entity")
    kpi_format = reader.choice("format", KPI_FORMATS, None)
    if name is None:
        return None
    return KpiDef(
        name=name,
        entity=Ref(str(entity.value), entity.loc) if entity and entity.value else None,
        expr=reader.expr("expr"),
        format=kpi_format,
        description=reader.string("description"),
        loc=node.loc,
    )


def _materialize(value: str | None) -> Materialize:
    return "table" if value == "table" else "view"


# ---------------------------------------------------------------------------------------------
# tests: data tests and exclusive groups on segments, unit tests with fixtures


def _read_data_tests(reader: MapReader, errors: ErrorCollector) -> tuple[DataTest, ...]:
    """`tests: [not_empty, {min_size: 100}, {max_share_of_parent: 0.5}]`."""
    tests: list[DataTest] = []
    for item in reader.sequence("tests"):
        if isinstance(item, YScalar):
            kind, value_node = str(item.value), None
        elif isinstance(item, YMap) and len(item.items) == 1:
            kind, value_node = next(iter(item.items.items()))
        else:
            errors.add(
                "a data test is a name or a one-key mapping", item.loc, "e.g. `- {min_size: 100}`"
            )
            continue
        test = _data_test(kind, value_node, item.loc, errors)
        if test is not None:
            tests.append(test)
    return tuple(tests)


def _data_test(
    kind: str, value_node: YNode | None, loc: Location, errors: ErrorCollector
) -> DataTest | None:
    if kind not in DATA_TESTS:
        hint = did_you_mean(kind, DATA_TESTS) or "data tests: " + ", ".join(DATA_TESTS)
        errors.add(f"unknown data test '{kind}'", loc, hint)
        return None
    if not DATA_TESTS[kind]:
        return DataTest(kind, None, loc)
    value = value_node.value if isinstance(value_node, YScalar) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        errors.add(
            f"data test '{kind}' needs a non-negative number",
            value_node.loc if value_node else loc,
            f"e.g. `- {{{kind}: {0.5 if 'share' in kind else 100}}}`",
        )
        return None
    return DataTest(kind, float(value), loc)


def _read_exclusive(
    reader: MapReader, errors: ErrorCollector, parent: YScalar | None, entity: YScalar | None
) -> str | None:
    """`exclusive: lifecycle_stage`: segments naming the same group may share no member;
    `exclusive: true`: nor may the siblings (same parent) that say `exclusive: true` too."""
    node = reader.scalar("exclusive")
    if node is None or node.value is None or node.value is False:
        return None
    if node.value is True:
        group = sibling_group(_scalar_text(parent), _scalar_text(entity))
        if group is None:  # no parent and no entity yet: the siblings are unknown at load time
            errors.add(
                "'exclusive: true' groups siblings under the same parent, and this segment has none",
                node.loc,
                "give it a `parent:` (or an `entity:`), or name the group, e.g. `exclusive: regions`",
            )
        return group
    if not isinstance(node.value, str) or not NAME_PATTERN.match(node.value):
        errors.add(
            f"'exclusive' is `true` or names a group of mutually exclusive segments, got '{node.value}'",
            node.loc,
            "write `exclusive: true` on mutually exclusive siblings, or the same group name on "
            "each segment of the group, e.g. `exclusive: lifecycle_stage`",
        )
        return None
    return node.value


def _scalar_text(node: YScalar | None) -> str | None:
    return str(node.value) if node is not None and node.value else None


def read_unit_test(node: YNode, errors: ErrorCollector) -> UnitTestDef | None:
    reader = MapReader(node, "unit test", UNIT_TEST_KEYS, errors)
    name = reader.name()
    as_of = _read_date(reader, "as_of", errors)
    var_node = reader.mapping("vars")
    given = _read_fixtures(reader.mapping("given"), errors)
    expect_node = reader.mapping("expect")
    if expect_node is None:
        errors.add("unit test is missing required key 'expect'", node.loc, _EXPECT_HINT)
    expect = _read_expectations(expect_node, errors) if expect_node else ()
    if name is None:
        return None
    return UnitTestDef(
        name=name,
        description=reader.string("description"),
        as_of=as_of,
        vars=plain(var_node) if var_node else {},
        given=given,
        expect=expect,
        loc=node.loc,
    )


def _check_expected_segments(
    tests: dict[str, UnitTestDef], segments: dict[str, SegmentDef], errors: ErrorCollector
) -> None:
    for test in tests.values():
        for expectation in test.expect:
            ref = expectation.segment
            if ref.name not in segments:
                errors.add(
                    f"unit test '{test.name}' expects members of unknown segment '{ref.name}'",
                    ref.loc,
                    did_you_mean(ref.name, segments) or "see `segsql list`",
                )


_EXPECT_HINT = "e.g. `expect: {active: [1, 3]}` (segment: its exact member keys)"


def _read_date(reader: MapReader, key: str, errors: ErrorCollector) -> dt.date | None:
    node = reader.scalar(key)
    if node is None or node.value is None:
        return None
    if isinstance(node.value, dt.date):
        return node.value if not isinstance(node.value, dt.datetime) else node.value.date()
    try:
        return dt.date.fromisoformat(str(node.value))
    except ValueError:
        errors.add(f"invalid date '{node.value}' in '{key}'", node.loc, "write YYYY-MM-DD")
        return None


def _read_fixtures(node: YMap | None, errors: ErrorCollector) -> tuple[Fixture, ...]:
    """`given: {table: [{column: value, ...}, ...]}`; an empty list is an empty table."""
    if node is None:
        return ()
    fixtures = []
    for table, rows_node in node.items.items():
        rows = rows_node.items if isinstance(rows_node, YSeq) else []
        if not isinstance(rows_node, YSeq) and not _is_null(rows_node):
            errors.add(f"rows of '{table}' must be a list of mappings", rows_node.loc)
        for row in rows:
            if not isinstance(row, YMap):
                errors.add(
                    f"a row of '{table}' must be a mapping of column: value",
                    row.loc,
                    "e.g. `- {customer_id: 1, country: DE}`",
                )
        data = tuple(plain(row) for row in rows if isinstance(row, YMap))
        fixtures.append(Fixture(table, data, rows_node.loc))
    return tuple(fixtures)


def _read_expectations(node: YMap, errors: ErrorCollector) -> tuple[Expectation, ...]:
    """`expect: {segment: [key, {key_column: key, feature: value}, ...]}`."""
    out = []
    for segment, members_node in node.items.items():
        ref = Ref(segment, node.key_locs[segment])
        if _is_null(members_node):
            out.append(Expectation(ref, (), members_node.loc))
            continue
        if not isinstance(members_node, YSeq):
            errors.add(
                f"expected members of '{segment}' must be a list", members_node.loc, _EXPECT_HINT
            )
            continue
        members = [_expected_member(item, errors) for item in members_node.items]
        out.append(Expectation(ref, tuple(m for m in members if m), members_node.loc))
    return tuple(out)


def _expected_member(node: YNode, errors: ErrorCollector) -> ExpectedMember | None:
    """A bare key, or a mapping holding the key (first) and expected column/feature values."""
    if isinstance(node, YScalar) and node.value is not None:
        return ExpectedMember(plain(node), None, {}, node.loc)
    if isinstance(node, YMap) and node.items:
        values = plain(node)
        key_column = next(iter(values))
        return ExpectedMember(values.pop(key_column), key_column, values, node.loc)
    errors.add(
        "an expected member is a key or a mapping starting with the key",
        node.loc,
        "e.g. `- 1` or `- {customer_id: 1, orders_90d: 2}`",
    )
    return None
