"""Audio files: any file ffmpeg decodes, to 16 kHz mono float32 per channel; WAV out.

One edge function, one inside format (as faster-whisper's `decode_audio`): WAV PCM at any
rate, WAV mu-law/A-law, MP3, OGG/Opus, FLAC... all go through PyAV. Channels are kept
apart, because in a two-channel call recording each channel is one leg.

A file is probed before it is decoded (`probe_audio`): its sample rate, channels, sample
size and length must fall within `AudioLimits`, so that a 48 KB WAV whose header says 1 Hz
is refused at once rather than resampled as 24,000 s of audio; decoding stops where the
length limit is reached, whatever the header said.
"""

from __future__ import annotations

import io
import logging
import struct
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from pipeline.media import SAMPLE_RATE
from pipeline.media.resample import float_to_int16, resample

log = logging.getLogger(__name__)

MAX_CHANNELS = 2  # a call has two legs at most
# WAV sample sizes PBXs and recorders write: PCM 8/16/24/32 bits, float 32/64, G.711 8.
_WAV_BITS = {1: (8, 16, 24, 32), 3: (32, 64), 6: (8,), 7: (8,)}
_WAV_EXTENSIBLE = 0xFFFE


class AudioError(ValueError):
    """Audio that cannot be decoded; the message says why (corrupt, empty, unsupported)."""


class AudioRefused(AudioError):
    """Audio that decodes but lies outside the limits; `kind` is rate, channels, bits,
    length or empty (a WAV with no frames)."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True)
class AudioLimits:
    """What a recording may be; checked on the header, before any decoding."""

    max_seconds: float = 4 * 3600.0
    min_rate: int = 8000
    max_rate: int = 48000
    max_channels: int = MAX_CHANNELS


@dataclass(frozen=True)
class AudioHeader:
    """What a file says it holds."""

    codec: str
    container: str
    rate: int
    channels: int
    seconds: float  # estimated from the bytes present, not the header's claimed length
    bits: int | None = None  # declared sample size of a WAV


def _wav_format(data: bytes) -> tuple[int, int] | None:
    """(format tag, bits per sample) of a RIFF/WAVE file's fmt chunk, else None. PyAV does
    not expose the declared sample size, and ffmpeg reads a 3-bit PCM WAV as 8-bit."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if cid == b"fmt " and pos + 24 <= len(data):
            tag, _, _, _, _, bits = struct.unpack_from("<HHIIHH", data, pos + 8)
            if tag == _WAV_EXTENSIBLE and size >= 26 and pos + 34 <= len(data):
                tag = struct.unpack_from("<H", data, pos + 32)[0]  # the sub-format GUID
            return tag, bits
        pos += 8 + size + (size & 1)
    return None


@contextmanager
def _audio_stream(data: bytes) -> Iterator[tuple[Any, Any]]:
    """The file's container and its first audio stream; AudioError when there is none."""
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except av.error.FFmpegError as exc:
        raise AudioError(f"not a readable audio file ({exc.strerror or exc})") from None
    with container:
        if not container.streams.audio:
            raise AudioError("the file holds no audio stream")
        stream = container.streams.audio[0]
        if stream.codec_context is None or stream.codec_context.name is None:
            raise AudioError("unsupported audio codec")
        yield container, stream


def probe_audio(data: bytes, limits: AudioLimits | None = None) -> AudioHeader:
    """The file's header, checked against `limits`; AudioError (unreadable) or AudioRefused
    (outside the limits) with the reason. Decodes nothing beyond the header."""
    limits = limits or AudioLimits()
    if not data:
        raise AudioError("empty file")
    with _audio_stream(data) as (container, stream):
        ctx = stream.codec_context
        rate, channels = int(ctx.sample_rate or 0), int(ctx.channels or 1)
        claimed = float(container.duration or 0) / av.time_base
        bit_rate = container.bit_rate or ctx.bit_rate or 0
        header = AudioHeader(ctx.name, container.format.name, rate, channels, claimed)
    if not rate:
        raise AudioError("the audio stream has no sample rate")
    if not limits.min_rate <= rate <= limits.max_rate:
        raise AudioRefused(
            f"sample rate {rate} Hz: recordings must be {limits.min_rate}-{limits.max_rate} Hz",
            "rate",
        )
    if channels > limits.max_channels:
        raise AudioRefused(
            f"{channels} channels: at most {limits.max_channels} (one per leg) are supported",
            "channels",
        )
    wav = _wav_format(data)
    bits = None
    if wav is not None:
        tag, bits = wav
        if tag in _WAV_BITS and bits not in _WAV_BITS[tag]:
            raise AudioRefused(f"{bits}-bit samples: WAV PCM must be 8, 16, 24 or 32-bit", "bits")
    if wav is not None and claimed == 0:
        raise AudioRefused("the recording holds no audio (0 seconds)", "empty")
    seconds = claimed
    if bit_rate:  # what the bytes present can hold, whatever length the header claims
        seconds = min(claimed or float("inf"), len(data) * 8 / bit_rate)
    if seconds > limits.max_seconds:
        raise AudioRefused(
            f"{seconds:.0f} s of audio: recordings may be at most {limits.max_seconds:.0f} s",
            "length",
        )
    return AudioHeader(header.codec, header.container, rate, channels, seconds, bits)


@dataclass(frozen=True)
class DecodedAudio:
    """Decoded channels, each mono float32 at `rate` (16 kHz unless asked otherwise), and
    what the source was."""

    channels: tuple[np.ndarray, ...]
    source_rate: int
    codec: str
    container: str
    rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        """Seconds of audio (of the longest channel)."""
        return max((len(c) for c in self.channels), default=0) / self.rate

    def mono(self) -> np.ndarray:
        """The channels mixed down (a mono recording of the whole call)."""
        if len(self.channels) == 1:
            return self.channels[0]
        n = max(len(c) for c in self.channels)
        mix = np.zeros(n, dtype=np.float32)
        for c in self.channels:
            mix[: len(c)] += c
        return np.asarray(mix / len(self.channels), dtype=np.float32)


def load_audio(
    source: bytes | Path | str, limits: AudioLimits | None = None, rate: int | None = SAMPLE_RATE
) -> DecodedAudio:
    """Decode a whole file within `limits`, resampled to `rate` (None: the file's own rate);
    raises AudioError with the reason when it cannot (AudioRefused when it lies outside the
    limits)."""
    data = Path(source).read_bytes() if isinstance(source, Path | str) else source
    limits = limits or AudioLimits()
    probe_audio(data, limits)
    with _audio_stream(data) as (container, stream):
        ctx = stream.codec_context
        n_channels = ctx.channels or 1
        source_rate = int(ctx.sample_rate)
        planes: list[list[np.ndarray]] = [[] for _ in range(n_channels)]
        decoded_frames = 0
        decoded_samples = 0
        try:
            for frame in container.decode(stream):
                decoded_samples += frame.samples
                if decoded_samples > (limits.max_seconds + 1) * source_rate:
                    raise AudioRefused(
                        f"more than {limits.max_seconds:.0f} s of audio: recordings may be "
                        f"at most {limits.max_seconds:.0f} s",
                        "length",
                    )
                arr = frame.to_ndarray()
                arr = _to_float(arr)
                if frame.format.is_planar:
                    for ch in range(min(n_channels, arr.shape[0])):
                        planes[ch].append(arr[ch])
                else:
                    inter = arr.reshape(-1, n_channels)
                    for ch in range(n_channels):
                        planes[ch].append(inter[:, ch])
                decoded_frames += 1
        except av.error.FFmpegError as exc:
            # A truncated file still gives what was decoded before the damage.
            if decoded_frames == 0:
                raise AudioError(f"corrupt audio ({exc.strerror or exc})") from None
            log.warning("audio truncated after %d frames: %s", decoded_frames, exc)
        codec_name = ctx.name
        container_name = container.format.name
    if decoded_frames == 0:
        raise AudioError("no audio frames could be decoded")
    out_rate = rate or source_rate
    channels = tuple(
        resample(np.concatenate(p) if p else np.zeros(0, np.float32), source_rate, out_rate)
        for p in planes
    )
    return DecodedAudio(channels, source_rate, codec_name, container_name, out_rate)


def _to_float(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.float32:
        return arr
    if arr.dtype == np.float64:
        return arr.astype(np.float32)
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    if arr.dtype == np.int32:
        return (arr.astype(np.float64) / 2147483648.0).astype(np.float32)
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    raise AudioError(f"unsupported sample format {arr.dtype}")


def write_wav(
    channels: list[np.ndarray] | tuple[np.ndarray, ...], rate: int = SAMPLE_RATE
) -> bytes:
    """16-bit PCM WAV bytes from float32 channels (padded to the longest)."""
    n = max((len(c) for c in channels), default=0)
    inter = np.zeros((n, len(channels)), dtype=np.int16)
    for i, c in enumerate(channels):
        inter[: len(c), i] = float_to_int16(c)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(inter.tobytes())
    return buf.getvalue()
