"""GET /v1/search, /v1/calls, /v1/calls/{id}, /v1/calls/{id}/audio and /v1/stats/terms on
the full embedded app: results, snippets, paging, Range requests, and 400s with reasons."""

from __future__ import annotations

import csv
import io
import wave
from datetime import UTC, datetime

import numpy as np
from fastapi.testclient import TestClient

from pipeline.auth import keys_of
from pipeline.ids import call_key
from pipeline.services import Services
from recordings.index.base import TranscriptIndex, UtteranceRow


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wav_bytes(seconds: float = 2.0, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def test_search_hits_snippets_and_audio_links(
    search_client: TestClient, search_keys: dict[str, str]
) -> None:
    r = search_client.get(
        "/v1/search", params={"q": "electricite"}, headers=auth(search_keys["analyst"])
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 1 and body["page"] == 1 and body["sort"] == "relevance"
    (hit,) = body["hits"]
    assert (hit["call_id"], hit["leg"], hit["start"], hit["end"]) == ("c1", "customer", 3.5, 6.0)
    assert "<mark>électricité</mark>" in hit["snippet"]
    assert hit["audio"]["url"] == "/v1/calls/c1/audio" and hit["audio"]["start"] == 3.5
    assert hit["audio"]["presigned_url"] is None  # a local store has none
    assert hit["call_started_at"] == "2024-05-01T09:00:00Z" and hit["agent_id"] == "a-1"


def test_snippet_is_html_escaped(
    search_client: TestClient, search_keys: dict[str, str], search_index: TranscriptIndex
) -> None:
    search_index.upsert_utterances(
        [
            UtteranceRow(
                "acme", "c3", "u-x", "agent", 9, 10, "<script>alert(1)</script> facture & co"
            )
        ]
    )
    r = search_client.get("/v1/search", params={"q": "facture"}, headers=auth(search_keys["admin"]))
    snippet = r.json()["hits"][0]["snippet"]
    assert "<script>" not in snippet
    assert "&lt;script&gt;" in snippet and "<mark>facture</mark> &amp; co" in snippet


def test_paging_sort_and_filters(search_client: TestClient, search_keys: dict[str, str]) -> None:
    h = auth(search_keys["analyst"])
    q = "resilier OR remboursement OR contrat"
    pages = [
        search_client.get(
            "/v1/search", params={"q": q, "sort": "time", "page_size": 2, "page": p}, headers=h
        ).json()
        for p in (1, 2, 3)
    ]
    assert [p["total"] for p in pages] == [5, 5, 5]
    order = [hit["utterance_id"] for p in pages for hit in p["hits"]]
    assert order == ["u-c3-0", "u-c3-1", "u-c2-0", "u-c2-1", "u-c1-1"]
    r = search_client.get(
        "/v1/search",
        headers=h,
        params={
            "q": q,
            "from": "2024-05-02",
            "to": "2024-05-02",
            "leg": "customer",
            "direction": "outbound",
            "agent": "a-2",
        },
    )
    assert [hit["utterance_id"] for hit in r.json()["hits"]] == ["u-c2-1"]
    r = search_client.get("/v1/search", headers=h, params={"q": q, "call_id": "c3"})
    assert {hit["call_id"] for hit in r.json()["hits"]} == {"c3"}
    r = search_client.get("/v1/search", headers=h, params={"q": q, "from": "2024-05-01T12:00:00Z"})
    assert {hit["call_id"] for hit in r.json()["hits"]} == {"c2", "c3"}


BAD_SEARCHES = [
    ({"q": '"mon contrat'}, "unbalanced quote"),
    ({"q": "AND"}, "AND needs a word"),
    ({"q": "contrat OR"}, "ends where a word"),
    ({"q": "NOT contrat"}, "NOT needs a word"),
    ({"q": "x" * 10_240}, "longer than"),
    ({"q": ""}, "'q' is required"),
    ({}, "'q' is required"),
    ({"q": "a", "customer": "x"}, "unknown parameter(s): customer"),
    ({"q": "a", "from": "2024-13-01"}, "'from' must be an ISO date"),
    ({"q": "a", "to": "yesterday"}, "'to' must be an ISO date"),
    ({"q": "a", "from": "2024-05-03", "to": "2024-05-01"}, "'from' must be before 'to'"),
    ({"q": "a", "page_size": "0"}, "'page_size' must be from 1 to 100"),
    ({"q": "a", "page_size": "101"}, "'page_size' must be from 1 to 100"),
    ({"q": "a", "page_size": "-5"}, "'page_size' must be a whole number"),
    ({"q": "a", "page": "0"}, "'page' must be from 1"),
    ({"q": "a", "page": "1e9"}, "'page' must be a whole number"),
    ({"q": "a", "sort": "random"}, "'sort' must be one of relevance, time"),
    ({"q": "a", "leg": "robot"}, "'leg' must be one of"),
    ({"q": "a", "direction": "sideways"}, "'direction' must be one of"),
    ({"q": "a", "call_id": "../x"}, "call_id"),
    ({"q": "a", "agent": "x" * 200}, "'agent' must be 1 to 128"),
]


def test_bad_search_requests_are_400_with_the_reason(
    search_client: TestClient, search_keys: dict[str, str]
) -> None:
    wrong = []
    for params, reason in BAD_SEARCHES:
        r = search_client.get("/v1/search", params=params, headers=auth(search_keys["analyst"]))
        if r.status_code != 400 or reason not in r.json()["detail"]:
            wrong.append((params, r.status_code, r.text[:200]))
    assert wrong == []


def test_repeated_parameter_is_400(search_client: TestClient, search_keys: dict[str, str]) -> None:
    r = search_client.get("/v1/search?q=a&q=b", headers=auth(search_keys["analyst"]))
    assert r.status_code == 400 and "more than once" in r.json()["detail"]


def test_rejections_are_counted(
    search_client: TestClient, search_keys: dict[str, str], services: Services
) -> None:
    search_client.get("/v1/search", params={"q": "("}, headers=auth(search_keys["analyst"]))
    assert services.metrics.value("api_rejections_total", route="search", cause="bad_request") == 1


READ_PATHS = [
    "/v1/search?q=contrat",
    "/v1/calls",
    "/v1/calls/c1",
    "/v1/calls/c1/audio",
    "/v1/stats/terms?q=contrat",
]


def test_keys_and_roles(search_client: TestClient, search_keys: dict[str, str]) -> None:
    for path in READ_PATHS:
        assert search_client.get(path).status_code == 401, path
        assert search_client.get(path, headers=auth("cp_wrong")).status_code == 401, path
        assert search_client.get(path, headers={"Authorization": "Basic x"}).status_code == 401
        assert search_client.get(path, headers=auth(search_keys["agent"])).status_code == 403
        assert search_client.get(path, headers=auth(search_keys["pbx"])).status_code == 403
    for method, path in [("POST", "/v1/calls/c1/hold"), ("DELETE", "/v1/calls/c1/hold")]:
        assert search_client.request(method, path).status_code == 401
        r = search_client.request(method, path, headers=auth(search_keys["analyst"]))
        assert r.status_code == 403 and "needs admin" in r.json()["detail"]


def test_call_list_and_call_view(search_client: TestClient, search_keys: dict[str, str]) -> None:
    h = auth(search_keys["analyst"])
    body = search_client.get("/v1/calls", headers=h).json()
    assert body["total"] == 3
    assert [c["call_id"] for c in body["calls"]] == ["c3", "c2", "c1"]
    assert body["calls"][2]["utterances"] == 3
    body = search_client.get(
        "/v1/calls", params={"agent": "a-1", "page_size": 1, "page": 2}, headers=h
    ).json()
    assert body["total"] == 2 and [c["call_id"] for c in body["calls"]] == ["c1"]
    body = search_client.get("/v1/calls", params={"direction": "outbound"}, headers=h).json()
    assert [c["call_id"] for c in body["calls"]] == ["c2"]
    r = search_client.get("/v1/calls", params={"leg": "agent"}, headers=h)
    assert r.status_code == 400 and "unknown parameter(s): leg" in r.json()["detail"]
    call = search_client.get("/v1/calls/c1", headers=h).json()
    assert call["agent_id"] == "a-1" and call["direction"] == "inbound"
    assert [(u["leg"], u["start"]) for u in call["transcript"]] == [
        ("agent", 1.0),
        ("customer", 3.5),
        ("agent", 6.5),
    ]


def test_audio_streams_with_ranges(
    search_client: TestClient, search_keys: dict[str, str], services: Services
) -> None:
    data = wav_bytes()
    services.store.put(
        call_key("acme", "c1", datetime(2024, 5, 1, 9, tzinfo=UTC), "recording.wav"),
        data,
        "audio/wav",
    )
    h = auth(search_keys["analyst"])
    r = search_client.get("/v1/calls/c1/audio", headers=h)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "audio/wav" and r.headers["accept-ranges"] == "bytes"
    r = search_client.get("/v1/calls/c1/audio", headers={**h, "Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(data)}"
    r = search_client.get("/v1/calls/c1/audio", headers={**h, "Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == data[-10:]
    r = search_client.get("/v1/calls/c1/audio", headers={**h, "Range": "bytes=30000-"})
    assert r.status_code == 206 and r.content == data[30000:]
    r = search_client.get("/v1/calls/c1/audio", headers={**h, "Range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"
    r = search_client.get("/v1/calls/c1/audio", headers={**h, "Range": "bytes=0-1,5-9"})
    assert r.status_code == 200 and r.content == data
    r = search_client.get("/v1/calls/c2/audio", headers=h)
    assert r.status_code == 404 and r.json()["detail"] == "this call has no recording"


def test_term_stats(search_client: TestClient, search_keys: dict[str, str]) -> None:
    h = auth(search_keys["analyst"])
    r = search_client.get("/v1/stats/terms?q=resilier&q=rembours*&interval=day", headers=h)
    assert r.status_code == 200, r.text
    series = {s["q"]: s for s in r.json()["series"]}
    assert series["resilier"]["buckets"] == [
        {"period": "2024-05-01", "utterances": 1, "calls": 1},
        {"period": "2024-05-02", "utterances": 1, "calls": 1},
    ]
    assert series["rembours*"]["total"] == 2
    r = search_client.get("/v1/stats/terms?q=resilier&interval=month", headers=h)
    assert r.json()["series"][0]["buckets"] == [{"period": "2024-05", "utterances": 2, "calls": 2}]
    for bad, reason in [
        ("q=resilier&interval=year", "'interval' must be one of"),
        ("interval=day", "'q' is required"),
        ("q=(", "bad query"),
    ]:
        r = search_client.get(f"/v1/stats/terms?{bad}", headers=h)
        assert r.status_code == 400 and reason in r.json()["detail"]


def test_analyst_page_is_served(search_client: TestClient) -> None:
    r = search_client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert '<script src="/web/app.js">' in r.text
    assert search_client.get("/web/app.js").status_code == 200
    assert search_client.get("/web/app.css").headers["content-type"].startswith("text/css")
    assert search_client.get("/web/..%2Fsearch_api.py").status_code == 404


def test_call_links_play_and_download_without_the_key(
    search_client: TestClient, search_keys: dict[str, str], services: Services
) -> None:
    """The links of a call view stand for the key on their own path only, and die with
    the key."""
    data = wav_bytes()
    started = datetime(2024, 5, 1, 9, tzinfo=UTC)
    services.store.put(call_key("acme", "c1", started, "recording.wav"), data, "audio/wav")
    call = search_client.get("/v1/calls/c1", headers=auth(search_keys["analyst"])).json()
    audio = call["links"]["audio"]
    assert audio.startswith("/v1/calls/c1/audio?link=")
    r = search_client.get(audio, headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.content == data[:100]
    token = audio.split("link=")[1]
    altered = token[:-1] + ("1" if token.endswith("0") else "0")  # one hex digit changed
    # another call's path, a forged or altered token: refused
    for bad in (
        f"/v1/calls/c2/audio?link={token}",
        f"/v1/calls/c1/audio?link={altered}",
        "/v1/calls/c1/audio?link=garbage",
        f"/v1/calls/c1/transcript?link={token}",
    ):
        r = search_client.get(bad)
        assert r.status_code == 401 and "link" in r.json()["detail"], bad
    # an expired one
    keys = keys_of(services)
    principal = keys.lookup(search_keys["analyst"])
    assert principal is not None
    old = keys.sign_link(principal, "/v1/calls/c1/audio", -1)
    assert search_client.get(f"/v1/calls/c1/audio?link={old}").status_code == 401
    # a link only carries its key's role: an agent key's link to a reader route is a 403
    agent = keys.lookup(search_keys["agent"])
    assert agent is not None
    agents = keys.sign_link(agent, "/v1/calls/c1/audio", 60)
    assert search_client.get(f"/v1/calls/c1/audio?link={agents}").status_code == 403
    # the key revoked, its links die with it
    assert principal.key_id is not None and keys.revoke(principal.key_id)
    assert search_client.get(audio).status_code == 401


def test_search_exports_every_match_as_csv(
    search_client: TestClient, search_keys: dict[str, str], search_index: TranscriptIndex
) -> None:
    search_index.upsert_utterances(
        [
            UtteranceRow("acme", "c3", "u-f", "customer", 9, 10, '=HYPERLINK("x") facture'),
            UtteranceRow("acme", "c3", "u-g", "agent", 11, 12, "votre facture, madame"),
        ]
    )
    h = auth(search_keys["analyst"])
    r = search_client.get("/v1/search", params={"q": "facture", "format": "csv"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == 'attachment; filename="search.csv"'
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == [
        "call_started_at",
        "call_id",
        "agent_id",
        "direction",
        "leg",
        "start",
        "end",
        "text",
    ]
    paged = search_client.get("/v1/search", params={"q": "facture"}, headers=h).json()
    assert len(rows) - 1 == paged["total"] >= 2
    texts = {row[7] for row in rows[1:]}
    assert '\'=HYPERLINK("x") facture' in texts  # never a formula in a spreadsheet
    r = search_client.get("/v1/search", params={"q": "facture", "format": "xml"}, headers=h)
    assert r.status_code == 400 and "'format' must be one of json, csv" in r.json()["detail"]
    # another tenant's export holds none of acme's
    r = search_client.get(
        "/v1/search",
        params={"q": "facture", "format": "csv"},
        headers=auth(search_keys["rival"]),
    )
    assert all(",c1," not in line and ",c3," not in line for line in r.text.splitlines())


def test_me_names_the_key(search_client: TestClient, search_keys: dict[str, str]) -> None:
    body = search_client.get("/v1/me", headers=auth(search_keys["agent"])).json()
    assert (body["tenant"], body["role"], body["agent_id"]) == ("acme", "agent", "a-1")
    assert "hints" in body["may"]
    assert search_client.get("/v1/me").status_code == 401
