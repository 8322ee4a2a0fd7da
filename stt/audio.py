"""Audio loading: any file ffmpeg decodes, to 16 kHz mono float32 per channel.

One edge function, one inside format (as faster-whisper's `decode_audio`): WAV PCM at any
rate, WAV mu-law/A-law, MP3, OGG/Opus, FLAC... all go through PyAV. Channels are kept
apart, because in a two-channel call recording each channel is one leg.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from pipeline.media.resample import resample

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MAX_CHANNELS = 8


class AudioError(ValueError):
    """Audio that cannot be decoded; the message says why (corrupt, empty, unsupported)."""


@dataclass(frozen=True)
class DecodedAudio:
    """Decoded channels, each 16 kHz mono float32, and what the source was."""

    channels: tuple[np.ndarray, ...]
    source_rate: int
    codec: str
    container: str

    @property
    def duration(self) -> float:
        """Seconds of audio (of the longest channel)."""
        return max((len(c) for c in self.channels), default=0) / SAMPLE_RATE

    def mono(self) -> np.ndarray:
        """The channels mixed down (a mono recording of the whole call)."""
        if len(self.channels) == 1:
            return self.channels[0]
        n = max(len(c) for c in self.channels)
        mix = np.zeros(n, dtype=np.float32)
        for c in self.channels:
            mix[: len(c)] += c
        return np.asarray(mix / len(self.channels), dtype=np.float32)


def load_audio(source: bytes | Path | str) -> DecodedAudio:
    """Decode a whole file; raises AudioError with the reason when it cannot."""
    data = Path(source).read_bytes() if isinstance(source, Path | str) else source
    if not data:
        raise AudioError("empty file")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except av.error.FFmpegError as exc:
        raise AudioError(f"not a readable audio file ({exc.strerror or exc})") from None
    with container:
        if not container.streams.audio:
            raise AudioError("the file holds no audio stream")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        if ctx is None or stream.codec_context.name is None:
            raise AudioError("unsupported audio codec")
        n_channels = ctx.channels or 1
        if n_channels > MAX_CHANNELS:
            raise AudioError(f"{n_channels} channels; at most {MAX_CHANNELS} are supported")
        rate = ctx.sample_rate
        if not rate:
            raise AudioError("the audio stream has no sample rate")
        planes: list[list[np.ndarray]] = [[] for _ in range(n_channels)]
        decoded_frames = 0
        try:
            for frame in container.decode(stream):
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
    channels = tuple(
        resample(np.concatenate(p) if p else np.zeros(0, np.float32), rate, SAMPLE_RATE)
        for p in planes
    )
    return DecodedAudio(channels, rate, codec_name, container_name)


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
    import wave

    from pipeline.media.resample import float_to_int16

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
