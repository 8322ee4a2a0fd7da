"""Distributed batch path: recording.ready on Kafka (tansu) -> batch worker -> transcript
objects in S3 (moto, through the MinIO SDK) and utterance events on Kafka."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

from app.roles import start_role
from pipeline.events import RecordingReady, TranscriptReady, Utterance, decode_event
from pipeline.ids import call_key
from pipeline.services import Services
from stt.normalise import wer

STARTED = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)


def test_kafka_recording_to_s3_transcript(
    distributed_services: Services, ulaw_stereo_wav: bytes, two_party: dict[str, Any]
) -> None:
    svc = distributed_services
    key = call_key("acme", "k-call-1", STARTED, "recording.wav")
    uri = svc.store.put(key, ulaw_stereo_wav, "audio/wav")
    assert uri.startswith("s3://")
    event = RecordingReady(
        tenant="acme",
        call_id="k-call-1",
        uri=uri,
        channels={"0": "agent", "1": "customer"},
        started_at=STARTED,
        language="en",
    )
    producer = svc.bus.producer()
    producer.send(svc.topics.recordings, event.key, event.encode())
    producer.flush(30)

    stop = threading.Event()
    threads = start_role(svc, "batch", stop)
    reader = svc.bus.consumer([svc.topics.transcripts], "e2e-reader")
    got: list[Any] = []
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and not any(isinstance(e, TranscriptReady) for e in got):
            got += [decode_event(m.value) for m in reader.poll(1.0)]
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        reader.close()

    ready = [e for e in got if isinstance(e, TranscriptReady)]
    assert ready, f"no transcript.ready within the deadline; got {got}"
    utts = [e for e in got if isinstance(e, Utterance)]
    assert ready[0].utterances == len(utts) > 0
    assert ready[0].json_uri.startswith("s3://") and ready[0].vtt_uri.endswith("transcript.vtt")
    doc = json.loads(svc.store.get(call_key("acme", "k-call-1", STARTED, "transcript.json")))
    assert len(doc["utterances"]) == len(utts)
    vtt = svc.store.get(call_key("acme", "k-call-1", STARTED, "transcript.vtt")).decode()
    assert "<v agent>" in vtt and "<v customer>" in vtt
    for leg in ("agent", "customer"):
        text = " ".join(u.text for u in utts if u.leg == leg)
        assert wer(two_party[f"{leg}_text"], text) < 0.15, (leg, text)
