"""The live worker's decode lanes: which decoder reads a clip, whichever lane takes it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

import numpy as np

from stt.live_decoder import DecoderOptions, ShortWindowDecoder
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


class RecordingWindows(ShortWindowDecoder, Recording):
    """The finals' short-window decoder (its windows: at least 8 s), noting its runs as
    `Recording` does instead of decoding."""

    def __init__(self) -> None:
        model = SimpleNamespace(feature_extractor=SimpleNamespace(hop_length=160))
        ShortWindowDecoder.__init__(self, cast(Any, model), DecoderOptions(min_frames=800))
        Recording.__init__(self)

    def transcribe_clips(
        self, clips: Sequence[np.ndarray], language: str | None, prompt: str | None = None
    ) -> list[Segment | None]:
        return Recording.transcribe_clips(self, clips, language, prompt)


def _due(owner: str, *, final: bool, urgent: bool, seconds: float = 1.0) -> Due:
    audio = np.zeros(int(16000 * seconds), np.float32)
    request = DecodeRequest(_Utterance(start=0), 0, len(audio), audio, final, urgent)
    return Due(owner, request, "fr")


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


def test_finals_read_in_different_windows_go_to_both_lanes() -> None:
    # A 3 s final is read in the 8 s window, a 12 s one in its own: one decoder call could
    # not hold both, so on one lane the second would wait for the first. Finals read alike
    # still share one call.
    final = RecordingWindows()
    lanes = DecodeLanes(Recording(), final)
    try:
        lanes.schedule(
            [
                _due("a", final=True, urgent=True, seconds=3),
                _due("b", final=True, urgent=True, seconds=12),
                _due("c", final=True, urgent=True, seconds=5),
            ]
        )
        done = lanes.collect(wait_s=5)
        done += lanes.collect(wait_s=5) if len(done) < 2 else []
        assert sorted(final.runs) == [("live-finals", 2), ("live-partials", 1)]
        assert {d.lane: sorted(str(i.owner) for i in d.items) for d in done} == {
            "finals": ["a", "c"],
            "partials": ["b"],
        }
    finally:
        lanes.close()
