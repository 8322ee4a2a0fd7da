"""Streaming to 16 kHz (8 kHz up, 48 kHz down): the same signal as resampling it whole, no seams."""

from __future__ import annotations

import numpy as np

from pipeline.media.resample import Interpolator, StreamTo16k, float_to_int16, resample

DELAY = 63  # (taps - 1) / 2 output samples


def _snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(ref**2) / np.mean((got - ref) ** 2)))


def test_the_stream_matches_the_whole_signal_whatever_the_chunks() -> None:
    t = np.arange(16000) / 8000
    x = (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.2 * np.sin(2 * np.pi * 2900 * t)).astype(np.float32)
    whole = resample(x, 8000, 16000)
    rng = np.random.default_rng(3)
    cuts = np.cumsum(rng.integers(80, 1300, 40))
    it = Interpolator(2)
    y = np.concatenate([it.process(part) for part in np.split(x, cuts[cuts < len(x)])])
    assert len(y) == 2 * len(x)
    # the stream is the whole signal, 4 ms late (the filter's delay; warm-up left out)
    assert _snr_db(whole[400 : len(whole) - DELAY], y[400 + DELAY :]) > 55
    # resampling chunk by chunk instead leaves a click at each boundary
    one_by_one = np.concatenate(
        [resample(part, 8000, 16000) for part in np.split(x, cuts[cuts < len(x)])]
    )
    assert _snr_db(whole[400:], one_by_one[400:]) < 45


def test_stream_to_16k_passes_16k_through_and_keeps_its_history() -> None:
    pcm = float_to_int16(np.full(160, 0.25, np.float32))
    assert StreamTo16k(16000).process(pcm) is pcm
    s = StreamTo16k(8000)
    first = s.process(pcm)
    # a new stream (after a jump) starts from silence; the same stream goes on from its past
    assert len(first) == 320 and np.array_equal(StreamTo16k(8000).process(pcm), first)
    assert not np.array_equal(s.process(pcm), first)


def test_a_48k_stream_is_decimated_seamlessly_whatever_the_chunks() -> None:
    t = np.arange(3 * 16000) / 48000
    x = (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.2 * np.sin(2 * np.pi * 3100 * t)).astype(np.float32)
    pcm = float_to_int16(x)
    whole = resample(x, 48000, 16000)
    rng = np.random.default_rng(5)
    cuts = np.cumsum(rng.integers(100, 4000, 40))
    parts = np.split(pcm, cuts[cuts < len(pcm)])
    s = StreamTo16k(48000)
    y = np.concatenate([s.process(part) for part in parts]).astype(np.float32) / 32768
    assert len(y) == len(pcm) // 3
    delay = 30  # (181 - 1) / 2 input samples, a third of that at 16 kHz
    assert _snr_db(whole[400 : len(whole) - delay], y[400 + delay :]) > 55
    # resampling chunk by chunk (as it was done) leaves a click at each boundary
    one_by_one = np.concatenate(
        [resample(p.astype(np.float32) / 32768, 48000, 16000) for p in parts]
    )
    assert _snr_db(whole[400:], one_by_one[400 : len(whole)]) < 45
