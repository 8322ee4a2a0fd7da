"""The RTP ingest on real UDP sockets (loopback) and the in-process bus: what goes in as
RTP comes out as MediaChunks, sample-accurate; bad traffic is counted and isolated."""

from __future__ import annotations

import socket
import subprocess
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.events import CallEnded, CallStarted, LegInfo, MediaChunk
from pipeline.ingest.receiver import RtpIngest
from pipeline.ingest.stage import IngestStage
from pipeline.media import g711
from pipeline.media.opus import OpusDecoder
from pipeline.media.rtp import build, parse
from pipeline.services import Services
from pipeline.worker import WorkerRunner
from sim.pbx import DtmfMark, Packet, packetize, send_packets


def tone(seconds: float, rate: int = 8000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    # A chirp-ish signal, so a misplaced packet can never look right by accident.
    return (np.sin(2 * np.pi * (freq + 200 * t) * t) * 9000).astype(np.int16)


def register(
    ingest: RtpIngest,
    call_id: str,
    *legs: tuple[str, str],
    tenant: str = "acme",
    pt: int | None = None,
) -> dict[str, int]:
    eps = ingest.register(
        CallStarted(
            tenant=tenant,
            call_id=call_id,
            legs=tuple(LegInfo(leg=leg, codec=codec, payload_type=pt) for leg, codec in legs),  # type: ignore[arg-type]
        )
    )
    return {e.leg: e.port for e in eps}


def joined(chunks: list[MediaChunk]) -> tuple[int, np.ndarray]:
    """First sample and the audio of contiguous chunks (asserts there is no hole)."""
    assert chunks, "no media"
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start_sample == a.start_sample + len(a.pcm) // 2, "chunks are not contiguous"
    pcm = np.concatenate([np.frombuffer(c.pcm, dtype="<i2") for c in chunks])
    return chunks[0].start_sample, pcm


def finish(ingest: RtpIngest, tap: Any, call_id: str) -> None:
    time.sleep(0.15)  # let the last datagrams reach the loop
    ingest.end("acme", call_id)
    tap.until(lambda t: t.ended(call_id) is not None)


@pytest.mark.parametrize(("codec", "ptime"), [("PCMU", 20), ("PCMU", 60), ("PCMA", 10)])
def test_g711_audio_arrives_sample_exact(
    ingest: RtpIngest, tap: Any, codec: str, ptime: int
) -> None:
    ports = register(ingest, "c1", ("agent", codec))
    audio = tone(1.5)
    sent = send_packets(
        packetize(audio, codec, ptime_ms=ptime), "127.0.0.1", ports["agent"], realtime=False
    )
    assert sent == len(audio) // (8 * ptime)
    finish(ingest, tap, "c1")
    chunks = tap.chunks("c1", "agent")
    start, pcm = joined(chunks)
    codec_of = {
        "PCMU": (g711.ulaw_encode, g711.ulaw_decode),
        "PCMA": (g711.alaw_encode, g711.alaw_decode),
    }[codec]
    expected = codec_of[1](codec_of[0](audio))
    np.testing.assert_array_equal(pcm, expected)
    assert all(c.sample_rate == 8000 and c.codec == codec for c in chunks)
    assert 0 <= start < 8000  # the leg starts when its first packet arrived
    assert all(c.concealed == 0 for c in chunks)
    # Batches of about batch_ms (160 ms) of whole packets.
    sizes = {len(c.pcm) // 2 for c in chunks[:-1]}
    assert sizes <= {1280, 1440}, sizes


def test_loss_is_concealed_in_place_and_counted(ingest: RtpIngest, tap: Any) -> None:
    ports = register(ingest, "c2", ("customer", "PCMU"))
    audio = tone(1.0)
    packets = packetize(audio, "PCMU")
    lost = {10, 11, 30}
    kept = [p for i, p in enumerate(packets) if i not in lost]
    # Real-time pacing, so the holes are given up by the clock (not by a queue).
    send_packets(kept, "127.0.0.1", ports["customer"], realtime=True)
    finish(ingest, tap, "c2")
    chunks = tap.chunks("c2", "customer")
    _, pcm = joined(chunks)
    expected = g711.ulaw_decode(g711.ulaw_encode(audio))
    assert len(pcm) == len(expected)
    assert sum(c.concealed for c in chunks) == 3
    for i in range(50):
        got = pcm[i * 160 : (i + 1) * 160]
        if i in (10, 30):  # first lost packet: the previous one repeated
            np.testing.assert_array_equal(got, expected[(i - 1) * 160 : i * 160])
        elif i == 11:  # second in a row: silence
            assert np.abs(got).max() == 0
        else:
            np.testing.assert_array_equal(got, expected[i * 160 : (i + 1) * 160])


def test_reordered_jittered_packets_come_out_whole(ingest: RtpIngest, tap: Any) -> None:
    ports = register(ingest, "c3", ("agent", "PCMU"))
    audio = tone(1.0)
    packets = packetize(audio, "PCMU")
    # Swap neighbours and send one packet twice: 30 ms late, inside the 60 ms window.
    order = list(range(len(packets)))
    for i in (5, 17, 33):
        order[i], order[i + 1] = order[i + 1], order[i]
    timed = [
        Packet(k * 0.02 + (0.03 if j != k else 0.0), packets[j].data, j)
        for k, j in enumerate(order)
    ] + [Packet(0.5, packets[20].data, 20)]
    send_packets(sorted(timed, key=lambda p: p.at), "127.0.0.1", ports["agent"])
    finish(ingest, tap, "c3")
    _, pcm = joined(tap.chunks("c3", "agent"))
    np.testing.assert_array_equal(pcm, g711.ulaw_decode(g711.ulaw_encode(audio)))
    assert ingest.metrics.value("rtp_dropped_total", cause="duplicate") == 1


def test_opus_leg_is_decoded_to_16k(ingest: RtpIngest, tap: Any, speak: Any) -> None:
    ports = register(ingest, "c4", ("agent", "opus"), pt=111)
    pcm16 = (speak("The quick brown fox.", 16000) * 20000).astype(np.int16)
    packets = packetize(pcm16, "opus", payload_type=111, rate=16000)
    send_packets(packets, "127.0.0.1", ports["agent"], realtime=False)
    finish(ingest, tap, "c4")
    chunks = tap.chunks("c4", "agent")
    _, pcm = joined(chunks)
    assert all(c.sample_rate == 16000 and c.codec == "opus" for c in chunks)
    # The same packets through a fresh decoder give exactly the same samples.
    dec = OpusDecoder()
    expected = np.concatenate([dec.decode(parse(p.data).payload) for p in packets])
    np.testing.assert_array_equal(pcm, expected)


def test_dtmf_digits_are_events_once_each(ingest: RtpIngest, tap: Any) -> None:
    ports = register(ingest, "c5", ("customer", "PCMU"))
    audio = np.zeros(16000, np.int16)
    packets = packetize(audio, "PCMU", dtmf=[DtmfMark("customer", 4000, "4#1")])
    send_packets(packets, "127.0.0.1", ports["customer"], realtime=False)
    finish(ingest, tap, "c5")
    digits = [e for e in tap.events if e.type == "dtmf" and e.call_id == "c5"]
    assert [d.digit for d in digits] == ["4", "#", "1"]
    assert all(d.leg == "customer" and abs(d.duration - 0.1) < 1e-9 for d in digits)
    starts = [d.start for d in digits]
    offset = tap.chunks("c5", "customer")[0].start_sample / 8000
    assert [round(s - offset, 3) for s in starts] == [0.5, 0.7, 0.9]
    # Event packets hold no audio: the leg stays whole, without loss counted.
    _, pcm = joined(tap.chunks("c5", "customer"))
    assert len(pcm) == 16000
    assert ingest.metrics.total("rtp_lost_packets_total") == 0


def test_bad_traffic_is_counted_and_other_calls_are_untouched(
    ingest: RtpIngest, tap: Any, rtp_services: Services
) -> None:
    ingest.live.max_packets_per_s = 200
    bad = register(ingest, "bad", ("agent", "PCMU"))["agent"]
    good = register(ingest, "good", ("agent", "PCMU"), tenant="other")["agent"]
    audio = tone(1.0)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.sendto(build(0, 1, 0, 9, b"\xff" * 160), ("127.0.0.1", bad))  # locks the source
    time.sleep(0.05)
    for data in (
        b"\x80\x00",
        build(0, 2, 160, 9, b"x", version=1),
        build(18, 3, 320, 9, b"\x00" * 10),
        bytes([0x8F]) + b"\0" * 11,
        build(0, 5, 640, 9, b"\xff" * 65_000),  # a 65 KB datagram is not audio
    ):
        sender.sendto(data, ("127.0.0.1", bad))
    intruder.sendto(build(0, 4, 480, 9, b"\xff" * 160), ("127.0.0.1", bad))
    # 600 packets at 500/s (paced, so the kernel's socket buffer does not overflow).
    flood = [
        Packet(i * 0.002, p.data, p.sequence)
        for i, p in enumerate(packetize(tone(12.0), "PCMU", ssrc=9, seq0=100))
    ]
    import threading

    t = threading.Thread(
        target=send_packets, args=(flood, "127.0.0.1", bad), kwargs={"sock": sender}
    )
    t.start()
    send_packets(packetize(audio, "PCMU"), "127.0.0.1", good, realtime=True)
    t.join()
    time.sleep(0.3)
    metrics = rtp_services.metrics
    for cause in (
        "too_short",
        "bad_version",
        "unknown_payload_type",
        "bad_header",
        "foreign_source",
        "flood",
        "oversized",
    ):
        assert metrics.value("rtp_dropped_total", cause=cause) >= 1, cause
    bad_summary = ingest.end("acme", "bad")
    good_summary = ingest.end("other", "good")
    assert bad_summary is not None and good_summary is not None
    assert good_summary["dropped"] == {}
    assert good_summary["legs"]["agent"]["lost"] == 0
    assert bad_summary["dropped"]["flood"] >= 100
    tap.until(lambda t: t.ended("good") is not None)
    _, pcm = joined(tap.chunks("good", "agent"))
    np.testing.assert_array_equal(pcm, g711.ulaw_decode(g711.ulaw_encode(audio)))
    sender.close()
    intruder.close()


def test_packets_to_a_port_without_a_call_are_counted(ingest: RtpIngest, tap: Any) -> None:
    port = register(ingest, "gone", ("agent", "PCMU"))["agent"]
    ingest.end("acme", "gone")
    send_packets(packetize(tone(0.2), "PCMU"), "127.0.0.1", port, realtime=False)
    deadline = time.monotonic() + 5
    while ingest.metrics.value("rtp_dropped_total", cause="no_call") < 10:
        assert time.monotonic() < deadline, "no_call drops were not counted"
        time.sleep(0.05)
    assert not tap.chunks("gone", "agent")


def test_rtp_timeout_ends_the_call(ingest: RtpIngest, tap: Any) -> None:
    ingest.live.rtp_timeout_s = 0.6
    port = register(ingest, "quiet", ("agent", "PCMU"))["agent"]
    send_packets(packetize(tone(0.4), "PCMU"), "127.0.0.1", port, realtime=False)
    tap.until(lambda t: t.ended("quiet") is not None, timeout_s=5)
    ended = tap.ended("quiet")
    assert ended.reason == "rtp_timeout"
    assert ingest.call("acme", "quiet") is None
    _, pcm = joined(tap.chunks("quiet", "agent"))
    assert len(pcm) == 3200  # what came before the timeout is published first


def test_a_leg_silent_for_long_is_reported_once_and_the_call_goes_on(  # type: ignore[no-untyped-def]
    ingest: RtpIngest, tap: Any
) -> None:
    ingest.live.rtp_timeout_s = 0.6
    ports = register(ingest, "one-way", ("agent", "PCMU"), ("customer", "PCMU"))
    # the customer talks for 1.6 s, the agent leg never sends a packet
    send_packets(packetize(tone(1.6), "PCMU"), "127.0.0.1", ports["customer"], realtime=True)
    assert ingest.call("acme", "one-way") is not None  # not timed out: one leg is alive
    assert ingest.metrics.value("rtp_leg_silent_total") == 1
    finish(ingest, tap, "one-way")
    _, pcm = joined(tap.chunks("one-way", "customer"))
    assert len(pcm) == int(1.6 * 8000)
    assert not tap.chunks("one-way", "agent")
    assert ingest.metrics.value("rtp_leg_silent_total") == 1


def test_max_call_length_ends_the_call(ingest: RtpIngest, tap: Any) -> None:
    ingest.live.max_call_s = 0.5
    register(ingest, "long", ("agent", "PCMU"))
    tap.until(lambda t: t.ended("long") is not None, timeout_s=5)
    assert tap.ended("long").reason == "max_duration"


def test_ffmpeg_as_a_third_party_sender(
    ingest: RtpIngest, tap: Any, speak: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    speech = speak("This call is sent by ffmpeg over real RTP.", 16000)
    wav = tmp_path / "speech.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((speech * 20000).astype("<i2").tobytes())
    port = register(ingest, "ff", ("agent", "PCMU"))["agent"]
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
            f"rtp://127.0.0.1:{port}",
        ],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    finish(ingest, tap, "ff")
    _, pcm = joined(tap.chunks("ff", "agent"))
    expected = len(speech) / 2  # samples at 8 kHz
    assert abs(len(pcm) - expected) <= 400, (len(pcm), expected)  # within 50 ms
    # It is the speech, not noise: energy where Piper spoke.
    assert np.abs(pcm).max() > 3000
    summary_drops = ingest.metrics.total("rtp_dropped_total")
    assert summary_drops == ingest.metrics.value("rtp_dropped_total", cause="rtcp")


def test_calls_announced_on_the_bus(rtp_services: Services, tap: Any) -> None:
    stage = IngestStage(rtp_services)
    runner = WorkerRunner(stage, rtp_services.bus, rtp_services.topics, rtp_services.metrics)
    producer = rtp_services.bus.producer()
    topic = rtp_services.topics.calls
    started = CallStarted(tenant="acme", call_id="bus1", legs=(LegInfo(leg="agent"),))
    producer.send(topic, "bus1", started.encode())
    runner.run_once()
    assert stage.ingest.call("acme", "bus1") == started
    # Replays and our own echoes register nothing new.
    producer.send(topic, "bus1", started.encode())
    old = CallStarted(
        tenant="acme",
        call_id="old",
        legs=(LegInfo(leg="agent"),),
        started_at=started.started_at.replace(year=2020),
    )
    producer.send(topic, "old", old.encode())
    runner.run_once()
    assert stage.ingest.active_calls() == [("acme", "bus1")]
    producer.send(topic, "bus1", CallEnded(tenant="acme", call_id="bus1").encode())
    runner.run_once()
    assert stage.ingest.call("acme", "bus1") is None
    tap.pump(0.2)
    ended = [e for e in tap.events if e.type == "call.ended"]
    assert len(ended) == 1  # the bus's own, not a second one from the ingest
    # A call that came and went is not brought back by a replayed call.started.
    producer.send(topic, "bus1", started.encode())
    runner.run_once()
    assert stage.ingest.call("acme", "bus1") is None
