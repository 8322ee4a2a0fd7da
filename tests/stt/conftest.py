"""Audio the stt tests share."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def late_oh() -> tuple[np.ndarray, int]:
    """espeak-ng's "Oh, I didn't know that. Is it fixed now?" after a sentence and 3 s of
    quiet, through 8 kHz mu-law, at 16 kHz; and the sample where the "Oh" is voiced. Silero's
    first speech frame of it comes more than half a second late (deterministic: espeak-ng
    and Silero repeat)."""
    from pipeline.media.resample import resample
    from sim import corpus

    voice = corpus.espeak_speaker("en-us+f2", 155)
    before = voice("Twenty two Baker Street, apartment four, in Springfield.")
    said = voice("Oh, I didn't know that. Is it fixed now?")
    quiet = [np.zeros(n * corpus.RATE, np.float32) for n in (1, 3, 1)]
    line = np.concatenate([quiet[0], before, quiet[1], said, quiet[2]])
    audio = resample(corpus.g711_line(line, "PCMU"), corpus.RATE, 16000)
    voiced = len(quiet[0]) + len(before) + len(quiet[1]) + corpus.voiced_span(said)[0]
    return audio, voiced * 16000 // corpus.RATE
