"""BigQuery analysis offline: Google's ZetaSQL analyser (PyPI `zetasql`, WebAssembly) resolves every
name and type-checks every expression of the emitted BigQuery statements, with no network.

The catalog holds the project's declared `tables:` (column types transpiled to GoogleSQL by
sqlglot) and, as the deploy script is analysed in order, every relation it creates (its column types
are those ZetaSQL infers), so segment views are checked against the real feature relation.
Language options: every released feature, in the external product mode (BigQuery's: no INT32,
UINT64 or FLOAT types). `evaluate_constant` runs a constant expression on ZetaSQL's reference
implementation (in UTC, as BigQuery), so tests can compare BigQuery's values, not only its types.

The WebAssembly module takes ~30-80 s to compile; wasmtime's on-disk code cache (under
`$SEGSQL_CACHE_DIR`, else `$XDG_CACHE_HOME/segsql`, else `~/.cache/segsql`) makes later starts ~1 s.
Needs the optional extra: `pip install 'segsql[bigquery-check]'`.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from segsql.build import CompiledProject
from segsql.emit import Target, deploy_statements, to_sql
from segsql.errors import ExecutionError, Location, SpecError
from segsql.model import Project

# GoogleSQL type names (as sqlglot writes them for BigQuery) -> ZetaSQL TypeKind member names
GOOGLESQL_TYPE_KINDS = {
    "INT64": "TYPE_INT64",
    "NUMERIC": "TYPE_NUMERIC",
    "BIGNUMERIC": "TYPE_BIGNUMERIC",
    "FLOAT64": "TYPE_DOUBLE",
    "STRING": "TYPE_STRING",
    "BYTES": "TYPE_BYTES",
    "BOOL": "TYPE_BOOL",
    "DATE": "TYPE_DATE",
    "DATETIME": "TYPE_DATETIME",
    "TIMESTAMP": "TYPE_TIMESTAMP",
    "TIME": "TYPE_TIME",
    "JSON": "TYPE_JSON",
    "INTERVAL": "TYPE_INTERVAL",
}


@dataclass(frozen=True)
class Finding:
    """One statement ZetaSQL rejects."""

    what: str  # e.g. "segment 'active'"
    sql: str
    message: str
    loc: Location | None


# ---------------------------------------------------------------------------------------------
# the analyser service (one per process)


def cache_dir() -> Path:
    if os.environ.get("SEGSQL_CACHE_DIR"):
        return Path(os.environ["SEGSQL_CACHE_DIR"]) / "wasmtime"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "segsql" / "wasmtime"


def _enable_code_cache() -> None:
    """Swap the package's wasmtime Config for one with the on-disk code cache turned on."""
    import wasmtime
    import zetasql.core.wasm_client as wasm_client

    folder = cache_dir()
    settings = folder / "cache.toml"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # a TOML basic string accepts JSON's escapes
        settings.write_text(f"[cache]\ndirectory = {json.dumps(str(folder))}\n", encoding="utf-8")
    except OSError:
        return  # no writable cache: every start compiles the module (slow, still correct)

    def cached_config() -> Any:
        config = wasmtime.Config()
        config.cache = str(settings)
        return config

    wasm_client.Config = cached_config


@functools.cache
def _zetasql() -> Any:
    """The zetasql modules, with the analyser service started once (with the code cache)."""
    try:
        import zetasql.core.local_service
        import zetasql.types
        from zetasql.core.local_service import ZetaSqlLocalService
    except ImportError:
        raise ExecutionError(
            "checking BigQuery SQL needs the ZetaSQL analyser",
            hint="pip install 'segsql[bigquery-check]'",
        ) from None
    _enable_code_cache()
    ZetaSqlLocalService.get_instance()
    return zetasql


@functools.cache
def _local_service_pb2() -> Any:
    _zetasql()
    from zetasql.wasi._pb2.zetasql.local_service import local_service_pb2

    return local_service_pb2


@functools.cache
def _language_options() -> Any:
    types = _zetasql().types
    options = types.LanguageOptions.maximum_features()
    options.product_mode = types.ProductMode.PRODUCT_EXTERNAL
    return options


# ---------------------------------------------------------------------------------------------
# the catalog


def googlesql_type(declared: str, dialect: str, loc: Location | None = None) -> Any:
    """A declared column type (project dialect) as a ZetaSQL Type, via sqlglot's BigQuery name."""
    types = _zetasql().types
    try:
        name = exp.DataType.build(declared, dialect=dialect).sql(dialect="bigquery")
    except (ParseError, TokenError, ValueError):
        name = declared
    base = name.split("(")[0].split("<")[0].strip().upper()
    kind = GOOGLESQL_TYPE_KINDS.get(base)
    if kind is None:
        raise SpecError(
            f"type '{declared}' has no BigQuery equivalent segsql can check ({name})",
            loc,
            hint="declare a scalar type: integer, decimal, double, varchar, boolean, date, timestamp",
        )
    return types.Type(type_kind=getattr(types.TypeKind, kind))


class Catalog:
    """Nested ZetaSQL catalogs: `project.dataset.table` resolves through two sub-catalogs."""

    def __init__(self) -> None:
        zetasql = _zetasql()
        self._types = zetasql.types
        self.root = self._types.SimpleCatalog(
            name="segsql",
            builtin_function_options=self._types.ZetaSQLBuiltinFunctionOptions(
                language_options=_language_options()
            ),
        )

    def add(self, path: Sequence[str], columns: Iterable[tuple[str, Any]]) -> None:
        catalog = self.root
        for part in path[:-1]:
            catalog = self._child(catalog, part)
        catalog.table[:] = [t for t in catalog.table if t.name.lower() != path[-1].lower()]
        table = self._types.SimpleTable(
            name=path[-1],
            column=[
                self._types.SimpleColumn(name=name, type=kind, is_writable_column=True)
                for name, kind in columns
            ],
        )
        catalog.table.append(table)

    def _child(self, catalog: Any, name: str) -> Any:
        for child in catalog.catalog:
            if child.name == name:
                return child
        child = self._types.SimpleCatalog(name=name)
        catalog.catalog.append(child)
        return child


def project_catalog(project: Project, target: Target) -> Catalog:
    """Every declared table with typed columns (untyped tables are left out: unresolvable),
    where the target's SQL names it (`Target.source`)."""
    catalog = Catalog()
    for table in project.tables.values():
        if not table.columns or any(kind is None for _, kind in table.columns):
            continue
        path = [part.name for part in target.source(table.relation).parts]
        columns = [
            (name, googlesql_type(str(kind), project.config.dialect, table.loc))
            for name, kind in table.columns
        ]
        catalog.add(path, columns)
    return catalog


# ---------------------------------------------------------------------------------------------
# analysis


class BigQueryAnalyzer:
    """Analyses statements in order; relations they create become visible to the next ones.

    The catalog is registered once with the analyser service (sending it with every statement
    costs ~4x the analysis itself) and registered again only when a statement reads a relation
    created since.
    """

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._zetasql = _zetasql()
        self._service = self._zetasql.core.local_service.ZetaSqlLocalService.get_instance()
        self._options = self._zetasql.types.AnalyzerOptions(language_options=_language_options())
        self._response_class = _local_service_pb2().AnalyzeResponse
        self._registered: int | None = None
        self._created_since: set[str] = set()

    def analyse(self, sql: str) -> str | None:
        """None when ZetaSQL accepts the statement, else its error message."""
        if self._registered is None or self._reads_created(sql):
            self._register()
        request = self._zetasql.types.AnalyzeRequest(
            sql_statement=sql, options=self._options, registered_catalog_id=self._registered
        )
        try:
            # the raw protobuf answer: converting the whole resolved tree to Python objects would
            # cost as much as the analysis itself
            response = self._service.wasm_client.call_grpc_func(
                "ZetaSqlLocalService_Analyze", request.to_proto(), self._response_class
            )
        except Exception as exc:  # zetasql raises its own ServerError for every rejection
            return str(exc).replace("[INVALID_ARGUMENT] ", "")
        self._remember_created(response.resolved_statement)
        return None

    def close(self) -> None:
        if self._registered is not None:
            self._service.unregister_catalog(registered_id=self._registered)
            self._registered = None

    def _register(self) -> None:
        self.close()
        self._registered = self._service.register_catalog(
            simple_catalog=self.catalog.root
        ).registered_id
        self._created_since.clear()

    def _reads_created(self, sql: str) -> bool:
        if not self._created_since:
            return False
        try:
            tree = sqlglot.parse_one(sql, read="bigquery")
        except (ParseError, TokenError):
            return True
        return any(t.name.lower() in self._created_since for t in tree.find_all(exp.Table))

    def _remember_created(self, resolved: Any) -> None:
        fields = _statement_fields(resolved)
        path = list(fields.get("name_path", []))
        if not path:
            return
        definitions = fields.get("column_definition_list")
        if definitions:
            columns = [(c.name, c.type) for c in definitions]
        else:
            columns = [(c.name, c.column.type) for c in fields.get("output_column_list", [])]
        if columns:
            to_model = self._zetasql.types.Type.from_proto
            self.catalog.add(path, [(name, to_model(kind)) for name, kind in columns])
            self._created_since.add(str(path[-1]).lower())


def _statement_fields(message: Any) -> dict[str, Any]:
    """The set fields of a resolved statement protobuf: down its `node` oneofs to the concrete
    statement, then up through its `parent` messages (how the resolved AST encodes inheritance)."""
    while message.DESCRIPTOR.oneofs_by_name.get("node") is not None:
        which = message.WhichOneof("node")
        if which is None:
            return {}
        message = getattr(message, which)
    fields: dict[str, Any] = {}
    while True:
        for descriptor, value in message.ListFields():
            fields.setdefault(descriptor.name, value)
        if "parent" not in message.DESCRIPTOR.fields_by_name or not message.HasField("parent"):
            return fields
        message = message.parent


def check_deploy(
    compiled: CompiledProject, target: Target, segments: list[str] | None = None
) -> list[Finding]:
    """Analyse the target's whole deploy script; returns the statements ZetaSQL rejects."""
    analyzer = BigQueryAnalyzer(project_catalog(compiled.project, target))
    findings = []
    try:
        for statement in deploy_statements(compiled, target, segments):
            sql = to_sql(statement, target)
            message = analyzer.analyse(sql)
            if message is not None:
                what, loc = _origin(compiled, statement)
                findings.append(Finding(what, sql, message, loc))
    finally:
        analyzer.close()
    return findings


def _origin(
    compiled: CompiledProject, statement: exp.Expr, path: str = "deploy.sql"
) -> tuple[str, Location | None]:
    """Which definition a statement comes from (the object it creates, or the file it is in)."""
    table = statement.this if isinstance(statement, exp.Create) else None
    name = table.name if isinstance(table, exp.Table) else PurePosixPath(path).stem
    if name in compiled.segments:
        return f"segment '{name}'", compiled.segments[name].definition.loc
    for entity in compiled.entities.values():
        if name in (entity.relation_name, entity.name):
            return f"the feature relation of entity '{entity.name}'", entity.definition.loc
    return "a statement", None


def raise_findings(findings: list[Finding]) -> None:
    """Every rejected statement as one SpecError (the first located one gives the position)."""
    if not findings:
        return
    lines = [f"{f.what}: {f.message}" for f in findings]
    located = next((f.loc for f in findings if f.loc is not None), None)
    raise SpecError(
        f"BigQuery (ZetaSQL analysis) rejects {len(findings)} statement(s):\n  "
        + "\n  ".join(lines),
        located,
        "the catalog holds the tables declared with column types under `tables:`; see the "
        "statements in target/compiled/<target>/, and prefer portable segsql_* functions",
    )


def check_targets(
    compiled: CompiledProject, targets: list[Target], files: dict[str, dict[str, str]]
) -> None:
    """`compile --check-sql`: analyse every BigQuery target's files (`files[target][path]`, as
    `target_files` makes them); a rejected statement is a SpecError and nothing is written."""
    checked = [t for t in targets if t.engine.name == "bigquery"]
    if not checked:
        raise SpecError(
            "--check-sql analyses BigQuery targets, and none is selected",
            hint="add --target bq (a target with engine: bigquery) or --all-targets",
        )
    for target in checked:
        raise_findings(check_files(compiled, target, files[target.name]))


def check_files(compiled: CompiledProject, target: Target, files: dict[str, str]) -> list[Finding]:
    """Every statement of every compiled file, deploy.sql first (it creates what the others read)."""
    analyzer = BigQueryAnalyzer(project_catalog(compiled.project, target))
    order = sorted(files, key=lambda path: (path != "deploy.sql", path))
    findings = []
    try:
        for path in order:
            for statement in sqlglot.parse(files[path], read="bigquery"):
                if statement is None:
                    continue
                sql = statement.sql(dialect="bigquery")
                message = analyzer.analyse(sql)
                if message is not None:
                    what, loc = _origin(compiled, statement, path)
                    findings.append(Finding(f"{path}: {what}", sql, message, loc))
    finally:
        analyzer.close()
    return findings


# ---------------------------------------------------------------------------------------------
# evaluation: what BigQuery would return, by ZetaSQL's reference implementation

NUMERIC_SCALE = 9  # ZetaSQL encodes a NUMERIC as the integer value * 10^9, little-endian
EPOCH = dt.date(1970, 1, 1)


def evaluate_constant(sql: str) -> Any:
    """The value of a constant GoogleSQL expression, computed by ZetaSQL's reference implementation
    (Google's executable specification of GoogleSQL: BigQuery's semantics, offline). Where analysis
    cannot tell what BigQuery returns (hash buckets, day numbering), tests compare this with
    DuckDB and PostgreSQL. Returns None (NULL), int, float, bool, str, Decimal or date."""
    zetasql = _zetasql()
    service = zetasql.core.local_service.ZetaSqlLocalService.get_instance()
    # ZetaSQL's default time zone is America/Los_Angeles; BigQuery's is UTC
    options = zetasql.types.AnalyzerOptions(
        language_options=_language_options(), default_timezone="UTC"
    )
    try:
        value = service.evaluate(sql=sql, options=options).value
    except Exception as exc:  # zetasql raises its own ServerError for every rejection
        raise ExecutionError(f"ZetaSQL cannot evaluate {sql}: {exc}") from None
    if value is None:
        return None
    if value.numeric_value is not None:
        units = int.from_bytes(value.numeric_value, "little", signed=True)
        return decimal.Decimal(units).scaleb(-NUMERIC_SCALE)
    if value.date_value is not None:
        return EPOCH + dt.timedelta(days=value.date_value)
    for kind in ("int64_value", "bool_value", "double_value", "string_value"):
        if getattr(value, kind) is not None:
            return getattr(value, kind)
    raise ExecutionError(f"ZetaSQL returned a value segsql cannot read for {sql}: {value}")
