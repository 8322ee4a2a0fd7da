"""Search semantics of the index on both back-ends (SQLite FTS5, PostgreSQL full-text):
accents, phrases, booleans, prefixes, filters, tenants; and the SQLite file's own life."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.services import Services
from recordings.index.base import (
    HL_CLOSE,
    HL_OPEN,
    CallMeta,
    Filters,
    Hit,
    TranscriptIndex,
    UtteranceRow,
)
from recordings.index.query import QueryError, parse_query
from recordings.index.sqlite import (
    SCHEMA_VERSION,
    IndexSchemaError,
    SqliteIndex,
)


def hits(index: TranscriptIndex, q: str, tenant: str = "acme", **f: object) -> list[Hit]:
    page = index.search(tenant, parse_query(q), Filters(**f), "relevance", 0, 50)  # type: ignore[arg-type]
    assert page.total == len(page.items)
    return page.items  # type: ignore[return-value]


def ids(found: list[Hit]) -> set[str]:
    return {h.utterance_id for h in found}


def test_accent_and_case_insensitive(corpus_index: TranscriptIndex) -> None:
    # "resilier" finds "résilier" and "RÉSILIER"; the accented query finds them too
    assert ids(hits(corpus_index, "resilier")) == {"u-c1-1", "u-c2-1"}
    assert ids(hits(corpus_index, "RÉSILIER")) == {"u-c1-1", "u-c2-1"}
    assert ids(hits(corpus_index, "electricite")) == {"u-c1-1"}


def test_phrase_needs_the_words_in_order(corpus_index: TranscriptIndex) -> None:
    assert ids(hits(corpus_index, '"mon contrat"')) == {"u-c1-1", "u-c3-0"}
    assert ids(hits(corpus_index, '"contrat mon"')) == set()
    assert ids(hits(corpus_index, '"voudrais resilier mon"')) == {"u-c1-1"}


def test_boolean_operators(corpus_index: TranscriptIndex) -> None:
    assert ids(hits(corpus_index, "contrat resilier")) == {"u-c1-1"}
    assert ids(hits(corpus_index, "contrat AND resilier")) == {"u-c1-1"}
    assert ids(hits(corpus_index, "resilier OR remboursement")) == {
        "u-c1-1",
        "u-c2-1",
        "u-c2-0",
        "u-c3-1",
    }
    assert ids(hits(corpus_index, "contrat NOT resilier")) == {"u-c3-0"}
    assert ids(hits(corpus_index, "(remboursement OR cher) NOT huit")) == {"u-c2-0", "u-c3-0"}


def test_prefix(corpus_index: TranscriptIndex) -> None:
    assert ids(hits(corpus_index, "rembours*")) == {"u-c2-0", "u-c3-1"}
    assert ids(hits(corpus_index, "electri*")) == {"u-c1-1"}
    assert ids(hits(corpus_index, "rembours")) == set()
    # a phrase whose last word is a prefix; an apostrophe splits words as a space does
    assert ids(hits(corpus_index, '"mon contr"*')) == {"u-c1-1", "u-c3-0"}
    assert ids(hits(corpus_index, '"voudrais resil"*')) == {"u-c1-1"}
    assert ids(hits(corpus_index, '"contrat d electricite"')) == {"u-c1-1"}
    assert ids(hits(corpus_index, "d'électricité")) == {"u-c1-1"}
    assert ids(hits(corpus_index, '"electricite je"')) == set()  # another utterance


def test_snippet_marks_the_match(corpus_index: TranscriptIndex) -> None:
    (hit,) = hits(corpus_index, "electricite")
    assert f"{HL_OPEN}électricité{HL_CLOSE}" in hit.snippet
    assert hit.call_id == "c1" and hit.leg == "customer"
    assert (hit.start, hit.end) == (3.5, 6.0)


def test_filters(corpus_index: TranscriptIndex) -> None:
    assert ids(hits(corpus_index, "contrat OR resilier", agent_id="a-2")) == {"u-c2-1"}
    assert ids(hits(corpus_index, "remboursement", leg="agent", direction="inbound")) == {"u-c3-1"}
    assert ids(hits(corpus_index, "resilier", leg="agent")) == set()
    assert ids(hits(corpus_index, "resilier", call_id="c2")) == {"u-c2-1"}
    may2 = datetime(2024, 5, 2, tzinfo=UTC)
    assert ids(hits(corpus_index, "contrat", since=may2)) == {"u-c3-0"}
    assert ids(hits(corpus_index, "contrat", until=may2)) == {"u-c1-1"}


def test_sort_by_time_and_paging(corpus_index: TranscriptIndex) -> None:
    q = parse_query("resilier OR remboursement OR contrat")
    page = corpus_index.search("acme", q, Filters(), "time", 0, 2)
    assert page.total == 5
    first = [h.utterance_id for h in page.items]  # type: ignore[union-attr]
    rest = corpus_index.search("acme", q, Filters(), "time", 2, 10).items
    order = first + [h.utterance_id for h in rest]  # type: ignore[union-attr]
    assert order == ["u-c3-0", "u-c3-1", "u-c2-0", "u-c2-1", "u-c1-1"]


def test_relevance_ranks_the_denser_match_first(new_index: Callable[[], TranscriptIndex]) -> None:
    index = new_index()
    index.upsert_utterances(
        [
            UtteranceRow(
                "t",
                "c",
                "u1",
                "agent",
                0,
                1,
                "bonjour madame, je vous appelle au sujet de votre dossier de prêt",
            ),
            UtteranceRow("t", "c", "u2", "agent", 2, 3, "prêt prêt prêt"),
        ]
    )
    found = hits(index, "pret", tenant="t")
    assert [h.utterance_id for h in found] == ["u2", "u1"]
    assert found[0].score > found[1].score
    index.close()


def test_tenants_never_mix(corpus_index: TranscriptIndex) -> None:
    assert ids(hits(corpus_index, "secret")) == set()
    assert ids(hits(corpus_index, "secret", tenant="rival")) == {"u-r1-0"}
    assert ids(hits(corpus_index, "resilier", tenant="rival")) == {"u-r1-0"}
    assert corpus_index.get_call("acme", "r1") is None
    assert corpus_index.get_call("rival", "r1") is not None
    assert corpus_index.call_utterances("acme", "r1") == []


@pytest.mark.parametrize(
    ("q", "refused"),
    [
        ("x' OR '1'='1", False),
        ("secret OR x'='x", False),
        ("text:secret", False),
        ("rival UNION SELECT", False),
        ("secret'); DROP TABLE utterances; --", True),
        ('secret" OR tenant:rival', True),
    ],
)
def test_injection_shaped_queries_stay_in_the_tenant(
    corpus_index: TranscriptIndex, q: str, refused: bool
) -> None:
    if refused:
        with pytest.raises(QueryError):
            hits(corpus_index, q)
    else:
        found = hits(corpus_index, q)
        assert all(h.call_id.startswith("c") for h in found)
    # the tables are intact
    assert len(hits(corpus_index, "resilier")) == 2


def test_upsert_is_idempotent_and_overwrites(corpus_index: TranscriptIndex) -> None:
    row = UtteranceRow("acme", "c3", "u-c3-0", "customer", 0.8, 2.0, "Mon abonnement est cher")
    corpus_index.upsert_utterances([row])
    corpus_index.upsert_utterances([row])
    assert ids(hits(corpus_index, "abonnement")) == {"u-c3-0"}
    assert ids(hits(corpus_index, "contrat", call_id="c3")) == set()
    assert len(corpus_index.call_utterances("acme", "c3")) == 2


def test_call_rows_merge_and_list(corpus_index: TranscriptIndex) -> None:
    corpus_index.upsert_call(CallMeta("acme", "c1", caller="+33100000000"))
    row = corpus_index.get_call("acme", "c1")
    assert row is not None
    assert row.caller == "+33100000000" and row.agent_id == "a-1"  # kept
    assert row.started_at == datetime(2024, 5, 1, 9, 0, tzinfo=UTC) and row.utterances == 3
    page = corpus_index.list_calls("acme", Filters(agent_id="a-1"), 0, 10)
    assert [c.call_id for c in page.items] == ["c3", "c1"]  # type: ignore[union-attr]
    assert page.total == 2


def test_utterance_before_its_call_gets_a_provisional_row(
    new_index: Callable[[], TranscriptIndex],
) -> None:
    index = new_index()
    index.upsert_utterances([UtteranceRow("t", "late", "u1", "agent", 0, 1, "allô")])
    row = index.get_call("t", "late")
    assert row is not None and not row.started_known
    when = datetime(2024, 1, 2, 3, 4, tzinfo=UTC)
    index.upsert_call(CallMeta("t", "late", started_at=when, agent_id="a"))
    row = index.get_call("t", "late")
    assert row is not None and row.started_known and row.started_at == when
    index.close()


def test_term_counts_per_day_week_month(corpus_index: TranscriptIndex) -> None:
    q = parse_query("contrat")
    day = corpus_index.term_counts("acme", q, Filters(), "day")
    assert [(b.period, b.utterances, b.calls) for b in day] == [
        ("2024-05-01", 1, 1),
        ("2024-05-09", 1, 1),
    ]
    week = corpus_index.term_counts("acme", parse_query("resilier OR contrat"), Filters(), "week")
    # 2024-05-01 and 05-02 fall in the week of Monday 29 April; 05-09 in that of 6 May
    assert [(b.period, b.utterances, b.calls) for b in week] == [
        ("2024-04-29", 2, 2),
        ("2024-05-06", 1, 1),
    ]
    month = corpus_index.term_counts("acme", q, Filters(), "month")
    assert [(b.period, b.utterances) for b in month] == [("2024-05", 2)]


def test_delete_call_removes_rows_and_text(corpus_index: TranscriptIndex) -> None:
    assert corpus_index.delete_call("acme", "c1") == 3
    assert corpus_index.get_call("acme", "c1") is None
    assert ids(hits(corpus_index, "electricite")) == set()
    assert ids(hits(corpus_index, "resilier")) == {"u-c2-1"}


def test_hold_and_expiry(corpus_index: TranscriptIndex) -> None:
    assert corpus_index.set_hold("acme", "c1", True)
    assert not corpus_index.set_hold("acme", "nope", True)
    assert not corpus_index.set_hold("rival", "c1", True)
    assert corpus_index.held_calls("acme") == {"c1"}
    cutoff = datetime(2024, 5, 5, tzinfo=UTC)
    assert {c.call_id for c in corpus_index.expired_calls("acme", cutoff)} == {"c2"}


def test_total_past_the_cap_is_at_least(
    corpus_index: TranscriptIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = sys.modules[type(corpus_index).__module__]
    monkeypatch.setattr(backend, "COUNT_CAP", 2)
    page = corpus_index.search(
        "acme", parse_query("resilier OR remboursement"), Filters(), "relevance", 0, 10
    )
    assert (page.total, page.exact, len(page.items)) == (2, False, 4)
    page = corpus_index.search("acme", parse_query("resilier"), Filters(), "relevance", 0, 10)
    assert (page.total, page.exact) == (2, True)


def test_index_file_lives_in_the_data_dir(services: Services) -> None:
    from recordings.index import index_of

    index = index_of(services)
    assert index is index_of(services)
    assert isinstance(index, SqliteIndex)
    assert index.path == services.settings.data_dir / "index.sqlite"


def test_a_tenant_whose_name_extends_another_stays_apart(corpus_index: TranscriptIndex) -> None:
    corpus_index.upsert_utterances(
        [UtteranceRow("acme-corp", "x1", "u-x1", "agent", 0, 1, "résilier tout de suite")]
    )
    assert ids(hits(corpus_index, "resilier")) == {"u-c1-1", "u-c2-1"}
    assert ids(hits(corpus_index, "resilier", tenant="acme-corp")) == {"u-x1"}
    assert ids(hits(corpus_index, "resilier", tenant="acme-corp", leg="agent")) == {"u-x1"}


# The schema-1 file layout (one FTS table for every tenant, kept by triggers), as written
# by the first release of the index.
SCHEMA_1 = """
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


def test_a_schema_1_file_is_rebuilt_per_tenant_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    db.executemany(
        "INSERT INTO calls (tenant, call_id, started_at, started_known, agent_id, direction)"
        " VALUES (?, ?, ?, 1, ?, ?)",
        [
            ("acme", "c1", 1714554000.0, "a-1", "inbound"),
            ("rival", "r1", 1714557600.0, "b-1", "inbound"),
        ],
    )
    db.executemany(
        'INSERT INTO utterances (tenant, utterance_id, call_id, leg, start, "end", text, source)'
        " VALUES (?, ?, ?, ?, ?, ?, ?, 'batch')",
        [
            ("acme", "u1", "c1", "customer", 1.0, 2.0, "Je veux résilier mon contrat"),
            ("rival", "u2", "r1", "customer", 1.0, 2.0, "résilier le contrat secret"),
        ],
    )
    db.commit()
    db.close()
    index = SqliteIndex(path)
    assert ids(hits(index, "resilier")) == {"u1"}
    assert ids(hits(index, "resilier", tenant="rival")) == {"u2"}
    assert ids(hits(index, "contrat", agent_id="a-1", direction="inbound")) == {"u1"}
    assert ids(hits(index, "secret")) == set()
    index.upsert_utterances([UtteranceRow("acme", "c1", "u3", "agent", 3, 4, "bien noté")])
    assert ids(hits(index, "note")) == {"u3"}
    index.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    old_table = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'utt_fts'")
    assert old_table.fetchone() == (0,)
    db.close()
    reopened = SqliteIndex(path)  # a second open finds the new schema and keeps the rows
    assert ids(hits(reopened, "resilier OR note")) == {"u1", "u3"}
    reopened.close()


def test_a_file_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    SqliteIndex(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(IndexSchemaError, match="newer than this callpipe"):
        SqliteIndex(path)


def test_late_call_metadata_reaches_the_search_filters(
    new_index: Callable[[], TranscriptIndex],
) -> None:
    index = new_index()
    index.upsert_utterances([UtteranceRow("t", "late", "u1", "agent", 0, 1, "résilier")])
    assert ids(hits(index, "resilier", tenant="t", agent_id="a")) == set()
    when = datetime(2024, 1, 2, 3, 4, tzinfo=UTC)
    index.upsert_call(CallMeta("t", "late", started_at=when, agent_id="a", direction="outbound"))
    found = hits(
        index,
        "resilier",
        tenant="t",
        agent_id="a",
        direction="outbound",
        until=datetime(2024, 1, 3, tzinfo=UTC),
    )
    assert ids(found) == {"u1"} and found[0].call_started_at == when
    index.close()


def test_past_the_cap_relevance_ranks_the_newest_window(
    new_index: Callable[[], TranscriptIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    index = new_index()
    backend = sys.modules[type(index).__module__]
    monkeypatch.setattr(backend, "COUNT_CAP", 2)
    monkeypatch.setattr(backend, "RANK_WINDOW", 3)
    texts = ["prêt prêt prêt prêt", "un prêt", "prêt prêt", "un prêt de plus ici", "le prêt"]
    index.upsert_utterances(
        [UtteranceRow("t", "c", f"u{i}", "agent", i, i + 1, text) for i, text in enumerate(texts)]
    )
    q = parse_query("pret")
    page = index.search("t", q, Filters(), "relevance", 0, 2)
    # u0, the densest, is older than the 3-match window; u2 leads the window
    assert (page.total, page.exact) == (2, False)
    assert [h.utterance_id for h in page.items] == ["u2", "u4"]  # type: ignore[union-attr]
    deeper = index.search("t", q, Filters(), "relevance", 0, 5)  # the window grows to the page
    assert [h.utterance_id for h in deeper.items][0] == "u0"  # type: ignore[union-attr]
    assert len(deeper.items) == 5
    index.close()


def test_time_order_pages_exactly_past_the_cap(
    new_index: Callable[[], TranscriptIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    index = new_index()
    monkeypatch.setattr(sys.modules[type(index).__module__], "COUNT_CAP", 3)
    base = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    # calls sharing a start second, others a day apart, indexed out of time order
    starts = {"a": 0, "b": 86400, "c": 86400, "d": 3 * 86400, "e": 2 * 86400}
    for cid, offset in starts.items():
        index.upsert_call(CallMeta("t", cid, started_at=base + timedelta(seconds=offset)))
    rows = [
        UtteranceRow("t", cid, f"{cid}{k}", "agent", start, start + 1, f"oui {cid} {k}")
        for cid in ("c", "a", "e", "b", "d")
        for k, start in enumerate((2.0, 0.5, 1.0))
    ]
    index.upsert_utterances(rows)
    q = parse_query("oui")
    got: list[str] = []
    for offset in range(0, len(rows), 4):
        page = index.search("t", q, Filters(), "time", offset, 4)
        assert (page.total, page.exact) == (3, False)
        got += [h.utterance_id for h in page.items]  # type: ignore[union-attr]
    # newest call first, then speaking order; b and c started in the same second, so their
    # utterances interleave by start (ties: c was indexed first)
    assert got == [
        "d1", "d2", "d0", "e1", "e2", "e0", "c1", "b1", "c2", "b2", "c0", "b0", "a1", "a2", "a0"
    ]  # fmt: skip
    index.close()


def test_a_call_start_that_moves_rekeys_its_utterances(
    new_index: Callable[[], TranscriptIndex],
) -> None:
    index = new_index()
    index.upsert_utterances([UtteranceRow("t", "c1", "u1", "agent", 0, 1, "résilier demain")])
    index.upsert_call(CallMeta("t", "c2", started_at=datetime(2024, 5, 2, tzinfo=UTC)))
    index.upsert_utterances([UtteranceRow("t", "c2", "u2", "agent", 0, 1, "résilier hier")])
    # c1 was provisional (now); its real start is older than c2's
    index.upsert_call(CallMeta("t", "c1", started_at=datetime(2024, 5, 1, tzinfo=UTC)))
    page = index.search("t", parse_query("resilier"), Filters(), "time", 0, 10)
    assert [h.utterance_id for h in page.items] == ["u2", "u1"]  # type: ignore[union-attr]
    may2 = datetime(2024, 5, 2, tzinfo=UTC)
    assert ids(hits(index, "resilier", tenant="t", until=may2)) == {"u1"}
    assert ids(hits(index, "resilier", tenant="t", since=may2)) == {"u2"}
    assert ids(hits(index, "demain", tenant="t")) == {"u1"}  # indexed once, under its new id
    # an utterance replayed into another call moves with it
    index.upsert_utterances([UtteranceRow("t", "c2", "u1", "agent", 5, 6, "résilier demain")])
    assert [h.call_id for h in hits(index, "demain", tenant="t")] == ["c2"]
    assert index.delete_call("t", "c2") == 2
    assert hits(index, "resilier", tenant="t") == []
    index.close()
