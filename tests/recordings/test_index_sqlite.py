"""Search semantics of the SQLite FTS5 index: accents, phrases, booleans, prefixes, filters."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.services import Services
from recordings.index.base import CallMeta, Filters, Hit, TranscriptIndex, UtteranceRow
from recordings.index.query import QueryError, parse_query
from recordings.index.sqlite import HL_CLOSE, HL_OPEN, SqliteIndex


def hits(index: TranscriptIndex, q: str, tenant: str = "acme", **f: object) -> list[Hit]:
    page = index.search(tenant, parse_query(q), Filters(**f), "relevance", 0, 50)  # type: ignore[arg-type]
    assert page.total == len(page.items)
    return page.items  # type: ignore[return-value]


def ids(found: list[Hit]) -> set[str]:
    return {h.utterance_id for h in found}


def test_accent_and_case_insensitive(search_index: TranscriptIndex) -> None:
    # "resilier" finds "résilier" and "RÉSILIER"; the accented query finds them too
    assert ids(hits(search_index, "resilier")) == {"u-c1-1", "u-c2-1"}
    assert ids(hits(search_index, "RÉSILIER")) == {"u-c1-1", "u-c2-1"}
    assert ids(hits(search_index, "electricite")) == {"u-c1-1"}


def test_phrase_needs_the_words_in_order(search_index: TranscriptIndex) -> None:
    assert ids(hits(search_index, '"mon contrat"')) == {"u-c1-1", "u-c3-0"}
    assert ids(hits(search_index, '"contrat mon"')) == set()
    assert ids(hits(search_index, '"voudrais resilier mon"')) == {"u-c1-1"}


def test_boolean_operators(search_index: TranscriptIndex) -> None:
    assert ids(hits(search_index, "contrat resilier")) == {"u-c1-1"}
    assert ids(hits(search_index, "contrat AND resilier")) == {"u-c1-1"}
    assert ids(hits(search_index, "resilier OR remboursement")) == {
        "u-c1-1", "u-c2-1", "u-c2-0", "u-c3-1"
    }
    assert ids(hits(search_index, "contrat NOT resilier")) == {"u-c3-0"}
    assert ids(hits(search_index, "(remboursement OR cher) NOT huit")) == {"u-c2-0", "u-c3-0"}


def test_prefix(search_index: TranscriptIndex) -> None:
    assert ids(hits(search_index, "rembours*")) == {"u-c2-0", "u-c3-1"}
    assert ids(hits(search_index, "electri*")) == {"u-c1-1"}
    assert ids(hits(search_index, "rembours")) == set()


def test_snippet_marks_the_match(search_index: TranscriptIndex) -> None:
    (hit,) = hits(search_index, "electricite")
    assert f"{HL_OPEN}électricité{HL_CLOSE}" in hit.snippet
    assert hit.call_id == "c1" and hit.leg == "customer"
    assert (hit.start, hit.end) == (3.5, 6.0)


def test_filters(search_index: TranscriptIndex) -> None:
    assert ids(hits(search_index, "contrat OR resilier", agent_id="a-2")) == {"u-c2-1"}
    assert ids(hits(search_index, "remboursement", leg="agent", direction="inbound")) == {
        "u-c3-1"
    }
    assert ids(hits(search_index, "resilier", leg="agent")) == set()
    assert ids(hits(search_index, "resilier", call_id="c2")) == {"u-c2-1"}
    may2 = datetime(2024, 5, 2, tzinfo=UTC)
    assert ids(hits(search_index, "contrat", since=may2)) == {"u-c3-0"}
    assert ids(hits(search_index, "contrat", until=may2)) == {"u-c1-1"}


def test_sort_by_time_and_paging(search_index: TranscriptIndex) -> None:
    q = parse_query("resilier OR remboursement OR contrat")
    page = search_index.search("acme", q, Filters(), "time", 0, 2)
    assert page.total == 5
    first = [h.utterance_id for h in page.items]  # type: ignore[union-attr]
    rest = search_index.search("acme", q, Filters(), "time", 2, 10).items
    order = first + [h.utterance_id for h in rest]  # type: ignore[union-attr]
    assert order == ["u-c3-0", "u-c3-1", "u-c2-0", "u-c2-1", "u-c1-1"]


def test_relevance_ranks_the_denser_match_first(tmp_path: Path) -> None:
    index = SqliteIndex(tmp_path / "i.sqlite")
    index.upsert_utterances([
        UtteranceRow("t", "c", "u1", "agent", 0, 1,
                     "bonjour madame, je vous appelle au sujet de votre dossier de prêt"),
        UtteranceRow("t", "c", "u2", "agent", 2, 3, "prêt prêt prêt"),
    ])
    found = hits(index, "pret", tenant="t")
    assert [h.utterance_id for h in found] == ["u2", "u1"]
    assert found[0].score > found[1].score
    index.close()


def test_tenants_never_mix(search_index: TranscriptIndex) -> None:
    assert ids(hits(search_index, "secret")) == set()
    assert ids(hits(search_index, "secret", tenant="rival")) == {"u-r1-0"}
    assert ids(hits(search_index, "resilier", tenant="rival")) == {"u-r1-0"}
    assert search_index.get_call("acme", "r1") is None
    assert search_index.get_call("rival", "r1") is not None
    assert search_index.call_utterances("acme", "r1") == []


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
    search_index: TranscriptIndex, q: str, refused: bool
) -> None:
    if refused:
        with pytest.raises(QueryError):
            hits(search_index, q)
    else:
        found = hits(search_index, q)
        assert all(h.call_id.startswith("c") for h in found)
    # the tables are intact
    assert len(hits(search_index, "resilier")) == 2


def test_upsert_is_idempotent_and_overwrites(search_index: TranscriptIndex) -> None:
    row = UtteranceRow("acme", "c3", "u-c3-0", "customer", 0.8, 2.0, "Mon abonnement est cher")
    search_index.upsert_utterances([row])
    search_index.upsert_utterances([row])
    assert ids(hits(search_index, "abonnement")) == {"u-c3-0"}
    assert ids(hits(search_index, "contrat", call_id="c3")) == set()
    assert len(search_index.call_utterances("acme", "c3")) == 2


def test_call_rows_merge_and_list(search_index: TranscriptIndex) -> None:
    search_index.upsert_call(CallMeta("acme", "c1", caller="+33100000000"))
    row = search_index.get_call("acme", "c1")
    assert row is not None
    assert row.caller == "+33100000000" and row.agent_id == "a-1"  # kept
    assert row.started_at == datetime(2024, 5, 1, 9, 0, tzinfo=UTC) and row.utterances == 3
    page = search_index.list_calls("acme", Filters(agent_id="a-1"), 0, 10)
    assert [c.call_id for c in page.items] == ["c3", "c1"]  # type: ignore[union-attr]
    assert page.total == 2


def test_utterance_before_its_call_gets_a_provisional_row(tmp_path: Path) -> None:
    index = SqliteIndex(tmp_path / "i.sqlite")
    index.upsert_utterances([UtteranceRow("t", "late", "u1", "agent", 0, 1, "allô")])
    row = index.get_call("t", "late")
    assert row is not None and not row.started_known
    when = datetime(2024, 1, 2, 3, 4, tzinfo=UTC)
    index.upsert_call(CallMeta("t", "late", started_at=when, agent_id="a"))
    row = index.get_call("t", "late")
    assert row is not None and row.started_known and row.started_at == when
    index.close()


def test_term_counts_per_day_week_month(search_index: TranscriptIndex) -> None:
    q = parse_query("contrat")
    day = search_index.term_counts("acme", q, Filters(), "day")
    assert [(b.period, b.utterances, b.calls) for b in day] == [
        ("2024-05-01", 1, 1), ("2024-05-09", 1, 1)
    ]
    week = search_index.term_counts("acme", parse_query("resilier OR contrat"), Filters(), "week")
    # 2024-05-01 and 05-02 fall in the week of Monday 29 April; 05-09 in that of 6 May
    assert [(b.period, b.utterances, b.calls) for b in week] == [
        ("2024-04-29", 2, 2), ("2024-05-06", 1, 1)
    ]
    month = search_index.term_counts("acme", q, Filters(), "month")
    assert [(b.period, b.utterances) for b in month] == [("2024-05", 2)]


def test_delete_call_removes_rows_and_text(search_index: TranscriptIndex) -> None:
    assert search_index.delete_call("acme", "c1") == 3
    assert search_index.get_call("acme", "c1") is None
    assert ids(hits(search_index, "electricite")) == set()
    assert ids(hits(search_index, "resilier")) == {"u-c2-1"}


def test_hold_and_expiry(search_index: TranscriptIndex) -> None:
    assert search_index.set_hold("acme", "c1", True)
    assert not search_index.set_hold("acme", "nope", True)
    assert not search_index.set_hold("rival", "c1", True)
    assert search_index.held_calls("acme") == {"c1"}
    cutoff = datetime(2024, 5, 5, tzinfo=UTC)
    assert {c.call_id for c in search_index.expired_calls("acme", cutoff)} == {"c2"}


def test_total_past_the_cap_is_at_least(
    search_index: TranscriptIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recordings.index.sqlite as backend

    monkeypatch.setattr(backend, "COUNT_CAP", 2)
    page = search_index.search("acme", parse_query("resilier OR remboursement"), Filters(),
                               "relevance", 0, 10)
    assert (page.total, page.exact, len(page.items)) == (2, False, 4)
    page = search_index.search("acme", parse_query("resilier"), Filters(), "relevance", 0, 10)
    assert (page.total, page.exact) == (2, True)


def test_index_file_lives_in_the_data_dir(services: Services) -> None:
    from recordings.index import index_of

    index = index_of(services)
    assert index is index_of(services)
    assert isinstance(index, SqliteIndex)
    assert index.path == services.settings.data_dir / "index.sqlite"


def test_a_tenant_whose_name_extends_another_stays_apart(search_index: TranscriptIndex) -> None:
    search_index.upsert_utterances(
        [UtteranceRow("acme-corp", "x1", "u-x1", "agent", 0, 1, "résilier tout de suite")]
    )
    assert ids(hits(search_index, "resilier")) == {"u-c1-1", "u-c2-1"}
    assert ids(hits(search_index, "resilier", tenant="acme-corp")) == {"u-x1"}
    assert ids(hits(search_index, "resilier", tenant="acme-corp", leg="agent")) == {"u-x1"}
