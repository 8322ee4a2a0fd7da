"""POST /v1/recordings and GET /v1/calls/{id}/transcript on the embedded app."""

from __future__ import annotations

import struct
import threading
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from pipeline.auth import keys_of
from pipeline.catalog import load_manifest
from pipeline.services import Services
from pipeline.worker import WorkerRunner
from stt.batch_worker import BatchStage


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(create_app(services))


@pytest.fixture
def keys(services: Services) -> dict[str, str]:
    k = keys_of(services)
    return {
        "pbx": k.create("acme", "pbx"),
        "analyst": k.create("acme", "analyst"),
        "agent": k.create("acme", "agent", agent_id="a-7"),
        "other_agent": k.create("acme", "agent", agent_id="a-9"),
        "rival": k.create("rival", "analyst"),
    }


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_upload_then_transcript(
    client: TestClient, services: Services, keys: dict[str, str], ulaw_stereo_wav: bytes
) -> None:
    r = client.post(
        "/v1/recordings",
        files={"file": ("call.wav", ulaw_stereo_wav, "audio/wav")},
        data={"channels": "agent,customer", "agent_id": "a-7", "language": "en"},
        headers=_auth(keys["pbx"]),
    )
    assert r.status_code == 202, r.text
    call_id = r.json()["call_id"]
    assert r.json()["job_url"] == f"/v1/jobs/{call_id}"
    # queued, not transcribed yet: the transcript says where to follow the job
    r = client.get(f"/v1/calls/{call_id}/transcript", headers=_auth(keys["analyst"]))
    assert r.status_code == 404 and f"/v1/jobs/{call_id}" in r.json()["detail"]
    job = client.get(f"/v1/jobs/{call_id}", headers=_auth(keys["pbx"])).json()
    assert (job["status"], job["progress"], job["transcript_url"]) == ("queued", 0.0, None)

    WorkerRunner(
        BatchStage(services), services.bus, services.topics, services.metrics, poll_timeout_s=0.05
    ).run_once()

    job = client.get(f"/v1/jobs/{call_id}", headers=_auth(keys["pbx"])).json()
    assert (job["status"], job["progress"]) == ("done", 1.0)
    # the pbx key that uploaded reads the transcript it points to
    r = client.get(job["transcript_url"], headers=_auth(keys["pbx"]))
    assert r.status_code == 200
    doc = r.json()
    assert {u["leg"] for u in doc["utterances"]} == {"agent", "customer"}
    assert doc["info"]["language"] == "en"
    vtt = client.get(f"/v1/calls/{call_id}/transcript?format=vtt", headers=_auth(keys["agent"]))
    assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT")
    srt = client.get(f"/v1/calls/{call_id}/transcript?format=srt", headers=_auth(keys["agent"]))
    assert srt.status_code == 200 and srt.headers["content-type"].startswith("application/x-subrip")
    # One numbered cue per utterance, SubRip times, the leg before the words.
    cues = srt.text.strip().split("\n\n")
    assert len(cues) == len(doc["utterances"])
    first = cues[0].splitlines()
    first_utt = doc["utterances"][0]
    assert first[0] == "1" and " --> " in first[1] and "," in first[1]
    assert first[2] == f"{first_utt['leg']}: {first_utt['text']}"
    # another agent, another tenant: the call does not exist for them
    assert (
        client.get(
            f"/v1/calls/{call_id}/transcript", headers=_auth(keys["other_agent"])
        ).status_code
        == 404
    )
    assert (
        client.get(f"/v1/calls/{call_id}/transcript", headers=_auth(keys["rival"])).status_code
        == 404
    )


def test_auth_errors(client: TestClient, keys: dict[str, str]) -> None:
    files = {"file": ("x.wav", b"RIFF", "audio/wav")}
    assert client.post("/v1/recordings", files=files).status_code == 401
    assert (
        client.post("/v1/recordings", files=files, headers=_auth("cp_nope_nope")).status_code == 401
    )
    assert (
        client.post("/v1/recordings", files=files, headers=_auth(keys["analyst"])).status_code
        == 403
    )


@pytest.mark.parametrize(
    ("body", "fields", "status", "reason"),
    [
        (b"", {}, 415, "empty file"),
        (b"\x00\x01garbage" * 100, {}, 415, "unreadable audio"),
        ("mono8k", {"channels": "agent,customer"}, 422, "channel 1 (customer) named"),
        ("mono8k", {"channels": "agent,boss"}, 422, "channels must be"),
        ("mono8k", {"call_id": "../../etc"}, 422, "call_id"),
        ("mono8k", {"language": "english!"}, 422, "language"),
        ("mono8k", {"language": "zz"}, 422, "unknown language 'zz'"),
        ("mono8k", {"caller": "x" * 1_000_000}, 422, "at most 64 characters"),
        # a 48 KB WAV whose header says 1 Hz: refused on the header, nothing decoded
        (("raw", 1, 16, 1), {}, 422, "sample rate 1 Hz"),
        (("raw", 8000, 3, 1), {}, 422, "3-bit samples"),
        (("raw", 8000, 16, 7), {"channels": "agent,customer"}, 422, "7 channels"),
    ],
)
def test_bad_uploads_get_reasons(
    client: TestClient,
    keys: dict[str, str],
    encode: Any,
    body: Any,
    fields: dict[str, str],
    status: int,
    reason: str,
) -> None:
    if body == "mono8k":
        body = encode([np.zeros(8000, np.float32)], 8000, "pcm_mulaw", "wav")
    elif isinstance(body, tuple):
        _, rate, bits, channels = body
        body = raw_wav(rate, bits, channels, 48_000)
    r = client.post(
        "/v1/recordings",
        files={"file": ("f.wav", body, "audio/wav")},
        data=fields,
        headers=_auth(keys["pbx"]),
    )
    assert r.status_code == status, r.text
    assert reason in str(r.json()["detail"])


def raw_wav(rate: int, bits: int, channels: int, nbytes: int) -> bytes:
    """A PCM WAV whose header says what the test wants, over `nbytes` of noise."""
    block = channels * max(1, bits // 8)
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
    body = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8).tobytes()
    size = struct.pack("<I", 36 + nbytes)
    return b"RIFF" + size + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", nbytes) + body


def test_a_recording_longer_than_allowed_is_413(
    services: Services, keys: dict[str, str], encode: Any
) -> None:
    services.settings.max_recording_s = 5.0
    client = TestClient(create_app(services))
    ten = encode([np.zeros(80_000, np.float32)], 8000, "pcm_mulaw", "wav")
    r = client.post(
        "/v1/recordings", files={"file": ("f.wav", ten, "audio/wav")}, headers=_auth(keys["pbx"])
    )
    assert r.status_code == 413 and "at most 5 s" in r.json()["detail"], r.text
    assert (
        services.metrics.value("api_rejections_total", route="recordings", cause="audio_length")
        == 1
    )


def test_a_job_that_fails_in_the_worker_reads_failed(
    client: TestClient, services: Services, keys: dict[str, str], encode: Any
) -> None:
    wav = encode([np.zeros(8000, np.float32)], 8000, "pcm_mulaw", "wav")
    r = client.post(
        "/v1/recordings",
        files={"file": ("f.wav", wav, "audio/wav")},
        data={"call_id": "gone-1"},
        headers=_auth(keys["pbx"]),
    )
    assert r.status_code == 202 and r.json()["status"] == "queued"
    manifest = load_manifest(services.store, "acme", "gone-1")
    assert manifest is not None and manifest.recording_key
    services.store.delete(manifest.recording_key)  # lost before the worker got to it
    WorkerRunner(
        BatchStage(services), services.bus, services.topics, services.metrics, poll_timeout_s=0.05
    ).run_once()
    failed = load_manifest(services.store, "acme", "gone-1")
    assert failed is not None and failed.status == "failed"
    assert failed.error and "recording not found" in failed.error
    r = client.get("/v1/calls/gone-1/transcript", headers=_auth(keys["analyst"]))
    assert r.status_code == 404 and "recording not found" in r.json()["detail"]
    job = client.get("/v1/jobs/gone-1", headers=_auth(keys["pbx"])).json()
    assert job["status"] == "failed" and "recording not found" in job["error"]


def test_a_running_job_shows_its_progress(
    client: TestClient,
    services: Services,
    keys: dict[str, str],
    two_party: dict[str, Any],
    encode: Any,
) -> None:
    """A long call's job reads `running` with a growing fraction while the worker decodes
    it, then `done`; another tenant's key sees no such job."""
    # several of Whisper's 30 s windows: its segments come in one burst per window
    speech = np.concatenate([two_party["channels"][0] + two_party["channels"][1]] * 6)
    wav = encode([speech], 8000, "pcm_mulaw", "wav")
    r = client.post(
        "/v1/recordings",
        files={"file": ("long.wav", wav, "audio/wav")},
        data={"call_id": "long-1", "language": "en"},
        headers=_auth(keys["pbx"]),
    )
    assert r.status_code == 202, r.text
    stage = BatchStage(services)
    stage.progress_every_s = 0.0  # every utterance: the test sees the job move
    runner = WorkerRunner(
        stage, services.bus, services.topics, services.metrics, poll_timeout_s=0.05
    )
    worker = threading.Thread(target=runner.run_once)
    worker.start()
    seen: list[float] = []
    while worker.is_alive():
        job = client.get("/v1/jobs/long-1", headers=_auth(keys["pbx"])).json()
        if job["status"] == "running":
            seen.append(job["progress"])
        time.sleep(0.05)
    worker.join()
    assert any(0 < p < 1 for p in seen), seen
    assert seen == sorted(seen)
    job = client.get("/v1/jobs/long-1", headers=_auth(keys["analyst"])).json()
    assert job["status"] == "done" and job["transcript_url"] == "/v1/calls/long-1/transcript"
    r = client.get("/v1/jobs/long-1", headers=_auth(keys["rival"]))
    assert r.status_code == 404
    r = client.get("/v1/jobs/long-1", headers=_auth(keys["agent"]))
    assert r.status_code == 403


def test_oversized_upload_is_413(services: Services, keys: dict[str, str]) -> None:
    services.settings.max_upload_mb = 0.01
    client = TestClient(create_app(services))
    r = client.post(
        "/v1/recordings",
        files={"file": ("big.wav", b"\x00" * 20_000, "audio/wav")},
        headers=_auth(keys["pbx"]),
    )
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    assert (
        services.metrics.value("api_rejections_total", route="recordings", cause="too_large") == 1
    )


def test_health_and_metrics(client: TestClient, services: Services) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/metrics").status_code == 401
    pbx = keys_of(services).create("acme", "pbx")
    assert client.get("/metrics", headers={"Authorization": f"Bearer {pbx}"}).status_code == 403
    admin = keys_of(services).create("acme", "admin")
    r = client.get("/metrics", headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200 and "callpipe_" in r.text
    services.metrics.set("robot_opposition_numbers", 3, tenant="acme")
    assert "acme" not in client.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).text
