"""The same real call over every transport a PBX may fork it with: RTP (DTMF on payload
type 96, registered per call), Twilio Media Streams, the L16 WebSocket (jambonz,
mod_audio_fork) and Asterisk AudioSocket. The clients (sim/streams.py, sim/pbx.py) are
written from each protocol's published description. What comes out must be the same:
the same audio per leg on the bus, the same key presses, and through the live worker the
same transcript, in the live view and in transcript.json."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from app.roles import start_role
from pipeline.auth import keys_of
from pipeline.catalog import load_manifest
from pipeline.events import DtmfReceived, decode_event, decode_media
from pipeline.ingest.audiosocket import audiosocket_of
from pipeline.media import g711
from pipeline.services import Services
from sim.pbx import DtmfMark, send_leg
from sim.streams import AudioSocketCall, l16_call, twilio_call
from stt.normalise import wer

LEGS = ("agent", "customer")
PRESSES = {"customer": [(2.0, "4"), (2.6, "2")], "agent": [(3.2, "#")]}


@pytest.fixture(scope="module")
def real_call() -> dict[str, Any]:
    """The first ~25 s of the real French voice (fr_CA_f_June), both legs, as mu-law
    carries it: int16 8 kHz per leg, and what each leg says."""
    from sim import corpus

    call = corpus.build("fr-human", small=True)[0]
    cut = 25 * corpus.RATE
    ends = [ln.end for ln in call.lines if ln.end <= cut]
    cut = max(ends) + corpus.RATE // 2
    legs = {}
    for leg in LEGS:
        pcm = (np.clip(call.legs[leg][:cut], -1, 1) * 32767).astype(np.int16)
        legs[leg] = g711.ulaw_decode(g711.ulaw_encode(pcm))
    text = {
        leg: " ".join(ln.text for ln in call.lines if ln.leg == leg and ln.end <= cut)
        for leg in LEGS
    }
    return {"legs": legs, "text": text}


@pytest.fixture
def pbx_key(services: Services) -> str:
    return keys_of(services).create("acme", "pbx")


@pytest.fixture
def ingest_running(services: Services) -> Iterator[None]:
    stop = threading.Event()
    threads = start_role(services, "ingest", stop)
    yield
    stop.set()
    for t in threads:
        t.join(10)


def _send_all(
    srv: Any, services: Services, key: str, legs: dict[str, np.ndarray], ids: dict[str, str]
) -> None:
    """One call per transport, all at once and in real time, with the same key presses."""
    auth = {"authorization": f"Bearer {key}"}
    rtp = httpx.post(
        f"{srv.http}/v1/calls",
        headers=auth,
        json={
            "call_id": ids["rtp"],
            "language": "fr",
            "legs": [{"leg": leg, "codec": "PCMU", "dtmf_payload_type": 96} for leg in LEGS],
        },
    )
    assert rtp.status_code == 201, rtp.text
    assert {e["dtmf_payload_type"] for e in rtp.json()["legs"]} == {96}
    ports = {e["leg"]: (e["host"], e["port"]) for e in rtp.json()["legs"]}
    uuids = {leg: str(uuid.uuid4()) for leg in LEGS}
    sock = httpx.post(
        f"{srv.http}/v1/calls",
        headers=auth,
        json={
            "call_id": ids["audiosocket"],
            "transport": "audiosocket",
            "language": "fr",
            "legs": [{"leg": leg, "codec": "L16", "uuid": uuids[leg]} for leg in LEGS],
        },
    )
    assert sock.status_code == 201, sock.text
    port = sock.json()["connect"]["port"]
    assert port == audiosocket_of(services).port
    start = time.monotonic() + 0.3

    def rtp_leg(leg: str) -> None:
        marks = [DtmfMark(leg, int(t * 8000), d) for t, d in PRESSES[leg]]
        send_leg(legs[leg], *ports[leg], dtmf=marks, dtmf_payload_type=96, start=start)

    def audiosocket_leg(leg: str) -> None:
        c = AudioSocketCall("127.0.0.1", port, uuids[leg])
        time.sleep(max(0.0, start - time.monotonic()))
        c.send(legs[leg], dtmf=PRESSES[leg])
        c.hung_up.wait(5)
        c.close()

    def twilio() -> None:
        time.sleep(max(0.0, start - time.monotonic()))
        twilio_call(
            f"{srv.ws}/v1/media/twilio?key={key}",
            {"inbound": legs["customer"], "outbound": legs["agent"]},
            {"call_id": ids["twilio"], "language": "fr"},
            dtmf=PRESSES["customer"],
        )

    def l16() -> None:
        time.sleep(max(0.0, start - time.monotonic()))
        l16_call(
            f"{srv.ws}/v1/media/l16",
            [legs["customer"], legs["agent"]],
            8000,
            {"call_id": ids["l16"], "key": key, "mixType": "stereo", "language": "fr"},
            dtmf=PRESSES["customer"],
        )

    jobs: list[Callable[[], None]] = [twilio, l16]
    jobs += [lambda leg=leg: rtp_leg(leg) for leg in LEGS]  # type: ignore[misc]
    jobs += [lambda leg=leg: audiosocket_leg(leg) for leg in LEGS]  # type: ignore[misc]
    threads = [threading.Thread(target=j) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    time.sleep(0.5)
    r = httpx.post(f"{srv.http}/v1/calls/{ids['rtp']}/hangup", headers=auth)
    assert r.status_code == 200


def test_every_transport_carries_the_same_audio_and_key_presses(
    services: Services,
    app_server: Any,
    pbx_key: str,
    ingest_running: None,
    real_call: dict[str, Any],
) -> None:
    """Per leg, the PCM on the bus is sample for sample the audio sent, whatever the
    transport, and the presses are the same digits on the same legs (RTP's on type 96)."""
    reader = services.bus.consumer([services.topics.media, services.topics.calls], "same")
    ids = {t: f"{t}-{uuid.uuid4().hex[:6]}" for t in ("rtp", "twilio", "l16", "audiosocket")}
    transports = {v: k for k, v in ids.items()}
    short = {leg: a[: 6 * 8000] for leg, a in real_call["legs"].items()}
    _send_all(app_server, services, pbx_key, short, ids)
    audio: dict[tuple[str, str], list[tuple[int, bytes]]] = defaultdict(list)
    keys: dict[str, list[tuple[str, str]]] = defaultdict(list)
    ended: set[str] = set()
    for msg in reader.poll(2.0, 100_000):
        if msg.topic == services.topics.media:
            ch = decode_media(msg.value)
            audio[(transports[ch.call_id], ch.leg)].append((ch.start_sample, ch.pcm))
        else:
            ev = decode_event(msg.value)
            if isinstance(ev, DtmfReceived):
                keys[transports[ev.call_id]].append((ev.leg, ev.digit))
            elif ev.type == "call.ended":
                ended.add(transports[ev.call_id])
    reader.close()
    assert ended == set(ids)
    for (transport, leg), chunks in audio.items():
        chunks.sort()
        pcm = np.frombuffer(b"".join(c for _, c in chunks), dtype="<i2")
        sent = short[leg]
        # Every sample once, in order, nothing invented: the stream is the audio sent.
        assert len(pcm) == len(sent), (transport, leg, len(pcm), len(sent))
        same = pcm == sent
        if transport == "rtp":
            # RFC 4733 packets replace the audio they overlap (sim/pbx.py, as PBXs do).
            for t, _ in PRESSES[leg]:
                same[int(t * 8000) : int((t + 0.3) * 8000)] = True
        assert same.all(), (transport, leg, np.flatnonzero(~same)[:5])
        # Chunks follow each other without holes or overlaps.
        starts = [s for s, _ in chunks]
        lens = [len(c) // 2 for _, c in chunks]
        assert all(a + n == b for a, n, b in zip(starts, lens, starts[1:], strict=False))
    assert {t for t, _ in audio} == set(ids)
    expected = sorted((leg, d) for leg in LEGS for _, d in PRESSES[leg])
    assert sorted(keys["rtp"]) == expected
    assert sorted(keys["audiosocket"]) == expected
    # Twilio and the L16 socket report the caller's presses (dtmf on the inbound track).
    assert sorted(keys["twilio"]) == sorted(("customer", d) for _, d in PRESSES["customer"])
    assert sorted(keys["l16"]) == sorted(("customer", d) for _, d in PRESSES["customer"])


def test_live_transcripts_match_rtp_over_every_transport(
    services: Services,
    app_server: Any,
    pbx_key: str,
    ingest_running: None,
    real_call: dict[str, Any],
) -> None:
    """25 s of the real voice over the four transports at once, through the live worker:
    each transport's finals read as RTP's do (within the live path's run-to-run spread);
    the key presses show in the live view (RTP's on type 96) and in transcript.json."""
    stop = threading.Event()
    threads = start_role(services, "live", stop)
    watcher_key = keys_of(services).create("acme", "analyst")
    ids = {t: f"{t}-{uuid.uuid4().hex[:6]}" for t in ("rtp", "twilio", "l16", "audiosocket")}
    seen: dict[str, list[dict[str, Any]]] = {}

    def watch(transport: str) -> None:
        # The call's live view, opened as soon as the call exists.
        call_id = ids[transport]
        deadline = time.time() + 20
        while load_manifest(services.store, "acme", call_id) is None and time.time() < deadline:
            time.sleep(0.05)
        url = f"{app_server.ws}/v1/calls/{call_id}/live?key={watcher_key}"
        got = seen.setdefault(transport, [])
        with connect(url, open_timeout=10) as ws:
            for raw in ws:
                got.append(json.loads(raw))

    watched = ("rtp", "twilio", "audiosocket")
    watchers = [threading.Thread(target=watch, args=(t,)) for t in watched]
    try:
        time.sleep(2)  # the live worker joins the bus: the calls stream as they are spoken
        for w in watchers:
            w.start()
        _send_all(app_server, services, pbx_key, real_call["legs"], ids)
        docs = {}
        for transport, call_id in ids.items():
            deadline = time.time() + 120
            while time.time() < deadline:
                m = load_manifest(services.store, "acme", call_id)
                if m is not None and m.status == "transcribed" and m.transcript_key:
                    docs[transport] = json.loads(services.store.get(m.transcript_key))
                    break
                time.sleep(0.2)
            assert transport in docs, f"no transcript for {transport}"
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        for w in watchers:
            w.join(30)

    def text(doc: dict[str, Any], leg: str) -> str:
        return " ".join(u["text"] for u in doc["utterances"] if u["leg"] == leg)

    for leg in LEGS:
        rtp = text(docs["rtp"], leg)
        # The right audio, heard: not a bound on accuracy (bench/accuracy.py is).
        assert wer(real_call["text"][leg], rtp, "fr") < 0.5, (leg, rtp)
        # Twilio, L16 and AudioSocket bring the same samples, key presses beside the audio:
        # their finals are the same words, however the four calls' decodes were scheduled
        # (a final read greedily when the partials lane took it, or a hangover pass that
        # heard more or less of the silence, once made them differ).
        twilio = text(docs["twilio"], leg)
        for transport in ("l16", "audiosocket"):
            assert text(docs[transport], leg) == twilio, (transport, leg)
        # Over RTP a key press replaces the audio packets it overlaps, as PBXs do (100 ms
        # of the agent's speech at 3.2 s), which moved 3 words of 33.
        assert wer(rtp, twilio, "fr") <= 0.2, (leg, rtp, twilio)
    expected = sorted((leg, d) for leg in LEGS for _, d in PRESSES[leg])
    for transport in ("rtp", "audiosocket"):
        presses = sorted((p["leg"], p["digit"]) for p in docs[transport]["dtmf"])
        assert presses == expected, transport
    for transport in watched:
        got = seen[transport]
        assert any(m["type"] == "utterance" and m["final"] for m in got), transport
        digits = sorted(m["digit"] for m in got if m["type"] == "dtmf")
        want = [d for _, d in PRESSES["customer"]]
        if transport != "twilio":  # RTP (type 96) and AudioSocket carry both legs' presses
            want += [d for _, d in PRESSES["agent"]]
        assert digits == sorted(want), (transport, digits)
