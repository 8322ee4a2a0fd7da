"""The live view on the embedded app: WebSocket partials and finals while the live worker
runs, GET transcript during the call, and who may watch which call."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.api import create_app
from app.roles import start_role
from pipeline.auth import keys_of
from pipeline.catalog import new_manifest, save_manifest
from pipeline.events import CallEnded, CallStarted, LegInfo, MediaChunk, Utterance
from pipeline.media.resample import float_to_int16
from pipeline.services import Services
from stt.live_state import live_hub
from stt.normalise import wer

STARTED = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)
CHUNK = 1280


def _publish_call(
    services: Services,
    call_id: str,
    legs: dict[str, np.ndarray],
    speed: float,
    gate: threading.Event,
) -> None:
    """call.started, media paced at `speed` x real time once `gate` opens, call.ended."""
    p = services.bus.producer()
    start = CallStarted(
        tenant="acme",
        call_id=call_id,
        agent_id="a-7",
        started_at=STARTED,
        legs=(LegInfo(leg="agent"), LegInfo(leg="customer")),
    )
    p.send(services.topics.calls, start.key, start.encode())
    gate.wait(30)
    n = max(len(a) for a in legs.values())
    for i, s in enumerate(range(0, n, CHUNK)):
        for leg, audio in legs.items():
            pcm = float_to_int16(audio[s : s + CHUNK])
            c = MediaChunk(
                tenant="acme",
                call_id=call_id,
                leg=leg,
                codec="PCMU",  # type: ignore[arg-type]
                sample_rate=8000,
                start_sample=s,
                seq_first=i,
                seq_last=i,
                ts_first=s,
                ts_last=s + CHUNK,
                arrival=time.time(),
                pcm=pcm.tobytes(),
            )
            p.send(services.topics.media, c.key, c.encode())
        time.sleep(CHUNK / 8000 / speed)
    end = CallEnded(tenant="acme", call_id=call_id)
    p.send(services.topics.calls, end.key, end.encode())


@pytest.fixture
def keys(services: Services) -> dict[str, str]:
    k = keys_of(services)
    return {
        "agent": k.create("acme", "agent", agent_id="a-7"),
        "other_agent": k.create("acme", "agent", agent_id="a-9"),
        "analyst": k.create("acme", "analyst"),
        "pbx": k.create("acme", "pbx"),
        "rival": k.create("rival", "analyst"),
    }


def test_websocket_streams_partials_and_finals_and_get_serves_finals_so_far(
    services: Services, keys: dict[str, str], two_party: dict[str, Any]
) -> None:
    client = TestClient(create_app(services))
    assert live_hub(services).wait_ready(10)
    stop = threading.Event()
    threads = start_role(services, "live", stop)
    gate = threading.Event()
    agent, customer = two_party["channels"]
    pub = threading.Thread(
        target=_publish_call,
        args=(services, "w-1", {"agent": agent, "customer": customer}, 3.0, gate),
    )
    pub.start()
    try:
        deadline = time.monotonic() + 20
        while not services.store.exists("acme/calls/w-1.json") and time.monotonic() < deadline:
            time.sleep(0.05)
        got: list[dict[str, Any]] = []
        mid_call: list[dict[str, Any]] | None = None
        with client.websocket_connect("/v1/calls/w-1/live?key=" + keys["agent"]) as ws:
            gate.set()
            while True:
                msg = json.loads(ws.receive_text())
                got.append(msg)
                if msg["type"] == "transcript.ready":
                    break
                if msg["type"] == "utterance" and msg["final"] and mid_call is None:
                    r = client.get(
                        "/v1/calls/w-1/transcript",
                        headers={"Authorization": f"Bearer {keys['analyst']}"},
                    )
                    assert r.status_code == 200, r.text
                    mid_call = r.json()["utterances"]
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 1000
    finally:
        gate.set()
        pub.join(60)
        stop.set()
        for t in threads:
            t.join(30)

    utts = [m for m in got if m["type"] == "utterance"]
    finals = [u for u in utts if u["final"]]
    partials = [u for u in utts if not u["final"]]
    assert partials, "no partial streamed"
    assert {u["leg"] for u in finals} == {"agent", "customer"}
    # a partial of an utterance never comes after its final
    for f in finals:
        i = utts.index(f)
        assert not any(
            u["utterance_id"] == f["utterance_id"] and not u["final"] for u in utts[i + 1 :]
        )
    agent_text = " ".join(u["text"] for u in finals if u["leg"] == "agent")
    assert wer(two_party["agent_text"], agent_text) < 0.2, agent_text
    assert mid_call is not None and 1 <= len(mid_call) < len(finals)
    assert mid_call[0]["utterance_id"] == finals[0]["utterance_id"]
    # after the call: the stored live transcript is served
    r = client.get(
        "/v1/calls/w-1/transcript", headers={"Authorization": f"Bearer {keys['analyst']}"}
    )
    assert r.status_code == 200
    assert [u["utterance_id"] for u in r.json()["utterances"]] == [
        f["utterance_id"] for f in sorted(finals, key=lambda u: (u["start"], u["leg"]))
    ]


def test_websocket_refuses_what_the_caller_may_not_watch(
    services: Services, keys: dict[str, str]
) -> None:
    client = TestClient(create_app(services))
    p = services.bus.producer()
    start = CallStarted(tenant="acme", call_id="w-2", agent_id="a-7", started_at=STARTED)
    save_manifest(
        services.store, new_manifest("acme", "w-2", STARTED, agent_id="a-7", status="live")
    )
    p.send(services.topics.calls, start.key, start.encode())
    cases = [
        ("/v1/calls/w-2/live", 4401),
        ("/v1/calls/w-2/live?key=cp_nope", 4401),
        ("/v1/calls/w-2/live?key=" + keys["pbx"], 4403),
        ("/v1/calls/w-2/live?key=" + keys["rival"], 4404),
        ("/v1/calls/w-2/live?key=" + keys["other_agent"], 4404),
        ("/v1/calls/nope/live?key=" + keys["analyst"], 4404),
        ("/v1/calls/bad%20id!/live?key=" + keys["analyst"], 4404),
    ]
    for url, code in cases:
        with client.websocket_connect(url) as ws, pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == code, url
    # the header works as well as the query parameter
    with client.websocket_connect(
        "/v1/calls/w-2/live", headers={"Authorization": f"Bearer {keys['agent']}"}
    ) as ws:
        ws.close()


def test_a_call_live_by_its_manifest_is_watched_before_the_hub_reads_its_start(
    services: Services, keys: dict[str, str]
) -> None:
    """The PBX registered the call (its manifest says live) and the agent's page opened the
    view before this process's hub read the call.started: the view stays open and streams."""
    client = TestClient(create_app(services))
    hub = live_hub(services)
    assert hub.wait_ready(10)
    save_manifest(
        services.store, new_manifest("acme", "w-3", STARTED, agent_id="a-7", status="live")
    )
    said = Utterance(
        tenant="acme",
        call_id="w-3",
        leg="agent",
        utterance_id="u-w3",
        start=0.5,
        end=1.5,
        text="hello",
        final=False,
        source="live",
    )
    with client.websocket_connect("/v1/calls/w-3/live?key=" + keys["agent"]) as ws:
        deadline = time.monotonic() + 10
        while hub.watchers.count() == 0:  # the route has subscribed
            assert time.monotonic() < deadline
            time.sleep(0.02)
        services.bus.producer().send(services.topics.transcripts, said.key, said.encode())
        msg = json.loads(ws.receive_text())
    assert (msg["utterance_id"], msg["text"]) == ("u-w3", "hello")
    # a call that is over, with no live state here, still closes at once
    save_manifest(
        services.store,
        new_manifest("acme", "w-4", STARTED, agent_id="a-7", status="transcribed"),
    )
    with (
        client.websocket_connect("/v1/calls/w-4/live?key=" + keys["agent"]) as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        ws.receive_text()
    assert closed.value.code == 1000
