"""Silero VAD (MIT) as a streaming frame classifier: speech, not music, tones or line noise.

webrtcvad hears any voiced sound as speech: a whole track of music on hold is "speech" to
it, and Whisper then writes "Music playing" or worse. Silero VAD was trained with music and
noise as non-speech; on the corpus's hold music and DTMF it finds no speech at all, and it
finds the same speech as webrtcvad on calls (bench/accuracy.py). We run the v6 model that
faster-whisper ships (`faster_whisper/assets/silero_vad_v6.onnx`, the one its own
`vad_filter` uses) through onnxruntime, one 32 ms frame (512 samples at 16 kHz) at a time,
carrying the recurrent state and the 64-sample context between calls, as faster-whisper's
`SileroVADModel` carries them between the frames of a whole file.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import numpy as np

FRAME = 512  # samples per decision at 16 kHz (32 ms)
_CONTEXT = 64


@cache
def _session() -> Any:
    """One onnxruntime session per process (the model is stateless; state travels in calls)."""
    # onnxruntime is loaded with the first session: a process that never endpoints skips it.
    import onnxruntime
    from faster_whisper.utils import get_assets_path

    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 4
    return onnxruntime.InferenceSession(
        os.path.join(get_assets_path(), "silero_vad_v6.onnx"),
        providers=["CPUExecutionProvider"],
        sess_options=opts,
    )


class SileroStream:
    """Speech probability of each 512-sample frame of one stream, in order."""

    def __init__(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Probabilities of the frames of `audio` (float32, a whole number of frames)."""
        n = len(audio) // FRAME
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        frames = np.asarray(audio[: n * FRAME], dtype=np.float32).reshape(n, FRAME)
        before = np.concatenate([self._context[None, :], frames[:-1, -_CONTEXT:]], axis=0)
        batch = np.concatenate([before, frames], axis=1)
        out, self._h, self._c = _session().run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = frames[-1, -_CONTEXT:].copy()
        return np.asarray(out, dtype=np.float32).reshape(-1)
