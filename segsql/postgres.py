"""PostgreSQL runner (psycopg 3): the same statements as DuckDB, in one transaction; and seeds.

psycopg is an optional dependency (`pip install segsql[postgres]`).

The connection is in autocommit mode so that reads (introspection, member counts) never leave a
transaction open; `execute_all` opens an explicit transaction around the whole deploy, so a failing
statement rolls every earlier one back and the previous objects stay as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from segsql.dialects import ENGINES
from segsql.emit import Target, to_sql
from segsql.errors import ExecutionError
from segsql.model import Project, TargetConfig
from segsql.run import DuckDBRunner, Runner, Seed, seed_files, seed_query

# pg_class.relkind -> the DROP kind that removes it
DROP_KIND_OF_RELKIND = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW"}


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ExecutionError(
            "PostgreSQL targets need psycopg", hint="pip install 'segsql[postgres]'"
        ) from None
    return psycopg


class PostgresRunner:
    def __init__(self, target: Target, dsn: str):
        self._psycopg = _psycopg()
        self.target = target
        try:
            self.connection = self._psycopg.connect(dsn, autocommit=True)
            # TIMESTAMPTZ -> DATE in UTC whatever the server's default, as on BigQuery and DuckDB
            self.connection.execute("SET TIME ZONE 'UTC'")
        except self._psycopg.Error as exc:
            raise ExecutionError(
                f"cannot connect to PostgreSQL: {exc}",
                hint="check the connection string (e.g. postgresql://user:password@host:5432/db)",
            ) from None

    def execute_all(self, statements: Sequence[exp.Expr]) -> None:
        """Run every statement in one transaction; on failure nothing is changed."""
        try:
            with self.connection.transaction(), self.connection.cursor() as cursor:
                for statement in statements:
                    if isinstance(statement, exp.Drop):
                        statement = self._drop_of_existing_kind(cursor, statement)
                    cursor.execute(to_sql(statement, self.target))
        except self._psycopg.Error as exc:
            raise ExecutionError(
                f"PostgreSQL failed: {_first_line(exc)}",
                hint="nothing was changed; the previous objects are intact",
            ) from None

    def _drop_of_existing_kind(self, cursor: Any, drop: exp.Drop) -> exp.Drop:
        """DROP VIEW fails on a table (and vice versa): drop what is there now, so a segment can
        switch between `materialize: view` and `table`."""
        tables = drop.args.get("tables") or []
        if len(tables) != 1:
            return drop
        name = tables[0].sql(dialect="postgres")
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (name,))
        row = cursor.fetchone()
        kind = DROP_KIND_OF_RELKIND.get(row[0]) if row else None
        if kind is None or kind == str(drop.args.get("kind")).upper():
            return drop
        changed = drop.copy()
        changed.set("kind", kind)
        return changed

    def query(self, statement: exp.Expr) -> list[tuple[Any, ...]]:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(to_sql(statement, self.target))
                return list(cursor.fetchall())
        except self._psycopg.Error as exc:
            raise ExecutionError(f"PostgreSQL failed: {_first_line(exc)}") from None

    def table_columns(self, relation: str) -> list[str] | None:
        query = exp.select("*").from_(exp.to_table(relation, dialect="postgres")).limit(0)
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(query.sql("postgres"))
                return [column.name for column in cursor.description or []]
        except self._psycopg.Error:
            return None

    def column_types(self, query: exp.Query) -> list[exp.DataType]:
        """The output column types of a query, from the description of its plan with no rows
        (LIMIT 0 stops before reading any); ExecutionError when it cannot be typed."""
        limited = exp.select("*").from_(query.subquery("segsql_typed")).limit(0)
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(to_sql(limited, self.target))
                return [_data_type(self.connection, column) for column in cursor.description or []]
        except self._psycopg.Error as exc:
            raise ExecutionError(f"PostgreSQL failed: {_first_line(exc)}") from None

    def close(self) -> None:
        self.connection.close()


def _data_type(connection: Any, column: Any) -> exp.DataType:
    """A result column's type as sqlglot's DataType: the server's type name (`int8`,
    `numeric`, `timestamptz`...), with a numeric's precision and scale when it has them."""
    info = connection.adapters.types.get(column.type_code)
    name = info.name if info is not None else "unknown"
    if name == "numeric" and column.precision is not None:
        name = f"numeric({column.precision}, {column.scale or 0})"
    try:
        return exp.DataType.build(name, dialect="postgres")
    except Exception:  # a type sqlglot does not know: never combined (not an exact sum)
        return exp.DataType(this=exp.DataType.Type.UNKNOWN)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# seeds: read each file with DuckDB (the same reader and casts as the DuckDB seed), then COPY


@dataclass(frozen=True)
class SeedTable:
    relation: exp.Table
    columns: tuple[tuple[str, exp.DataType], ...]  # PostgreSQL types
    rows: list[tuple[Any, ...]]


def load_seeds_postgres(runner: Runner, project: Project) -> list[str]:
    """Replace one table per seed file on PostgreSQL, in one transaction; returns the tables."""
    if not isinstance(runner, PostgresRunner):
        raise ExecutionError(
            f"target '{runner.target.name}' ({runner.target.engine.name}) is not PostgreSQL",
            hint="seed DuckDB targets with `segsql seed --target <duckdb target>`",
        )
    reader = DuckDBRunner(_reader_target(), project.config.root)
    try:
        target = runner.target
        tables = [_read_seed(reader, project, seed, target) for seed in seed_files(project)]
    finally:
        reader.close()
    if not tables:
        return []
    try:
        with runner.connection.transaction(), runner.connection.cursor() as cursor:
            for table in tables:
                for statement in _create_statements(table):
                    cursor.execute(statement.sql(dialect="postgres"))
                _copy_rows(cursor, table)
    except runner._psycopg.Error as exc:
        raise ExecutionError(
            f"PostgreSQL failed while seeding: {_first_line(exc)}",
            hint="nothing was changed; check the declared column types under `tables:`",
        ) from None
    return [table.relation.sql(dialect="postgres") for table in tables]


def _reader_target() -> Target:
    return Target(TargetConfig(name="seed-reader", engine="duckdb"), ENGINES["duckdb"])


def _read_seed(reader: DuckDBRunner, project: Project, seed: Seed, target: Target) -> SeedTable:
    declared = project.tables.get(seed.table)
    relation = target.source(declared.relation if declared else seed.table)
    query = seed_query(project, seed).sql(dialect="duckdb")
    try:
        described = reader.connection.execute(f"DESCRIBE {query}").fetchall()
        rows = reader.connection.execute(query).fetchall()
    except reader._duckdb.Error as exc:
        raise ExecutionError(
            f"cannot read seed file {seed.path}: {_first_line(exc)}",
            hint="check the file and the declared column types",
        ) from None
    declared_types = dict(declared.columns) if declared else {}
    columns = tuple(
        (name, _postgres_type(declared_types.get(name), str(kind), project.config.dialect))
        for name, kind, *_ in described
    )
    return SeedTable(relation, columns, rows)


def _postgres_type(declared: str | None, duckdb_type: str, dialect: str) -> exp.DataType:
    """The declared type (in the project dialect), else the type DuckDB inferred from the file."""
    if declared:
        return exp.DataType.build(declared, dialect=dialect)
    return exp.DataType.build(duckdb_type, dialect="duckdb")


def _create_statements(table: SeedTable) -> list[exp.Expr]:
    statements: list[exp.Expr] = []
    if table.relation.db:
        schema = exp.Table(this=exp.to_identifier(table.relation.db))
        statements.append(exp.Create(this=schema, kind="SCHEMA", exists=True))
    # CASCADE: views built on the old table (feature relations) go; `segsql run` recreates them.
    statements.append(
        exp.Drop(tables=[table.relation.copy()], kind="TABLE", exists=True, cascade=True)
    )
    schema_def = exp.Schema(
        this=table.relation.copy(),
        expressions=[
            exp.ColumnDef(this=exp.to_identifier(name), kind=kind) for name, kind in table.columns
        ],
    )
    statements.append(exp.Create(this=schema_def, kind="TABLE"))
    return statements


def _copy_rows(cursor: Any, table: SeedTable) -> None:
    target = exp.Schema(
        this=table.relation.copy(),
        expressions=[exp.to_identifier(name) for name, _ in table.columns],
    )
    statement = exp.Copy(this=target, kind=True, files=[exp.var("STDIN")])
    with cursor.copy(statement.sql(dialect="postgres")) as copy:
        for row in table.rows:
            copy.write_row(row)
