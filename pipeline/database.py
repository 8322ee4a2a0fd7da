"""The small relational stores' one database interface: SQLite files by default, PostgreSQL
when `CALLPIPE_DATABASE__URL` names one.

A store writes its SQL once, in the dialect both engines share: `?` placeholders (turned
into psycopg's `%s` here, so no store's SQL may hold a literal `%` or `?`), `ON CONFLICT
... DO UPDATE / DO NOTHING`, and DDL whose `REAL` and autoincrement keys `ddl()` translates.
Its schema is a list of migrations applied in order on open (and by `callpipe db migrate`);
the version each store reached is kept in `schema_versions`.

`transaction(lock)` is the check-then-write step both engines serialise: SQLite's
BEGIN IMMEDIATE (one writer per file) and, on PostgreSQL, a transaction that first takes
the advisory lock named `lock`, so two hosts' robot workers take turns on the call cap the
way two threads of one process do. Inside it, every call of the same thread runs on the
transaction's connection.
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from pipeline.config import Settings
from pipeline.services import Services
from pipeline.sqlite_db import immediate, open_shared

Dialect = Literal["sqlite", "postgres"]
Params = Sequence[Any]
Row = tuple[Any, ...]


class DatabaseError(RuntimeError):
    """The database refused or could not be reached."""


class Database(Protocol):
    """What a store needs of its database."""

    dialect: Dialect

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a query, or None."""
        ...

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of a query."""
        ...

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Run a statement once per row of parameters."""
        ...

    def transaction(self, lock: str) -> AbstractContextManager[None]:
        """Serialised with every other `transaction(lock)` on this database."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def ddl(dialect: Dialect, statement: str) -> str:
    """A CREATE statement in the given dialect: PostgreSQL's REAL is 4 bytes (too few for a
    UNIX time), and its autoincrement key is an identity column."""
    if dialect == "sqlite":
        return statement
    return statement.replace(
        "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    ).replace(" REAL", " DOUBLE PRECISION")


_VERSIONS = (
    "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY,"
    " version INTEGER NOT NULL)"
)


def migrate(db: Database, component: str, steps: Sequence[str]) -> int:
    """Apply the steps of `component` not yet applied (each a `;`-separated script of
    portable DDL); the version reached. Safe to run from several hosts at once."""
    # One lock for every store's migrations: hosts starting together take turns, and none
    # sees a table half made (CREATE ... IF NOT EXISTS races on PostgreSQL otherwise).
    with db.transaction("migrate"):
        db.execute(_VERSIONS)
        row = db.fetchone("SELECT version FROM schema_versions WHERE component = ?", (component,))
        done = int(row[0]) if row else 0
        for step in steps[done:]:
            for statement in step.split(";"):
                if statement.strip():
                    db.execute(ddl(db.dialect, statement.strip()))
        if len(steps) > done:
            db.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?)"
                " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, len(steps)),
            )
    return max(done, len(steps))


class SqliteDatabase:
    """One SQLite file (WAL), one connection shared by the threads under a lock."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = path
        self._db = open_shared(path, busy_timeout_s=busy_timeout_s)
        self._lock = threading.RLock()
        self._local = threading.local()

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise DatabaseError(str(exc)) from exc

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        with self._locked() as db:
            row: Row | None = db.execute(sql, params).fetchone()
        return row

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        with self._locked() as db:
            return db.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Params = ()) -> int:
        with self._locked() as db:
            return db.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        with self._locked() as db:
            db.executemany(sql, rows)

    @contextmanager
    def transaction(self, lock: str) -> Iterator[None]:
        # One writer per file already; a nested transaction joins the outer one.
        if getattr(self._local, "depth", 0):
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        with self._locked(), immediate(self._db, self._lock):
            self._local.depth = 1
            try:
                yield
            finally:
                self._local.depth = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresPool:
    """A psycopg connection pool to one PostgreSQL database, opened and checked at once.

    `connection()` lends a connection (committed on exit, rolled back on an error) and
    turns psycopg's and the pool's errors into DatabaseError."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout_s: float = 5.0):
        import psycopg  # here, so a deployment without PostgreSQL never loads psycopg
        import psycopg_pool

        # One direct connection first: a refused or misconfigured server fails at once with
        # its reason, where the pool would retry for `timeout_s` and say only "timeout".
        try:
            psycopg.connect(url, connect_timeout=max(1, int(timeout_s))).close()
        except psycopg.Error as exc:
            raise DatabaseError(_reason(exc)) from exc
        self.url = url
        self.pool = psycopg_pool.ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            open=False,
        )
        try:
            self.pool.open(wait=True, timeout=timeout_s)
        except psycopg_pool.PoolTimeout as exc:
            self.pool.close()
            raise DatabaseError(f"no connection within {timeout_s:g} s") from exc

    @contextmanager
    def connection(self) -> Iterator[Any]:
        with _translated(), self.pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self.pool.close()


def _reason(exc: Exception) -> str:
    """The reason of a failed connection, short."""
    # 'connection failed: connection to server at "h", port p failed: <the reason>'
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return first.rsplit(" failed: ", 1)[-1].strip()


@contextmanager
def _translated() -> Iterator[None]:
    """psycopg's and the pool's errors as DatabaseError (the reason kept)."""
    import psycopg
    import psycopg_pool

    try:
        yield
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        lines = str(exc).strip().splitlines()
        raise DatabaseError(lines[0] if lines else repr(exc)) from exc


def _pg_sql(sql: str) -> str:
    return sql.replace("?", "%s")


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name (same on every host)."""
    return zlib.crc32(f"callpipe.{name}".encode())


class PostgresDatabase:
    """The shared pool seen as one store's database."""

    dialect: Dialect = "postgres"

    def __init__(self, pool: PostgresPool, *, owns_pool: bool = False) -> None:
        self._owner = pool if owns_pool else None
        self._pool = pool
        self._local = threading.local()

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self._pool.connection() as conn:
            yield conn

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        with self._conn() as conn:
            row: Row | None = conn.execute(_pg_sql(sql), params).fetchone()
        return row

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        with self._conn() as conn:
            rows: list[Row] = conn.execute(_pg_sql(sql), params).fetchall()
        return rows

    def execute(self, sql: str, params: Params = ()) -> int:
        with self._conn() as conn:
            return int(conn.execute(_pg_sql(sql), params).rowcount)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        with self._conn() as conn, conn.cursor() as cur:
            cur.executemany(_pg_sql(sql), list(rows))

    @contextmanager
    def transaction(self, lock: str) -> Iterator[None]:
        if getattr(self._local, "conn", None) is not None:
            yield  # nested: part of the outer transaction
            return
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(lock),))
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    def close(self) -> None:
        # A shared pool is the process's and closes with its services.
        if self._owner is not None:
            self._owner.close()


def database_of(services: Services, name: str, migrations: Sequence[str]) -> Database:
    """The database of one store, migrated: `{data_dir}/{name}.sqlite`, or the deployment's
    PostgreSQL (`CALLPIPE_DATABASE__URL`), shared by every store of the process."""
    settings = services.settings
    return services.component(
        f"db.{name}",
        lambda: open_database(
            settings, name, migrations, postgres_of(services) if settings.database.url else None
        ),
    )


def open_database(
    settings: Settings, name: str, migrations: Sequence[str], pool: PostgresPool | None = None
) -> Database:
    """One store's database, migrated. On PostgreSQL it uses `pool` when given (the process's,
    closed with it), else a connection of its own, closed with the database (for a short
    command that has no services)."""
    db: Database
    if settings.database.url is None:
        db = SqliteDatabase(settings.data_dir / f"{name}.sqlite")
    elif pool is not None:
        db = PostgresDatabase(pool)
    else:
        db = PostgresDatabase(PostgresPool(settings.database.url, max_size=1), owns_pool=True)
    migrate(db, name, migrations)
    return db


def postgres_of(services: Services) -> PostgresPool:
    """The process's PostgreSQL pool (the wiring layer opens it at start)."""
    url = services.settings.database.url
    if url is None:
        raise DatabaseError("no database URL is configured (CALLPIPE_DATABASE__URL)")
    return services.component(
        "postgres", lambda: PostgresPool(url, max_size=services.settings.database.pool_size)
    )
