"""`callpipe db migrate`: every relational store's schema brought up to date, on SQLite
files under the data dir or on the PostgreSQL of `CALLPIPE_DATABASE__URL`.

Each store also migrates itself when it opens, and every role migrates all of them at
start; the command is for a deployment that runs migrations as a step of its own.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import prompter.store
import robot.store
from pipeline.auth import KEYS_SCHEMA
from pipeline.config import Settings
from pipeline.database import DatabaseError, PostgresPool, open_database
from pipeline.errors import CliError
from pipeline.webhooks import store as webhooks
from recordings import category_store
from recordings.index import INDEX_FILE
from recordings.index.postgres import PostgresIndex
from recordings.index.sqlite import IndexSchemaError, SqliteIndex

# Every store of the relational database, by the name its schema versions are kept under.
STORES: dict[str, list[str]] = {
    "keys": KEYS_SCHEMA,
    prompter.store.NAME: prompter.store.SCHEMA,
    robot.store.NAME: robot.store.SCHEMA,
    webhooks.NAME: webhooks.SCHEMA,
    category_store.NAME: category_store.SCHEMA,
}


def migrate_all(settings: Settings, pool: PostgresPool | None = None) -> list[str]:
    """Bring every store's schema up to date, on `pool` when the process has one (else on
    connections of its own); the names of the stores migrated. CliError (one line, exit 2)
    when the database refuses (a missing privilege, a newer schema)."""
    try:
        return _migrate_all(settings, pool)
    except (DatabaseError, IndexSchemaError) as exc:
        where = (
            "the database (CALLPIPE_DATABASE__URL)"
            if settings.database.url
            else f"the stores under {settings.data_dir}"
        )
        raise CliError(f"cannot migrate {where}: {exc}") from exc


def _migrate_all(settings: Settings, pool: PostgresPool | None) -> list[str]:
    for name, steps in STORES.items():
        open_database(settings, name, steps, pool).close()
    if settings.database.url is None:
        SqliteIndex(settings.data_dir / INDEX_FILE).close()
    elif pool is not None:
        PostgresIndex(pool)
    else:
        own = PostgresPool(settings.database.url, max_size=1)
        try:
            PostgresIndex(own)
        finally:
            own.close()
    return [*STORES, "transcript_index"]


def register(sub: Any) -> None:
    """Add `db migrate`."""
    db = sub.add_parser("db", help="the relational database (API keys, index, prompter, robot)")
    dsub = db.add_subparsers(dest="db_command", required=True)
    m = dsub.add_parser(
        "migrate",
        help="create or upgrade every table (SQLite under the data dir, or CALLPIPE_DATABASE__URL)",
    )
    m.set_defaults(func=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Migrate, and say where."""
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    names = migrate_all(settings)
    where = "PostgreSQL" if settings.database.url else f"SQLite under {settings.data_dir}"
    sys.stdout.write(f"migrated {', '.join(names)} on {where}\n")
    return 0
