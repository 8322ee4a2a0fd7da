"""The SQLite way of the relational stores (pipeline/database.py): one connection shared by
the threads under a lock, WAL so other processes can read and write the same file, and
IMMEDIATE transactions so check-then-write steps cannot interleave."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def private_file(path: Path) -> Path:
    """`path` readable by its owner only (created empty when missing), in a folder that
    exists. API keys, playbooks, robot state and the index are nobody else's business;
    SQLite gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)
    return path


def open_shared(path: Path, *, busy_timeout_s: float) -> sqlite3.Connection:
    """Open (and create) a WAL database for use by several threads under one lock."""
    private_file(path)
    db = sqlite3.connect(
        str(path), check_same_thread=False, isolation_level=None, timeout=busy_timeout_s
    )
    enter_wal(db, busy_timeout_s=busy_timeout_s)
    return db


def enter_wal(db: sqlite3.Connection, *, busy_timeout_s: float) -> None:
    """Switch the file to WAL, waiting out the other connections that open it at once.

    SQLite does not call its busy handler for this switch (it needs the file to itself),
    so a host opening a new file while another host is doing the same got "database is
    locked" at once instead of waiting `busy_timeout_s` like every other statement.
    The mode is kept in the file: once one connection has switched it, the others find
    it switched."""
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


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
