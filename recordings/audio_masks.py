"""The recording's audio over what redaction masked: silenced, or a tone in its place
(`redaction.audio`), so that the audio of a redacted call does not say what its transcript
no longer shows.

Whisper's word times are off by up to a few tenths of a second at the edges of a word,
more so on telephone audio: each masked stretch is widened by `redaction.audio_pad_s` on
both sides, which costs a syllable of the words around it rather than leaving the first or
last digit audible."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.config import AudioMask
from recordings.redaction import Masked

TONE_HZ = 1000.0
TONE_LEVEL = 0.1  # -20 dBFS: audible as a bleep, not louder than speech


def mask_audio(
    channels: Sequence[np.ndarray],
    rate: int,
    spans: Sequence[Masked],
    legs: Mapping[int, str] | None,
    mode: AudioMask,
    pad_s: float,
) -> list[np.ndarray]:
    """Copies of `channels` with each span silenced or toned on its leg's channel (`legs`:
    channel index -> leg; None: a mono mix, where every span applies)."""
    out = [np.array(c, dtype=np.float32, copy=True) for c in channels]
    if mode == "off":
        return out
    for span in spans:
        for i, channel in enumerate(out):
            if legs is not None and legs.get(i) != span.leg:
                continue
            a = max(0, int((span.start - pad_s) * rate))
            b = min(len(channel), int(np.ceil((span.end + pad_s) * rate)))
            if b <= a:
                continue
            if mode == "tone":
                t = np.arange(a, b) / rate
                channel[a:b] = TONE_LEVEL * np.sin(2 * np.pi * TONE_HZ * t)
            else:
                channel[a:b] = 0.0
    return out
