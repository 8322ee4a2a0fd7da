"""G.711 tables against FFmpeg's codecs (a third-party implementation) and error bounds."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import av
import numpy as np
import pytest
from av.audio.codeccontext import AudioCodecContext

from pipeline.media import g711

CODECS = [
    ("pcm_mulaw", g711.ulaw_encode, g711.ulaw_decode, g711.ULAW_SILENCE),
    ("pcm_alaw", g711.alaw_encode, g711.alaw_decode, g711.ALAW_SILENCE),
]
ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


def _ffmpeg_decode(name: str, codes: bytes) -> np.ndarray:
    ctx = cast(AudioCodecContext, av.CodecContext.create(name, "r"))
    ctx.sample_rate = 8000
    ctx.layout = "mono"
    return np.concatenate([f.to_ndarray().ravel() for f in ctx.decode(av.Packet(codes))])


def _ffmpeg_encode(name: str, pcm: np.ndarray) -> np.ndarray:
    ctx = cast(AudioCodecContext, av.CodecContext.create(name, "w"))
    ctx.sample_rate = 8000
    ctx.layout = "mono"
    ctx.format = "s16"
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 8000
    out = b"".join(bytes(p) for p in ctx.encode(frame)) + b"".join(
        bytes(p) for p in ctx.encode(None)
    )
    return np.frombuffer(out, dtype=np.uint8)


@pytest.mark.parametrize(("name", "enc", "dec", "silence"), CODECS)
def test_decoding_matches_ffmpeg_for_every_code(
    name: str, enc: Callable[..., bytes], dec: Callable[[bytes], np.ndarray], silence: int
) -> None:
    codes = bytes(range(256))
    np.testing.assert_array_equal(dec(codes), _ffmpeg_decode(name, codes))
    assert abs(int(dec(bytes([silence]))[0])) <= 8


@pytest.mark.parametrize(("name", "enc", "dec", "silence"), CODECS)
def test_encoding_is_nearest_level_and_agrees_with_ffmpeg(
    name: str, enc: Callable[..., bytes], dec: Callable[[bytes], np.ndarray], silence: int
) -> None:
    ours = np.frombuffer(enc(ALL_INT16), dtype=np.uint8)
    levels = np.sort(dec(bytes(range(256))).astype(np.int32))
    back = dec(ours.tobytes()).astype(np.int32)
    err = np.abs(back - ALL_INT16.astype(np.int32))
    # Nearest level: no other level is closer than the one chosen.
    idx = np.searchsorted(levels, ALL_INT16)
    nearest = np.minimum(
        np.abs(levels[np.clip(idx, 0, 255)] - ALL_INT16),
        np.abs(levels[np.clip(idx - 1, 0, 255)] - ALL_INT16),
    )
    np.testing.assert_array_equal(err, nearest)
    # Logarithmic: relative error stays within a few percent above the smallest steps.
    big = np.abs(ALL_INT16.astype(np.int32)) > 1024
    assert (err[big] / np.abs(ALL_INT16[big].astype(np.int32))).max() < 0.035
    theirs = _ffmpeg_encode(name, ALL_INT16)
    differ = ours != theirs
    assert differ.mean() < 0.01  # FFmpeg rounds a few decision points the other way
    assert np.all(np.abs(back[differ] - dec(theirs[differ].tobytes()).astype(np.int32)) <= 1024)


@pytest.mark.parametrize(("name", "enc", "dec", "silence"), CODECS)
def test_round_trip_is_stable_and_accepts_bytes(
    name: str, enc: Callable[..., bytes], dec: Callable[[bytes], np.ndarray], silence: int
) -> None:
    codes = bytes(range(256))
    assert enc(dec(codes)) == codes or np.array_equal(dec(enc(dec(codes))), dec(codes))
    rng = np.random.default_rng(1)
    x = (rng.normal(0, 3000, 8000)).clip(-32768, 32767).astype(np.int16)
    assert enc(x) == enc(x.astype("<i2").tobytes())
    y = dec(enc(x)).astype(np.float64)
    snr = 10 * np.log10((x.astype(np.float64) ** 2).sum() / ((y - x) ** 2).sum())
    assert snr > 30  # G.711 gives about 38 dB on speech-level signals
