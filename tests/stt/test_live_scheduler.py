"""The live worker's decode lanes: which decoder reads a clip, whichever lane takes it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from stt.live_scheduler import DecodeLanes, Due
from stt.streaming import DecodeRequest, _Utterance
from stt.transcriber import Segment


class Recording:
    """A decoder that notes which lane's thread ran it; its first batch waits for `release`."""

    def __init__(self, hold_first: bool = False) -> None:
        self.runs: list[tuple[str, int]] = []
        self.release = threading.Event()
        self._hold = hold_first

    def transcribe_clips(
        self, clips: Sequence[np.ndarray], language: str | None, prompt: str | None = None
    ) -> list[Segment | None]:
        self.runs.append((threading.current_thread().name, len(clips)))
        if self._hold:
            self._hold = False
            self.release.wait(10)
        return [None] * len(clips)


def _due(owner: str, *, final: bool, urgent: bool) -> Due:
    audio = np.zeros(16000, np.float32)
    return Due(owner, DecodeRequest(_Utterance(start=0), 0, 16000, audio, final, urgent), "fr")


def test_a_final_taken_by_the_partials_lane_is_decoded_as_finals_are() -> None:
    # Two calls' finals at once: the second one goes to the idle partials lane. It is read
    # with the finals' decoder there too; read greedily, the same utterance came out in
    # other words depending on the load.
    partial, final = Recording(), Recording(hold_first=True)
    lanes = DecodeLanes(partial, final)
    try:
        lanes.schedule([_due("a", final=True, urgent=True)])
        lanes.schedule([_due("b", final=True, urgent=True), _due("c", final=False, urgent=False)])
        final.release.set()
        done = lanes.collect(wait_s=5)
        done += lanes.collect(wait_s=5) if len(done) < 2 else []
        assert len(done) == 2
        assert sorted(final.runs) == [("live-finals", 1), ("live-partials", 1)]
        assert partial.runs == []  # the partial pass waits for a free lane
        lanes.schedule([_due("c", final=False, urgent=False)])
        assert [len(d.items) for d in lanes.collect(wait_s=5)] == [1]
        assert partial.runs == [("live-partials", 1)]
    finally:
        lanes.close()
