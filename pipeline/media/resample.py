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


class _FirStream:
    """A FIR filter over a stream: the last taps - 1 inputs are kept from call to call, so
    chunk boundaries leave no seam."""

    def __init__(self, h: np.ndarray) -> None:
        self._h = h.astype(np.float32)[::-1].copy()
        self._hist = np.zeros(len(h) - 1, dtype=np.float32)

    def _windows(self, x: np.ndarray) -> np.ndarray:
        """Every full filter window over the history then `x`, one per row."""
        buf = np.concatenate([self._hist, x])
        self._hist = buf[len(buf) - len(self._hist) :]
        return np.lib.stride_tricks.sliding_window_view(buf, len(self._h))


class Decimator(_FirStream):
    """Streaming integer-factor downsampler (windowed-sinc FIR, state kept across calls).

    Inputs that are whole multiples of `factor` give exactly len(x) / factor samples, so
    sample positions stay exact; the filter delays by (taps - 1) / 2 input samples (under
    2 ms for 48 -> 16 kHz).
    """

    def __init__(self, factor: int, taps: int = 181, cutoff: float = 0.875) -> None:
        from scipy.signal import firwin

        self.factor = factor
        # `cutoff` is a fraction of the output Nyquist frequency.
        super().__init__(firwin(taps, cutoff / factor))
        self._consumed = 0

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter float32 input and keep the samples whose index is a multiple of `factor`."""
        x = np.asarray(x, dtype=np.float32)
        first = -self._consumed % self.factor
        self._consumed += len(x)
        return np.asarray(self._windows(x)[first :: self.factor] @ self._h, dtype=np.float32)


class Interpolator(_FirStream):
    """Streaming integer-factor upsampler (8 -> 16 kHz for G.711 legs), state kept across calls.

    Resampling each chunk on its own leaves a seam at every chunk boundary (a click every
    160 ms that Whisper hears); this filters the stream as one signal. Output is exactly
    `factor` samples per input sample, delayed by (taps - 1) / 2 output samples (4 ms at
    16 kHz). Against soxr over the whole signal: 70 dB SNR to 3 kHz, 58 dB at 3.4 kHz.
    """

    def __init__(self, factor: int, taps: int = 127, cutoff: float = 0.92) -> None:
        from scipy.signal import firwin

        self.factor = factor
        # `cutoff` is a fraction of the input Nyquist frequency; the gain makes up for the
        # zeros stuffed between input samples.
        super().__init__(firwin(taps, cutoff / factor) * factor)

    def process(self, x: np.ndarray) -> np.ndarray:
        """float32 input at the low rate -> float32 output at `factor` times the rate."""
        x = np.asarray(x, dtype=np.float32)
        up = np.zeros(len(x) * self.factor, dtype=np.float32)
        up[:: self.factor] = x
        return np.asarray(self._windows(up) @ self._h, dtype=np.float32)


class StreamTo16k:
    """One leg's contiguous int16 audio at its own rate -> 16 kHz int16, seamless across
    chunks (`Interpolator` up, `Decimator` down) when one rate is a multiple of the other;
    any other rate is resampled chunk by chunk. After a jump in the audio, start a new one."""

    def __init__(self, rate: int, out_rate: int = 16000) -> None:
        self.rate = rate
        self.out_rate = out_rate
        self._filter: Interpolator | Decimator | None = None
        if rate < out_rate and out_rate % rate == 0:
            self._filter = Interpolator(out_rate // rate)
        elif rate > out_rate and rate % out_rate == 0:
            self._filter = Decimator(rate // out_rate)

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """The next chunk of the stream, resampled."""
        if self.rate == self.out_rate:
            return pcm
        x = int16_to_float(pcm)
        y = self._filter.process(x) if self._filter else resample(x, self.rate, self.out_rate)
        return float_to_int16(y)
