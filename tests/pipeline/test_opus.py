"""Opus through libopus (PyAV): TOC durations, encode/decode quality, the 48->16 kHz step."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate

from pipeline.media.opus import OpusDecoder, OpusEncoder, OpusError, packet_samples
from pipeline.media.resample import Decimator


@pytest.mark.parametrize(
    ("toc", "extra", "samples"),
    [
        (1 << 3, b"", 960),  # SILK 20 ms, one frame
        (3 << 3, b"", 2880),  # SILK 60 ms
        (15 << 3, b"", 960),  # hybrid 20 ms
        (16 << 3, b"", 120),  # CELT 2.5 ms
        ((19 << 3) | 1, b"", 1920),  # CELT 20 ms, two frames
        ((19 << 3) | 3, bytes([6]), 5760),  # CELT 20 ms x 6 = 120 ms
    ],
)
def test_packet_duration_from_the_toc(toc: int, extra: bytes, samples: int) -> None:
    assert packet_samples(bytes([toc]) + extra + b"\0" * 10) == samples


@pytest.mark.parametrize(
    "bad", [b"", bytes([(19 << 3) | 3]), bytes([(19 << 3) | 3, 0]), bytes([(19 << 3) | 3, 7])]
)
def test_impossible_packets_are_refused(bad: bytes) -> None:
    with pytest.raises(OpusError):
        packet_samples(bad)


def test_decimator_keeps_exact_counts_and_the_passband() -> None:
    x = np.sin(np.arange(48000) / 48000 * 2 * np.pi * 1000).astype(np.float32)
    d = Decimator(3)
    pieces = [d.process(x[i : i + 960]) for i in range(0, len(x), 960)]
    assert all(len(p) == 320 for p in pieces)
    y = np.concatenate(pieces)
    # Chunked differently, the output is the same signal.
    d2 = Decimator(3)
    y2 = np.concatenate([d2.process(x[:100]), d2.process(x[100:4001]), d2.process(x[4001:])])
    np.testing.assert_allclose(y2, y, atol=1e-5)
    ref = np.sin(np.arange(16000) / 16000 * 2 * np.pi * 1000)
    delay = 30  # (181 - 1) / 2 input samples
    assert np.abs(y[200:] - ref[200 - delay : len(y) - delay]).max() < 1e-3
    alias = np.sin(np.arange(48000) / 48000 * 2 * np.pi * 10000).astype(np.float32)
    assert np.sqrt(np.mean(Decimator(3).process(alias)[200:] ** 2)) < 0.005


def test_speechlike_signal_survives_encode_decode(speak) -> None:  # type: ignore[no-untyped-def]
    pcm = (speak("Opus keeps the words clear.", 16000) * 20000).astype(np.int16)
    packets = OpusEncoder(frame_ms=20).encode(pcm)
    assert all(packet_samples(p) == 960 for p in packets)
    dec = OpusDecoder()
    parts = [dec.decode(p) for p in packets]
    assert all(len(p) == 320 for p in parts)
    out = np.concatenate(parts).astype(np.float64)
    ref = pcm.astype(np.float64)
    lag = int(np.argmax(correlate(out, ref, mode="full", method="fft"))) - (len(ref) - 1)
    assert 0 <= lag < 400  # codec look-ahead plus the decimator, under 25 ms
    a = out[lag : lag + len(ref)]
    b = ref[: len(a)]
    snr = 10 * np.log10((b**2).sum() / ((a - b) ** 2).sum())
    assert snr > 6, snr


def test_corrupt_payload_is_an_opus_error() -> None:
    dec = OpusDecoder()
    with pytest.raises(OpusError):
        dec.decode(b"\xff\xff\x00")
