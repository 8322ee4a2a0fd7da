"""The codecs a forked leg may carry, as the ingest needs them: clock, duration, decoding.

Audio of a leg collects in "units" until a batch is cut: G.711 keeps the wire bytes (one
byte per sample, decoded once per batch with a lookup table, which is what makes a
thousand legs per core possible); Opus is decoded packet by packet (libopus keeps state).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.media import g711
from pipeline.media.opus import CLOCK_RATE as OPUS_CLOCK
from pipeline.media.opus import OUTPUT_RATE as OPUS_RATE
from pipeline.media.opus import OpusDecoder, OpusError, packet_samples

CODECS = ("PCMU", "PCMA", "opus", "L16")
STATIC_TYPES = {"PCMU": 0, "PCMA": 8}
DEFAULT_OPUS_TYPE = 111
COMFORT_NOISE = 13  # RFC 3389: no audio to decode, but it holds a sequence number


class CodecError(ValueError):
    """A payload this leg's codec cannot use."""


def canonical_codec(name: str) -> str:
    """`pcmu`, `PCMU`, `g711u`... -> PCMU / PCMA / opus; ValueError for anything else."""
    n = name.strip().lower()
    aliases = {
        "pcmu": "PCMU",
        "g711u": "PCMU",
        "ulaw": "PCMU",
        "pcma": "PCMA",
        "g711a": "PCMA",
        "alaw": "PCMA",
        "opus": "opus",
        "l16": "L16",
        "slin": "L16",
    }
    if n not in aliases:
        raise ValueError(f"codec {name!r} is not one of {', '.join(CODECS)}")
    return aliases[n]


@dataclass
class LegCodec:
    """Base: what a leg needs from its codec."""

    payload_type: int
    name: str = ""
    clock_rate: int = 8000
    sample_rate: int = 8000
    width: int = 1  # bytes per sample of a unit
    silence: bytes = b"\0"  # one sample of silence in unit bytes

    def duration(self, payload: bytes) -> int:
        """Length of a payload in RTP clock units; CodecError when unusable."""
        raise NotImplementedError

    def unit(self, payload: bytes) -> bytes:
        """A payload as collected until the batch is cut."""
        raise NotImplementedError

    def pcm(self, units: bytes) -> bytes:
        """Collected units to int16 little-endian PCM at `sample_rate`."""
        raise NotImplementedError


@dataclass
class G711Codec(LegCodec):
    """PCMU or PCMA: 8 kHz, one byte per sample."""

    table: np.ndarray = field(default_factory=lambda: g711.ULAW_DECODE)

    def duration(self, payload: bytes) -> int:
        if not payload:
            raise CodecError("empty G.711 payload")
        return len(payload)

    def unit(self, payload: bytes) -> bytes:
        return payload

    def pcm(self, units: bytes) -> bytes:
        return bytes(self.table[np.frombuffer(units, dtype=np.uint8)].astype("<i2").data)


@dataclass
class OpusLegCodec(LegCodec):
    """Opus: 48 kHz clock, decoded to 16 kHz int16."""

    decoder: OpusDecoder = field(default_factory=OpusDecoder)

    def duration(self, payload: bytes) -> int:
        try:
            return packet_samples(payload)
        except OpusError as exc:
            raise CodecError(str(exc)) from exc

    def unit(self, payload: bytes) -> bytes:
        try:
            return bytes(self.decoder.decode(payload).astype("<i2").data)
        except OpusError as exc:
            raise CodecError(str(exc)) from exc

    def pcm(self, units: bytes) -> bytes:
        return units


@dataclass
class L16Codec(LegCodec):
    """Signed 16-bit little-endian PCM, as the WebSocket and AudioSocket transports carry
    it (not RTP's big-endian L16): already what a MediaChunk holds."""

    def duration(self, payload: bytes) -> int:
        if not payload or len(payload) % 2:
            raise CodecError(f"{len(payload)} bytes is not whole 16-bit samples")
        return len(payload) // 2

    def unit(self, payload: bytes) -> bytes:
        return payload

    def pcm(self, units: bytes) -> bytes:
        return units


L16_RATES = (8000, 16000)


def make_codec(name: str, payload_type: int | None = None, rate: int = 8000) -> LegCodec:
    """A fresh codec (Opus decoders keep per-leg state) for a leg; `rate` is L16's."""
    c = canonical_codec(name)
    if c == "L16":
        if rate not in L16_RATES:
            raise ValueError(f"L16 at {rate} Hz: only 8000 and 16000 are taken")
        return L16Codec(-1, "L16", clock_rate=rate, sample_rate=rate, width=2, silence=b"\0\0")
    if c == "PCMU":
        return G711Codec(0, "PCMU", silence=bytes([g711.ULAW_SILENCE]), table=g711.ULAW_DECODE)
    if c == "PCMA":
        return G711Codec(8, "PCMA", silence=bytes([g711.ALAW_SILENCE]), table=g711.ALAW_DECODE)
    return OpusLegCodec(
        payload_type if payload_type is not None else DEFAULT_OPUS_TYPE,
        "opus",
        clock_rate=OPUS_CLOCK,
        sample_rate=OPUS_RATE,
        width=2,
        silence=b"\0\0",
    )
