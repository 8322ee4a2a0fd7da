"""G.711 mu-law (PCMU) and A-law (PCMA) with numpy lookup tables.

Decoding follows the ITU-T G.711 reference (Sun's g711.c); encoding picks the nearest
level. 256 entries to decode, 65536 (one per int16 value) to encode: one fancy-index each.
Hand-written on purpose: the standard library's `audioop` is deprecated (gone in 3.13), and
a table lookup is the fastest G.711 there is; tests/pipeline/test_g711.py holds its decoding
bit-exact against ffmpeg's and its encoding to the nearest level.
"""

from __future__ import annotations

import numpy as np

ULAW_SILENCE = 0xFF  # mu-law code of 0
ALAW_SILENCE = 0xD5  # A-law code of 0 (+8 in 16-bit, the smallest positive step)


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _nearest_code_table(decode: np.ndarray, zero_code: int) -> np.ndarray:
    """Per int16 value, the code whose decoded level is nearest (ties: away from zero).

    This is the minimum-error quantiser G.711 describes, and it matches FFmpeg's tables.
    """
    codes = np.argsort(decode, kind="stable")
    levels = decode[codes].astype(np.int32)
    # Two codes may share a level (+0 and -0 in mu-law): keep one, the silence code.
    keep = np.ones(len(levels), dtype=bool)
    keep[1:] = levels[1:] != levels[:-1]
    codes = codes[keep]
    levels = levels[keep]
    codes[levels == 0] = zero_code if decode[zero_code] == 0 else codes[levels == 0]
    x = np.arange(-32768, 32768, dtype=np.int32)
    hi = np.clip(np.searchsorted(levels, x, side="left"), 1, len(levels) - 1)
    lo = hi - 1
    d_lo = x - levels[lo]
    d_hi = levels[hi] - x
    # On a tie the level farther from zero wins, as FFmpeg (and so most senders) does.
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (np.abs(levels[hi]) > np.abs(levels[lo])))
    best = np.where(pick_hi, codes[hi], codes[lo]).astype(np.uint8)
    # Re-index from int16 order to uint16 order (what `_index` produces).
    return np.concatenate([best[32768:], best[:32768]])


ULAW_DECODE = _ulaw_decode_table()
ALAW_DECODE = _alaw_decode_table()
ULAW_ENCODE = _nearest_code_table(ULAW_DECODE, ULAW_SILENCE)
ALAW_ENCODE = _nearest_code_table(ALAW_DECODE, ALAW_SILENCE)


def _index(pcm: np.ndarray | bytes) -> np.ndarray:
    a = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray) else pcm
    return np.asarray(a, dtype=np.int16).view(np.uint16)


def ulaw_decode(data: bytes) -> np.ndarray:
    """mu-law bytes to int16 samples."""
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> np.ndarray:
    """A-law bytes to int16 samples."""
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(pcm: np.ndarray | bytes) -> bytes:
    """int16 samples (array or little-endian bytes) to mu-law bytes."""
    return ULAW_ENCODE[_index(pcm)].tobytes()


def alaw_encode(pcm: np.ndarray | bytes) -> bytes:
    """int16 samples (array or little-endian bytes) to A-law bytes."""
    return ALAW_ENCODE[_index(pcm)].tobytes()
