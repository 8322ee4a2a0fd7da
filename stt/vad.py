"""Voice activity: speech frames driven through a small endpointing state machine.

The state machine (quiet, starting, speaking, stopping, as pipecat's VAD) is the same for
a whole recording and a live leg: feed it 16 kHz int16 audio in any slice sizes, it
returns when speech started and ended, in samples from the start of the stream. Which
frames are speech is decided by Silero VAD (`stt/silero.py`, 32 ms frames; the default:
music, tones and line noise are not speech to it) or webrtcvad (10/20/30 ms frames: any
voiced sound is speech; the robot's barge-in detector, which must react within 100 ms).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Literal

import numpy as np
import webrtcvad

from pipeline.media import SAMPLE_RATE
from pipeline.media.resample import float_to_int16
from stt.silero import FRAME as SILERO_FRAME
from stt.silero import SileroStream

# Unvoiced frames tolerated inside a speech onset (plosives, webrtcvad flicker).
_ONSET_GAP_FRAMES = 3
# A stretch of speech at its maximum length is cut in its last pause of at least this many
# frames (about 0.1 s), as Silero's own splitter does, rather than mid-word.
_PAUSE_FRAMES = 3


@dataclass(frozen=True)
class VadOptions:
    """Endpointing options; names carry their units."""

    model: Literal["silero", "webrtc"] = "silero"
    # Silero: a frame is speech at `threshold`, and stays speech down to `neg_threshold`
    # once speech has begun (faster-whisper's hysteresis).
    threshold: float = 0.5
    neg_threshold: float = 0.35
    aggressiveness: int = 2  # webrtcvad
    frame_ms: int = 30  # webrtcvad (Silero's frame is 32 ms)
    min_speech_duration_ms: int = 250
    min_silence_duration_ms: int = 500
    speech_pad_ms: int = 200
    # Audio kept before the first speech frame (None: speech_pad_ms). Silero hears a soft
    # first word ("vous", "pour") a few frames late: a short pre-roll cut it off.
    onset_pad_ms: int | None = None
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
        self._silero: SileroStream | None = None
        if o.model == "silero":
            self._silero = SileroStream()
            self.frame = SILERO_FRAME
        else:
            if o.frame_ms not in (10, 20, 30):
                raise ValueError("frame_ms must be 10, 20 or 30 (webrtcvad)")
            self.frame = SAMPLE_RATE * o.frame_ms // 1000
        self._vad = webrtcvad.Vad(o.aggressiveness)
        frame_ms = self.frame * 1000 / SAMPLE_RATE
        self._min_speech = max(1, int(o.min_speech_duration_ms / frame_ms))
        self._min_silence = max(1, int(o.min_silence_duration_ms / frame_ms))
        self._pad = SAMPLE_RATE * o.speech_pad_ms // 1000
        onset = o.speech_pad_ms if o.onset_pad_ms is None else o.onset_pad_ms
        self._onset_pad = SAMPLE_RATE * onset // 1000
        self._max_len = int(o.max_speech_duration_s * SAMPLE_RATE)
        self._floor = (10 ** (o.energy_floor_dbfs / 20) * 32768) ** 2
        self._recent: deque[float] = deque(
            maxlen=max(1, int(o.noise_window_s * SAMPLE_RATE) // self.frame)
        )
        self._pending = np.zeros(0, dtype=np.int16)
        self.position = 0  # samples consumed into whole frames
        self.state = VadState.QUIET
        self._silent_run = 0
        self._start = 0
        self._last_voiced_end = 0
        self._starting_voiced = 0
        self._pause_at = -1  # middle of the utterance's last short pause

    def is_speech(self, frame: np.ndarray, probability: float | None = None) -> bool:
        """One frame's verdict: loud enough, and speech to Silero (its `probability`, with
        hysteresis) or voiced to webrtcvad."""
        energy = max(float(np.mean(frame.astype(np.float64) ** 2)), self._floor)
        margin = self.options.noise_margin_db
        if margin is not None:
            self._recent.append(energy)
            if energy < min(self._recent) * 10 ** (margin / 10):
                return False
        if energy <= self._floor:
            return False
        if probability is not None:
            o = self.options
            return probability >= (o.neg_threshold if self.speaking else o.threshold)
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
        probs: list[float | None] = [None] * n
        if self._silero is not None and n:
            # one model run for every whole frame of the slice
            probs = list(self._silero.probabilities(buf[: n * self.frame] / 32768.0))
        for i in range(n):
            events.extend(self._step(buf[i * self.frame : (i + 1) * self.frame], probs[i]))
        self._pending = buf[n * self.frame :]
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: close an utterance in progress."""
        if self.speaking:
            self.state = VadState.QUIET
            return [SpeechEnded(self._start, min(self.position, self._last_voiced_end + self._pad))]
        self.state = VadState.QUIET
        return []

    def _step(self, frame: np.ndarray, probability: float | None) -> list[VadEvent]:
        voiced = self.is_speech(frame, probability)
        frame_start = self.position
        self.position += self.frame
        if voiced:
            self._silent_run = 0
            self._last_voiced_end = self.position
        else:
            self._silent_run += 1
            if self._silent_run >= _PAUSE_FRAMES:
                self._pause_at = self.position - self._silent_run * self.frame // 2
        st = self.state
        if st is VadState.QUIET:
            if voiced:
                self.state = VadState.STARTING
                self._start = max(0, frame_start - self._onset_pad)
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
                self._pause_at = -1
                return [SpeechStarted(self._start)]
            return []
        events: list[VadEvent] = []
        if self.position - self._start >= self._max_len:
            cut = self.position
            if self._pause_at > self._start + self._max_len // 3:
                cut = self._pause_at
            events.append(SpeechEnded(self._start, cut, forced=True))
            self._start = cut
            self._pause_at = -1
            self.state = VadState.SPEAKING if voiced or cut < self.position else VadState.STOPPING
            if self.state is VadState.SPEAKING:
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
    ep = Endpointer(options)
    events = ep.feed(float_to_int16(audio))
    events.extend(ep.flush())
    n = len(audio)
    ends = [e for e in events if isinstance(e, SpeechEnded) and e.end > e.start]
    return [(e.start, min(e.end, n)) for e in ends]
