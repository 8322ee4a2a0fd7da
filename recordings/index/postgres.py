"""The shared transcript index: PostgreSQL full-text search, for many API and worker hosts.

Same query language, filters, snippets and tenant scoping as the SQLite index, and the
same words: each utterance's tsvector is built here from its folded words
(`recordings.index.rank.tokens`, the folding of the SQLite tokenizer: lower case, no
diacritics, letters and digits), not by a PostgreSQL parser, and query words are folded
alike; so "resilier" finds "Résilier" and a query answers the same on both back-ends. Why
not the `french` / `english` stemming configurations: a stemmed index finds "contrats" for
"contrat", which the embedded index does not, snippets would mark words the query lacks,
and a leg's language is one label for speech that mixes them.

Besides its words, the tsvector holds each pair of adjacent words as one lexeme
(`_je_le`, at the position of its first word; a folded word never holds `_`, so no word
or word prefix is ever a pair), and a phrase is searched as its chain of pairs. GIN keeps
no positions: a phrase of common words ("je le", "de la") matched word by word makes
PostgreSQL re-read every row holding both words, 100-200 ms at a million utterances; as
pairs it is one posting list.

Counts stop at COUNT_CAP; relevance ranks the newest RANK_WINDOW matches (or as many as
the page reaches) in Python (`recordings.index.rank`), which bounds a query's cost by
the window, not by how many utterances match.
Every value is a bound parameter; the tsquery is built from folded words only, each
quoted.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pipeline.database import PostgresDatabase, PostgresPool, migrate
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
from recordings.index.query import Node, Not, Or, Term
from recordings.index.rank import score_window, tokens

COUNT_CAP = 1_000
RANK_WINDOW = 1_000
DELETE_CHUNK = 500
NAME = "transcript_index"

# btree_gin lets the tenant be the text index's first column: a search reads only its
# tenant's postings, where a GIN index on the text alone had the planner AND it with a
# bitmap of every row of the tenant (30 ms at a million utterances). A trusted extension:
# the database's owner may create it.
SCHEMA = [
    """
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE TABLE IF NOT EXISTS transcript_calls (
    tenant TEXT NOT NULL,
    call_id TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    started_known BOOLEAN NOT NULL DEFAULT false,
    agent_id TEXT,
    direction TEXT,
    caller TEXT,
    callee TEXT,
    prefix TEXT,
    recording_key TEXT,
    duration DOUBLE PRECISION,
    source TEXT,
    held BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (tenant, call_id)
);
CREATE INDEX IF NOT EXISTS transcript_calls_by_time ON transcript_calls (tenant, started_at);
CREATE TABLE IF NOT EXISTS transcript_utterances (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant TEXT NOT NULL,
    utterance_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    leg TEXT NOT NULL,
    start DOUBLE PRECISION NOT NULL,
    "end" DOUBLE PRECISION NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL,
    call_started DOUBLE PRECISION NOT NULL DEFAULT 0,
    agent_id TEXT,
    direction TEXT,
    tsv TSVECTOR NOT NULL,
    UNIQUE (tenant, utterance_id)
);
CREATE INDEX IF NOT EXISTS transcript_utterances_by_call
    ON transcript_utterances (tenant, call_id, start);
CREATE INDEX IF NOT EXISTS transcript_utterances_newest
    ON transcript_utterances (tenant, call_started DESC, id DESC);
CREATE INDEX IF NOT EXISTS transcript_utterances_text
    ON transcript_utterances USING GIN (tenant, tsv)
""",
    # A call's statistics by name and the categories it met: search filters and the
    # dashboard's figures.
    """
CREATE TABLE IF NOT EXISTS transcript_call_facts (
    tenant TEXT NOT NULL,
    call_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant, call_id, name)
);
CREATE INDEX IF NOT EXISTS transcript_call_facts_by_value
    ON transcript_call_facts (tenant, name, value);
CREATE TABLE IF NOT EXISTS transcript_call_tags (
    tenant TEXT NOT NULL,
    call_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (tenant, call_id, tag)
);
CREATE INDEX IF NOT EXISTS transcript_call_tags_by_tag ON transcript_call_tags (tenant, tag)
""",
]
FACTS = "transcript_call_facts"
TAGS = "transcript_call_tags"

_UPSERT_CALL = """
INSERT INTO transcript_calls AS c (tenant, call_id, started_at, started_known, agent_id,
    direction, caller, callee, prefix, recording_key, duration, source)
VALUES (%(tenant)s, %(call_id)s, %(started_at)s, %(started_known)s, %(agent_id)s,
    %(direction)s, %(caller)s, %(callee)s, %(prefix)s, %(recording_key)s, %(duration)s,
    %(source)s)
ON CONFLICT (tenant, call_id) DO UPDATE SET
    started_at = CASE WHEN excluded.started_known THEN excluded.started_at
                      ELSE c.started_at END,
    started_known = c.started_known OR excluded.started_known,
    agent_id = coalesce(excluded.agent_id, c.agent_id),
    direction = coalesce(excluded.direction, c.direction),
    caller = coalesce(excluded.caller, c.caller),
    callee = coalesce(excluded.callee, c.callee),
    prefix = coalesce(excluded.prefix, c.prefix),
    recording_key = coalesce(excluded.recording_key, c.recording_key),
    duration = coalesce(excluded.duration, c.duration),
    source = coalesce(excluded.source, c.source)
"""

# A call first seen through an utterance gets a provisional start (now) until its
# call.started or manifest arrives; retention then counts from when it was indexed.
_PLACEHOLDER_CALL = """
INSERT INTO transcript_calls (tenant, call_id, started_at, started_known, source)
VALUES (%s, %s, %s, false, %s) ON CONFLICT (tenant, call_id) DO NOTHING
"""

# The call's filterable fields are copied onto each utterance, so a search needs no join.
_UPSERT_UTT = """
INSERT INTO transcript_utterances AS u (tenant, utterance_id, call_id, leg, start, "end", text,
    source, call_started, agent_id, direction, tsv)
SELECT %(tenant)s, %(utterance_id)s, %(call_id)s, %(leg)s, %(start)s, %(end)s, %(text)s,
    %(source)s, c.started_at, c.agent_id, c.direction, %(tsv)s::tsvector
FROM transcript_calls c WHERE c.tenant = %(tenant)s AND c.call_id = %(call_id)s
ON CONFLICT (tenant, utterance_id) DO UPDATE SET
    call_id = excluded.call_id, leg = excluded.leg, start = excluded.start,
    "end" = excluded."end", text = excluded.text, source = excluded.source,
    call_started = excluded.call_started, agent_id = excluded.agent_id,
    direction = excluded.direction, tsv = excluded.tsv
WHERE (u.call_id, u.leg, u.start, u."end", u.text)
    IS DISTINCT FROM (excluded.call_id, excluded.leg, excluded.start, excluded."end",
                      excluded.text)
"""

_SYNC_CALL = """
UPDATE transcript_utterances u SET call_started = c.started_at, agent_id = c.agent_id,
    direction = c.direction
FROM transcript_calls c
WHERE c.tenant = %s AND c.call_id = %s AND u.tenant = c.tenant AND u.call_id = c.call_id
    AND (u.call_started, u.agent_id, u.direction)
        IS DISTINCT FROM (c.started_at, c.agent_id, c.direction)
"""

_PERIOD = {
    "day": "to_char(to_timestamp({t}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "week": "to_char(date_trunc('week', to_timestamp({t}) AT TIME ZONE 'UTC'), 'YYYY-MM-DD')",
    "month": "to_char(to_timestamp({t}) AT TIME ZONE 'UTC', 'YYYY-MM')",
}


# PostgreSQL's limits: positions above 16383 share the last one; a lexeme is < 2 KB.
MAX_POSITION = 16_383
MAX_LEXEME_BYTES = 2_000
PAIR = "_"


def _pair(a: str, b: str) -> str:
    # The leading mark keeps pairs out of a word's prefix: "resi:*" must not expand over
    # every pair that starts with a word beginning "resi" (thousands at 10M utterances).
    return PAIR + a + PAIR + b


def _lexeme(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_of(text: str) -> str:
    """The tsvector literal of a text: its folded words and adjacent pairs, positioned."""
    words = tokens(text)
    positions: dict[str, list[int]] = {}
    for i, word in enumerate(words):
        at = min(i + 1, MAX_POSITION)
        positions.setdefault(word, []).append(at)
        if i + 1 < len(words):
            positions.setdefault(_pair(word, words[i + 1]), []).append(at)
    return " ".join(
        f"{_lexeme(lexeme)}:{','.join(map(str, at[:256]))}"
        for lexeme, at in positions.items()
        if len(lexeme.encode()) < MAX_LEXEME_BYTES
    )


def to_tsquery(node: Node) -> str | None:
    """The tsquery text of a parsed query over folded words (None: it can match nothing,
    as a term of punctuation only)."""
    if isinstance(node, Term):
        words = tokens(node.text)
        if not words:
            return None
        # A phrase is its chain of adjacent pairs (a prefix: the last pair's prefix).
        pairs = [_pair(a, b) for a, b in itertools.pairwise(words)]
        lexemes = pairs or words
        parts = [_lexeme(w) for w in lexemes]
        if node.prefix:
            parts[-1] += ":*"
        return parts[0] if len(parts) == 1 else "(" + " <-> ".join(parts) + ")"
    left, right = to_tsquery(node.left), to_tsquery(node.right)
    if isinstance(node, Not):
        if left is None or right is None:
            return left
        return f"({left} & !{right})"
    if isinstance(node, Or):
        if left is None or right is None:
            return left or right
        return f"({left} | {right})"
    if left is None or right is None:
        return None
    return f"({left} & {right})"


def _utt_where(tenant: str, f: Filters) -> tuple[str, list[Any]]:
    """Filters on transcript_utterances (alias u), which carries its call's fields."""
    return _where("u", tenant, filter_terms(f, utterances=True), f)


def _call_where(tenant: str, f: Filters) -> tuple[str, list[Any]]:
    """Filters on transcript_calls (alias c)."""
    return _where("c", tenant, filter_terms(f, utterances=False), f)


def _where(
    alias: str, tenant: str, terms: list[tuple[str, Any]], f: Filters
) -> tuple[str, list[Any]]:
    more, more_args = analysis_clauses(f, alias, FACTS, TAGS)
    clauses = [
        f"{alias}.tenant = %s",
        *(f"{alias}.{column} %s" for column, _ in terms),
        *(c.replace("?", "%s") for c in more),
    ]
    return " AND ".join(clauses), [tenant, *(value for _, value in terms), *more_args]


class PostgresIndex:
    """TranscriptIndex on a PostgreSQL database every host shares.

    Reads are run with `prepare=False`: psycopg prepares a query after its fifth run and
    PostgreSQL then plans it once for any value, while a search's best plan depends on how
    common its words are and how narrow its filters (a generic plan made filtered searches
    5x slower). Writes keep psycopg's preparing.
    """

    def __init__(self, pool: PostgresPool) -> None:
        self._pool = pool
        migrate(PostgresDatabase(pool), NAME, SCHEMA)

    # -- writes -------------------------------------------------------------------------
    def upsert_call(self, meta: CallMeta) -> None:
        """Create or merge a call row (known fields overwrite, None keeps what is stored),
        and copy its start, agent and direction onto its utterances."""
        params = call_params(meta)
        with self._pool.connection() as conn:
            conn.execute(_UPSERT_CALL, params)
            conn.execute(_SYNC_CALL, (meta.tenant, meta.call_id))

    def upsert_utterances(self, rows: list[UtteranceRow]) -> None:
        """Index utterances in one transaction; a replayed utterance id overwrites."""
        if not rows:
            return
        now = time.time()
        # Calls in one order for every writer, so two index workers adding the same calls
        # wait for each other instead of deadlocking. Utterances keep their given order,
        # which is their id order (the tie-break of the time sort); a call's utterances come
        # from one partition, so two workers never write the same ones at once.
        calls = sorted({(r.tenant, r.call_id): r.source for r in rows}.items())
        params = [
            {
                "tenant": r.tenant,
                "utterance_id": r.utterance_id,
                "call_id": r.call_id,
                "leg": r.leg,
                "start": r.start,
                "end": r.end,
                "text": r.text,
                "source": r.source,
                "tsv": tsvector_of(r.text),
            }
            for r in rows
        ]
        with self._pool.connection() as conn, conn.cursor() as cur:
            cur.executemany(_PLACEHOLDER_CALL, [(t, c, now, s) for (t, c), s in calls])
            cur.executemany(_UPSERT_UTT, params)

    def set_hold(self, tenant: str, call_id: str, held: bool) -> bool:
        """Set or lift the legal hold flag."""
        with self._pool.connection() as conn:
            cur = conn.execute(
                "UPDATE transcript_calls SET held = %s WHERE tenant = %s AND call_id = %s",
                (held, tenant, call_id),
            )
            return cur.rowcount > 0

    def delete_call(self, tenant: str, call_id: str) -> int:
        """Remove a call row and its utterances together (one transaction)."""
        return self.delete_calls(tenant, [call_id])

    def delete_calls(self, tenant: str, call_ids: list[str]) -> int:
        """Remove many calls of one tenant in one transaction; returns utterances removed."""
        removed = 0
        with self._pool.connection() as conn:
            for i in range(0, len(call_ids), DELETE_CHUNK):
                chunk = call_ids[i : i + DELETE_CHUNK]
                cur = conn.execute(
                    "DELETE FROM transcript_utterances WHERE tenant = %s AND call_id = ANY(%s)",
                    (tenant, chunk),
                )
                removed += cur.rowcount
                for table in (FACTS, TAGS, "transcript_calls"):
                    conn.execute(
                        f"DELETE FROM {table} WHERE tenant = %s AND call_id = ANY(%s)",
                        (tenant, chunk),
                    )
        return removed

    def set_analysis(
        self, tenant: str, call_id: str, facts: dict[str, float], tags: Sequence[str]
    ) -> None:
        """Replace the call's statistics and categories in one transaction."""
        key = (tenant, call_id)
        with self._pool.connection() as conn, conn.cursor() as cur:
            cur.execute(f"DELETE FROM {FACTS} WHERE tenant = %s AND call_id = %s", key)
            cur.execute(f"DELETE FROM {TAGS} WHERE tenant = %s AND call_id = %s", key)
            cur.executemany(
                f"INSERT INTO {FACTS} VALUES (%s, %s, %s, %s)", [(*key, *f) for f in facts.items()]
            )
            cur.executemany(
                f"INSERT INTO {TAGS} VALUES (%s, %s, %s)", [(*key, t) for t in dict.fromkeys(tags)]
            )

    # -- reads --------------------------------------------------------------------------
    def search(
        self, tenant: str, query: Node, filters: Filters, sort: Sort, offset: int, limit: int
    ) -> Page:
        """Matching utterances, counted up to the cap, ranked, with snippets made here."""
        tsquery = to_tsquery(query)
        if tsquery is None:
            return Page(total=0, items=[])
        where, args = _utt_where(tenant, filters)
        matched = f"FROM transcript_utterances u WHERE {where} AND u.tsv @@ %s::tsquery"
        args.append(tsquery)
        window = max(RANK_WINDOW, offset + limit, COUNT_CAP + 1)
        with self._pool.connection() as conn:
            newest = conn.execute(
                f"SELECT {HIT_COLUMNS} {matched} ORDER BY u.call_started DESC, u.id DESC LIMIT %s",
                [*args, window],
                prepare=False,
            ).fetchall()
            total = len(newest)
            if not total:
                return Page(total=0, items=[])
            if sort == "time":
                page = conn.execute(
                    f"SELECT {HIT_COLUMNS} {matched}"
                    " ORDER BY u.call_started DESC, u.start, u.id LIMIT %s OFFSET %s",
                    [*args, limit, offset],
                    prepare=False,
                ).fetchall()
                ranked = [(r, 0.0) for r in page]
            else:
                rows = newest[: max(RANK_WINDOW, offset + limit)]
                scores = score_window([r[6] for r in rows], query)
                order = sorted(range(len(rows)), key=lambda k: (-scores[k], k))
                ranked = [(rows[k], scores[k]) for k in order[offset : offset + limit]]
        hits = [hit_of(r, query, score) for r, score in ranked]
        return Page(total=min(total, COUNT_CAP), items=hits, exact=total <= COUNT_CAP)

    def list_calls(self, tenant: str, filters: Filters, offset: int, limit: int) -> Page:
        """Calls newest first, with their utterance counts."""
        where, args = _call_where(tenant, filters)
        with self._pool.connection() as conn:
            total = conn.execute(
                f"SELECT count(*) FROM transcript_calls c WHERE {where}", args, prepare=False
            ).fetchone()
            rows = conn.execute(
                f"SELECT {CALL_COLUMNS}, (SELECT count(*) FROM transcript_utterances u"
                " WHERE u.tenant = c.tenant AND u.call_id = c.call_id)"
                f" FROM transcript_calls c WHERE {where}"
                " ORDER BY c.started_at DESC, c.call_id LIMIT %s OFFSET %s",
                [*args, limit, offset],
                prepare=False,
            ).fetchall()
        return Page(
            total=int(total[0]) if total else 0,
            items=[call_row(r[:-1], r[-1]) for r in rows],
        )

    def get_call(self, tenant: str, call_id: str) -> CallRow | None:
        """One call of this tenant."""
        with self._pool.connection() as conn:
            r = conn.execute(
                f"SELECT {CALL_COLUMNS}, (SELECT count(*) FROM transcript_utterances u"
                " WHERE u.tenant = c.tenant AND u.call_id = c.call_id)"
                " FROM transcript_calls c WHERE c.tenant = %s AND c.call_id = %s",
                (tenant, call_id),
            ).fetchone()
        return None if r is None else call_row(r[:-1], r[-1])

    def call_utterances(self, tenant: str, call_id: str) -> list[UtteranceRow]:
        """Both legs in speaking order."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                'SELECT tenant, call_id, utterance_id, leg, start, "end", text, source'
                " FROM transcript_utterances WHERE tenant = %s AND call_id = %s"
                " ORDER BY start, leg",
                (tenant, call_id),
            ).fetchall()
        return [UtteranceRow(*r) for r in rows]

    def term_counts(
        self, tenant: str, query: Node, filters: Filters, interval: Interval
    ) -> list[Bucket]:
        """Matching utterances and distinct calls per day, week (Monday) or month (UTC)."""
        tsquery = to_tsquery(query)
        if tsquery is None:
            return []
        where, args = _utt_where(tenant, filters)
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {_PERIOD[interval].format(t='u.call_started')} AS p, count(*),"
                " count(DISTINCT u.call_id)"
                f" FROM transcript_utterances u WHERE {where} AND u.tsv @@ %s::tsquery"
                " GROUP BY p ORDER BY p",
                [*args, tsquery],
                prepare=False,
            ).fetchall()
        return [Bucket(period=r[0], utterances=r[1], calls=r[2]) for r in rows]

    def call_tags(self, tenant: str, call_ids: Sequence[str]) -> dict[str, list[str]]:
        """Categories by call, for these calls of the tenant."""
        out: dict[str, list[str]] = {}
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT call_id, tag FROM {TAGS} WHERE tenant = %s AND call_id = ANY(%s)"
                " ORDER BY call_id, tag",
                (tenant, list(call_ids)),
            ).fetchall()
        for call_id, tag in rows:
            out.setdefault(call_id, []).append(tag)
        return out

    def fact_summary(
        self, tenant: str, filters: Filters, interval: Interval, names: Sequence[str]
    ) -> list[FactRow]:
        """Per period and agent: calls, mean and total of each statistic named."""
        where, args = _call_where(tenant, filters)
        period = _PERIOD[interval].format(t="c.started_at")
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {period} AS p, c.agent_id, f.name, count(*), avg(f.value),"
                f" sum(f.value) FROM transcript_calls c JOIN {FACTS} f"
                " ON f.tenant = c.tenant AND f.call_id = c.call_id"
                f" WHERE {where} AND f.name = ANY(%s) GROUP BY p, c.agent_id, f.name"
                " ORDER BY p, c.agent_id, f.name",
                [*args, list(names)],
                prepare=False,
            ).fetchall()
        return [FactRow(r[0], r[1], r[2], int(r[3]), float(r[4]), float(r[5])) for r in rows]

    def tag_counts(self, tenant: str, filters: Filters, interval: Interval) -> list[TagRow]:
        """Calls per period and category."""
        where, args = _call_where(tenant, filters)
        period = _PERIOD[interval].format(t="c.started_at")
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {period} AS p, t.tag, count(*) FROM transcript_calls c JOIN {TAGS} t"
                " ON t.tenant = c.tenant AND t.call_id = c.call_id"
                f" WHERE {where} GROUP BY p, t.tag ORDER BY p, t.tag",
                args,
                prepare=False,
            ).fetchall()
        return [TagRow(r[0], r[1], int(r[2])) for r in rows]

    def held_calls(self, tenant: str) -> set[str]:
        """Calls of the tenant under legal hold."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT call_id FROM transcript_calls WHERE tenant = %s AND held", (tenant,)
            ).fetchall()
        return {r[0] for r in rows}

    def expired_calls(self, tenant: str, cutoff: datetime) -> list[CallRow]:
        """Calls started before the cutoff, held ones left out."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {CALL_COLUMNS} FROM transcript_calls c"
                " WHERE c.tenant = %s AND c.started_at < %s AND NOT c.held",
                (tenant, to_ts(cutoff)),
            ).fetchall()
        return [call_row(r, 0) for r in rows]

    def tenants(self) -> list[str]:
        """Tenants that have calls."""
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT DISTINCT tenant FROM transcript_calls ORDER BY 1")
            return [r[0] for r in rows.fetchall()]

    def close(self) -> None:
        """The pool is the process's and closes with its services."""
