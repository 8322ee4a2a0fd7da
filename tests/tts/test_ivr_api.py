"""IVR over HTTP: upload with all errors, pre-rendered prompts, walks by DTMF and speech."""

import io
import wave
from collections.abc import Callable
from typing import Any

import av
import numpy as np
import yaml
from fastapi.testclient import TestClient

from app.api import create_app
from pipeline.auth import keys_of
from pipeline.services import Services


def test_ivr_over_http(services: Services, menu_doc: dict[str, Any]) -> None:
    admin = {"Authorization": f"Bearer {keys_of(services).create('acme', 'admin')}"}
    pbx = {"Authorization": f"Bearer {keys_of(services).create('acme', 'pbx')}"}
    other = {"Authorization": f"Bearer {keys_of(services).create('globex', 'pbx')}"}
    with TestClient(create_app(services)) as c:
        assert c.put("/v1/ivr/main", json=menu_doc, headers=pbx).status_code == 403
        assert c.put("/v1/ivr/main", json=menu_doc, headers=admin).status_code == 200
        assert services.store.exists("acme/_ivr/main.json")
        synthesised = services.metrics.total("tts_synthesised_total")
        assert synthesised == 4  # every prompt pre-rendered
        wav = c.get("/v1/ivr/main/nodes/support/prompt.wav?format=ulaw8k", headers=pbx)
        assert wav.status_code == 200
        assert services.metrics.total("tts_synthesised_total") == synthesised  # a cache hit
        with av.open(io.BytesIO(wav.content), "r") as f:
            assert f.streams.audio[0].rate == 8000 and f.streams.audio[0].codec.name == (
                "pcm_mulaw"
            )
        assert c.get("/v1/ivr/main/nodes/x/prompt.wav", headers=pbx).status_code == 404
        assert c.post("/v1/ivr/main/sessions", headers=other).status_code == 404

        # by DTMF: 2 then 1 -> extension 204
        s = c.post("/v1/ivr/main/sessions", headers=pbx).json()
        assert s["prompts"] == ["entry", "main"] and len(s["prompt_urls"]) == 2
        url = f"/v1/ivr/main/sessions/{s['session']}/input"
        assert c.post(url, json={"dtmf": "2"}, headers=pbx).json()["node"] == "support"
        done = c.post(url, json={"dtmf": "1"}, headers=pbx).json()
        assert done["action"] == {"kind": "transfer", "extension": "204"}
        assert c.post(url, json={"dtmf": "1"}, headers=pbx).status_code == 409

        # by speech, on partial transcripts -> queue sales
        s = c.post("/v1/ivr/main/sessions", headers=pbx).json()
        url = f"/v1/ivr/main/sessions/{s['session']}/input"
        wait = c.post(url, json={"speech": "I want to", "final": False}, headers=pbx).json()
        assert wait == {"action": None, "waiting": True}
        done = c.post(url, json={"speech": "I want to buy", "final": False}, headers=pbx).json()
        assert done["action"] == {"kind": "transfer", "queue": "sales"}
        assert c.post(url, json={"dtmf": "1"}, headers=other).status_code == 410
        assert c.post("/v1/ivr/main/sessions/nope/input", json={}, headers=pbx).status_code == 410


def test_invalid_menu_lists_all_errors(services: Services, menu_doc: dict[str, Any]) -> None:
    admin = {"Authorization": f"Bearer {keys_of(services).create('acme', 'admin')}"}
    menu_doc["start"] = "nowhere"
    menu_doc["nodes"]["main"]["options"][1]["digit"] = "1"
    menu_doc["nodes"]["support"]["prompt"] = ""
    with TestClient(create_app(services)) as c:
        r = c.put("/v1/ivr/main", json=menu_doc, headers=admin)
        assert r.status_code == 422
        errs = r.json()["detail"]["errors"]
        assert any("start: unknown node 'nowhere'" in e for e in errs)
        assert any("digit '1' used twice" in e for e in errs)
        assert any("nodes.support.prompt: missing prompt" in e for e in errs)
        assert not services.store.exists("acme/_ivr/main.json")
        assert c.put("/v1/ivr/main", json=[1], headers=admin).status_code == 422


def _wav16(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def test_yaml_menu_audio_prompt_and_reprompts(
    services: Services, menu_doc: dict[str, Any], speak: Callable[..., np.ndarray]
) -> None:
    admin = {"Authorization": f"Bearer {keys_of(services).create('acme', 'admin')}"}
    pbx = {"Authorization": f"Bearer {keys_of(services).create('acme', 'pbx')}"}
    greeting = speak("Welcome to Acme.", 16000)
    services.store.put("acme/prompts/welcome.wav", _wav16(greeting), "audio/wav")
    menu_doc["nodes"]["entry"] = {
        **menu_doc["nodes"]["entry"],
        "prompt": None,
        "audio": "prompts/welcome.wav",
    }
    menu_doc["nodes"]["main"]["no_match_prompt"] = "Sorry, I did not get that."
    yaml_hdr = {**admin, "Content-Type": "application/yaml"}
    with TestClient(create_app(services)) as c:
        r = c.put("/v1/ivr/yml", content=yaml.safe_dump(menu_doc), headers=yaml_hdr)
        assert r.status_code == 200, r.text
        assert r.json()["prompts_rendered"] == 5  # 3 texts, 1 no-match text, 1 audio
        # the uploaded 16 kHz WAV comes back as 8 kHz mu-law of the same length
        wav = c.get("/v1/ivr/yml/nodes/entry/prompt.wav?format=ulaw8k", headers=pbx)
        assert wav.status_code == 200
        with av.open(io.BytesIO(wav.content), "r") as f:
            assert f.streams.audio[0].codec.name == "pcm_mulaw"
            n = sum(fr.samples for fr in f.decode(audio=0))
        assert abs(n / 8000 - len(greeting) / 16000) < 0.01
        sorry = c.get("/v1/ivr/yml/nodes/main/prompt.wav?kind=no_match", headers=pbx)
        assert sorry.status_code == 200 and sorry.content[:4] == b"RIFF"
        assert (
            c.get("/v1/ivr/yml/nodes/main/prompt.wav?kind=no_input", headers=pbx).status_code == 404
        )
        assert c.get("/v1/ivr/yml/nodes/main/prompt.wav?format=mp3", headers=pbx).status_code == 422

        s = c.post("/v1/ivr/yml/sessions", headers=pbx).json()
        url = f"/v1/ivr/yml/sessions/{s['session']}/input"
        miss = c.post(url, json={"speech": "bananas"}, headers=pbx).json()
        assert miss["prompts"] == ["main:no_match", "main"]
        assert miss["prompt_urls"][0].endswith("/nodes/main/prompt.wav?format=ulaw8k&kind=no_match")
        for u in miss["prompt_urls"]:
            assert c.get(u, headers=pbx).status_code == 200
        assert c.post(url, json={"dtmf": "x!"}, headers=pbx).status_code == 422
        assert c.post(url, json={"dtmf": "1", "speech": "sales"}, headers=pbx).status_code == 422
        assert c.post(url, json={"speech": "sales"}, headers=pbx).json()["action"] == {
            "kind": "transfer",
            "queue": "sales",
        }


def test_bad_documents(services: Services, menu_doc: dict[str, Any]) -> None:
    admin = {"Authorization": f"Bearer {keys_of(services).create('acme', 'admin')}"}
    services.store.put("acme/prompts/noise.wav", b"RIFF not really a wav", "audio/wav")
    menu_doc["nodes"]["closed"] = {"audio": "prompts/noise.wav", "action": {"kind": "hangup"}}
    with TestClient(create_app(services)) as c:
        r = c.put("/v1/ivr/m", content=b"{not json", headers=admin)
        assert r.status_code == 422
        assert "not a valid JSON or YAML" in r.json()["detail"]["errors"][0]
        r = c.put("/v1/ivr/m", content=b"start: [", headers={**admin, "Content-Type": "text/yaml"})
        assert r.status_code == 422
        assert c.put("/v1/ivr/bad..name", json=menu_doc, headers=admin).status_code == 422
        r = c.put("/v1/ivr/m", json=menu_doc, headers=admin)
        assert r.status_code == 422
        assert r.json()["detail"]["errors"][0].startswith(
            "nodes.closed.audio: not a readable audio file"
        )
        assert not services.store.exists("acme/_ivr/m.json")
        assert c.get("/v1/ivr/m/nodes/main/prompt.wav", headers=admin).status_code == 404
        assert services.metrics.total("ivr_prompt_rejected_total") == 1
        assert services.metrics.total("ivr_menus_rejected_total") == 3
