"""Sample-rate conversion with proper anti-alias filtering (soxr, high quality)."""

from __future__ import annotations

import numpy as np
import soxr


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample mono float32 audio; returns float32 (a copy even when rates match)."""
    x = np.ascontiguousarray(audio, dtype=np.float32)
    if from_rate == to_rate or x.size == 0:
        return x.copy()
    return np.asarray(soxr.resample(x, from_rate, to_rate, quality="HQ"), dtype=np.float32)


def int16_to_float(pcm: bytes | np.ndarray) -> np.ndarray:
    """Little-endian int16 PCM to float32 in [-1, 1)."""
    a = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray) else pcm
    return a.astype(np.float32) / 32768.0


def float_to_int16(audio: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] to int16, clipped (never wraps around)."""
    return (np.clip(audio, -1.0, 32767 / 32768) * 32768.0).astype(np.int16)
