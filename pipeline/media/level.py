"""Signal level per frame, for the checks that ask "is anything heard here" by loudness."""

from __future__ import annotations

import numpy as np


def frame_power(audio: np.ndarray, frame: int) -> np.ndarray:
    """Mean square of each whole `frame` of samples (float64; a trailing part frame is
    left out), in the audio's own units: int16 PCM or float."""
    n = len(audio) // frame
    return np.mean(audio[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1)
