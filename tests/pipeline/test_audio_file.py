"""Audio loading: every container and codec to 16 kHz float32 channels, bad files refused."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import pytest

from pipeline.media.audio_file import (
    SAMPLE_RATE,
    AudioError,
    AudioLimits,
    AudioRefused,
    load_audio,
    probe_audio,
    write_wav,
)


def tone(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_pcm_wav_any_rate_becomes_16k(rate: int) -> None:
    audio = load_audio(write_wav([tone(rate, 1.5)], rate))
    assert audio.source_rate == rate
    assert len(audio.channels) == 1
    assert audio.channels[0].dtype == np.float32
    assert abs(audio.duration - 1.5) < 0.01
    # the tone survives resampling: dominant frequency still 440 Hz
    spec = np.abs(np.fft.rfft(audio.channels[0]))
    assert abs(np.argmax(spec) * SAMPLE_RATE / len(audio.channels[0]) - 440) < 2


@pytest.mark.parametrize(
    ("codec", "fmt", "tol"),
    [
        ("pcm_mulaw", "wav", 0.02),
        ("pcm_alaw", "wav", 0.02),
        ("mp3", "mp3", 0.08),
        ("libopus", "ogg", 0.08),
        ("flac", "flac", 0.01),
    ],
)
def test_codecs_decode_with_right_length(
    codec: str, fmt: str, tol: float, encode: Callable[..., bytes]
) -> None:
    rate = 48000 if codec == "libopus" else 8000 if codec.startswith("pcm") else 16000
    data = encode([tone(rate, 2.0)], rate, codec, fmt)
    audio = load_audio(data)
    assert abs(audio.duration - 2.0) < tol * 2 + 0.03
    rms = float(np.sqrt(np.mean(audio.channels[0] ** 2)))
    assert 0.25 < rms < 0.45  # 0.5 amplitude sine: rms 0.354


def test_stereo_channels_kept_apart(encode: Callable[..., bytes]) -> None:
    left = tone(8000, 1.0, 300)
    right = np.zeros(8000, dtype=np.float32)
    audio = load_audio(encode([left, right], 8000, "pcm_mulaw", "wav"))
    assert len(audio.channels) == 2
    assert np.sqrt(np.mean(audio.channels[0] ** 2)) > 0.3
    assert np.sqrt(np.mean(audio.channels[1] ** 2)) < 0.01


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk" * 10, "not a readable"),
        (bytes(range(256)) * 40, "not a readable"),
    ],
)
def test_bad_files_raise_audio_error(data: bytes, reason: str) -> None:
    with pytest.raises(AudioError, match=reason):
        load_audio(data)


def test_truncated_file_gives_what_is_there() -> None:
    data = write_wav([tone(16000, 2.0)], 16000)
    audio = load_audio(data[: len(data) // 2])
    assert 0.9 < audio.duration < 1.1


def test_wav_header_lying_about_length() -> None:
    data = bytearray(write_wav([tone(16000, 1.0)], 16000))
    # data chunk claims 10x the bytes present
    idx = data.index(b"data")
    (size,) = struct.unpack_from("<I", data, idx + 4)
    struct.pack_into("<I", data, idx + 4, size * 10)
    audio = load_audio(bytes(data))
    assert abs(audio.duration - 1.0) < 0.02


def test_zero_length_wav_has_no_audio() -> None:
    with pytest.raises(AudioError):
        load_audio(write_wav([np.zeros(0, np.float32)], 16000))


def raw_wav(rate: int, bits: int, channels: int, nbytes: int) -> bytes:
    """A PCM WAV whose header says what the caller wants, with `nbytes` of noise."""
    block = channels * max(1, bits // 8)
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
    body = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8).tobytes()
    return (
        b"RIFF"
        + struct.pack("<I", 36 + nbytes)
        + b"WAVEfmt "
        + fmt
        + b"data"
        + struct.pack("<I", nbytes)
        + body
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        # 48 KB that claim to be 24,000 s at 1 Hz: refused on the header, nothing resampled
        (raw_wav(1, 16, 1, 48_000), "sample rate 1 Hz"),
        (raw_wav(96_000, 16, 1, 48_000), "sample rate 96000 Hz"),
        (raw_wav(8000, 3, 1, 48_000), "3-bit samples"),
        (raw_wav(8000, 16, 7, 48_000), "7 channels"),
        (raw_wav(8000, 16, 1, 0), "holds no audio"),
    ],
)
def test_files_outside_the_limits_are_refused_before_decoding(data: bytes, reason: str) -> None:
    with pytest.raises(AudioRefused, match=reason):
        probe_audio(data)
    with pytest.raises(AudioRefused, match=reason):
        load_audio(data)


def test_length_is_bounded_by_the_bytes_and_by_decoding() -> None:
    ten = write_wav([tone(8000, 10.0)], 8000)
    assert abs(probe_audio(ten).seconds - 10.0) < 0.01
    with pytest.raises(AudioRefused, match="at most 5 s"):
        load_audio(ten, AudioLimits(max_seconds=5))
    # a header claiming 10x its data is judged by the bytes it has
    data = bytearray(write_wav([tone(16000, 1.0)], 16000))
    idx = data.index(b"data")
    (size,) = struct.unpack_from("<I", data, idx + 4)
    struct.pack_into("<I", data, idx + 4, size * 10)
    assert probe_audio(bytes(data), AudioLimits(max_seconds=5)).seconds < 1.1
