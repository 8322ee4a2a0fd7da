"""Tenants stay apart on every search route: another tenant's call is a 404 exactly like an
unknown one; lists, searches and counts never include it. API keys from the CLI."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.cli import main
from pipeline.auth import KEYS_SCHEMA, KeyStore
from pipeline.config import Settings
from pipeline.database import open_database
from pipeline.ids import call_key
from pipeline.services import Services
from recordings.index.base import TranscriptIndex


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def search_only_client(services: Services) -> TestClient:
    """The full app (the deletion ends a live call through the ingest)."""
    return TestClient(create_app(services))


CALL_ROUTES = [
    ("GET", "/v1/calls/{id}"),
    ("GET", "/v1/calls/{id}/audio"),
    ("POST", "/v1/calls/{id}/hold"),
    ("DELETE", "/v1/calls/{id}/hold"),
    ("DELETE", "/v1/calls/{id}"),
]


def test_other_tenants_call_is_indistinguishable_from_none(
    services: Services, search_index: TranscriptIndex, search_keys: dict[str, str]
) -> None:
    services.store.put(
        call_key("acme", "c1", datetime(2024, 5, 1, 9, tzinfo=UTC), "recording.wav"),
        b"RIFF....",
        "audio/wav",
    )
    client = search_only_client(services)
    for method, template in CALL_ROUTES:
        theirs = client.request(
            method, template.format(id="c1"), headers=auth(search_keys["rival_admin"])
        )
        unknown = client.request(
            method, template.format(id="zz"), headers=auth(search_keys["rival_admin"])
        )
        assert theirs.status_code == 404, (method, template, theirs.text)
        assert (theirs.status_code, theirs.json()) == (unknown.status_code, unknown.json())
    # the acme call is intact: rival's DELETE and hold did nothing
    row = search_index.get_call("acme", "c1")
    assert row is not None and not row.held and row.utterances == 3
    assert services.store.exists(
        call_key("acme", "c1", datetime(2024, 5, 1, 9, tzinfo=UTC), "recording.wav")
    )


def test_lists_searches_and_counts_hold_only_the_callers_tenant(
    search_client: TestClient, search_keys: dict[str, str]
) -> None:
    acme, rival = auth(search_keys["analyst"]), auth(search_keys["rival"])
    assert {
        c["call_id"] for c in search_client.get("/v1/calls", headers=rival).json()["calls"]
    } == {"r1"}
    assert {c["call_id"] for c in search_client.get("/v1/calls", headers=acme).json()["calls"]} == {
        "c1",
        "c2",
        "c3",
    }
    r = search_client.get("/v1/search", params={"q": "resilier"}, headers=rival).json()
    assert [h["call_id"] for h in r["hits"]] == ["r1"] and r["total"] == 1
    r = search_client.get("/v1/search", params={"q": "secret"}, headers=acme).json()
    assert r["total"] == 0 and r["hits"] == []
    # filtering on another tenant's call id finds nothing either
    r = search_client.get(
        "/v1/search", params={"q": "resilier", "call_id": "c1"}, headers=rival
    ).json()
    assert r["total"] == 0
    r = search_client.get("/v1/calls", params={"call_id": "c1"}, headers=rival).json()
    assert r["total"] == 0
    stats = search_client.get("/v1/stats/terms", params={"q": "resilier"}, headers=rival).json()
    assert stats["series"][0]["total"] == 1
    stats = search_client.get("/v1/stats/terms", params={"q": "secret"}, headers=acme).json()
    assert stats["series"][0]["buckets"] == []


def test_sql_injection_shaped_input_finds_nothing_of_another_tenant(
    search_client: TestClient, search_keys: dict[str, str]
) -> None:
    acme = auth(search_keys["analyst"])
    for params in [
        {"q": "secret", "agent": "' OR '1'='1"},
        {"q": "secret", "agent": "b-1' OR tenant='rival"},
        {"q": "x' OR tenant='rival' OR 'a'='a"},
        {"q": "secret OR rival"},
    ]:
        r = search_client.get("/v1/search", params=params, headers=acme)
        assert r.status_code in (200, 400), r.text
        if r.status_code == 200:
            assert all(h["call_id"] != "r1" for h in r.json()["hits"]), params
    r = search_client.get("/v1/calls", params={"agent": "x' OR 1=1 --"}, headers=acme)
    assert r.status_code == 200 and r.json()["total"] == 0


def test_keys_create_prints_the_key_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert (
        main(["keys", "create", "--tenant", "acme", "--role", "analyst", "--data", str(data)]) == 0
    )
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("cp_")
    key = out.strip()
    store = KeyStore(open_database(Settings(data_dir=data), "keys", KEYS_SCHEMA))
    p = store.lookup(key)
    assert p is not None and (p.tenant, p.role) == ("acme", "analyst")
    store.close()
    # stored hashed: the clear key is nowhere in the database
    db = sqlite3.connect(str(data / "keys.sqlite"))
    dump = "\n".join(db.iterdump())
    db.close()
    assert key not in dump
    assert (
        main(
            [
                "keys",
                "create",
                "--tenant",
                "acme",
                "--role",
                "agent",
                "--agent-id",
                "a-1",
                "--data",
                str(data),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith("cp_")


def test_keys_create_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    assert main(["keys", "create", "--tenant", "acme", "--role", "agent", "--data", data]) == 2
    assert "agent key needs --agent-id" in capsys.readouterr().err
    assert main(["keys", "create", "--tenant", "../x", "--role", "admin", "--data", data]) == 2
    assert "tenant" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["keys", "create", "--tenant", "acme", "--role", "root", "--data", data])
    assert exc.value.code == 2
