"""The live path distributed, from real RTP: UDP -> ingest -> media/calls on Kafka (tansu)
-> the `live` role -> utterances on Kafka, transcript and recording in S3 (moto, through
the MinIO SDK)."""

from __future__ import annotations

import io
import json
import threading
import time
import wave
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

import numpy as np

from app.roles import start_role
from pipeline.events import (
    CallStarted,
    DtmfReceived,
    LegInfo,
    TranscriptReady,
    Utterance,
    decode_event,
)
from pipeline.ids import call_key
from pipeline.media.resample import float_to_int16
from pipeline.services import Services
from stt.normalise import wer


def _send_call(
    ingest: Any, started: CallStarted, legs: dict[str, tuple[np.ndarray, dict[str, Any]]]
) -> None:
    """Register the call, send each leg (int16 8 kHz, `send_leg` options) as RTP in real
    time, all legs from the same instant, then hang up."""
    from sim.pbx import send_leg

    endpoints = {e.leg: e for e in ingest.register(started)}
    t0 = time.monotonic() + 0.05
    senders = [
        threading.Thread(
            target=send_leg,
            args=(audio, endpoints[leg].host, endpoints[leg].port),
            kwargs={**options, "start": t0},
        )
        for leg, (audio, options) in legs.items()
    ]
    for t in senders:
        t.start()
    for t in senders:
        t.join(120)
    time.sleep(0.3)
    assert ingest.end(started.tenant, started.call_id) is not None


def test_simulated_two_party_call_over_udp_and_kafka(
    distributed_services: Services, piper_voice: Any
) -> None:
    """The DONE-WHEN call: real RTP with 5% loss, 40 ms jitter and 2% reordering into the
    ingest, media and calls over tansu, the live worker, transcript and recording in S3.
    The call asks to be recorded: its recording is then transcribed by the batch worker,
    whose transcript replaces the live one and keeps its key presses."""
    from sim.pbx import parse_script, render_script

    svc = distributed_services
    script = parse_script(
        {
            "agent_id": "a-7",
            "lines": [
                {
                    "speaker": "agent",
                    "text": "Good morning, thank you for calling. How can I help you?",
                },
                {
                    "speaker": "customer",
                    "text": "Hello, I would like to cancel my contract please.",
                },
                {"speaker": "agent", "text": "Of course. Please type your customer number now."},
                {"speaker": "customer", "dtmf": "42#", "pause": 0.6},
                {"speaker": "customer", "text": "I have typed it, thank you very much."},
            ],
        }
    )
    rendered = render_script(script, piper_voice)
    stop = threading.Event()
    threads = start_role(svc, "live", stop) + start_role(svc, "batch", stop)
    reader = svc.bus.consumer([svc.topics.transcripts, svc.topics.calls], "e2e-live-reader")
    ingest = _ingest(svc)
    try:
        time.sleep(5)  # the worker joins its group: the call then streams as it is spoken
        started = CallStarted(
            tenant="acme",
            call_id="k-live-1",
            agent_id="a-7",
            started_at=datetime.now(UTC),
            legs=(LegInfo(leg="agent"), LegInfo(leg="customer")),
            record=True,
        )
        impaired = {"loss": 5.0, "jitter_ms": 40.0, "reorder": 2.0}
        _send_call(
            ingest,
            started,
            {
                leg: (
                    rendered.legs[leg],
                    {
                        **impaired,
                        "seed": 7 + i,
                        "dtmf": [m for m in rendered.dtmf if m.leg == leg],
                    },
                )
                for i, leg in enumerate(("agent", "customer"))
            },
        )
        got = _wait_ready(reader, "k-live-1", 120)
        batch = _wait_ready(reader, "k-live-1", 120, source="batch")
    finally:
        ingest.close()
        stop.set()
        for t in threads:
            t.join(30)
        reader.close()

    ready = [e for e in got if isinstance(e, TranscriptReady)]
    assert ready and ready[0].source == "live", got
    utts = [e for e in got if isinstance(e, Utterance)]
    finals = [u for u in utts if u.final]
    # a final per sentence (a line of two sentences may give two), on the right leg
    turns = [leg for leg, _ in groupby(u.leg for u in finals)]
    assert turns == ["agent", "customer", "agent", "customer"]
    for leg in ("agent", "customer"):
        text = " ".join(u.text for u in finals if u.leg == leg)
        assert wer(rendered.text_of(leg), text) < 0.2, (leg, text)
    # partials come, and each utterance's partials precede its final
    assert any(not u.final for u in utts)
    for f in finals:
        seen = [u for u in utts if u.utterance_id == f.utterance_id]
        assert seen[-1] is f
    digits = [e.digit for e in got if isinstance(e, DtmfReceived) and e.call_id == "k-live-1"]
    assert digits == ["4", "2", "#"]
    assert ready[0].json_uri.startswith("s3://")
    doc = json.loads(
        svc.store.get(call_key("acme", "k-live-1", started.started_at, "transcript.json"))
    )
    # By now the batch transcription of the kept recording has replaced the live one.
    assert [e.source for e in batch if isinstance(e, TranscriptReady)] == ["batch"]
    assert doc["source"] == "batch" and doc["utterances"]
    assert [p["digit"] for p in doc["dtmf"]] == ["4", "2", "#"]
    batch_text = " ".join(u["text"] for u in doc["utterances"] if u["leg"] == "customer")
    assert wer(rendered.text_of("customer"), batch_text) < 0.2, batch_text
    rec = svc.store.get(call_key("acme", "k-live-1", started.started_at, "recording.wav"))
    with wave.open(io.BytesIO(rec)) as w:
        assert w.getnchannels() == 2
        assert abs(w.getnframes() / 16000 - rendered.duration) < 1.0
    manifest = json.loads(svc.store.get("acme/calls/k-live-1.json"))
    assert manifest["status"] == "transcribed" and manifest["agent_id"] == "a-7"


def _ingest(svc: Services) -> Any:
    """The real RTP ingest on a port range of its own (other tests bind UDP ports too)."""
    from pipeline.ingest.receiver import RtpIngest

    # above the kernel's ephemeral range, so no client socket sits in it
    low = 61000 + 2 * int(np.random.default_rng().integers(0, 2000))
    live = svc.settings.live.model_copy(update={"rtp_port_min": low, "rtp_port_max": low + 200})
    ingest = RtpIngest(svc.settings.model_copy(update={"live": live}), svc.bus, svc.metrics)
    ingest.start()
    return ingest


def _wait_ready(reader: Any, call_id: str, timeout_s: float, source: str = "live") -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not any(
        isinstance(e, TranscriptReady) and e.call_id == call_id and e.source == source for e in got
    ):
        got += [decode_event(m.value) for m in reader.poll(1.0)]
    return got


def test_ffmpeg_rtp_to_a_registered_leg_is_transcribed(
    distributed_services: Services, speak: Any, tmp_path: Any
) -> None:
    import subprocess

    from pipeline.media.audio_file import write_wav

    svc = distributed_services
    lines = [
        "Hello, I would like to cancel my contract please.",
        "Thank you for your help, have a nice day.",
    ]
    pause = np.zeros(16000, np.float32)
    wav = tmp_path / "speech.wav"
    audio = np.concatenate([pause, speak(lines[0]), pause, speak(lines[1]), pause])
    wav.write_bytes(write_wav([audio], 16000))
    stop = threading.Event()
    threads = start_role(svc, "live", stop) + start_role(svc, "batch", stop)
    reader = svc.bus.consumer([svc.topics.transcripts], "e2e-ffmpeg-reader")
    ingest = _ingest(svc)
    try:
        started = CallStarted(
            tenant="acme",
            call_id="ff-1",
            agent_id="a-1",
            legs=(LegInfo(leg="customer", codec="PCMU"),),
        )
        (endpoint,) = ingest.register(started)
        proc = subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-re",
                "-i",
                str(wav),
                "-ar",
                "8000",
                "-ac",
                "1",
                "-acodec",
                "pcm_mulaw",
                "-f",
                "rtp",
                f"rtp://{endpoint.host}:{endpoint.port}",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        # -re sends in real time: the first packet left about the file's length ago
        first_packet = time.time() - len(audio) / 16000 - started.started_at.timestamp()
        time.sleep(0.5)  # the jitter buffer's last packets
        assert ingest.end("acme", "ff-1") is not None
        got = _wait_ready(reader, "ff-1", 120)
    finally:
        ingest.close()
        stop.set()
        for t in threads:
            t.join(30)
        reader.close()
    finals = [e for e in got if isinstance(e, Utterance) and e.final]
    assert 2 <= len(finals) <= 4 and all(u.leg == "customer" for u in finals), finals
    assert wer(" ".join(lines), " ".join(u.text for u in finals)) < 0.2, finals
    # times are from the call's start: the first line's first word ("Hello,") ends about
    # 1.3 s into the stream (1 s of pause, Piper's lead-in), which began when ffmpeg was up
    # (over 2 s after the registration on a slow machine). Its start is no yardstick:
    # Whisper stretches a first word back over the live pre-roll's quiet.
    first = finals[0].words[0]
    assert first_packet + 0.8 < first.end < first_packet + 2.0, (first_packet, finals[0])
    assert finals[0].start <= first.start, finals[0]
    assert any(isinstance(e, TranscriptReady) and e.source == "live" for e in got)


def test_music_on_hold_tones_and_noise_sent_as_rtp_give_no_words(services: Services) -> None:
    """Real music on hold (asterisk-moh-opsound-wav) on the customer leg and in-band DTMF
    tones then line noise on the agent leg, as G.711 RTP in real time through the ingest
    and the live role: not one word, partial or final."""
    from sim import corpus

    music = corpus.build("moh", small=True)[0].legs["customer"]
    other = np.concatenate(
        [
            corpus.build("dtmf", small=True)[0].legs["customer"],
            corpus.line_noise(12 * corpus.RATE, -40.0, 3),
        ]
    )
    n = max(len(music), len(other))
    legs = {
        "customer": np.pad(music, (0, n - len(music))),
        "agent": np.pad(other, (0, n - len(other))),
    }
    stop = threading.Event()
    threads = start_role(services, "live", stop)
    reader = services.bus.consumer([services.topics.transcripts], "e2e-moh-reader")
    ingest = _ingest(services)
    try:
        started = CallStarted(
            tenant="acme",
            call_id="moh-1",
            legs=(LegInfo(leg="agent"), LegInfo(leg="customer")),
            language="en",
        )
        _send_call(ingest, started, {leg: (float_to_int16(a), {}) for leg, a in legs.items()})
        got = _wait_ready(reader, "moh-1", 60)
    finally:
        ingest.close()
        stop.set()
        for t in threads:
            t.join(30)
        reader.close()
    assert any(isinstance(e, TranscriptReady) and e.utterances == 0 for e in got), got
    assert [e.text for e in got if isinstance(e, Utterance)] == []
    assert services.metrics.total("media_chunks_total") > 2 * n / 1280 * 0.9  # it all arrived
