"""/v1/media/twilio against a client written from Twilio's message reference: the key
from each place it may come, and every way a peer can break the protocol (each gets its
close code, is counted, and leaves a call streaming beside it whole)."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import threading
import time
import uuid
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from pipeline.auth import keys_of
from pipeline.events import decode_event, decode_media
from pipeline.ingest.receiver import ingest_of
from pipeline.services import Services
from sim.streams import twilio_call, twilio_start

TONE = (np.sin(np.arange(8000 * 1) * 2 * np.pi * 440 / 8000) * 6000).astype(np.int16)


@pytest.fixture
def keys(services: Services) -> dict[str, str]:
    k = keys_of(services)
    return {"pbx": k.create("acme", "pbx"), "analyst": k.create("acme", "analyst")}


def _closed_with(ws: ClientConnection, timeout_s: float = 5.0) -> tuple[int | None, str]:
    try:
        while True:
            ws.recv(timeout=timeout_s)
    except ConnectionClosed as exc:
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")


def _start(call_id: str, **custom: str) -> str:
    return json.dumps(twilio_start("CA1", "MZ1", ["inbound"], {"call_id": call_id, **custom}))


def _media(payload: str, track: str = "inbound") -> str:
    return json.dumps(
        {"event": "media", "streamSid": "MZ1", "media": {"track": track, "payload": payload}}
    )


GOOD = base64.b64encode(b"\xff" * 160).decode()

CASES: list[tuple[str, list[str | bytes], int]] = [
    ("not_json", ["{not json"], 4400),
    ("media_before_start", [_media(GOOD)], 4400),
    ("bad_base64", ["START", _media("@@not base64@@")], 4400),
    ("unknown_track", ["START", _media(GOOD, track="sideways")], 4400),
    (
        "unknown_track_in_start",
        [json.dumps(twilio_start("CA1", "MZ1", ["inbound", "both"], {}))],
        4400,
    ),
    (
        "stereo_format",
        [
            json.dumps(
                {
                    "event": "start",
                    "start": {
                        "callSid": "CA9",
                        "tracks": ["inbound"],
                        "mediaFormat": {
                            "encoding": "audio/x-l16",
                            "sampleRate": 16000,
                            "channels": 1,
                        },
                    },
                }
            )
        ],
        4400,
    ),
    ("binary_frame", [b"\x00\x01"], 4400),
    ("oversized", ["START", _media("A" * 80_000)], 1009),
    ("second_start", ["START", "START"], 4400),
]


@pytest.mark.parametrize("name,frames,code", CASES, ids=[c[0] for c in CASES])
def test_bad_frames_close_with_a_reason_and_spare_the_call_beside(
    services: Services,
    app_server: Any,
    keys: dict[str, str],
    name: str,
    frames: list[str | bytes],
    code: int,
) -> None:
    good_id = f"good-{uuid.uuid4().hex[:6]}"
    reader = services.bus.consumer([services.topics.media, services.topics.calls], "beside")
    good = threading.Thread(
        target=twilio_call,
        args=(f"{app_server.ws}/v1/media/twilio?key={keys['pbx']}", {"inbound": TONE}, {}),
        kwargs={"call_sid": good_id},
    )
    good.start()
    bad_id = f"bad-{uuid.uuid4().hex[:6]}"
    with connect(f"{app_server.ws}/v1/media/twilio?key={keys['pbx']}", open_timeout=10) as ws:
        for f in frames:
            ws.send(_start(bad_id) if f == "START" else f)
        got, reason = _closed_with(ws)
    assert got == code, (name, got, reason)
    assert reason
    good.join(30)
    samples = 0
    ended = []
    for msg in reader.poll(1.0, 100_000):
        if msg.topic == services.topics.media:
            ch = decode_media(msg.value)
            if ch.call_id == good_id:
                samples += len(ch.pcm) // 2
        else:
            ev = decode_event(msg.value)
            if ev.type == "call.ended":
                ended.append((ev.call_id, ev.reason))  # type: ignore[attr-defined]
    reader.close()
    assert samples == len(TONE)
    assert (good_id, "hangup") in ended
    metrics = services.metrics.render()
    assert 'callpipe_media_stream_rejected_total{cause="' in metrics


def test_the_key_comes_from_the_query_a_header_or_the_custom_parameters(
    services: Services, app_server: Any, keys: dict[str, str]
) -> None:
    url = f"{app_server.ws}/v1/media/twilio"
    bearer = {"Authorization": f"Bearer {keys['pbx']}"}
    cases: list[tuple[str, str, dict[str, str] | None, dict[str, str]]] = [
        ("k-query", f"{url}?key={keys['pbx']}", None, {}),
        ("k-header", url, bearer, {}),
        ("k-custom", url, None, {"key": keys["pbx"]}),
    ]
    for call_id, where, headers, custom in cases:
        twilio_call(
            where, {"inbound": TONE[:1600]}, {**custom, "call_id": call_id}, headers=headers
        )
        assert ingest_of(services).recently_ended("acme", call_id), call_id
    for key, code in ((None, 4401), ("nope", 4401), (keys["analyst"], 4403)):
        with connect(url + (f"?key={key}" if key else ""), open_timeout=10) as ws:
            ws.send(_start("k-refused"))
            assert _closed_with(ws)[0] == code, key


def test_a_silent_opener_and_a_second_stream_for_one_call(
    services: Services, app_server: Any, keys: dict[str, str]
) -> None:
    services.settings.streams = services.settings.streams.model_copy(
        update={"start_timeout_s": 0.5}
    )
    url = f"{app_server.ws}/v1/media/twilio?key={keys['pbx']}"
    with connect(url, open_timeout=10) as ws:
        ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        assert _closed_with(ws)[0] == 4408
    with connect(url, open_timeout=10) as first:
        first.send(_start("dup-1"))
        first.send(_media(GOOD))
        time.sleep(0.3)
        with connect(url, open_timeout=10) as second:
            second.send(_start("dup-1"))
            assert _closed_with(second)[0] == 4409
        first.send(_media(GOOD))  # the first stream goes on
        first.send(json.dumps({"event": "stop", "streamSid": "MZ1"}))
        assert _closed_with(first)[0] == 1000


def test_a_vanished_peer_ends_its_call(
    services: Services, app_server: Any, keys: dict[str, str], eventually: Any
) -> None:
    ws = connect(f"{app_server.ws}/v1/media/twilio?key={keys['pbx']}", open_timeout=10).__enter__()
    ws.send(_start("gone-1"))
    ws.send(_media(GOOD))
    eventually(lambda: ingest_of(services).call("acme", "gone-1") is not None, 5, "registered")
    ws.socket.close()  # no stop, no close frame: the TCP connection just goes
    eventually(lambda: ingest_of(services).recently_ended("acme", "gone-1"), 10, "ended")


def test_a_peer_that_takes_no_audio_back_is_closed_1013(
    services: Services, app_server: Any, keys: dict[str, str]
) -> None:
    services.settings.streams = services.settings.streams.model_copy(update={"send_timeout_s": 0.5})
    # A client that opens the stream, then never reads: TCP pushes back on the server.
    sock = _raw_websocket(app_server.port, f"/v1/media/twilio?key={keys['pbx']}")
    sock.sendall(_masked_text(_start("slow-1")))
    stream = None
    deadline = time.time() + 5
    while stream is None and time.time() < deadline:
        stream = ingest_of(services).stream("acme", "slow-1")
        time.sleep(0.05)
    assert stream is not None
    outbound = stream.wait_outbound(5)
    assert outbound is not None
    deadline = time.time() + 60
    while not ingest_of(services).recently_ended("acme", "slow-1") and time.time() < deadline:
        # A minute of audio at a time, never read: the socket's buffers fill (~10 MB on
        # loopback), then the server's send waits, past streams.send_timeout_s.
        outbound.play(b"\xff" * 8000 * 60)
        time.sleep(0.2)
    assert ingest_of(services).recently_ended("acme", "slow-1")
    assert 'cause="slow_peer"' in services.metrics.render()
    sock.close()


def _raw_websocket(port: int, path: str) -> socket.socket:
    """An RFC 6455 client handshake by hand, so that nothing reads behind the test's back."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _masked_text(text: str) -> bytes:
    """One client text frame (clients mask, RFC 6455 section 5.3)."""
    data = text.encode()
    mask = os.urandom(4)
    n = len(data)
    head = bytes([0x81]) + (
        bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
    )
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))
