"""/v1/media/l16 (jambonz `listen`, mod_audio_fork, mod_audio_stream) against a client
written from their description: metadata first, then raw 16-bit PCM; 16 kHz stereo kept
sample for sample per leg; every malformed stream closed 4400 / 4401 / 1009."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from pipeline.auth import keys_of
from pipeline.events import decode_event, decode_media
from pipeline.services import Services
from sim.streams import l16_call


@pytest.fixture
def key(services: Services) -> str:
    return keys_of(services).create("acme", "pbx")


def test_16khz_stereo_is_two_legs_sample_for_sample(
    services: Services, app_server: Any, key: str
) -> None:
    rng = np.random.default_rng(3)
    left = (rng.standard_normal(16000) * 3000).astype(np.int16)
    right = (rng.standard_normal(16000) * 3000).astype(np.int16)
    reader = services.bus.consumer([services.topics.media, services.topics.calls], "l16")
    l16_call(
        f"{app_server.ws}/v1/media/l16?key={key}&rate=16000",
        [left, right],
        16000,
        {"callSid": "jb-1", "mixType": "stereo", "from": "+33100000000"},
        frame_ms=100,
        dtmf=[(0.5, "3")],
    )
    got: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    events = []
    for msg in reader.poll(1.0, 10_000):
        if msg.topic == services.topics.media:
            ch = decode_media(msg.value)
            assert (ch.call_id, ch.codec, ch.sample_rate) == ("jb-1", "L16", 16000)
            got[ch.leg].append((ch.start_sample, ch.pcm))
        else:
            events.append(decode_event(msg.value))
    reader.close()
    for leg, sent in (("customer", left), ("agent", right)):
        pcm = np.frombuffer(b"".join(p for _, p in sorted(got[leg])), dtype="<i2")
        assert np.array_equal(pcm, sent), leg
    assert [e.type for e in events] == ["call.started", "dtmf", "call.ended"]
    assert events[0].transport == "l16"  # type: ignore[attr-defined]
    assert events[1].digit == "3" and events[1].leg == "customer"  # type: ignore[attr-defined]


CASES: list[tuple[str, str, list[str | bytes], int]] = [
    ("audio_first", "", [b"\x00\x00"], 4400),
    ("metadata_not_json", "", ["{nope"], 4400),
    ("metadata_not_object", "", ["[1, 2]"], 4400),
    ("bad_rate", "", [json.dumps({"sampleRate": 44100})], 4400),
    ("three_channels", "", [json.dumps({"channels": 3})], 4400),
    ("odd_stereo_frame", "", [json.dumps({"mixType": "stereo"}), b"\x00" * 6], 4400),
    ("bad_dtmf", "", [json.dumps({}), json.dumps({"event": "dtmf", "dtmf": "xx"})], 4400),
    ("text_not_json", "", [json.dumps({}), "hello"], 4400),
    ("oversized", "", [json.dumps({}), b"\x00" * 70_000], 1009),
    ("no_key", "nokey", [json.dumps({"call_id": "x"})], 4401),
]


@pytest.mark.parametrize("name,mode,frames,code", CASES, ids=[c[0] for c in CASES])
def test_malformed_streams_are_closed_with_a_reason(
    services: Services,
    app_server: Any,
    key: str,
    name: str,
    mode: str,
    frames: list[str | bytes],
    code: int,
) -> None:
    reader = services.bus.consumer([services.topics.media], "beside")
    tone = (np.sin(np.arange(8000) * 2 * np.pi * 300 / 8000) * 5000).astype(np.int16)
    good = threading.Thread(
        target=l16_call,
        args=(f"{app_server.ws}/v1/media/l16?key={key}", [tone], 8000, {"call_id": "good"}),
    )
    good.start()
    url = f"{app_server.ws}/v1/media/l16" + ("" if mode == "nokey" else f"?key={key}")
    with connect(url, open_timeout=10) as ws:
        for f in frames:
            ws.send(f)
        try:
            while True:
                ws.recv(timeout=5)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None and exc.rcvd.code == code, (name, exc.rcvd)
            assert exc.rcvd.reason
    assert "callpipe_media_stream_rejected_total" in services.metrics.render()
    # The call streaming beside the bad one arrives whole.
    good.join(30)
    time.sleep(0.5)
    samples = sum(
        len(ch.pcm) // 2
        for ch in (decode_media(m.value) for m in reader.poll(1.0, 10_000))
        if ch.call_id == "good"
    )
    reader.close()
    assert samples == len(tone)


def test_mod_audio_fork_sub_protocol_is_accepted(
    services: Services, app_server: Any, key: str
) -> None:
    """mod_audio_fork (libwebsockets) asks for `audiostream.drachtio.org` and drops a
    connection whose handshake does not echo it."""
    with connect(
        f"{app_server.ws}/v1/media/l16?key={key}",
        subprotocols=["audiostream.drachtio.org"],  # type: ignore[list-item]
        open_timeout=10,
    ) as ws:
        assert ws.subprotocol == "audiostream.drachtio.org"
        ws.send(json.dumps({"call_id": "fork-1", "sampleRate": 16000}))
        ws.send(np.zeros(320, "<i2").tobytes())
