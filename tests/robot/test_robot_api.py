"""The robot's HTTP routes: guard verdicts, refusals that place nothing, scenarios,
opposition list, policy, audit, calls and campaigns."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from pipeline.auth import keys_of
from pipeline.events import MediaPeer, decode_event
from pipeline.ingest.receiver import ingest_of
from pipeline.services import Services
from robot.calls import sessions_of
from robot.campaigns import DialResult
from sim.phone import SimCaller

ALWAYS = {"weekdays": [0, 1, 2, 3, 4, 5, 6], "windows": ["00:00-24:00"], "public_holidays": False}
OK_CALL = {"callee": "+33611111111", "caller_id": "+33123456789", "sector": "insurance"}


class Api:
    def __init__(self, client: TestClient, pbx: str, admin: str) -> None:
        self.client = client
        self.pbx = {"Authorization": f"Bearer {pbx}"}
        self.admin = {"Authorization": f"Bearer {admin}"}

    def post(self, path: str, body: Any, admin: bool = False) -> Any:
        return self.client.post(path, json=body, headers=self.admin if admin else self.pbx)

    def put_text(self, path: str, text: str, admin: bool = True) -> Any:
        return self.client.put(
            path, content=text.encode(), headers=self.admin if admin else self.pbx
        )


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    pbx = keys_of(services).create("acme", "pbx")
    admin = keys_of(services).create("acme", "admin")
    with TestClient(create_app(services)) as client:
        yield Api(client, pbx, admin)
    sessions_of(services).close()


def test_check_hours_edges_and_tenant(api: Api, services: Services) -> None:
    at = "2026-11-23T19:59:00+01:00"
    r = api.post("/v1/robot/check", {**OK_CALL, "at": at})
    assert r.status_code == 200 and r.json()["allowed"] is True
    r = api.post("/v1/robot/check", {**OK_CALL, "at": "2026-11-23T20:00:00+01:00"})
    body = r.json()
    assert (body["allowed"], body["rule"]) == (False, "calling_hours")
    assert "20:00" in body["reason"]
    # naive times are Paris time
    assert (
        api.post("/v1/robot/check", {**OK_CALL, "at": "2026-11-23T09:59:00"}).json()["rule"]
        == "calling_hours"
    )
    assert api.post("/v1/robot/check", {**OK_CALL, "tenant": "other"}).status_code == 403
    # the refusal went out as an event and was counted
    consumer = services.bus.consumer([services.topics.robot], "t")
    events = [decode_event(m.value) for m in consumer.poll(1.0)]
    assert [e.type for e in events].count("robot.refused") == 2
    assert services.metrics.value("robot_refusals_total", rule="calling_hours") == 2


@pytest.mark.parametrize("bad", ["not a number", "06-12-AB", "123"])
def test_callee_not_a_number_is_422(api: Api, bad: str) -> None:
    r = api.post("/v1/robot/check", {**OK_CALL, "callee": bad})
    assert r.status_code == 422
    assert "number" in r.json()["detail"]


SCENARIO = """
name: quick
variables: [name]
steps:
  - id: q
    ask: "Hello {name}, is now a good time?"
    expect: yes_no
    timeout_s: 1.0
    no_input: {retries: 0}
  - {id: bye, hangup: done}
"""


def test_scenarios_validated_stored_and_listed_errors(api: Api) -> None:
    bad = (
        SCENARIO.replace("next_none", "")
        .replace("{name}", "{name} {ghost}")
        .replace("hangup: done", "hangup: done, next: nowhere")
    )
    r = api.put_text("/v1/robot/scenarios/quick", bad)
    assert r.status_code == 422
    paths = {e["path"] for e in r.json()["detail"]["errors"]}
    assert {"steps[0].ask", "steps[1].next"} <= paths
    assert api.put_text("/v1/robot/scenarios/other", SCENARIO).status_code == 422  # name
    r = api.put_text("/v1/robot/scenarios/quick", SCENARIO, admin=False)
    assert r.status_code == 200 and r.json()["slots"] == ["q"]
    assert (
        "is now a good time"
        in api.client.get("/v1/robot/scenarios/quick", headers=api.pbx).json()["source"]
    )


def test_refused_call_places_nothing(api: Api, services: Services) -> None:
    api.put_text("/v1/robot/scenarios/quick", SCENARIO)
    media = {"host": "127.0.0.1", "port": 40000}
    base = {"scenario": "quick", "variables": {"name": "Ana"}, "media": media}
    for override, rule in [
        ({"caller_id": "+33612345678"}, "caller_id"),
        ({"sector": "Rénovation énergétique"}, "sector"),
    ]:
        r = api.post("/v1/robot/calls", {**base, **OK_CALL, **override})
        assert r.status_code == 403, r.text
        assert r.json()["detail"]["rule"] == rule
    # the listed number, given in national format, after an import of a BLOCTEL-style file
    r = api.put_text("/v1/robot/opposition", "numero;date\n0612345678;2026-01-01\n+33799999999\n")
    assert r.json()["numbers"] == 2
    assert api.put_text("/v1/robot/opposition", "x", admin=False).status_code == 403
    r = api.post("/v1/robot/calls", {**base, **OK_CALL, "callee": "06 12 34 56 78"})
    assert r.status_code == 403 and r.json()["detail"]["rule"] == "opposition"
    assert sessions_of(services).active() == 0
    assert ingest_of(services).active_calls() == []
    audit = api.client.get("/v1/robot/audit", headers=api.admin).json()
    assert [a["rule"] for a in audit] == ["opposition", "sector", "caller_id"]


def test_bad_call_requests(api: Api) -> None:
    api.put_text("/v1/robot/scenarios/quick", SCENARIO)
    media = {"host": "127.0.0.1", "port": 40000}
    r = api.post("/v1/robot/calls", {"scenario": "quick", "media": media})
    assert r.status_code == 422 and "name" in r.json()["detail"]
    r = api.post("/v1/robot/calls", {"scenario": "nope", "media": media})
    assert r.status_code == 404
    r = api.post("/v1/robot/calls", {"scenario": "name: x\nsteps: []\n", "media": media})
    assert r.status_code == 422 and r.json()["detail"]["errors"][0]["path"] == "steps"
    r = api.post("/v1/robot/calls", {"scenario": "quick", "media": {**media, "codec": "opus"}})
    assert r.status_code == 422
    r = api.post(
        "/v1/robot/calls",
        {"scenario": "quick", "variables": {"name": "A"}, "media": media, "callee": "+33611111111"},
    )
    assert r.status_code == 422 and "caller_id and sector" in r.json()["detail"]


def test_allowed_call_runs_a_session(api: Api, piper_voice: Any) -> None:
    assert api.client.put("/v1/robot/policy", json=ALWAYS, headers=api.admin).status_code == 200
    peer = SimCaller(piper_voice)
    try:
        r = api.post(
            "/v1/robot/calls",
            {
                "scenario": SCENARIO,
                "variables": {"name": "Ana"},
                "media": {"host": peer.host, "port": peer.port},
                **OK_CALL,
            },
        )
        assert r.status_code == 201, r.text
        state = r.json()
        assert state["media"]["port"] > 0 and state["status"] == "running"
        call_id = state["call_id"]
        deadline = time.time() + 30
        while time.time() < deadline:  # nobody answers: no-input ends the call
            state = api.client.get(f"/v1/robot/calls/{call_id}", headers=api.pbx).json()
            if state["status"] == "ended":
                break
            time.sleep(0.2)
        assert state["outcome"]["result"] == "no_input"
        assert peer.heard, "the prompt was sent as RTP"
        assert {s["action"] for s in state["steps"]} >= {"enter", "say", "no_input", "hangup"}
    finally:
        peer.close()
    assert api.client.get("/v1/robot/calls/unknown", headers=api.pbx).status_code == 404


class FakeDialer:
    """The PBX's originate hook, scripted per callee (a fake: the dialer is not ours)."""

    def __init__(self, script: dict[str, list[str]], peer: MediaPeer) -> None:
        self.script = script
        self.peer = peer
        self.calls: list[str] = []

    def dial(self, tenant: str, call_id: str, callee: str, caller_id: str) -> DialResult:
        self.calls.append(callee)
        status = self.script[callee].pop(0)
        return DialResult(status, self.peer if status == "answered" else None)


def test_campaign_retries_refuses_and_reports(
    api: Api, services: Services, piper_voice: Any
) -> None:
    services.settings.robot = services.settings.robot.model_copy(
        update={"campaign_retry_s": 0.2, "campaign_attempts": 3, "campaign_concurrency": 2}
    )
    api.client.put("/v1/robot/policy", json=ALWAYS, headers=api.admin)
    api.put_text("/v1/robot/scenarios/quick", SCENARIO)
    api.put_text("/v1/robot/opposition", "+33633333333\n")
    peer = SimCaller(piper_voice)
    dialer = FakeDialer(
        {
            "+33611111111": ["busy", "no_answer", "answered"],
            "+33622222222": ["busy", "busy", "busy"],
        },
        MediaPeer(host=peer.host, port=peer.port),
    )
    services.component("robot.dialer", lambda: dialer)
    body = {
        "scenario": "quick",
        "caller_id": "01 23 45 67 89",
        "sector": "insurance",
        "callees": [
            {"number": "06 11 11 11 11", "variables": {"name": "A"}},
            {"number": "+33622222222", "variables": {"name": "B"}},
            {"number": "+33633333333", "variables": {"name": "C"}},
        ],
    }
    bad = {**body, "callees": [*body["callees"], {"number": "call me", "variables": {}}]}
    r = api.post("/v1/robot/campaigns", bad)
    assert r.status_code == 422
    assert r.json()["detail"]["errors"][0]["path"] == "callees[3].number"
    r = api.post("/v1/robot/campaigns", body)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    try:
        deadline = time.time() + 40
        while time.time() < deadline:
            prog = api.client.get(f"/v1/robot/campaigns/{cid}", headers=api.pbx).json()
            if prog["status"] == "finished":
                break
            time.sleep(0.3)
    finally:
        peer.close()
    assert prog["status"] == "finished", prog
    by = {c["number"]: c for c in prog["callees"]}
    assert by["+33611111111"]["attempts"] == 3 and by["+33611111111"]["result"] == "no_input"
    assert by["+33622222222"]["attempts"] == 3 and by["+33622222222"]["result"] == "busy"
    assert by["+33633333333"]["status"] == "refused"
    assert by["+33633333333"]["rule"] == "opposition"
    assert "+33633333333" not in dialer.calls
    assert prog["by_result"] == {"no_input": 1, "busy": 1}
