"""Signal level per frame."""

from __future__ import annotations

import numpy as np

from pipeline.media.level import frame_power


def test_mean_square_of_each_whole_frame_in_the_audios_units() -> None:
    pcm = np.array([3, -3, 3, -3, 1000, 1000, 0, 0, 7], dtype=np.int16)  # the 7: a part frame
    assert frame_power(pcm, 2).tolist() == [9.0, 9.0, 1_000_000.0, 0.0]
    tone = np.full(160, 0.5, np.float32)
    assert frame_power(tone, 80).tolist() == [0.25, 0.25]
    assert frame_power(tone[:40], 80).size == 0
