"""PostgreSQL runner (psycopg 3): the same statements as DuckDB, in one transaction.

psycopg is an optional dependency (`pip install segsql[postgres]`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlglot import exp

from segsql.emit import Target, to_sql
from segsql.errors import ExecutionError
from segsql.model import Project


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
            self.connection = self._psycopg.connect(dsn)
        except self._psycopg.Error as exc:
            raise ExecutionError(f"cannot connect to PostgreSQL: {exc}") from None

    def execute_all(self, statements: Sequence[exp.Expr]) -> None:
        try:
            with self.connection.transaction(), self.connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(to_sql(statement, self.target))
        except self._psycopg.Error as exc:
            raise ExecutionError(
                f"PostgreSQL failed: {exc}",
                hint="nothing was changed; the previous objects are intact",
            ) from None

    def query(self, statement: exp.Expr) -> list[tuple[Any, ...]]:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(to_sql(statement, self.target))
                return list(cursor.fetchall())
        except self._psycopg.Error as exc:
            self.connection.rollback()
            raise ExecutionError(f"PostgreSQL failed: {exc}") from None

    def table_columns(self, relation: str) -> list[str] | None:
        query = exp.select("*").from_(exp.to_table(relation, dialect="postgres")).limit(0)
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(query.sql("postgres"))
                return [column.name for column in cursor.description or []]
        except self._psycopg.Error:
            self.connection.rollback()
            return None

    def close(self) -> None:
        self.connection.close()


def load_seeds_postgres(runner: Any, project: Project) -> list[str]:
    raise ExecutionError("seeding PostgreSQL is not implemented yet", hint="see issue #4")
