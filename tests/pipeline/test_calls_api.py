"""POST /v1/calls and its hang-up with real keys: ports come back, RTP flows, tenants stay apart."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api import ROUTERS
from pipeline import calls_api
from pipeline.auth import keys_of
from pipeline.services import Services
from sim.pbx import packetize, send_packets


@pytest.fixture
def client(rtp_services: Services) -> TestClient:
    app = FastAPI()
    app.state.services = rtp_services
    app.include_router(calls_api.router(rtp_services))
    return TestClient(app)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


BODY = {
    "call_id": "call-1",
    "direction": "inbound",
    "agent_id": "agent-7",
    "caller": "+33123456789",
    "callee": "+33987654321",
    "legs": [{"leg": "agent", "codec": "PCMU"}, {"leg": "customer", "codec": "pcma"}],
}


def test_router_is_registered_in_the_app() -> None:
    assert calls_api.router in ROUTERS


def test_register_send_and_end_a_call(client: TestClient, rtp_services: Services, tap: Any) -> None:
    key = keys_of(rtp_services).create("acme", "pbx")
    r = client.post("/v1/calls", json=BODY, headers=auth(key))
    assert r.status_code == 201, r.text
    reg = r.json()
    assert reg["call_id"] == "call-1" and reg["tenant"] == "acme"
    legs = {leg["leg"]: leg for leg in reg["legs"]}
    live = rtp_services.settings.live
    for leg in legs.values():
        assert live.rtp_port_min <= leg["port"] <= live.rtp_port_max
        assert leg["port"] % 2 == 0 and leg["host"] == "127.0.0.1"
    assert legs["customer"]["codec"] == "PCMA" and legs["customer"]["payload_type"] == 8
    tap.until(lambda t: any(e.type == "call.started" for e in t.events))
    started = next(e for e in tap.events if e.type == "call.started")
    assert (started.tenant, started.call_id, started.agent_id) == ("acme", "call-1", "agent-7")
    assert [(x.leg, x.codec) for x in started.legs] == [("agent", "PCMU"), ("customer", "PCMA")]

    audio = (np.sin(np.arange(4000) / 8000 * 2 * np.pi * 500) * 8000).astype(np.int16)
    send_packets(packetize(audio, "PCMU"), "127.0.0.1", legs["agent"]["port"], realtime=False)
    time.sleep(0.2)
    r = client.post("/v1/calls/call-1/hangup", headers=auth(key))
    assert r.status_code == 200, r.text
    assert r.json()["legs"]["agent"]["packets"] == 25
    tap.until(lambda t: t.ended("call-1") is not None)
    assert tap.ended("call-1").reason == "hangup"
    assert sum(len(c.pcm) // 2 for c in tap.chunks("call-1", "agent")) == 4000
    # A second hang-up is answered (idempotent), as one after a restart must be.
    again = client.post("/v1/calls/call-1/hangup", headers=auth(key))
    assert again.status_code == 200 and again.json()["reason"] == "already ended"
    assert client.post("/v1/calls/never-1/hangup", headers=auth(key)).status_code == 404


def test_a_registered_call_is_visible_at_once(client: TestClient, rtp_services: Services) -> None:
    """The manifest exists when POST answers: the agent's live view need not wait for a
    worker to read the call.started (it answered 4404 for 6-12 s)."""
    from pipeline.catalog import load_manifest

    key = keys_of(rtp_services).create("acme", "pbx")
    assert client.post("/v1/calls", json=BODY, headers=auth(key)).status_code == 201
    m = load_manifest(rtp_services.store, "acme", "call-1")
    assert m is not None and (m.status, m.agent_id) == ("live", "agent-7")
    assert load_manifest(rtp_services.store, "other", "call-1") is None


def test_the_language_of_a_call_travels_with_its_start(
    client: TestClient,
    rtp_services: Services,
    tap: Any,
) -> None:
    key = keys_of(rtp_services).create("acme", "pbx")
    r = client.post("/v1/calls", json={**BODY, "language": "fr"}, headers=auth(key))
    assert r.status_code == 201, r.text
    tap.until(lambda t: any(e.type == "call.started" for e in t.events))
    assert next(e for e in tap.events if e.type == "call.started").language == "fr"
    client.post("/v1/calls/call-1/hangup", headers=auth(key))
    r = client.post(
        "/v1/calls", json={**BODY, "call_id": "call-2", "language": "zz"}, headers=auth(key)
    )
    assert r.status_code == 422 and "unknown language 'zz'" in r.text


def test_a_tenant_language_applies_to_calls_that_name_none(
    client: TestClient,
    rtp_services: Services,
    tap: Any,
) -> None:
    stt = rtp_services.settings.stt.model_copy(update={"tenant_languages": {"acme": "fr"}})
    rtp_services.settings.stt = stt
    key = keys_of(rtp_services).create("acme", "pbx")
    r = client.post("/v1/calls", json=BODY, headers=auth(key))
    assert r.status_code == 201, r.text
    tap.until(lambda t: any(e.type == "call.started" for e in t.events))
    assert next(e for e in tap.events if e.type == "call.started").language == "fr"


def test_call_id_is_generated_when_absent(client: TestClient, rtp_services: Services) -> None:
    key = keys_of(rtp_services).create("acme", "admin")
    body = {k: v for k, v in BODY.items() if k != "call_id"}
    r = client.post("/v1/calls", json=body, headers=auth(key))
    assert r.status_code == 201
    assert len(r.json()["call_id"]) == 32


def test_auth_failures(client: TestClient, rtp_services: Services) -> None:
    assert client.post("/v1/calls", json=BODY).status_code == 401
    assert client.post("/v1/calls", json=BODY, headers=auth("cp_nope")).status_code == 401
    analyst = keys_of(rtp_services).create("acme", "analyst")
    r = client.post("/v1/calls", json=BODY, headers=auth(analyst))
    assert r.status_code == 403
    agent = keys_of(rtp_services).create("acme", "agent", agent_id="agent-7")
    assert client.post("/v1/calls/call-1/hangup", headers=auth(agent)).status_code == 403


def test_tenants_are_kept_apart(client: TestClient, rtp_services: Services) -> None:
    acme = keys_of(rtp_services).create("acme", "pbx")
    other = keys_of(rtp_services).create("other", "pbx")
    r = client.post("/v1/calls", json={**BODY, "tenant": "other"}, headers=auth(acme))
    assert r.status_code == 403 and "acme" in r.json()["detail"]
    assert (
        client.post("/v1/calls", json={**BODY, "tenant": "acme"}, headers=auth(acme)).status_code
        == 201
    )
    # Another tenant can neither end the call nor tell that it exists.
    r = client.post("/v1/calls/call-1/hangup", headers=auth(other))
    assert r.status_code == 404
    assert client.post("/v1/calls/nope/hangup", headers=auth(other)).json() == r.json()
    assert client.post("/v1/calls/call-1/hangup", headers=auth(acme)).status_code == 200
    assert rtp_services.metrics.value("api_rejections_total", route="calls", cause="tenant") == 1


@pytest.mark.parametrize(
    "patch",
    [
        {"legs": []},
        {"legs": [{"leg": "agent", "codec": "G729"}]},
        {"legs": [{"leg": "agent"}, {"leg": "agent"}]},
        {"legs": [{"leg": "robot"}]},
        {"legs": [{"leg": "agent", "codec": "opus", "payload_type": 8}]},
        {"call_id": "../etc"},
        {"unexpected": 1},
        {"legs": [{"leg": "agent", "codec": "L16"}]},  # L16 is for stream transports
        {"legs": [{"leg": "agent", "dtmf_payload_type": 95}]},
        {"legs": [{"leg": "agent", "codec": "opus", "payload_type": 96, "dtmf_payload_type": 96}]},
        {"legs": [{"leg": "agent", "uuid": "8b5f2c8e-4a55-4b5e-9c2e-5d6b7c8d9e0f"}]},
        {"transport": "twilio", "legs": [{"leg": "agent", "codec": "PCMA"}]},
        {"transport": "audiosocket", "legs": [{"leg": "agent", "codec": "L16"}]},  # no UUID
        {"transport": "audiosocket", "legs": [{"leg": "agent", "codec": "L16", "uuid": "x"}]},
        {"transport": "fax"},
    ],
)
def test_bad_bodies_are_4xx(client: TestClient, rtp_services: Services, patch: dict) -> None:  # type: ignore[type-arg]
    key = keys_of(rtp_services).create("acme", "pbx")
    r = client.post("/v1/calls", json={**BODY, **patch}, headers=auth(key))
    assert r.status_code == 422, r.text


def test_duplicate_call_and_exhausted_ports(client: TestClient, rtp_services: Services) -> None:
    key = keys_of(rtp_services).create("acme", "pbx")
    assert client.post("/v1/calls", json=BODY, headers=auth(key)).status_code == 201
    assert client.post("/v1/calls", json=BODY, headers=auth(key)).status_code == 409
    capacity = calls_api.ingest_of(rtp_services).pool.capacity
    codes = [
        client.post("/v1/calls", json={**BODY, "call_id": f"c{i}"}, headers=auth(key)).status_code
        for i in range(capacity // 2)
    ]
    assert codes[-1] == 503 and set(codes[:-1]) == {201}
    assert (
        "no free UDP port"
        in client.post("/v1/calls", json={**BODY, "call_id": "late"}, headers=auth(key)).json()[
            "detail"
        ]
    )


def test_two_tenants_may_use_the_same_call_id(client: TestClient, rtp_services: Services) -> None:
    """Registering another tenant's live call id tells nothing of it: both calls live apart."""
    acme = auth(keys_of(rtp_services).create("acme", "pbx"))
    globex = auth(keys_of(rtp_services).create("globex", "pbx"))
    a = client.post("/v1/calls", json={**BODY, "call_id": "shared-1"}, headers=acme)
    g = client.post("/v1/calls", json={**BODY, "call_id": "shared-1"}, headers=globex)
    assert a.status_code == g.status_code == 201, (a.text, g.text)
    ports = {leg["port"] for leg in a.json()["legs"]} & {leg["port"] for leg in g.json()["legs"]}
    assert not ports
    assert (
        client.post("/v1/calls", json={**BODY, "call_id": "shared-1"}, headers=acme).status_code
        == 409
    )
    assert client.post("/v1/calls/shared-1/hangup", headers=globex).json()["reason"] == "hangup"
    assert (
        client.post("/v1/calls/shared-1/hangup", headers=globex).json()["reason"] == "already ended"
    )
    assert client.post("/v1/calls/shared-1/hangup", headers=acme).json()["reason"] == "hangup"


def test_dtmf_payload_type_per_leg_as_negotiated(
    client: TestClient, rtp_services: Services, tap: Any
) -> None:
    """Type 96 on one leg, the default on the other: each leg hears its own key presses,
    and a telephone-event on the other leg's type is not taken for one."""
    key = keys_of(rtp_services).create("acme", "pbx")
    body = {
        **BODY,
        "legs": [
            {"leg": "agent", "codec": "PCMU"},
            {"leg": "customer", "codec": "PCMU", "dtmf_payload_type": 96},
        ],
    }
    reg = client.post("/v1/calls", json=body, headers=auth(key)).json()
    legs = {leg["leg"]: leg for leg in reg["legs"]}
    assert legs["customer"]["dtmf_payload_type"] == 96
    assert legs["agent"]["dtmf_payload_type"] == rtp_services.settings.live.dtmf_payload_type
    from sim.pbx import DtmfMark

    pcm = np.zeros(8000, np.int16)
    for leg, pt in (("customer", 96), ("agent", 96)):
        packets = packetize(pcm, "PCMU", dtmf=[DtmfMark(leg, 1600, "7")], dtmf_payload_type=pt)
        send_packets(packets, legs[leg]["host"], legs[leg]["port"], realtime=False)
    time.sleep(0.5)
    client.post("/v1/calls/call-1/hangup", headers=auth(key))
    tap.until(lambda t: any(e.type == "call.ended" for e in t.events))
    presses = [(e.leg, e.digit) for e in tap.events if e.type == "dtmf"]
    assert presses == [("customer", "7")]
    assert 'cause="unknown_payload_type"' in rtp_services.metrics.render()


def test_stream_transports_are_registered_without_ports(
    client: TestClient, rtp_services: Services
) -> None:
    key = keys_of(rtp_services).create("acme", "pbx")
    sid = "8b5f2c8e-4a55-4b5e-9c2e-5d6b7c8d9e0f"
    r = client.post(
        "/v1/calls",
        json={
            "call_id": sid,
            "transport": "audiosocket",
            "legs": [{"leg": "customer", "codec": "slin"}],
        },
        headers=auth(key),
    )
    assert r.status_code == 201, r.text
    assert r.json()["legs"] == [{"leg": "customer", "codec": "L16", "uuid": sid}]
    assert set(r.json()["connect"]) == {"host", "port"}
    # The same UUID twice is refused (it names one connection).
    again = {
        "call_id": "other",
        "transport": "audiosocket",
        "legs": [{"leg": "customer", "codec": "L16", "uuid": sid}],
    }
    assert client.post("/v1/calls", json=again, headers=auth(key)).status_code == 409
    tw = client.post(
        "/v1/calls",
        json={
            "call_id": "tw-1",
            "transport": "twilio",
            "record": True,
            "legs": [{"leg": "customer"}],
        },
        headers=auth(key),
    )
    assert tw.status_code == 201 and tw.json()["connect"] == {"path": "/v1/media/twilio"}
