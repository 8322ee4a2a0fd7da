"""Call statistics and categories in the index (SQLite and PostgreSQL): stored per call,
replaced, search and call-list filters, the dashboard's figures, deleted with the call;
and GET /v1/analytics over them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from recordings.index.base import FactFilter, Filters, TranscriptIndex
from recordings.index.query import parse_query

# c1 and c3 are agent a-1's (1 and 9 May), c2 agent a-2's (2 May); r1 another tenant's.
ANALYSIS = {
    ("acme", "c1"): ({"duration_s": 60.0, "longest_silence_s": 35.0, "agent.talk_ratio": 0.8,
                      "agent.interruptions": 2.0}, ["churn-risk"]),
    ("acme", "c2"): ({"duration_s": 30.0, "longest_silence_s": 5.0, "agent.talk_ratio": 0.4,
                      "agent.interruptions": 0.0}, ["churn-risk", "no-notice"]),
    ("acme", "c3"): ({"duration_s": 90.0, "longest_silence_s": 12.0, "agent.talk_ratio": 0.6,
                      "agent.interruptions": 1.0}, []),
    ("rival", "r1"): ({"duration_s": 10.0, "longest_silence_s": 50.0, "agent.talk_ratio": 0.9,
                       "agent.interruptions": 7.0}, ["churn-risk"]),
}  # fmt: skip


@pytest.fixture
def analysed(corpus_index: TranscriptIndex) -> TranscriptIndex:
    for (tenant, call_id), (facts, tags) in ANALYSIS.items():
        corpus_index.set_analysis(tenant, call_id, {"duration_s": 1.0}, ["stale"])
        corpus_index.set_analysis(tenant, call_id, facts, tags)  # a transcript made again
    return corpus_index


def _calls(index: TranscriptIndex, f: Filters) -> list[str]:
    return sorted(c.call_id for c in index.list_calls("acme", f, 0, 50).items)  # type: ignore[union-attr]


def test_calls_filter_on_statistics_and_categories(analysed: TranscriptIndex) -> None:
    silent = FactFilter("longest_silence_s", ">", 30.0)
    talky = FactFilter("agent.talk_ratio", ">=", 0.6)
    assert _calls(analysed, Filters(facts=(silent,))) == ["c1"]  # r1 is another tenant's
    assert _calls(analysed, Filters(facts=(talky,))) == ["c1", "c3"]
    assert _calls(analysed, Filters(tags=("churn-risk",))) == ["c1", "c2"]
    assert _calls(analysed, Filters(tags=("churn-risk", "no-notice"))) == ["c2"]
    assert _calls(analysed, Filters(tags=("stale",))) == []
    assert _calls(analysed, Filters(facts=(talky,), tags=("churn-risk",))) == ["c1"]
    hits = analysed.search("acme", parse_query("contrat"), Filters(facts=(talky,)), "time", 0, 10)
    assert sorted(h.call_id for h in hits.items) == ["c1", "c3"]  # type: ignore[union-attr]
    assert analysed.call_tags("acme", ["c1", "c2", "c3", "r1"]) == {
        "c1": ["churn-risk"],
        "c2": ["churn-risk", "no-notice"],
    }


def test_the_dashboard_figures_per_period_and_agent(analysed: TranscriptIndex) -> None:
    rows = analysed.fact_summary("acme", Filters(), "month", ["agent.talk_ratio", "duration_s"])
    got = {(r.period, r.agent_id, r.name): (r.calls, round(r.mean, 3), r.total) for r in rows}
    assert got == {
        ("2024-05", "a-1", "agent.talk_ratio"): (2, 0.7, 1.4),
        ("2024-05", "a-1", "duration_s"): (2, 75.0, 150.0),
        ("2024-05", "a-2", "agent.talk_ratio"): (1, 0.4, 0.4),
        ("2024-05", "a-2", "duration_s"): (1, 30.0, 30.0),
    }
    tags = analysed.tag_counts("acme", Filters(), "day")
    assert [(t.period, t.tag, t.calls) for t in tags] == [
        ("2024-05-01", "churn-risk", 1),
        ("2024-05-02", "churn-risk", 1),
        ("2024-05-02", "no-notice", 1),
    ]


def test_deleting_a_call_deletes_its_statistics_and_tags(analysed: TranscriptIndex) -> None:
    analysed.delete_call("acme", "c2")
    assert analysed.call_tags("acme", ["c2"]) == {}
    rows = analysed.fact_summary("acme", Filters(), "month", ["duration_s"])
    assert [r.agent_id for r in rows] == ["a-1"]


def test_the_analytics_route(
    search_client: TestClient,
    search_index: TranscriptIndex,
    search_keys: dict[str, str],
) -> None:
    for (tenant, call_id), (facts, tags) in ANALYSIS.items():
        search_index.set_analysis(tenant, call_id, facts, tags)
    analyst = {"Authorization": f"Bearer {search_keys['analyst']}"}
    r = search_client.get("/v1/analytics", params={"interval": "week"}, headers=analyst)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(p["period"], p["calls"], p["tags"]) for p in body["periods"]] == [
        ("2024-04-29", 2, {"churn-risk": 2, "no-notice": 1}),
        ("2024-05-06", 1, {}),
    ]
    first = body["periods"][0]
    assert first["agent_talk_ratio"] == 0.6 and first["agent_interruptions"] == 2.0
    agents = {a["agent_id"]: a for a in body["agents"]}
    assert agents["a-1"]["calls"] == 2 and agents["a-1"]["longest_silence_s"] == 23.5
    assert agents["a-1"]["agent_interruptions"] == 3.0  # a total, not a mean
    assert body["tags"] == [{"tag": "churn-risk", "calls": 2}, {"tag": "no-notice", "calls": 1}]
    only = search_client.get(
        "/v1/analytics", params={"agent": "a-2", "tag": "no-notice"}, headers=analyst
    ).json()
    assert [a["agent_id"] for a in only["agents"]] == ["a-2"]
    rival = {"Authorization": f"Bearer {search_keys['rival']}"}
    theirs = search_client.get("/v1/analytics", headers=rival).json()
    assert [a["agent_id"] for a in theirs["agents"]] == ["b-1"]
    bad = search_client.get("/v1/analytics", params={"interval": "year"}, headers=analyst)
    assert bad.status_code == 400
    agent = {"Authorization": f"Bearer {search_keys['agent']}"}
    assert search_client.get("/v1/analytics", headers=agent).status_code == 403
