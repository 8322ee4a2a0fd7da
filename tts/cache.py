"""Prompt cache: rendered audio in the object store, keyed by voice, text, format and rate."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from pipeline.ids import PROMPT_CACHE_PREFIX
from pipeline.media.audio_file import AudioLimits, load_audio
from pipeline.services import Services
from pipeline.store import ObjectNotFound
from tts.formats import Format, normalise_level, render, wav_header
from tts.synth import Synthesizer
from tts.text import cache_text, prepare

# An uploaded menu prompt: a few minutes at most, at whatever rate and channels it was made.
PROMPT_LIMITS = AudioLimits(max_seconds=600.0, max_rate=96000, max_channels=8)


class PromptCache:
    """Serve a prompt from the store if rendered before, else synthesise and keep it."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.synth: Synthesizer = services.component("tts.synth", lambda: Synthesizer(services))

    def key(self, text: str, fmt: Format, rate: float) -> str:
        """Object key of a prompt; hashes the prepared text so equivalent spellings share it."""
        prepared = cache_text(prepare(text, self.synth.max_chars))
        raw = "\n".join([self.synth.voice_name, prepared, fmt.name, f"{rate:.3f}"])
        return f"{PROMPT_CACHE_PREFIX}{hashlib.sha256(raw.encode()).hexdigest()}.{fmt.ext}"

    def lookup(self, key: str) -> bytes | None:
        """The cached audio, counting the hit or miss."""
        try:
            data = self.services.store.get(key)
        except ObjectNotFound:
            self.services.metrics.inc("tts_cache_misses_total")
            return None
        self.services.metrics.inc("tts_cache_hits_total")
        return data

    def get(self, text: str, fmt: Format, rate: float) -> bytes:
        """The whole prompt, from the cache or rendered now (and stored)."""
        key = self.key(text, fmt, rate)
        data = self.lookup(key)
        if data is None:
            data = self.synth.render(text, fmt, rate)
            self.services.metrics.inc("tts_synthesised_total")
            self.services.store.put(key, data, fmt.media_type)
        return data

    def converted(self, source: bytes, fmt: Format) -> bytes:
        """An uploaded audio prompt in `fmt` (level-normalised), cached by its content hash.

        Raises AudioError when the source cannot be decoded.
        """
        digest = hashlib.sha256(source).hexdigest()
        key = f"{PROMPT_CACHE_PREFIX}audio-{digest}-{fmt.name}.{fmt.ext}"
        data = self.lookup(key)
        if data is None:
            audio = load_audio(source, PROMPT_LIMITS, rate=None)
            data = render(normalise_level(audio.mono()), audio.rate, fmt)
            self.services.metrics.inc("tts_audio_converted_total")
            self.services.store.put(key, data, fmt.media_type)
        return data

    def stream(self, text: str, fmt: Format, rate: float) -> Iterator[bytes]:
        """A cache hit as one chunk; a miss streamed sentence by sentence, then stored."""
        key = self.key(text, fmt, rate)
        data = self.lookup(key)
        if data is not None:
            return iter([data])
        return self.synthesise(key, text, fmt, rate)

    def synthesise(self, key: str, text: str, fmt: Format, rate: float) -> Iterator[bytes]:
        """Stream a missed prompt as it is synthesised, then store it under `key`."""
        self.services.metrics.inc("tts_synthesised_total")
        chunks: list[bytes] = []
        for chunk in self.synth.stream(text, fmt, rate):
            chunks.append(chunk)
            yield chunk
        # Store with exact WAV sizes: the streamed header had to guess an open length.
        body = b"".join(chunks[1:] if fmt.wav else chunks)
        self.services.store.put(
            key, (wav_header(fmt, len(body)) if fmt.wav else b"") + body, fmt.media_type
        )
