"""The embedded transcript index: SQLite with an FTS5 table over utterance text.

The tokenizer is `unicode61 remove_diacritics 2`, so "resilier" finds "résilier" and
"Resilier" alike. Utterances live in a plain table (the FTS5 table is an external-content
index kept in step by triggers), calls in another; every statement is scoped by tenant
and every value is a bound parameter.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recordings.index.base import (
    Bucket,
    CallMeta,
    CallRow,
    Filters,
    Hit,
    Interval,
    Page,
    Sort,
    UtteranceRow,
)
from recordings.index.query import Node, QueryError, to_fts5

HL_OPEN = "\x02"
HL_CLOSE = "\x03"
SNIPPET_TOKENS = 24
COUNT_CAP = 10_000
_SCORE = "bm25(utt_fts)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
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
);
CREATE INDEX IF NOT EXISTS calls_by_time ON calls (tenant, started_at);
CREATE TABLE IF NOT EXISTS utterances (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    utterance_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    leg TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL,
    UNIQUE (tenant, utterance_id)
);
CREATE INDEX IF NOT EXISTS utterances_by_call ON utterances (tenant, call_id, start);
CREATE VIRTUAL TABLE IF NOT EXISTS utt_fts USING fts5(
    text, content='utterances', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS utt_ai AFTER INSERT ON utterances BEGIN
    INSERT INTO utt_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS utt_ad AFTER DELETE ON utterances BEGIN
    INSERT INTO utt_fts(utt_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER IF NOT EXISTS utt_au AFTER UPDATE OF text ON utterances BEGIN
    INSERT INTO utt_fts(utt_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO utt_fts(rowid, text) VALUES (new.id, new.text);
END;
"""

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

# A call first seen through an utterance gets a provisional start (now) until its
# call.started or manifest arrives; retention then counts from when it was indexed.
_PLACEHOLDER_CALL = """
INSERT INTO calls (tenant, call_id, started_at, started_known, source)
VALUES (?, ?, ?, 0, ?) ON CONFLICT (tenant, call_id) DO NOTHING
"""

_UPSERT_UTT = """
INSERT INTO utterances (tenant, utterance_id, call_id, leg, start, "end", text, source)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant, utterance_id) DO UPDATE SET
    call_id = excluded.call_id, leg = excluded.leg, start = excluded.start,
    "end" = excluded."end", text = excluded.text, source = excluded.source
WHERE utterances.text IS NOT excluded.text OR utterances.start IS NOT excluded.start
   OR utterances."end" IS NOT excluded."end" OR utterances.leg IS NOT excluded.leg
"""

_PERIOD = {
    "day": "strftime('%Y-%m-%d', c.started_at, 'unixepoch')",
    "week": "date(c.started_at, 'unixepoch', '-6 days', 'weekday 1')",
    "month": "strftime('%Y-%m', c.started_at, 'unixepoch')",
}

_CALL_COLUMNS = (
    "c.tenant, c.call_id, c.started_at, c.started_known, c.agent_id, c.direction, c.caller,"
    " c.callee, c.prefix, c.recording_key, c.duration, c.source, c.held"
)


def _ts(dt: datetime) -> float:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _call_row(r: tuple[Any, ...], utterances: int) -> CallRow:
    return CallRow(
        tenant=r[0],
        call_id=r[1],
        started_at=_dt(r[2]),
        started_known=bool(r[3]),
        agent_id=r[4],
        direction=r[5],
        caller=r[6],
        callee=r[7],
        prefix=r[8],
        recording_key=r[9],
        duration=r[10],
        source=r[11],
        held=bool(r[12]),
        utterances=utterances,
    )


def _where(tenant: str, f: Filters, utterance_level: bool) -> tuple[str, list[Any]]:
    clauses = ["c.tenant = ?"]
    args: list[Any] = [tenant]
    if f.since is not None:
        clauses.append("c.started_at >= ?")
        args.append(_ts(f.since))
    if f.until is not None:
        clauses.append("c.started_at < ?")
        args.append(_ts(f.until))
    if f.agent_id is not None:
        clauses.append("c.agent_id = ?")
        args.append(f.agent_id)
    if f.direction is not None:
        clauses.append("c.direction = ?")
        args.append(f.direction)
    if f.call_id is not None:
        clauses.append("c.call_id = ?")
        args.append(f.call_id)
    if f.leg is not None and utterance_level:
        clauses.append("u.leg = ?")
        args.append(f.leg)
    return " AND ".join(clauses), args


class SqliteIndex:
    """TranscriptIndex on one SQLite file (WAL: one writer, readers per thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._writer = self._connect()
        self._writer.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=OFF")
        return db

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            db.execute("PRAGMA query_only=ON")
            self._local.db = db
            with self._readers_lock:
                self._readers.append(db)
        return db

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
        """Create or merge a call row: known fields overwrite, None keeps what is stored."""
        known = meta.started_at is not None
        params = {
            "tenant": meta.tenant,
            "call_id": meta.call_id,
            "started_at": _ts(meta.started_at) if meta.started_at else time.time(),
            "started_known": int(known),
            "agent_id": meta.agent_id,
            "direction": meta.direction,
            "caller": meta.caller,
            "callee": meta.callee,
            "prefix": meta.prefix,
            "recording_key": meta.recording_key,
            "duration": meta.duration,
            "source": meta.source,
        }
        self._tx([(_UPSERT_CALL, params)])

    def upsert_utterances(self, rows: list[UtteranceRow]) -> None:
        """Index utterances in one transaction; a replayed utterance id overwrites."""
        if not rows:
            return
        now = time.time()
        calls = {(r.tenant, r.call_id): r.source for r in rows}
        self._tx(
            [
                (_PLACEHOLDER_CALL, [(t, c, now, s) for (t, c), s in calls.items()]),
                (
                    _UPSERT_UTT,
                    [
                        (
                            r.tenant,
                            r.utterance_id,
                            r.call_id,
                            r.leg,
                            r.start,
                            r.end,
                            r.text,
                            r.source,
                        )
                        for r in rows
                    ],
                ),
            ],
            many=True,
        )

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
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "DELETE FROM utterances WHERE tenant = ? AND call_id = ?", (tenant, call_id)
                )
                db.execute("DELETE FROM calls WHERE tenant = ? AND call_id = ?", (tenant, call_id))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return cur.rowcount

    def delete_calls(self, tenant: str, call_ids: list[str]) -> int:
        """Remove many calls of one tenant in one transaction; returns utterances removed."""
        if not call_ids:
            return 0
        removed = 0
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                for cid in call_ids:
                    cur = db.execute(
                        "DELETE FROM utterances WHERE tenant = ? AND call_id = ?", (tenant, cid)
                    )
                    removed += cur.rowcount
                    db.execute("DELETE FROM calls WHERE tenant = ? AND call_id = ?", (tenant, cid))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return removed

    # -- reads --------------------------------------------------------------------------
    def _match(self, tenant: str, query: Node) -> str:
        # Tried: the tenant as an indexed FTS token ANDed into every match. FTS5 then reads
        # the tenant's whole doclist per query, which cost ~80 ms at 1M utterances; the
        # tenant is filtered on the joined row instead (see bench/search.py).
        return to_fts5(query)

    def search(
        self, tenant: str, query: Node, filters: Filters, sort: Sort, offset: int, limit: int
    ) -> Page:
        """Matching utterances: ids ranked first, rows and snippets fetched for the page only."""
        match = self._match(tenant, query)
        db = self._reader()
        try:
            total, ids = self._rank(db, tenant, match, filters, sort, offset, limit)
            rows: list[tuple[Any, ...]] = []
            snippets: dict[int, str] = {}
            if ids:
                marks = ",".join("?" * len(ids))
                found = {
                    r[0]: r
                    for r in db.execute(
                        'SELECT u.id, u.call_id, u.utterance_id, u.leg, u.start, u."end", u.text,'
                        " c.started_at, c.agent_id, c.direction FROM utterances u"
                        " JOIN calls c ON c.tenant = u.tenant AND c.call_id = u.call_id"
                        f" WHERE u.tenant = ? AND u.id IN ({marks})",
                        [tenant, *ids],
                    ).fetchall()
                }
                rows = [(*found[i], ids[i]) for i in ids if i in found]
                snippets = dict(
                    db.execute(
                        f"SELECT rowid, snippet(utt_fts, 0, ?, ?, '…', {SNIPPET_TOKENS})"
                        f" FROM utt_fts WHERE utt_fts MATCH ? AND rowid IN ({marks})",
                        [HL_OPEN, HL_CLOSE, match, *ids],
                    ).fetchall()
                )
        except sqlite3.OperationalError as exc:
            # The parser emits only quoted strings; reaching this is a parser bug, but the
            # user still gets a 400 with a reason rather than a 500.
            raise QueryError(f"the index refused the query: {exc}") from exc
        hits = [
            Hit(
                call_id=r[1],
                utterance_id=r[2],
                leg=r[3],
                start=r[4],
                end=r[5],
                text=r[6],
                snippet=snippets.get(r[0], r[6]),
                call_started_at=_dt(r[7]),
                agent_id=r[8],
                direction=r[9],
                score=-float(r[10]),
            )
            for r in rows
        ]
        return Page(total=min(total, COUNT_CAP), items=hits, exact=total <= COUNT_CAP)

    @staticmethod
    def _rank(
        db: sqlite3.Connection,
        tenant: str,
        match: str,
        filters: Filters,
        sort: Sort,
        offset: int,
        limit: int,
    ) -> tuple[int, dict[int, float]]:
        """Count (capped) and rank the tenant's matches; ids in order, with scores.

        Counting every match of a very common word costs as much as ranking it, so past
        COUNT_CAP the total is reported as "at least".
        """
        where, args = _where(tenant, filters, utterance_level=True)
        order = "s, u.id" if sort == "relevance" else "c.started_at DESC, u.start, u.id"
        # CROSS JOIN pins the join order: the FTS match drives and rows are fetched by id;
        # left to itself the planner may walk every utterance of the tenant instead.
        base = (
            "FROM utt_fts CROSS JOIN utterances u ON u.id = utt_fts.rowid"
            " CROSS JOIN calls c ON c.tenant = u.tenant AND c.call_id = u.call_id"
            f" WHERE utt_fts MATCH ? AND u.tenant = ? AND {where}"
        )
        total = db.execute(
            f"SELECT count(*) FROM (SELECT 1 {base} LIMIT ?)",
            [match, tenant, *args, COUNT_CAP + 1],
        ).fetchone()[0]
        ranked = db.execute(
            f"SELECT u.id, {_SCORE} AS s {base} ORDER BY {order} LIMIT ? OFFSET ?",
            [match, tenant, *args, limit, offset],
        ).fetchall()
        return total, {r[0]: r[1] for r in ranked}

    def list_calls(self, tenant: str, filters: Filters, offset: int, limit: int) -> Page:
        """Calls newest first, with their utterance counts."""
        where, args = _where(tenant, filters, utterance_level=False)
        db = self._reader()
        total = db.execute(f"SELECT count(*) FROM calls c WHERE {where}", args).fetchone()[0]
        rows = db.execute(
            f"SELECT {_CALL_COLUMNS}, (SELECT count(*) FROM utterances u"
            " WHERE u.tenant = c.tenant AND u.call_id = c.call_id)"
            f" FROM calls c WHERE {where} ORDER BY c.started_at DESC, c.call_id"
            " LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        return Page(total=total, items=[_call_row(r[:-1], r[-1]) for r in rows])

    def get_call(self, tenant: str, call_id: str) -> CallRow | None:
        """One call of this tenant."""
        db = self._reader()
        r = db.execute(
            f"SELECT {_CALL_COLUMNS} FROM calls c WHERE c.tenant = ? AND c.call_id = ?",
            (tenant, call_id),
        ).fetchone()
        if r is None:
            return None
        n = db.execute(
            "SELECT count(*) FROM utterances WHERE tenant = ? AND call_id = ?", (tenant, call_id)
        ).fetchone()[0]
        return _call_row(r, n)

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
        where, args = _where(tenant, filters, utterance_level=True)
        period = _PERIOD[interval]
        try:
            rows = (
                self._reader()
                .execute(
                    f"SELECT {period} AS p, count(*), count(DISTINCT u.call_id)"
                    " FROM utt_fts CROSS JOIN utterances u ON u.id = utt_fts.rowid"
                    " CROSS JOIN calls c ON c.tenant = u.tenant AND c.call_id = u.call_id"
                    f" WHERE utt_fts MATCH ? AND u.tenant = ? AND {where} GROUP BY p ORDER BY p",
                    [self._match(tenant, query), tenant, *args],
                )
                .fetchall()
            )
        except sqlite3.OperationalError as exc:
            raise QueryError(f"the index refused the query: {exc}") from exc
        return [Bucket(period=r[0], utterances=r[1], calls=r[2]) for r in rows]

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
                f"SELECT {_CALL_COLUMNS} FROM calls c"
                " WHERE c.tenant = ? AND c.started_at < ? AND c.held = 0",
                (tenant, _ts(cutoff)),
            )
            .fetchall()
        )
        return [_call_row(r, 0) for r in rows]

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
