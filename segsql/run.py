"""Stage 6, run: execute emitted statements on a warehouse connection.

A `Runner` wraps one engine connection. `deploy` runs the whole build in one transaction, so a
failure leaves the previous objects as they were. DuckDB (embedded, the default) can also load the
project's seed files and tell a table's columns when they are not declared.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlglot import exp

from segsql.build import CompiledProject
from segsql.emit import Target, deploy_statements, to_sql
from segsql.errors import ExecutionError, SpecError
from segsql.model import Project

SEED_SUFFIXES = {".csv": "read_csv_auto", ".parquet": "read_parquet"}


class Runner(Protocol):
    target: Target

    def execute_all(self, statements: Sequence[exp.Expr]) -> None: ...
    def query(self, statement: exp.Expr) -> list[tuple[Any, ...]]: ...
    def table_columns(self, relation: str) -> list[str] | None: ...
    def column_types(self, query: exp.Query) -> list[exp.DataType]: ...
    def close(self) -> None: ...


class DuckDBRunner:
    """Embedded DuckDB: a file (or :memory:) next to the project; relative data paths resolve from the project root."""

    def __init__(self, target: Target, root: Path):
        import duckdb

        self._duckdb = duckdb
        self.target = target
        path = target.config.path or ":memory:"
        if path != ":memory:":
            full = (root / path).resolve()
            full.parent.mkdir(parents=True, exist_ok=True)
            path = str(full)
        try:
            self.connection = duckdb.connect(path)
            self.connection.execute(
                f"SET file_search_path = {exp.Literal.string(str(root.resolve())).sql('duckdb')}"
            )
            # TIMESTAMPTZ -> DATE in UTC, as BigQuery and the PostgreSQL runner do (see dialects.py)
            self.connection.execute("SET TimeZone = 'UTC'")
        except duckdb.Error as exc:
            raise ExecutionError(
                f"cannot open DuckDB database {path}: {exc}", hint="is another process using it?"
            ) from None

    def execute_all(self, statements: Sequence[exp.Expr]) -> None:
        sql = [to_sql(s, self.target) for s in statements]
        try:
            self.connection.execute("BEGIN TRANSACTION")
            for text in sql:
                self.connection.execute(text)
            self.connection.execute("COMMIT")
        except self._duckdb.Error as exc:
            self.connection.execute("ROLLBACK")
            raise ExecutionError(
                f"DuckDB failed: {exc}", hint="nothing was changed; the previous objects are intact"
            ) from None

    def query(self, statement: exp.Expr) -> list[tuple[Any, ...]]:
        try:
            return list(self.connection.execute(to_sql(statement, self.target)).fetchall())
        except self._duckdb.Error as exc:
            raise ExecutionError(f"DuckDB failed: {exc}") from None

    def table_columns(self, relation: str) -> list[str] | None:
        table = exp.to_table(relation, dialect="duckdb")
        source: exp.Expr = table
        if relation.lower().endswith((".csv", ".parquet", ".json", ".tsv", ".csv.gz")):
            from segsql.build import relation_expression

            source = relation_expression(relation, "duckdb")
        try:
            cursor = self.connection.execute(exp.select("*").from_(source).limit(0).sql("duckdb"))
        except self._duckdb.Error:
            return None
        return [column[0] for column in cursor.description]

    def column_types(self, query: exp.Query) -> list[exp.DataType]:
        """The output column types of a query, without running it (DuckDB's DESCRIBE);
        ExecutionError when it cannot be typed."""
        try:
            rows = self.connection.execute(f"DESCRIBE {to_sql(query, self.target)}").fetchall()
        except self._duckdb.Error as exc:
            raise ExecutionError(f"DuckDB failed: {exc}") from None
        return [exp.DataType.build(str(row[1]), dialect="duckdb") for row in rows]

    def table_exists(self, name: str) -> bool:
        return self.table_columns(name) is not None

    def close(self) -> None:
        self.connection.close()


def open_runner(target: Target, root: Path) -> Runner:
    if target.engine.name == "duckdb":
        return DuckDBRunner(target, root)
    if target.engine.name == "postgres":
        from segsql.postgres import PostgresRunner  # optional: needs psycopg

        return PostgresRunner(target, _dsn(target))
    raise ExecutionError(
        f"target '{target.name}' ({target.engine.name}) cannot be run from segsql",
        hint=f"use `segsql compile --target {target.name}` and run target/compiled/{target.name}/deploy.sql in the warehouse",
    )


def _dsn(target: Target) -> str:
    variable = target.config.dsn_env or "SEGSQL_PG_DSN"
    dsn = os.environ.get(variable)
    if not dsn:
        raise SpecError(
            f"target '{target.name}' needs a connection string in ${variable}",
            target.config.loc,
            f"export {variable}='postgresql://user:password@host:5432/db'",
        )
    return dsn


# ---------------------------------------------------------------------------------------------
# seeds


@dataclass(frozen=True)
class Seed:
    table: str
    path: Path


def seed_files(project: Project) -> list[Seed]:
    folder = project.config.seeds
    if folder is None or not folder.is_dir():
        return []
    seeds = [Seed(p.stem, p) for p in sorted(folder.iterdir()) if p.suffix.lower() in SEED_SUFFIXES]
    return seeds


def seed_query(project: Project, seed: Seed) -> exp.Select:
    """Read a seed file, casting to the declared column types when the table is declared."""
    # absolute: DuckDB looks a relative path up in the working directory first, so a `data/`
    # folder there (another project's) would be read instead of this project's seeds
    path = seed.path.resolve().as_posix()
    reader = exp.Anonymous(
        this=SEED_SUFFIXES[seed.path.suffix.lower()], expressions=[exp.Literal.string(path)]
    )
    declared = project.tables.get(seed.table)
    if declared is None or not declared.columns:
        return exp.select("*").from_(reader)
    columns = [
        exp.alias_(
            exp.cast(exp.column(name), exp.DataType.build(kind, dialect=project.config.dialect)),
            name,
        )
        if kind
        else exp.column(name)
        for name, kind in declared.columns
    ]
    return exp.select(*columns).from_(reader)


def load_seeds(runner: DuckDBRunner, project: Project, only_missing: bool) -> list[str]:
    """Create a table per seed file on DuckDB; returns the tables loaded."""
    loaded = []
    statements: list[exp.Expr] = []
    for seed in seed_files(project):
        declared = project.tables.get(seed.table)
        table = runner.target.source(declared.relation if declared else seed.table)
        relation = table.sql(dialect="duckdb")
        if only_missing and runner.table_exists(relation):
            continue
        if table.db:
            statements.append(exp.Create(this=exp.to_table(table.db), kind="SCHEMA", exists=True))
        statements.append(
            exp.Create(this=table, kind="TABLE", replace=True, expression=seed_query(project, seed))
        )
        loaded.append(relation)
    if statements:
        runner.execute_all(statements)
    return loaded


# ---------------------------------------------------------------------------------------------
# run


def deploy(runner: Runner, compiled: CompiledProject, segments: list[str]) -> None:
    runner.execute_all(deploy_statements(compiled, runner.target, segments))


def member_counts(runner: Runner, compiled: CompiledProject, segments: list[str]) -> dict[str, int]:
    """Members per created segment and the size of each entity, in one query."""
    parts: list[exp.Select] = []
    target = runner.target
    for name in segments:
        parts.append(
            exp.select(
                exp.alias_(exp.Literal.string(name), "name"),
                exp.alias_(exp.func("COUNT", exp.Star()), "n"),
            ).from_(target.relation(name))
        )
    for entity_name in sorted({compiled.segments[s].entity for s in segments}):
        entity = compiled.entities[entity_name]
        parts.append(
            exp.select(
                exp.alias_(exp.Literal.string(f"entity:{entity_name}"), "name"),
                exp.alias_(exp.func("COUNT", exp.Star()), "n"),
            ).from_(target.relation(entity.relation_name))
        )
    if not parts:
        return {}
    query: exp.Query = parts[0]
    for part in parts[1:]:
        query = exp.union(query, part, distinct=False)
    return {str(name): int(count) for name, count in runner.query(query)}
