"""AudioSocket against a client written from Asterisk's protocol description: a UUID
registered over POST /v1/calls (or the configured tenant's), audio and key presses in,
the voicebot's audio back at real-time pace, a hang-up frame when the call ends over the
API, and every malformed connection hung up and counted without touching the call beside."""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid
from typing import Any

import httpx
import numpy as np
import pytest

from pipeline.auth import keys_of
from pipeline.events import decode_event, decode_media
from pipeline.ingest.audiosocket import audiosocket_of
from pipeline.ingest.receiver import ingest_of
from pipeline.services import Services
from sim.streams import AudioSocketCall, audiosocket_frame

TONE = (np.sin(np.arange(8000) * 2 * np.pi * 300 / 8000) * 5000).astype(np.int16)


@pytest.fixture
def listener(services: Services) -> Any:
    server = audiosocket_of(services)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def auth(services: Services) -> dict[str, str]:
    return {"authorization": f"Bearer {keys_of(services).create('acme', 'pbx')}"}


def _register(srv: Any, auth: dict[str, str], sid: str) -> None:
    r = httpx.post(
        f"{srv.http}/v1/calls",
        headers=auth,
        json={
            "call_id": sid,
            "transport": "audiosocket",
            "legs": [{"leg": "customer", "codec": "L16"}],
        },
    )
    assert r.status_code == 201, r.text


def _hung_up(sock: socket.socket) -> bool:
    """The server sent a hang-up frame (or closed) within 5 s."""
    sock.settimeout(5)
    data = b""
    try:
        while True:
            more = sock.recv(4096)
            if not more:
                return True
            data += more
            if data.startswith(b"\x00\x00\x00") or b"\x00\x00\x00" in data:
                return True
    except TimeoutError:
        return False


BAD: list[tuple[str, bytes]] = [
    ("audio_before_uuid", audiosocket_frame(0x10, b"\x00" * 320)),
    ("short_uuid", audiosocket_frame(0x01, b"\x01\x02")),
    ("unknown_uuid", audiosocket_frame(0x01, uuid.uuid4().bytes)),
    ("unknown_kind", b"REGISTERED"),  # replaced by a registered UUID then kind 0x42
    ("odd_audio", b"REGISTERED"),
    ("oversized", b"REGISTERED"),
]


@pytest.mark.parametrize("name,first", BAD, ids=[b[0] for b in BAD])
def test_malformed_connections_are_hung_up_and_the_call_beside_is_whole(
    services: Services,
    app_server: Any,
    listener: Any,
    auth: dict[str, str],
    name: str,
    first: bytes,
) -> None:
    good_id = str(uuid.uuid4())
    _register(app_server, auth, good_id)
    reader = services.bus.consumer([services.topics.media], "beside")
    good = AudioSocketCall("127.0.0.1", listener.port, good_id)
    sender = threading.Thread(target=good.send, args=(TONE,))
    sender.start()
    bad = socket.create_connection(("127.0.0.1", listener.port))
    if first == b"REGISTERED":
        sid = str(uuid.uuid4())
        _register(app_server, auth, sid)
        bad.sendall(audiosocket_frame(0x01, uuid.UUID(sid).bytes))
        follow = {
            "unknown_kind": audiosocket_frame(0x42, b"x"),
            "odd_audio": audiosocket_frame(0x10, b"\x00" * 321),
            "oversized": struct.pack(">BH", 0x10, 65535) + b"\x00" * 65535,
        }[name]
        bad.sendall(follow)
    else:
        bad.sendall(first)
    assert _hung_up(bad), name
    bad.close()
    sender.join(10)
    good.hung_up.wait(5)
    good.close()
    samples = sum(
        len(decode_media(m.value).pcm) // 2
        for m in reader.poll(1.0, 10_000)
        if decode_media(m.value).call_id == good_id
    )
    reader.close()
    assert samples == len(TONE)
    assert 'callpipe_media_stream_rejected_total{cause="' in services.metrics.render()


def test_the_configured_tenant_takes_unregistered_uuids(services: Services, listener: Any) -> None:
    services.settings.audiosocket = services.settings.audiosocket.model_copy(
        update={"tenant": "acme"}
    )
    sid = str(uuid.uuid4())
    reader = services.bus.consumer([services.topics.calls], "tenant")
    c = AudioSocketCall("127.0.0.1", listener.port, sid)
    c.send(TONE[:1600], dtmf=[(0.1, "*")])
    c.hung_up.wait(5)
    c.close()
    events = [decode_event(m.value) for m in reader.poll(1.0, 100)]
    reader.close()
    assert [(e.type, e.tenant, e.call_id) for e in events] == [
        ("call.started", "acme", sid),
        ("dtmf", "acme", sid),
        ("call.ended", "acme", sid),
    ]


def test_audio_back_is_paced_and_a_hangup_over_the_api_hangs_up(
    services: Services, app_server: Any, listener: Any, auth: dict[str, str], eventually: Any
) -> None:
    sid = str(uuid.uuid4())
    _register(app_server, auth, sid)
    c = AudioSocketCall("127.0.0.1", listener.port, sid)
    stream = None
    eventually(lambda: ingest_of(services).stream("acme", sid) is not None, 5, "the stream")
    stream = ingest_of(services).stream("acme", sid)
    assert stream is not None
    outbound = stream.wait_outbound(5)
    assert outbound is not None
    played: list[tuple[int, float]] = []
    outbound.on_played(lambda token: played.append((token, time.monotonic())))
    t0 = time.monotonic()
    outbound.play(b"\xff" * 8000)  # one second of silence, as mu-law
    outbound.mark(7)
    eventually(lambda: bool(played), 5, "the mark")
    elapsed = played[0][1] - t0
    assert played[0][0] == 7
    assert elapsed >= 0.9, elapsed  # sent at the pace it plays, not in one burst
    assert len(c.received) == 16000
    r = httpx.post(f"{app_server.http}/v1/calls/{sid}/hangup", headers=auth)
    assert r.status_code == 200
    assert c.hung_up.wait(5)
    c.close()


def test_a_taken_port_is_a_clear_start_error(services: Services, listener: Any) -> None:
    from pipeline.errors import CliError
    from pipeline.ingest.audiosocket import AudioSocketServer

    services.settings.audiosocket = services.settings.audiosocket.model_copy(
        update={"port": listener.port}
    )
    with pytest.raises(CliError, match="CALLPIPE_AUDIOSOCKET__PORT"):
        AudioSocketServer(services).start()
