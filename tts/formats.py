"""Telephony output formats: resampling, level normalisation, G.711 and WAV containers."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from pipeline.media.g711 import alaw_encode, ulaw_encode
from pipeline.media.resample import float_to_int16, resample

TARGET_RMS_DBFS = -18.0
PEAK_DBFS = -1.0


@dataclass(frozen=True)
class Format:
    """An output format: sample rate, sample coding and whether it has a WAV header."""

    name: str
    rate: int
    coding: str  # "l16" | "ulaw" | "alaw"
    wav: bool

    @property
    def ext(self) -> str:
        """File extension of this format."""
        return "wav" if self.wav else self.coding

    @property
    def media_type(self) -> str:
        """HTTP content type of this format."""
        if self.wav:
            return "audio/wav"
        return "audio/basic" if self.coding == "ulaw" else "audio/x-alaw-basic"


FORMATS = {
    f.name: f
    for f in [
        Format("ulaw8k", 8000, "ulaw", True),
        Format("alaw8k", 8000, "alaw", True),
        Format("ulaw8k_raw", 8000, "ulaw", False),
        Format("alaw8k_raw", 8000, "alaw", False),
        Format("l16_16k", 16000, "l16", True),
        Format("l16_8k", 8000, "l16", True),
        Format("wav22k", 22050, "l16", True),
    ]
}


class FormatError(ValueError):
    """An unknown output format."""


def get_format(name: str) -> Format:
    """The Format called `name`, or FormatError listing the known ones."""
    if name not in FORMATS:
        raise FormatError(f"unknown format {name!r}; known: {', '.join(sorted(FORMATS))}")
    return FORMATS[name]


def normalise_level(audio: np.ndarray) -> np.ndarray:
    """Scale speech to -18 dBFS RMS, then lower it if the peak would pass -1 dBFS."""
    x = np.asarray(audio, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    if rms < 1e-6:
        return x.copy()
    gain = 10 ** (TARGET_RMS_DBFS / 20) / rms
    peak = float(np.max(np.abs(x))) * gain
    limit = 10 ** (PEAK_DBFS / 20)
    if peak > limit:
        # One gain for the whole prompt: a limiter would pump; speech stays a little quieter.
        gain *= limit / peak
    return (x * gain).astype(np.float32)


def encode_samples(audio: np.ndarray, fmt: Format) -> bytes:
    """Float32 audio already at fmt.rate to the format's sample bytes (no header)."""
    pcm = float_to_int16(np.clip(audio, -1.0, 1.0))
    if fmt.coding == "ulaw":
        return ulaw_encode(pcm)
    if fmt.coding == "alaw":
        return alaw_encode(pcm)
    return pcm.astype("<i2").tobytes()


def wav_header(fmt: Format, data_bytes: int | None) -> bytes:
    """A WAV header; `data_bytes=None` writes maximal sizes for a stream of unknown length."""
    tag, width = {"l16": (1, 2), "alaw": (6, 1), "ulaw": (7, 1)}[fmt.coding]
    size = 0xFFFFFFFF - 36 if data_bytes is None else data_bytes
    # G.711 WAV needs the cbSize field (fmt chunk of 18 bytes) by the WAVE spec.
    fmt_chunk = struct.pack("<HHIIHH", tag, 1, fmt.rate, fmt.rate * width, width, width * 8)
    if fmt.coding != "l16":
        fmt_chunk += struct.pack("<H", 0)
    riff = 4 + 8 + len(fmt_chunk) + 8 + size
    return (
        b"RIFF"
        + struct.pack("<I", min(riff, 0xFFFFFFFF))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt_chunk))
        + fmt_chunk
        + b"data"
        + struct.pack("<I", size)
    )


def render(audio: np.ndarray, rate: int, fmt: Format) -> bytes:
    """A whole prompt (float32 at `rate`, already level-normalised) as a complete file."""
    data = encode_samples(resample(audio, rate, fmt.rate), fmt)
    return wav_header(fmt, len(data)) + data if fmt.wav else data
