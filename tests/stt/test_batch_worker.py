"""The batch worker on the embedded bus and store: artifacts, events, dead letters, replays."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

import numpy as np

from pipeline.events import DeadLetter, RecordingReady, TranscriptReady, Utterance, decode_event
from pipeline.ids import call_key
from pipeline.services import Services
from pipeline.worker import WorkerRunner
from stt.batch_worker import BatchStage
from stt.normalise import wer

STARTED = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def _runner(services: Services) -> WorkerRunner:
    return WorkerRunner(
        BatchStage(services), services.bus, services.topics, services.metrics, poll_timeout_s=0.05
    )


def _publish(services: Services, payload: bytes, key: str) -> None:
    p = services.bus.producer()
    p.send(services.topics.recordings, key, payload)
    p.flush()


def _drain(services: Services, group: str) -> list[Any]:
    c = services.bus.consumer([services.topics.transcripts, services.topics.deadletter], group)
    out = []
    for m in c.poll(0.5, 10_000):
        out.append(
            DeadLetter.model_validate_json(m.value)
            if m.topic.endswith("deadletter")
            else decode_event(m.value)
        )
    c.close()
    return out


def _ready(services: Services, wav: bytes, call_id: str) -> RecordingReady:
    key = call_key("acme", call_id, STARTED, "recording.wav")
    uri = services.store.put(key, wav, "audio/wav")
    return RecordingReady(
        tenant="acme",
        call_id=call_id,
        uri=uri,
        channels={"0": "agent", "1": "customer"},
        started_at=STARTED,
    )


def test_recording_to_artifacts_and_events(
    services: Services, ulaw_stereo_wav: bytes, two_party: dict[str, Any]
) -> None:
    event = _ready(services, ulaw_stereo_wav, "call-1")
    _publish(services, event.encode(), event.key)
    runner = _runner(services)
    assert runner.run_once() == 1

    events = _drain(services, "check-1")
    utts = [e for e in events if isinstance(e, Utterance)]
    ready = [e for e in events if isinstance(e, TranscriptReady)]
    assert len(ready) == 1 and ready[0].utterances == len(utts)
    assert all(u.final and u.source == "batch" for u in utts)
    # an utterance per stretch of speech: a line of two sentences may give two
    assert [leg for leg, _ in groupby(u.leg for u in utts)] == [
        "agent",
        "customer",
        "agent",
        "customer",
    ]
    assert [u.start for u in utts] == sorted(u.start for u in utts)
    agent = " ".join(u.text for u in utts if u.leg == "agent")
    customer = " ".join(u.text for u in utts if u.leg == "customer")
    assert wer(two_party["agent_text"], agent) < 0.15
    assert wer(two_party["customer_text"], customer) < 0.15

    doc = json.loads(services.store.get(call_key("acme", "call-1", STARTED, "transcript.json")))
    assert [u["utterance_id"] for u in doc["utterances"]] == [u.utterance_id for u in utts]
    assert doc["utterances"][0]["words"][0]["word"]
    vtt = services.store.get(call_key("acme", "call-1", STARTED, "transcript.vtt")).decode()
    assert vtt.startswith("WEBVTT") and "<v agent>" in vtt and "<v customer>" in vtt

    # Reprocessing the same recording overwrites: same ids, same keys, nothing added.
    keys_before = sorted(o.key for o in services.store.list("acme/"))
    _publish(services, event.encode(), event.key)
    runner.run_once()
    again = [e for e in _drain(services, "check-2") if isinstance(e, Utterance)]
    assert {u.utterance_id for u in again} == {u.utterance_id for u in utts}
    assert sorted(o.key for o in services.store.list("acme/")) == keys_before


def test_bad_events_are_dead_lettered_and_the_next_is_processed(
    services: Services, ulaw_stereo_wav: bytes, encode: Any
) -> None:
    missing = RecordingReady(tenant="acme", call_id="gone", uri="file:///nowhere/x.wav")
    corrupt = _ready(services, b"RIFF" + b"\x00" * 400, "corrupt")
    mono_wav = encode([np.zeros(8000, np.float32)], 8000, "pcm_mulaw", "wav")
    wrong_channels = _ready(services, mono_wav, "mono-file")
    good = _ready(services, ulaw_stereo_wav, "good")
    for payload, key in [
        (b"{not json", "x"),
        (missing.encode(), "gone"),
        (corrupt.encode(), "corrupt"),
        (wrong_channels.encode(), "mono-file"),
        (good.encode(), "good"),
    ]:
        _publish(services, payload, key)
    runner = _runner(services)
    handled = 0
    while handled < 5:
        handled += runner.run_once()
    events = _drain(services, "check-3")
    dead = {d.key: d.reason for d in events if isinstance(d, DeadLetter)}
    assert dead["x"].startswith("malformed event")
    assert "recording not found" in dead["gone"]
    assert "bad audio" in dead["corrupt"]
    assert "channel 1 (customer) named but the recording has 1 channel" in dead["mono-file"]
    assert any(isinstance(e, TranscriptReady) and e.call_id == "good" for e in events)
    assert services.metrics.total("deadletters_total") == 4


def test_silence_only_recording_gives_an_empty_transcript(services: Services, encode: Any) -> None:
    wav = encode([np.zeros(8000 * 5, np.float32)] * 2, 8000, "pcm_mulaw", "wav")
    event = _ready(services, wav, "silent")
    _publish(services, event.encode(), event.key)
    _runner(services).run_once()
    events = _drain(services, "check-4")
    assert [type(e) for e in events] == [TranscriptReady]
    assert events[0].utterances == 0
