"""The relational stores' database layer on both back-ends: migrations, the API keys, and
a PostgreSQL that does not answer."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.auth import KEYS_SCHEMA, KeyStore
from pipeline.database import Database, DatabaseError, PostgresPool, ddl, migrate
from pipeline.webhooks import store as webhooks
from pipeline.webhooks.store import WebhookStore


def test_migrations_apply_once_and_in_order(
    database: Callable[[str, list[str]], Database],
) -> None:
    steps = ["CREATE TABLE IF NOT EXISTS things (id TEXT PRIMARY KEY, at REAL NOT NULL)"]
    db = database("things", steps)
    db.execute("INSERT INTO things VALUES (?, ?)", ("a", 1.5e9 + 0.25))
    assert migrate(db, "things", steps) == 1  # a second start changes nothing
    steps.append("ALTER TABLE things ADD COLUMN note TEXT; CREATE INDEX things_at ON things (at)")
    assert migrate(db, "things", steps) == 2
    db.execute("UPDATE things SET note = ? WHERE id = ?", ("kept", "a"))
    # REAL is a double on PostgreSQL too: a UNIX time keeps its fraction
    assert db.fetchall("SELECT id, at, note FROM things") == [("a", 1.5e9 + 0.25, "kept")]
    assert db.fetchone("SELECT version FROM schema_versions WHERE component = ?", ("things",))


def test_a_failed_transaction_leaves_nothing(
    database: Callable[[str, list[str]], Database],
) -> None:
    db = database("things", ["CREATE TABLE IF NOT EXISTS things (id TEXT PRIMARY KEY)"])
    with pytest.raises(DatabaseError), db.transaction("things"):
        db.execute("INSERT INTO things VALUES (?)", ("a",))
        db.execute("INSERT INTO things VALUES (?)", ("a",))  # the key exists
    assert db.fetchall("SELECT id FROM things") == []


def test_api_keys_on_either_back_end(database: Callable[[str, list[str]], Database]) -> None:
    keys = KeyStore(database("keys", KEYS_SCHEMA))
    key = keys.create("acme", "agent", agent_id="a-1")
    p = keys.lookup(key)
    assert p is not None and (p.tenant, p.role, p.agent_id) == ("acme", "agent", "a-1")
    assert keys.lookup(key + "x") is None
    assert p.key_id is not None and keys.revoke(p.key_id) and keys.lookup(key) is None


def test_ddl_translates_what_postgres_spells_otherwise() -> None:
    sql = "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL)"
    assert ddl("sqlite", sql) == sql
    assert ddl("postgres", sql) == (
        "CREATE TABLE t (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at DOUBLE PRECISION)"
    )


def test_postgres_that_does_not_answer_says_why(unused_port: int) -> None:
    with pytest.raises(DatabaseError, match="Connection refused|connection failed"):
        PostgresPool(f"postgresql://callpipe@127.0.0.1:{unused_port}/callpipe", timeout_s=1)


def test_hosts_starting_together_migrate_once(
    database: Callable[[str, list[str]], Database],
) -> None:
    """Four processes' first start at once (four connections): the schema is made once,
    none fails on a table or index another is making."""
    steps = [
        "CREATE TABLE IF NOT EXISTS things (id TEXT PRIMARY KEY)",
        "CREATE INDEX things_id ON things (id)",  # no IF NOT EXISTS: made once or it fails
    ]
    start = threading.Barrier(4)

    def open_one(_: int) -> Database:
        start.wait()
        return database("things", steps)

    with ThreadPoolExecutor(4) as pool:
        dbs = list(pool.map(open_one, range(4)))
    assert dbs[0].fetchall("SELECT component, version FROM schema_versions") == [("things", 2)]


def test_webhook_deliveries_on_either_back_end(
    database: Callable[[str, list[str]], Database],
) -> None:
    """A delivery is claimed by one sender at a time, once per event, and its outcome kept
    (hosts share the deliveries through this database)."""
    store = WebhookStore(database(webhooks.NAME, webhooks.SCHEMA))
    hook = store.register("acme", "https://example.com/h", ("hint",))
    assert store.enqueue("acme", "hint", "e1", "c-1", "{}") == 1
    assert store.enqueue("acme", "hint", "e1", "c-1", "{}") == 1  # the same event again
    assert store.enqueue("acme", "call.ended", "e2", "c-1", "{}") == 0  # not asked for
    assert store.enqueue("rival", "hint", "e3", "c-1", "{}") == 0
    (claimed,) = store.claim_due(10, lease_s=30)
    assert claimed[1] == hook and claimed[0].delivery_id == f"e1.{hook.webhook_id}"
    assert store.claim_due(10, lease_s=30) == []  # leased to the first sender
    store.record(
        claimed[0].delivery_id, delivered=False, http_status=500, error="HTTP 500", retry_at=0.0
    )
    (again,) = store.claim_due(10, lease_s=30)
    assert again[0].attempts == 1 and again[0].last_error == "HTTP 500"
    store.record(again[0].delivery_id, delivered=True, http_status=204, error=None, retry_at=None)
    (done,) = store.deliveries("acme", hook.webhook_id, 10)
    assert (done.status, done.attempts, done.last_status) == ("delivered", 2, 204)
    assert store.deliveries("rival", hook.webhook_id, 10) == []
    assert store.delete("acme", hook.webhook_id) and store.webhooks("acme") == []
