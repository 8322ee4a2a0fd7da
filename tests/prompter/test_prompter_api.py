"""Playbook and KB routes, feedback and stats, the agent page: roles and tenants apart."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.roles import start_role
from pipeline.auth import keys_of
from pipeline.services import Services
from prompter.store import prompter_store


@pytest.fixture
def keys(services: Services) -> dict[str, str]:
    k = keys_of(services)
    return {
        "admin": k.create("acme", "admin"),
        "agent": k.create("acme", "agent", agent_id="a-7"),
        "other_agent": k.create("acme", "agent", agent_id="a-9"),
        "analyst": k.create("acme", "analyst"),
        "rival_admin": k.create("rival", "admin"),
    }


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services)) as c:
        yield c


def _h(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def test_playbook_crud_and_tenants(
    client: TestClient, keys: dict[str, str], playbook_yaml: str
) -> None:
    r = client.put("/v1/playbooks/frontline", content=playbook_yaml, headers=_h(keys["admin"]))
    assert r.status_code == 200, r.text
    assert r.json()["rules"] == 3 and r.json()["created"] is True
    v1 = r.json()["version"]
    r = client.put("/v1/playbooks/frontline", content=playbook_yaml, headers=_h(keys["admin"]))
    assert r.json()["created"] is False and r.json()["version"] == v1 + 1
    listed = client.get("/v1/playbooks", headers=_h(keys["admin"])).json()["playbooks"]
    assert [(p["name"], p["rules"]) for p in listed] == [("frontline", 3)]
    one = client.get("/v1/playbooks/frontline", headers=_h(keys["admin"])).json()
    assert one["playbook"]["rules"][0]["id"] == "retention" and one["source"] == playbook_yaml
    # Another tenant sees nothing of it, not even that it exists.
    assert client.get("/v1/playbooks", headers=_h(keys["rival_admin"])).json() == {"playbooks": []}
    assert client.get("/v1/playbooks/frontline", headers=_h(keys["rival_admin"])).status_code == 404
    assert (
        client.delete("/v1/playbooks/frontline", headers=_h(keys["rival_admin"])).status_code == 404
    )
    # Only admins manage playbooks.
    assert client.get("/v1/playbooks", headers=_h(keys["agent"])).status_code == 403
    assert (
        client.put(
            "/v1/playbooks/x", content=playbook_yaml, headers=_h(keys["analyst"])
        ).status_code
        == 403
    )
    assert client.get("/v1/playbooks").status_code == 401
    assert client.delete("/v1/playbooks/frontline", headers=_h(keys["admin"])).status_code == 204
    assert client.delete("/v1/playbooks/frontline", headers=_h(keys["admin"])).status_code == 404


def test_invalid_playbooks_are_rejected_with_every_error(
    client: TestClient, keys: dict[str, str], services: Services
) -> None:
    bad = """
rules:
  - id: a
    when: {regex: ["(x+)+y"], leg: nobody}
    hint: {kind: script, title: A}
  - id: b
    when: {phrases: [hello], after: zzz}
    hint: {kind: script, title: B, text: "{nope}"}
"""
    r = client.put("/v1/playbooks/bad", content=bad, headers=_h(keys["admin"]))
    assert r.status_code == 422
    detail = r.json()["detail"]
    paths = sorted(e["path"] for e in detail["errors"])
    assert paths == [
        "rules[0].hint.text",
        "rules[0].when.leg",
        "rules[0].when.regex[0]",
        "rules[1].hint.text",
        "rules[1].when.after",
    ]
    assert detail["message"] == "invalid playbook: 5 error(s)"
    r = client.put(
        "/v1/playbooks/bad",
        content=b'{"rules": [}',
        headers=_h(keys["admin"], **{"Content-Type": "application/json"}),
    )
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]["errors"][0]["message"]
    r = client.put("/v1/playbooks/..%2Fescape", content="rules: []", headers=_h(keys["admin"]))
    assert r.status_code in (404, 422)
    big = "rules:\n" + "#" * (1024 * 1024 + 10)
    assert (
        client.put("/v1/playbooks/big", content=big, headers=_h(keys["admin"])).status_code == 413
    )
    assert client.get("/v1/playbooks", headers=_h(keys["admin"])).json() == {"playbooks": []}
    assert (
        services.metrics.value("api_rejections_total", route="prompter", cause="invalid_playbook")
        == 2
    )


def test_kb_articles_crud(client: TestClient, keys: dict[str, str]) -> None:
    article = {
        "title": "Calling from abroad",
        "questions": ["How much to call from abroad?"],
        "answer": "Free in the EU.",
    }
    r = client.put("/v1/kb/articles/roaming", json=article, headers=_h(keys["admin"]))
    assert r.status_code == 200 and r.json()["created"] is True
    got = client.get("/v1/kb/articles/roaming", headers=_h(keys["admin"])).json()
    assert got["id"] == "roaming" and got["answer"] == "Free in the EU."
    assert [
        a["id"] for a in client.get("/v1/kb/articles", headers=_h(keys["admin"])).json()["articles"]
    ] == ["roaming"]
    r = client.put(
        "/v1/kb/articles/bad",
        json={"title": "", "answer": 3, "extra": 1},
        headers=_h(keys["admin"]),
    )
    assert r.status_code == 422
    assert sorted(e["path"] for e in r.json()["detail"]["errors"]) == ["answer", "extra", "title"]
    r = client.put("/v1/kb/articles/x", json={**article, "id": "y"}, headers=_h(keys["admin"]))
    assert r.status_code == 422
    assert client.get("/v1/kb/articles/roaming", headers=_h(keys["rival_admin"])).status_code == 404
    assert (
        client.put("/v1/kb/articles/z", json=article, headers=_h(keys["agent"])).status_code == 403
    )
    assert client.delete("/v1/kb/articles/roaming", headers=_h(keys["admin"])).status_code == 204
    assert client.get("/v1/kb/articles/roaming", headers=_h(keys["admin"])).status_code == 404


def test_feedback_and_stats_through_the_worker(
    client: TestClient,
    services: Services,
    keys: dict[str, str],
    playbook_yaml: str,
    make_call: Any,
    make_utt: Any,
) -> None:
    client.put("/v1/playbooks/frontline", content=playbook_yaml, headers=_h(keys["admin"]))
    stop = threading.Event()
    threads = start_role(services, "prompter", stop)
    try:
        p = services.bus.producer()
        call = make_call("c-1", started_at=datetime.now(UTC) - timedelta(seconds=2))
        p.send(services.topics.calls, call.key, call.encode())
        for u in (make_utt("cancel my contract", final=False), make_utt("cancel my contract")):
            p.send(services.topics.transcripts, u.key, u.encode())
        store = prompter_store(services)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not store.stats("acme"):
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    stats = client.get("/v1/prompter/stats", headers=_h(keys["admin"])).json()
    assert stats == {
        "rules": [{"rule": "frontline/retention", "fired": 1, "useful": 0, "not_useful": 0}]
    }
    (hint_id,) = [row[0] for row in store._db.fetchall("SELECT hint_id FROM hints")]
    assert (
        client.post(
            f"/v1/hints/{hint_id}/feedback", json={"useful": True}, headers=_h(keys["other_agent"])
        ).status_code
        == 404
    )
    assert (
        client.post(
            f"/v1/hints/{hint_id}/feedback", json={"useful": True}, headers=_h(keys["admin"])
        ).status_code
        == 403
    )
    assert (
        client.post(
            f"/v1/hints/{hint_id}/feedback", json={"useful": "maybe"}, headers=_h(keys["agent"])
        ).status_code
        == 422
    )
    assert (
        client.post(
            "/v1/hints/h-nope/feedback", json={"useful": True}, headers=_h(keys["agent"])
        ).status_code
        == 404
    )
    r = client.post(
        f"/v1/hints/{hint_id}/feedback", json={"useful": False}, headers=_h(keys["agent"])
    )
    assert r.status_code == 200 and r.json()["rule"] == "frontline/retention"
    stats = client.get("/v1/prompter/stats", headers=_h(keys["admin"])).json()
    assert stats["rules"][0] == {
        "rule": "frontline/retention",
        "fired": 1,
        "useful": 0,
        "not_useful": 1,
    }
    assert client.get("/v1/prompter/stats", headers=_h(keys["rival_admin"])).json() == {"rules": []}


def test_agent_page_is_served(client: TestClient) -> None:
    page = client.get("/agent")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/agent.js">' in page.text
    script = client.get("/agent.js")
    assert script.status_code == 200 and "/v1/agents/" in script.text
    assert "/v1/calls/" in script.text and "last_hint_id" in script.text
