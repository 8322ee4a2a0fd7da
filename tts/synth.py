"""Piper synthesis: the one way the tree runs Piper (`speak`), and prompts sentence by
sentence into telephony formats (`Synthesizer`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.media.resample import resample
from pipeline.services import Services
from tts.formats import Format, encode_samples, normalise_level, wav_header
from tts.text import Segment, prepare

if TYPE_CHECKING:
    from piper import PiperVoice

_SENTENCE = re.compile(r"(?<=[.!?;])\s+")
# The first streamed piece is cut short so its audio is out fast: at the first clause break
# within this many words, else after FIRST_CHUNK_WORDS words (Piper cannot stream inside one
# utterance, so a long first sentence would otherwise hold back all audio).
FIRST_CLAUSE_MAX_WORDS = 6
FIRST_CHUNK_WORDS = 4
_CLAUSE = re.compile(r"(?<=[,:;\u2014])\s+")
_SILENCE = 0.01  # amplitude under which Piper's lead-in / tail counts as silence


def speak(
    voice: Any, text: str, *, length_scale: float = 1.0, steady: bool = False
) -> tuple[np.ndarray, int]:
    """Piper speech for `text`: float32 samples at the voice's own rate, and that rate.

    `steady` turns Piper's noise off: its noise cannot be seeded, so a simulated call, a
    test or a benchmark that wants the same audio for a text on every run asks for none.
    """
    # Piper pulls in onnxruntime: only a process that speaks pays for it.
    from piper import SynthesisConfig

    cfg = SynthesisConfig(length_scale=length_scale)
    if steady:
        cfg.noise_scale = cfg.noise_w_scale = 0.0
    parts = [c.audio_float_array for c in voice.synthesize(text, syn_config=cfg)]
    audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return audio.astype(np.float32), int(voice.config.sample_rate)


def speak_at(voice: Any, text: str, rate: int, **options: Any) -> np.ndarray:
    """`speak`, clipped to [-1, 1] and resampled to `rate`."""
    audio, sr = speak(voice, text, **options)
    return resample(np.clip(audio, -1.0, 1.0), sr, rate)


class Synthesizer:
    """Text to audio with the process's Piper voice."""

    def __init__(self, services: Services, voice: PiperVoice | None = None) -> None:
        self.services = services
        self.max_chars = services.settings.tts.max_text_chars
        # None: the process's shared voice (services.piper_voice()), loaded on first use.
        self._voice = voice

    @property
    def voice_name(self) -> str:
        """Identity of the voice (part of the cache key)."""
        return self.services.settings.tts.voice or "en_US-joe-medium"

    def pieces(
        self, segments: list[Segment], rate: float, out_rate: int, quick_start: bool = False
    ) -> Iterator[np.ndarray]:
        """Float32 audio at `out_rate`, one sentence or pause at a time, level-normalised.

        `quick_start` cuts the first sentence after its first clause (or first words) so the
        first piece is short; the seam's silences are trimmed so it sounds like a comma.
        """
        first = quick_start
        for seg in segments:
            if seg.pause_ms:
                yield np.zeros(out_rate * seg.pause_ms // 1000, dtype=np.float32)
                continue
            for sentence in _SENTENCE.split(seg.text):
                if not sentence.strip():
                    continue
                if first:
                    first = False
                    head, tail = split_first(sentence)
                    if tail:
                        # The head goes out before the tail is synthesised.
                        head_audio = self._piece(head, rate, out_rate)
                        yield _trim(head_audio, out_rate, lead_ms=None, tail_ms=60)
                        tail_audio = self._piece(tail, rate, out_rate)
                        yield _trim(tail_audio, out_rate, lead_ms=20, tail_ms=None)
                        continue
                yield self._piece(sentence, rate, out_rate)

    def _piece(self, text: str, rate: float, out_rate: int) -> np.ndarray:
        audio, sr = speak(self._voice or self.services.piper_voice(), text, length_scale=1 / rate)
        self.services.metrics.inc("tts_pieces_synthesised_total")
        # Level after resampling: the anti-alias filter can raise peaks.
        return normalise_level(resample(audio, sr, out_rate))

    def stream(self, text: str, fmt: Format, rate: float) -> Iterator[bytes]:
        """Encoded audio chunks: a streaming WAV header (if any), then each piece.

        Text is checked before the first chunk, so bad text raises before anything is sent.
        """
        segments = prepare(text, self.max_chars)
        return self._stream(segments, fmt, rate)

    def _stream(self, segments: list[Segment], fmt: Format, rate: float) -> Iterator[bytes]:
        if fmt.wav:
            yield wav_header(fmt, None)
        for audio in self.pieces(segments, rate, fmt.rate, quick_start=True):
            yield encode_samples(audio, fmt)

    def render(self, text: str, fmt: Format, rate: float) -> bytes:
        """The whole prompt as a complete file with exact WAV sizes."""
        segments = prepare(text, self.max_chars)
        data = b"".join(encode_samples(a, fmt) for a in self.pieces(segments, rate, fmt.rate))
        return wav_header(fmt, len(data)) + data if fmt.wav else data


def split_first(sentence: str) -> tuple[str, str]:
    """Cut a sentence into a short head and the rest ("" when it is short already)."""
    words = sentence.split()
    if len(words) <= FIRST_CHUNK_WORDS + 2:
        return sentence, ""
    clauses = _CLAUSE.split(sentence, maxsplit=1)
    if len(clauses) == 2 and 2 <= len(clauses[0].split()) <= FIRST_CLAUSE_MAX_WORDS:
        return clauses[0], clauses[1]
    return " ".join(words[:FIRST_CHUNK_WORDS]), " ".join(words[FIRST_CHUNK_WORDS:])


def _trim(audio: np.ndarray, rate: int, lead_ms: int | None, tail_ms: int | None) -> np.ndarray:
    """Shorten leading / trailing silence to at most `lead_ms` / `tail_ms` (None: keep)."""
    loud = np.flatnonzero(np.abs(audio) > _SILENCE)
    if loud.size == 0:
        return audio
    start = 0 if lead_ms is None else max(0, int(loud[0]) - rate * lead_ms // 1000)
    end = len(audio) if tail_ms is None else min(len(audio), int(loud[-1]) + rate * tail_ms // 1000)
    return audio[start:end]
