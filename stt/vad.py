"""Voice activity: webrtcvad frames driven through a small endpointing state machine.

The state machine (quiet, starting, speaking, stopping, as pipecat's VAD) is the same for
a whole recording and a live leg: feed it 16 kHz int16 audio in any slice sizes, it
returns when speech started and ended, in samples from the start of the stream.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

import numpy as np
import webrtcvad

SAMPLE_RATE = 16000
# Unvoiced frames tolerated inside a speech onset (plosives, webrtcvad flicker).
_ONSET_GAP_FRAMES = 3


@dataclass(frozen=True)
class VadOptions:
    """Endpointing options; names carry their units."""

    aggressiveness: int = 2
    frame_ms: int = 30
    min_speech_duration_ms: int = 250
    min_silence_duration_ms: int = 500
    speech_pad_ms: int = 200
    max_speech_duration_s: float = 25.0
    # Frames quieter than this are silence whatever webrtcvad says (dithered silence, hum).
    energy_floor_dbfs: float = -55.0
    # Frames less than this far above the line's noise floor (the quietest frame of the last
    # `noise_window_s`) are silence: webrtcvad hears the ~100 ms of fade after a sentence
    # as speech, which delays every endpoint. None: webrtcvad alone decides.
    noise_margin_db: float | None = None
    noise_window_s: float = 3.0


class VadState(Enum):
    """Where the endpointer is."""

    QUIET = "quiet"
    STARTING = "starting"
    SPEAKING = "speaking"
    STOPPING = "stopping"


@dataclass(frozen=True)
class SpeechStarted:
    """Speech began at `start` (samples, padding included)."""

    start: int


@dataclass(frozen=True)
class SpeechEnded:
    """Speech between `start` and `end` (samples); `forced` when cut at the maximum length."""

    start: int
    end: int
    forced: bool = False


VadEvent = SpeechStarted | SpeechEnded


class Endpointer:
    """Streaming endpointer over 16 kHz int16 audio."""

    def __init__(self, options: VadOptions | None = None) -> None:
        self.options = o = options or VadOptions()
        if o.frame_ms not in (10, 20, 30):
            raise ValueError("frame_ms must be 10, 20 or 30 (webrtcvad)")
        self._vad = webrtcvad.Vad(o.aggressiveness)
        self.frame = SAMPLE_RATE * o.frame_ms // 1000
        self._min_speech = max(1, o.min_speech_duration_ms // o.frame_ms)
        self._min_silence = max(1, o.min_silence_duration_ms // o.frame_ms)
        self._pad = SAMPLE_RATE * o.speech_pad_ms // 1000
        self._max_len = int(o.max_speech_duration_s * SAMPLE_RATE)
        self._floor = (10 ** (o.energy_floor_dbfs / 20) * 32768) ** 2
        self._recent: deque[float] = deque(
            maxlen=max(1, int(o.noise_window_s * 1000) // o.frame_ms)
        )
        self._pending = np.zeros(0, dtype=np.int16)
        self.position = 0  # samples consumed into whole frames
        self.state = VadState.QUIET
        self._silent_run = 0
        self._start = 0
        self._last_voiced_end = 0
        self._starting_voiced = 0

    def is_speech(self, frame: np.ndarray) -> bool:
        """One frame's verdict: loud enough and voiced by webrtcvad."""
        energy = max(float(np.mean(frame.astype(np.float64) ** 2)), self._floor)
        margin = self.options.noise_margin_db
        if margin is not None:
            self._recent.append(energy)
            if energy < min(self._recent) * 10 ** (margin / 10):
                return False
        if energy <= self._floor:
            return False
        return bool(self._vad.is_speech(frame.tobytes(), SAMPLE_RATE))

    @property
    def speaking(self) -> bool:
        """Inside an utterance (speaking or in its trailing silence)."""
        return self.state in (VadState.SPEAKING, VadState.STOPPING)

    @property
    def utterance_start(self) -> int:
        """Start (samples) of the utterance in progress."""
        return self._start

    def feed(self, pcm: np.ndarray) -> list[VadEvent]:
        """Consume int16 samples; return the events they complete."""
        buf = np.concatenate([self._pending, pcm.astype(np.int16, copy=False)])
        events: list[VadEvent] = []
        n = len(buf) // self.frame
        for i in range(n):
            events.extend(self._step(buf[i * self.frame : (i + 1) * self.frame]))
        self._pending = buf[n * self.frame :]
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: close an utterance in progress."""
        if self.speaking:
            self.state = VadState.QUIET
            return [SpeechEnded(self._start, min(self.position, self._last_voiced_end + self._pad))]
        self.state = VadState.QUIET
        return []

    def _step(self, frame: np.ndarray) -> list[VadEvent]:
        voiced = self.is_speech(frame)
        frame_start = self.position
        self.position += self.frame
        if voiced:
            self._silent_run = 0
            self._last_voiced_end = self.position
        else:
            self._silent_run += 1
        st = self.state
        if st is VadState.QUIET:
            if voiced:
                self.state = VadState.STARTING
                self._start = max(0, frame_start - self._pad)
                self._starting_voiced = 1
            return []
        if st is VadState.STARTING:
            if not voiced:
                # A click or a cough shorter than min speech: back to quiet.
                if self._silent_run >= _ONSET_GAP_FRAMES:
                    self.state = VadState.QUIET
                return []
            self._starting_voiced += 1
            if self._starting_voiced >= self._min_speech:
                self.state = VadState.SPEAKING
                return [SpeechStarted(self._start)]
            return []
        events: list[VadEvent] = []
        if self.position - self._start >= self._max_len:
            events.append(SpeechEnded(self._start, self.position, forced=True))
            self._start = self.position
            self.state = VadState.SPEAKING if voiced else VadState.STOPPING
            if voiced:
                events.append(SpeechStarted(self._start))
            return events
        if voiced:
            self.state = VadState.SPEAKING
            return []
        self.state = VadState.STOPPING
        if self._silent_run >= self._min_silence:
            end = min(self.position, self._last_voiced_end + self._pad)
            self.state = VadState.QUIET
            events.append(SpeechEnded(self._start, end))
        return events


def speech_segments(audio: np.ndarray, options: VadOptions | None = None) -> list[tuple[int, int]]:
    """(start, end) samples of each utterance in a whole 16 kHz float32 signal."""
    from pipeline.media.resample import float_to_int16

    ep = Endpointer(options)
    events = ep.feed(float_to_int16(audio))
    events.extend(ep.flush())
    n = len(audio)
    ends = [e for e in events if isinstance(e, SpeechEnded) and e.end > e.start]
    return [(e.start, min(e.end, n)) for e in ends]
