"""The embedded transcript index: SQLite, one FTS5 table per tenant over utterance text.

The tokenizer is `unicode61 remove_diacritics 2`, so "resilier" finds "résilier" and
"Resilier" alike. Utterances live in a plain table that also carries their call's start,
agent and direction (kept in step by `upsert_call`), so a search filters without a join
to `calls`. Each tenant's FTS5 table (`utt_fts_{n}`, numbered in `fts_tables`) indexes
only that tenant's rows through a view (`utt_text_{n}`) that can return no other
tenant's text: tenant scoping is the table itself, and bm25 statistics are per tenant.
Every value is a bound parameter; table names are numbers the index chose.

Counts stop at COUNT_CAP. Up to the cap, relevance is FTS5's bm25 over every match; past
it, the newest RANK_WINDOW matches (or as many as the page reaches) are ranked in Python
(`recordings.index.rank`), because bm25 costs as much as the match set is large.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.sqlite_db import enter_wal, private_file
from recordings.index.base import (
    CALL_COLUMNS,
    HIT_COLUMNS,
    Bucket,
    CallMeta,
    CallRow,
    FactRow,
    Filters,
    Interval,
    Page,
    Sort,
    TagRow,
    UtteranceRow,
    analysis_clauses,
    call_params,
    call_row,
    filter_terms,
    hit_of,
    to_ts,
)
from recordings.index.query import Node, QueryError, to_fts5
from recordings.index.rank import score_window

log = logging.getLogger(__name__)

COUNT_CAP = 1_000
RANK_WINDOW = 1_000
SCHEMA_VERSION = 2
# Utterance ids are time keys: the call's start second (from 2000-01-01 UTC) above
# SEQ_BITS of sequence. FTS5 walks rowids in order, so "newest call first" and a date range
# become a walk or a range of its doclists instead of a lookup per match.
ID_EPOCH = 946_684_800
SEQ_BITS = 22
DELETE_CHUNK = 500
READER_CACHE_KIB = 65_536
READER_MMAP_BYTES = 1 << 30

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS calls (
    tenant TEXT NOT NULL,
    call_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    started_known INTEGER NOT NULL DEFAULT 0,
    agent_id TEXT,
    direction TEXT,
    caller TEXT,
    callee TEXT,
    prefix TEXT,
    recording_key TEXT,
    duration REAL,
    source TEXT,
    held INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, call_id)
)""",
    "CREATE INDEX IF NOT EXISTS calls_by_time ON calls (tenant, started_at)",
    """CREATE TABLE IF NOT EXISTS utterances (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    utterance_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    leg TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL,
    call_started REAL NOT NULL DEFAULT 0,
    agent_id TEXT,
    direction TEXT,
    UNIQUE (tenant, utterance_id)
)""",
    "CREATE INDEX IF NOT EXISTS utterances_by_call ON utterances (tenant, call_id, start)",
    """CREATE TABLE IF NOT EXISTS fts_tables (
    n INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL UNIQUE
)""",
    # A call's statistics by name and the categories it met (recordings/call_stats.py,
    # recordings/categories.py): search filters, and the dashboard's figures.
    """CREATE TABLE IF NOT EXISTS call_facts (
    tenant TEXT NOT NULL,
    call_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (tenant, call_id, name)
)""",
    "CREATE INDEX IF NOT EXISTS call_facts_by_value ON call_facts (tenant, name, value)",
    """CREATE TABLE IF NOT EXISTS call_tags (
    tenant TEXT NOT NULL,
    call_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (tenant, call_id, tag)
)""",
    "CREATE INDEX IF NOT EXISTS call_tags_by_tag ON call_tags (tenant, tag)",
)

# Columns a schema-1 `utterances` table lacks (added by the migration).
CALL_COLUMNS_ON_UTT = (
    ("call_started", "REAL NOT NULL DEFAULT 0"),
    ("agent_id", "TEXT"),
    ("direction", "TEXT"),
)

_UPSERT_CALL = """
INSERT INTO calls (tenant, call_id, started_at, started_known, agent_id, direction, caller,
                   callee, prefix, recording_key, duration, source)
VALUES (:tenant, :call_id, :started_at, :started_known, :agent_id, :direction, :caller,
        :callee, :prefix, :recording_key, :duration, :source)
ON CONFLICT (tenant, call_id) DO UPDATE SET
    started_at = CASE WHEN excluded.started_known THEN excluded.started_at
                      ELSE calls.started_at END,
    started_known = max(calls.started_known, excluded.started_known),
    agent_id = coalesce(excluded.agent_id, calls.agent_id),
    direction = coalesce(excluded.direction, calls.direction),
    caller = coalesce(excluded.caller, calls.caller),
    callee = coalesce(excluded.callee, calls.callee),
    prefix = coalesce(excluded.prefix, calls.prefix),
    recording_key = coalesce(excluded.recording_key, calls.recording_key),
    duration = coalesce(excluded.duration, calls.duration),
    source = coalesce(excluded.source, calls.source)
"""

# The call's filterable fields copied onto every utterance (schema-1 migration); a search
# then needs no join to `calls`.
_SYNC_CALL_FIELDS = """
UPDATE utterances SET
    call_started = coalesce((SELECT c.started_at FROM calls c
                             WHERE c.tenant = utterances.tenant AND c.call_id = utterances.call_id),
                            0),
    agent_id = (SELECT c.agent_id FROM calls c
                WHERE c.tenant = utterances.tenant AND c.call_id = utterances.call_id),
    direction = (SELECT c.direction FROM calls c
                 WHERE c.tenant = utterances.tenant AND c.call_id = utterances.call_id)
"""

# A call first seen through an utterance gets a provisional start (now) until its
# call.started or manifest arrives; retention then counts from when it was indexed.
_PLACEHOLDER_CALL = """
INSERT INTO calls (tenant, call_id, started_at, started_known, source)
VALUES (?, ?, ?, 0, ?) ON CONFLICT (tenant, call_id) DO NOTHING
"""

_INSERT_UTT = """
INSERT INTO utterances (id, tenant, utterance_id, call_id, leg, start, "end", text, source,
                        call_started, agent_id, direction)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_UPDATE_UTT = """
UPDATE utterances SET id = ?, call_id = ?, leg = ?, start = ?, "end" = ?, text = ?, source = ?,
    call_started = ?, agent_id = ?, direction = ?
WHERE id = ?
"""

_PERIOD = {
    "day": "strftime('%Y-%m-%d', {t}, 'unixepoch')",
    "week": "date({t}, 'unixepoch', '-6 days', 'weekday 1')",
    "month": "strftime('%Y-%m', {t}, 'unixepoch')",
}


class IndexSchemaError(RuntimeError):
    """The index file was written by a newer callpipe: refuse rather than corrupt it."""


def _call_where(tenant: str, f: Filters) -> tuple[str, list[Any]]:
    """Filters on the `calls` table (alias c)."""
    terms = filter_terms(f, utterances=False)
    more, more_args = analysis_clauses(f, "c", "call_facts", "call_tags")
    clauses = ["c.tenant = ?", *(f"c.{column} ?" for column, _ in terms), *more]
    return " AND ".join(clauses), [tenant, *(value for _, value in terms), *more_args]


def _utt_where(tenant: str, f: Filters) -> tuple[str, list[Any]]:
    """Filters on the `utterances` table (alias u), which carries its call's fields."""
    # `+u.tenant`: rows are fetched by id; the tenant is a check, never an index walk.
    terms = filter_terms(f, utterances=True)
    more, more_args = analysis_clauses(f, "u", "call_facts", "call_tags")
    clauses = ["+u.tenant = ?", *(f"u.{column} ?" for column, _ in terms), *more]
    return " AND ".join(clauses), [tenant, *(value for _, value in terms), *more_args]


def _filtered(f: Filters) -> bool:
    return bool(filter_terms(f, utterances=True) or f.facts or f.tags)


def _bucket(call_started: float) -> int:
    """First id of the call-start second `call_started` falls in (earlier ones share 0)."""
    return max(0, int(call_started) - ID_EPOCH) << SEQ_BITS


def _bucket_of_id(rowid: int) -> int:
    return rowid >> SEQ_BITS << SEQ_BITS


class _Ids:
    """Hands out fresh ids per call-start second inside one write transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.next: dict[int, int] = {}

    def new(self, call_started: float) -> int:
        bucket = _bucket(call_started)
        nxt = self.next.get(bucket)
        if nxt is None:
            top = self.db.execute(
                "SELECT max(id) FROM utterances WHERE id >= ? AND id < ?",
                (bucket, bucket + (1 << SEQ_BITS)),
            ).fetchone()[0]
            nxt = bucket if top is None else top + 1
        if nxt >= bucket + (1 << SEQ_BITS):
            raise OverflowError(f"more than {1 << SEQ_BITS} utterances for calls of one second")
        self.next[bucket] = nxt + 1
        return nxt


def _fts_name(n: int) -> str:
    return f"utt_fts_{int(n)}"


def _create_tenant_table(db: sqlite3.Connection, tenant: str) -> str:
    """Register a tenant and create its view and FTS5 table (inside the caller's transaction)."""
    n = int(db.execute("INSERT INTO fts_tables (tenant) VALUES (?)", (tenant,)).lastrowid or 0)
    # The view reads the tenant from fts_tables, so no tenant text is ever spliced into SQL.
    db.execute(
        f"CREATE VIEW utt_text_{n} AS SELECT id, text FROM utterances"
        f" WHERE tenant = (SELECT tenant FROM fts_tables WHERE n = {n})"
    )
    db.execute(
        f"CREATE VIRTUAL TABLE {_fts_name(n)} USING fts5(text, content='utt_text_{n}',"
        " content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
    )
    return _fts_name(n)


class SqliteIndex:
    """TranscriptIndex on one SQLite file (WAL: one writer, readers per thread)."""

    def __init__(self, path: Path) -> None:
        self.path = private_file(path)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._tables: dict[str, str] = {}  # tenant -> FTS table, only once committed
        self._writer = self._connect()
        self._open_schema()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        enter_wal(db, busy_timeout_s=30.0)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=OFF")
        return db

    def _open_schema(self) -> None:
        """Create the schema, or migrate a schema-1 file (one FTS table for all tenants)."""
        db = self._writer
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise IndexSchemaError(
                    f"{self.path} has index schema {version}, newer than this callpipe"
                    f" ({SCHEMA_VERSION}); upgrade callpipe or move the file away to rebuild"
                )
            old = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'utterances'"
            ).fetchone()
            if version < SCHEMA_VERSION and old is not None:
                self._migrate_from_1(db)
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _migrate_from_1(self, db: sqlite3.Connection) -> None:
        """Schema 1 had one shared FTS table kept by triggers: rebuild per-tenant tables."""
        t0 = time.monotonic()
        log.warning("index %s has schema 1: rebuilding the search tables per tenant", self.path)
        for trigger in ("utt_ai", "utt_ad", "utt_au"):
            db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        db.execute("DROP TABLE IF EXISTS utt_fts")
        have = {r[1] for r in db.execute("PRAGMA table_info(utterances)")}
        for name, decl in CALL_COLUMNS_ON_UTT:
            if name not in have:
                db.execute(f"ALTER TABLE utterances ADD COLUMN {name} {decl}")
        db.execute(_SYNC_CALL_FIELDS)
        # Schema-1 ids were insertion order: re-key every row to its call's second.
        db.execute("DROP INDEX IF EXISTS utterances_by_call")
        db.execute("ALTER TABLE utterances RENAME TO utterances_v1")
        for statement in _SCHEMA:
            db.execute(statement)
        db.execute(
            'INSERT INTO utterances (id, tenant, utterance_id, call_id, leg, start, "end", text,'
            " source, call_started, agent_id, direction)"
            " SELECT b + row_number() OVER (PARTITION BY b ORDER BY id) - 1, tenant,"
            ' utterance_id, call_id, leg, start, "end", text, source, call_started, agent_id,'
            f" direction FROM (SELECT *, max(0, CAST(call_started AS INTEGER) - {ID_EPOCH})"
            f" << {SEQ_BITS} AS b FROM utterances_v1)"
        )
        db.execute("DROP TABLE utterances_v1")
        tenants = [r[0] for r in db.execute("SELECT DISTINCT tenant FROM utterances")]
        for tenant in tenants:
            fts = _create_tenant_table(db, tenant)
            db.execute(
                f"INSERT INTO {fts} (rowid, text) SELECT id, text FROM utterances WHERE tenant = ?",
                (tenant,),
            )
        log.warning(
            "index %s rebuilt for %d tenants in %.1f s",
            self.path,
            len(tenants),
            time.monotonic() - t0,
        )

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            db.execute("PRAGMA query_only=ON")
            db.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
            db.execute(f"PRAGMA mmap_size={READER_MMAP_BYTES}")
            self._local.db = db
            with self._readers_lock:
                self._readers.append(db)
        return db

    def _table(self, db: sqlite3.Connection, tenant: str) -> str | None:
        """The tenant's FTS table, or None when it has never had an utterance."""
        name = self._tables.get(tenant)
        if name is None:
            row = db.execute("SELECT n FROM fts_tables WHERE tenant = ?", (tenant,)).fetchone()
            if row is None:
                return None
            name = self._tables[tenant] = _fts_name(row[0])
        return name

    def _write_table(self, db: sqlite3.Connection, tenant: str) -> str:
        """The tenant's FTS table, created on its first utterance (caller holds the tx)."""
        row = db.execute("SELECT n FROM fts_tables WHERE tenant = ?", (tenant,)).fetchone()
        return _fts_name(row[0]) if row is not None else _create_tenant_table(db, tenant)

    def _tx(self, statements: list[tuple[str, Any]], many: bool = False) -> None:
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    if many:
                        db.executemany(sql, args)
                    else:
                        db.execute(sql, args)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- writes -------------------------------------------------------------------------
    def upsert_call(self, meta: CallMeta) -> None:
        """Create or merge a call row: known fields overwrite, None keeps what is stored.

        The call's start, agent and direction are copied onto its utterances; when the start
        moves to another second, the utterances get ids of that second (FTS rows follow).
        """
        params = call_params(meta)
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(_UPSERT_CALL, params)
                self._sync_call(db, meta.tenant, meta.call_id)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _sync_call(self, db: sqlite3.Connection, tenant: str, call_id: str) -> None:
        """Copy the call's fields onto its utterances, re-keying those of another second."""
        started, agent, direction = db.execute(
            "SELECT started_at, agent_id, direction FROM calls WHERE tenant = ? AND call_id = ?",
            (tenant, call_id),
        ).fetchone()
        bucket = _bucket(started)
        moving = [
            (rowid, text)
            for rowid, text in db.execute(
                "SELECT id, text FROM utterances WHERE tenant = ? AND call_id = ?",
                (tenant, call_id),
            )
            if _bucket_of_id(rowid) != bucket
        ]
        if moving:
            fts = self._write_table(db, tenant)
            ids = _Ids(db)
            for rowid, text in moving:
                new_id = ids.new(started)
                db.execute(
                    f"INSERT INTO {fts} ({fts}, rowid, text) VALUES ('delete', ?, ?)",
                    (rowid, text),
                )
                db.execute("UPDATE utterances SET id = ? WHERE id = ?", (new_id, rowid))
                db.execute(f"INSERT INTO {fts} (rowid, text) VALUES (?, ?)", (new_id, text))
        db.execute(
            "UPDATE utterances SET call_started = ?, agent_id = ?, direction = ?"
            " WHERE tenant = ? AND call_id = ?",
            (started, agent, direction, tenant, call_id),
        )

    def upsert_utterances(self, rows: list[UtteranceRow]) -> None:
        """Index utterances in one transaction; a replayed utterance id overwrites."""
        if not rows:
            return
        now = time.time()
        calls = {(r.tenant, r.call_id): r.source for r in rows}
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_PLACEHOLDER_CALL, [(t, c, now, s) for (t, c), s in calls.items()])
                fields = {
                    key: db.execute(
                        "SELECT started_at, agent_id, direction FROM calls"
                        " WHERE tenant = ? AND call_id = ?",
                        key,
                    ).fetchone()
                    for key in calls
                }
                tables = {t: self._write_table(db, t) for t in {r.tenant for r in rows}}
                ids = _Ids(db)
                for r in rows:
                    self._upsert_one(db, tables[r.tenant], ids, r, fields[(r.tenant, r.call_id)])
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _upsert_one(
        db: sqlite3.Connection, fts: str, ids: _Ids, r: UtteranceRow, call: tuple[Any, ...]
    ) -> None:
        started, agent, direction = call
        old = db.execute(
            'SELECT id, text, leg, start, "end" FROM utterances'
            " WHERE tenant = ? AND utterance_id = ?",
            (r.tenant, r.utterance_id),
        ).fetchone()
        if old is None:
            rowid = ids.new(started)
            db.execute(
                _INSERT_UTT,
                (rowid, r.tenant, r.utterance_id, r.call_id, r.leg, r.start, r.end, r.text,
                 r.source, started, agent, direction),
            )  # fmt: skip
            db.execute(f"INSERT INTO {fts} (rowid, text) VALUES (?, ?)", (rowid, r.text))
            return
        rowid, text, leg, start, end = old
        if (text, leg, start, end) == (r.text, r.leg, r.start, r.end):
            return  # a replay: nothing to rewrite
        # A changed utterance may have moved to another call (another second): new id.
        new_id = rowid if _bucket_of_id(rowid) == _bucket(started) else ids.new(started)
        reindex = text != r.text or new_id != rowid
        if reindex:
            db.execute(
                f"INSERT INTO {fts} ({fts}, rowid, text) VALUES ('delete', ?, ?)", (rowid, text)
            )
        db.execute(
            _UPDATE_UTT,
            (new_id, r.call_id, r.leg, r.start, r.end, r.text, r.source, started, agent,
             direction, rowid),
        )  # fmt: skip
        if reindex:
            db.execute(f"INSERT INTO {fts} (rowid, text) VALUES (?, ?)", (new_id, r.text))

    def set_hold(self, tenant: str, call_id: str, held: bool) -> bool:
        """Set or lift the legal hold flag."""
        with self._write_lock:
            cur = self._writer.execute(
                "UPDATE calls SET held = ? WHERE tenant = ? AND call_id = ?",
                (int(held), tenant, call_id),
            )
        return cur.rowcount > 0

    def delete_call(self, tenant: str, call_id: str) -> int:
        """Remove a call row and its utterances together (one transaction)."""
        return self.delete_calls(tenant, [call_id])

    def delete_calls(self, tenant: str, call_ids: list[str]) -> int:
        """Remove many calls of one tenant in one transaction; returns utterances removed."""
        if not call_ids:
            return 0
        removed = 0
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT n FROM fts_tables WHERE tenant = ?", (tenant,)).fetchone()
                fts = _fts_name(row[0]) if row is not None else None
                for i in range(0, len(call_ids), DELETE_CHUNK):
                    chunk = call_ids[i : i + DELETE_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    if fts is not None:
                        # External content: FTS5 must be told the text it indexed.
                        db.execute(
                            f"INSERT INTO {fts} ({fts}, rowid, text) SELECT 'delete', id, text"
                            f" FROM utterances WHERE tenant = ? AND call_id IN ({marks})",
                            [tenant, *chunk],
                        )
                    cur = db.execute(
                        f"DELETE FROM utterances WHERE tenant = ? AND call_id IN ({marks})",
                        [tenant, *chunk],
                    )
                    for table in ("call_facts", "call_tags"):
                        db.execute(
                            f"DELETE FROM {table} WHERE tenant = ? AND call_id IN ({marks})",
                            [tenant, *chunk],
                        )
                    removed += cur.rowcount
                    db.execute(
                        f"DELETE FROM calls WHERE tenant = ? AND call_id IN ({marks})",
                        [tenant, *chunk],
                    )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return removed

    def set_analysis(
        self, tenant: str, call_id: str, facts: dict[str, float], tags: Sequence[str]
    ) -> None:
        """Replace the call's statistics and categories in one transaction."""
        key = (tenant, call_id)
        self._tx(
            [
                ("DELETE FROM call_facts WHERE tenant = ? AND call_id = ?", key),
                ("DELETE FROM call_tags WHERE tenant = ? AND call_id = ?", key),
            ]
            + [
                ("INSERT INTO call_facts VALUES (?, ?, ?, ?)", (*key, n, v))
                for n, v in facts.items()
            ]
            + [("INSERT INTO call_tags VALUES (?, ?, ?)", (*key, t)) for t in dict.fromkeys(tags)]
        )

    # -- reads --------------------------------------------------------------------------
    def search(
        self, tenant: str, query: Node, filters: Filters, sort: Sort, offset: int, limit: int
    ) -> Page:
        """Matching utterances: ids ranked first, then the page's rows, snippets made here."""
        match = to_fts5(query)
        db = self._reader()
        fts = self._table(db, tenant)
        if fts is None:
            return Page(total=0, items=[])
        try:
            total, ranked = self._rank(db, fts, tenant, match, query, filters, sort, offset, limit)
            rows: dict[int, tuple[Any, ...]] = {}
            if ranked:
                ids = [i for i, _ in ranked]
                marks = ",".join("?" * len(ids))
                rows = {
                    r[0]: r
                    for r in db.execute(
                        # `+u.tenant`: left to itself the planner walks the tenant's
                        # whole (tenant, ...) index instead of looking up the page's ids.
                        f"SELECT {HIT_COLUMNS} FROM utterances u"
                        f" WHERE +u.tenant = ? AND u.id IN ({marks})",
                        [tenant, *ids],
                    )
                }
        except sqlite3.OperationalError as exc:
            # The parser emits only quoted strings; reaching this is a parser bug, but the
            # user still gets a 400 with a reason rather than a 500.
            raise QueryError(f"the index refused the query: {exc}") from exc
        hits = [hit_of(r, query, score) for i, score in ranked if (r := rows.get(i)) is not None]
        return Page(total=min(total, COUNT_CAP), items=hits, exact=total <= COUNT_CAP)

    @staticmethod
    def _rank(
        db: sqlite3.Connection,
        fts: str,
        tenant: str,
        match: str,
        query: Node,
        filters: Filters,
        sort: Sort,
        offset: int,
        limit: int,
    ) -> tuple[int, list[tuple[int, float]]]:
        """Count (capped) and order the tenant's matches: the page's ids with scores.

        Cost is bounded by COUNT_CAP and the window, not by how many utterances match.
        """
        where, args = _utt_where(tenant, filters)
        if filters.call_id is not None:
            # One call's rows lie in a narrow id range: FTS5 then skips the rest of its
            # doclists instead of the join checking every match of the tenant.
            lo, hi = db.execute(
                "SELECT min(id), max(id) FROM utterances WHERE tenant = ? AND call_id = ?",
                (tenant, filters.call_id),
            ).fetchone()
            if lo is None:
                return 0, []
            where += f" AND {fts}.rowid BETWEEN ? AND ?"
            args += [lo, hi]
        # Ids are time keys: a date range is also an id range FTS5 can seek to.
        if filters.since is not None:
            where += f" AND {fts}.rowid >= ?"
            args.append(_bucket(to_ts(filters.since)))
        if filters.until is not None:
            where += f" AND {fts}.rowid < ?"
            args.append(_bucket(to_ts(filters.until)) + (1 << SEQ_BITS))
        # CROSS JOIN pins the join order: the FTS match drives and rows are fetched by id.
        joined = (
            f"FROM {fts} CROSS JOIN utterances u ON u.id = {fts}.rowid"
            f" WHERE {fts} MATCH ? AND {where}"
        )
        counted = joined if _filtered(filters) else f"FROM {fts} WHERE {fts} MATCH ?"
        count_args = [match, *args] if _filtered(filters) else [match]
        # Newest matches first, one past the cap: the count, and the window if it is capped.
        window = max(RANK_WINDOW, offset + limit, COUNT_CAP + 1)
        newest = [
            r[0]
            for r in db.execute(
                f"SELECT {fts}.rowid {counted} ORDER BY {fts}.rowid DESC LIMIT ?",
                [*count_args, window],
            )
        ]
        total = len(newest)
        if total == 0:
            return 0, []
        if sort == "time":
            return total, SqliteIndex._by_time(
                db, fts, joined, [match, *args], total, offset, limit
            )
        if total <= COUNT_CAP:
            rows = db.execute(
                f"SELECT {fts}.rowid, bm25({fts}) AS s {counted} ORDER BY s, {fts}.rowid"
                " LIMIT ? OFFSET ?",
                [*count_args, limit, offset],
            ).fetchall()
            return total, [(r[0], -float(r[1])) for r in rows]
        ids = newest[: max(RANK_WINDOW, offset + limit)]
        texts = SqliteIndex._texts(db, tenant, ids)
        scores = score_window([texts.get(i, "") for i in ids], query)
        order = sorted(range(len(ids)), key=lambda k: (-scores[k], -ids[k]))
        return total, [(ids[k], scores[k]) for k in order[offset : offset + limit]]

    @staticmethod
    def _texts(db: sqlite3.Connection, tenant: str, ids: list[int]) -> dict[int, str]:
        """Texts by id, in chunks under SQLite's bound-parameter limit."""
        out: dict[int, str] = {}
        for i in range(0, len(ids), 900):
            chunk = ids[i : i + 900]
            marks = ",".join("?" * len(chunk))
            out.update(
                db.execute(
                    f"SELECT id, text FROM utterances WHERE +tenant = ? AND id IN ({marks})",
                    [tenant, *chunk],
                )
            )
        return out

    @staticmethod
    def _by_time(
        db: sqlite3.Connection,
        fts: str,
        joined: str,
        args: list[Any],
        total: int,
        offset: int,
        limit: int,
    ) -> list[tuple[int, float]]:
        """Newest call first, then speaking order: the page's ids (score 0).

        Ids order matches by call-start second. The (offset+limit)-th match from the top
        fixes a second; every match of the page lies at or above it, so only matches from
        that second's first id up are sorted exactly.
        """
        order = "ORDER BY u.call_started DESC, u.start, u.id LIMIT ? OFFSET ?"
        floor = 0
        if total > offset + limit:
            edge = db.execute(
                f"SELECT {fts}.rowid {joined} ORDER BY {fts}.rowid DESC LIMIT 1 OFFSET ?",
                [*args, offset + limit - 1],
            ).fetchone()
            if edge is not None:
                floor = _bucket_of_id(edge[0])
        rows = db.execute(
            f"SELECT u.id {joined} AND {fts}.rowid >= ? {order}", [*args, floor, limit, offset]
        ).fetchall()
        return [(r[0], 0.0) for r in rows]

    def list_calls(self, tenant: str, filters: Filters, offset: int, limit: int) -> Page:
        """Calls newest first, with their utterance counts."""
        where, args = _call_where(tenant, filters)
        db = self._reader()
        total = db.execute(f"SELECT count(*) FROM calls c WHERE {where}", args).fetchone()[0]
        rows = db.execute(
            f"SELECT {CALL_COLUMNS}, (SELECT count(*) FROM utterances u"
            " WHERE u.tenant = c.tenant AND u.call_id = c.call_id)"
            f" FROM calls c WHERE {where} ORDER BY c.started_at DESC, c.call_id"
            " LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        return Page(total=total, items=[call_row(r[:-1], r[-1]) for r in rows])

    def get_call(self, tenant: str, call_id: str) -> CallRow | None:
        """One call of this tenant."""
        db = self._reader()
        r = db.execute(
            f"SELECT {CALL_COLUMNS} FROM calls c WHERE c.tenant = ? AND c.call_id = ?",
            (tenant, call_id),
        ).fetchone()
        if r is None:
            return None
        n = db.execute(
            "SELECT count(*) FROM utterances WHERE tenant = ? AND call_id = ?", (tenant, call_id)
        ).fetchone()[0]
        return call_row(r, n)

    def call_utterances(self, tenant: str, call_id: str) -> list[UtteranceRow]:
        """Both legs in speaking order."""
        rows = (
            self._reader()
            .execute(
                'SELECT tenant, call_id, utterance_id, leg, start, "end", text, source'
                " FROM utterances WHERE tenant = ? AND call_id = ? ORDER BY start, leg",
                (tenant, call_id),
            )
            .fetchall()
        )
        return [UtteranceRow(*r) for r in rows]

    def term_counts(
        self, tenant: str, query: Node, filters: Filters, interval: Interval
    ) -> list[Bucket]:
        """Matching utterances and distinct calls per day, week (Monday) or month."""
        db = self._reader()
        fts = self._table(db, tenant)
        if fts is None:
            return []
        where, args = _utt_where(tenant, filters)
        period = _PERIOD[interval].format(t="u.call_started")
        try:
            rows = db.execute(
                f"SELECT {period} AS p, count(*), count(DISTINCT u.call_id)"
                f" FROM {fts} CROSS JOIN utterances u ON u.id = {fts}.rowid"
                f" WHERE {fts} MATCH ? AND {where} GROUP BY p ORDER BY p",
                [to_fts5(query), *args],
            ).fetchall()
        except sqlite3.OperationalError as exc:
            raise QueryError(f"the index refused the query: {exc}") from exc
        return [Bucket(period=r[0], utterances=r[1], calls=r[2]) for r in rows]

    def call_tags(self, tenant: str, call_ids: Sequence[str]) -> dict[str, list[str]]:
        """Categories by call, for these calls of the tenant."""
        out: dict[str, list[str]] = {}
        db = self._reader()
        for i in range(0, len(call_ids), 900):
            chunk = list(call_ids[i : i + 900])
            marks = ",".join("?" * len(chunk))
            for call_id, tag in db.execute(
                f"SELECT call_id, tag FROM call_tags WHERE tenant = ? AND call_id IN ({marks})"
                " ORDER BY call_id, tag",
                [tenant, *chunk],
            ):
                out.setdefault(call_id, []).append(tag)
        return out

    def fact_summary(
        self, tenant: str, filters: Filters, interval: Interval, names: Sequence[str]
    ) -> list[FactRow]:
        """Per period and agent: calls, mean and total of each statistic named."""
        where, args = _call_where(tenant, filters)
        marks = ",".join("?" * len(names))
        period = _PERIOD[interval].format(t="c.started_at")
        rows = (
            self._reader()
            .execute(
                f"SELECT {period} AS p, c.agent_id, f.name, count(*), avg(f.value), sum(f.value)"
                " FROM calls c JOIN call_facts f ON f.tenant = c.tenant AND f.call_id = c.call_id"
                f" WHERE {where} AND f.name IN ({marks}) GROUP BY p, c.agent_id, f.name"
                " ORDER BY p, c.agent_id, f.name",
                [*args, *names],
            )
            .fetchall()
        )
        return [FactRow(*r) for r in rows]

    def tag_counts(self, tenant: str, filters: Filters, interval: Interval) -> list[TagRow]:
        """Calls per period and category."""
        where, args = _call_where(tenant, filters)
        period = _PERIOD[interval].format(t="c.started_at")
        rows = (
            self._reader()
            .execute(
                f"SELECT {period} AS p, t.tag, count(*)"
                " FROM calls c JOIN call_tags t ON t.tenant = c.tenant AND t.call_id = c.call_id"
                f" WHERE {where} GROUP BY p, t.tag ORDER BY p, t.tag",
                args,
            )
            .fetchall()
        )
        return [TagRow(*r) for r in rows]

    def held_calls(self, tenant: str) -> set[str]:
        """Calls of the tenant under legal hold."""
        rows = (
            self._reader()
            .execute("SELECT call_id FROM calls WHERE tenant = ? AND held = 1", (tenant,))
            .fetchall()
        )
        return {r[0] for r in rows}

    def expired_calls(self, tenant: str, cutoff: datetime) -> list[CallRow]:
        """Calls started before the cutoff, held ones left out."""
        rows = (
            self._reader()
            .execute(
                f"SELECT {CALL_COLUMNS} FROM calls c"
                " WHERE c.tenant = ? AND c.started_at < ? AND c.held = 0",
                (tenant, to_ts(cutoff)),
            )
            .fetchall()
        )
        return [call_row(r, 0) for r in rows]

    def tenants(self) -> list[str]:
        """Tenants that have calls."""
        rows = self._reader().execute("SELECT DISTINCT tenant FROM calls ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def size_bytes(self) -> int:
        """Bytes on disk (database plus write-ahead log)."""
        wal = self.path.with_name(self.path.name + "-wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    def close(self) -> None:
        """Close every connection this index opened."""
        with self._readers_lock:
            for db in self._readers:
                db.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()
