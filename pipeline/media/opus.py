"""Opus over RTP (RFC 7587): decoding with libopus through PyAV, and encoding for tests.

RTP Opus always runs a 48 kHz clock. The decoder works at 48 kHz and a streaming FIR
decimator takes it to 16 kHz, the rate Whisper wants, keeping exact sample counts.
"""

from __future__ import annotations

import av
import numpy as np

from pipeline.media.resample import Decimator, float_to_int16, resample

CLOCK_RATE = 48000
OUTPUT_RATE = 16000
# Frame length in 48 kHz samples for each TOC configuration (RFC 6716 section 3.1).
_FRAME = [480, 960, 1920, 2880] * 3 + [480, 960] * 2 + [120, 240, 480, 960] * 4


class OpusError(ValueError):
    """A payload libopus (or the TOC) refuses."""


def packet_samples(payload: bytes) -> int:
    """Duration of an Opus packet in 48 kHz samples, read from its TOC byte(s)."""
    if not payload:
        raise OpusError("empty Opus packet")
    toc = payload[0]
    frame = _FRAME[toc >> 3]
    code = toc & 3
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        if len(payload) < 2:
            raise OpusError("Opus code-3 packet without a frame count")
        count = payload[1] & 0x3F
        if count == 0:
            raise OpusError("Opus packet with zero frames")
    total = frame * count
    if total > 5760:  # 120 ms, the most one packet may hold
        raise OpusError(f"Opus packet of {total} samples exceeds 120 ms")
    return total


class OpusDecoder:
    """One leg's libopus decoder: RTP payloads in, int16 mono at 16 kHz out."""

    def __init__(self) -> None:
        self._ctx = av.CodecContext.create("libopus", "r")
        self._ctx.sample_rate = CLOCK_RATE
        self._ctx.layout = "mono"
        self._decimator = Decimator(CLOCK_RATE // OUTPUT_RATE)

    def decode(self, payload: bytes) -> np.ndarray:
        """Decode one packet; raises OpusError when libopus refuses it."""
        expected = packet_samples(payload)
        try:
            frames = self._ctx.decode(av.Packet(payload))
        except av.error.FFmpegError as exc:
            raise OpusError(f"libopus refused the packet: {exc}") from exc
        parts = [_as_float(f.to_ndarray()) for f in frames]
        pcm48 = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        # Keep the timeline exact even if the decoder delivered less or more than the TOC says.
        if len(pcm48) != expected:
            pcm48 = np.resize(pcm48, expected) if len(pcm48) else np.zeros(expected, np.float32)
        return float_to_int16(self._decimator.process(pcm48))


def _as_float(a: np.ndarray) -> np.ndarray:
    """First channel of a decoded frame as float32 in [-1, 1]."""
    a = a.reshape(-1) if a.ndim == 1 or a.shape[0] == 1 else a[0]
    if a.dtype == np.int16:
        return a.astype(np.float32) / 32768.0
    return a.astype(np.float32)


class OpusEncoder:
    """libopus encoder for tests and simulations: int16 mono in, RTP payloads out."""

    def __init__(self, input_rate: int = OUTPUT_RATE, frame_ms: int = 20, bitrate: int = 32000):
        self.input_rate = input_rate
        self.frame = CLOCK_RATE * frame_ms // 1000
        self._ctx = av.CodecContext.create("libopus", "w")
        self._ctx.sample_rate = CLOCK_RATE
        self._ctx.layout = "mono"
        self._ctx.format = "s16"
        self._ctx.bit_rate = bitrate
        self._ctx.options = {"frame_duration": str(frame_ms), "application": "voip"}
        self._pts = 0

    def encode(self, pcm: np.ndarray) -> list[bytes]:
        """Encode a whole signal (padded to whole frames); one payload per frame."""
        x = pcm.astype(np.float32) / 32768.0
        x48 = float_to_int16(resample(x, self.input_rate, CLOCK_RATE))
        pad = -len(x48) % self.frame
        x48 = np.concatenate([x48, np.zeros(pad, np.int16)])
        out: list[bytes] = []
        for i in range(0, len(x48), self.frame):
            f = av.AudioFrame.from_ndarray(
                x48[i : i + self.frame].reshape(1, -1), format="s16", layout="mono"
            )
            f.sample_rate = CLOCK_RATE
            f.pts = self._pts
            self._pts += self.frame
            out.extend(bytes(p) for p in self._ctx.encode(f))
        out.extend(bytes(p) for p in self._ctx.encode(None))
        return out
