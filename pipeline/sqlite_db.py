"""The SQLite way of the small per-process stores (keys aside): one connection shared by
the threads under a lock, WAL so other processes can read and write the same file, and
IMMEDIATE transactions so check-then-write steps cannot interleave."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def open_shared(path: Path, schema: str, *, busy_timeout_s: float) -> sqlite3.Connection:
    """Open (and create) a WAL database for use by several threads under one lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(
        str(path), check_same_thread=False, isolation_level=None, timeout=busy_timeout_s
    )
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(schema)
    return db


@contextmanager
def immediate(
    db: sqlite3.Connection, lock: threading.Lock | threading.RLock
) -> Iterator[sqlite3.Connection]:
    """An IMMEDIATE transaction under `lock`: committed, or rolled back on any error."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
