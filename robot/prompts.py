"""Prompt audio for the robot: text to G.711 bytes (8 kHz, one byte a sample).

`PromptAudio` is the small interface the session needs. `PiperPrompts` renders with the
process's Piper voice through `tts.synth.speak_at`, noise off so a prompt sounds the same
on every call, and keeps recent prompts in memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Protocol

import numpy as np

from pipeline.media import g711
from pipeline.media.resample import float_to_int16
from tts.synth import speak_at

RATE = 8000


class PromptAudio(Protocol):
    """Renders prompt text as G.711 bytes at 8 kHz."""

    def render(self, text: str, codec: str) -> bytes: ...


def encode(pcm: np.ndarray, codec: str) -> bytes:
    """int16 8 kHz samples to PCMU or PCMA bytes."""
    return g711.ulaw_encode(pcm) if codec == "PCMU" else g711.alaw_encode(pcm)


class PiperPrompts:
    """Piper synthesis with an in-memory LRU of rendered prompts (thread-safe)."""

    def __init__(self, voice: Any, capacity: int = 256) -> None:
        self.voice = voice
        self.capacity = capacity
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.rendered = 0  # syntheses run (cache misses)

    def render(self, text: str, codec: str) -> bytes:
        """The prompt's wire bytes; synthesised once per (text, codec)."""
        key = (text, codec)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        audio = (
            speak_at(self.voice, text, RATE, steady=True)
            if text.strip()
            else np.zeros(0, np.float32)
        )
        wire = encode(float_to_int16(audio), codec)
        with self._lock:
            self.rendered += 1
            self._cache[key] = wire
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return wire
