"""Transcript formats: SubRip cues keep the words as said, in speaking order."""

from __future__ import annotations

import srt

from pipeline.events import Utterance
from recordings.transcripts import to_srt


def _utt(uid: str, leg: str, start: float, end: float, text: str) -> Utterance:
    return Utterance(
        tenant="t", call_id="c", leg=leg, utterance_id=uid, start=start, end=end, text=text
    )


def test_srt_cues_in_speaking_order_with_the_words_kept() -> None:
    text = to_srt(
        [
            _utt("u2", "customer", 3663.0, 3664.0, "ok"),
            _utt("u1", "agent", 3661.2, 3662.5, "price {50} --> done\n\nnext"),
        ]
    )
    assert text.startswith("1\n01:01:01,200 --> 01:01:02,500\n")
    cues = list(srt.parse(text))  # a SubRip reader takes it back
    assert [c.index for c in cues] == [1, 2]
    # braces and arrows are words here, kept; a blank line would end the cue: folded
    assert cues[0].content == "agent: price {50} --> done next"
    assert cues[1].content == "customer: ok"
    assert cues[1].start.total_seconds() == 3663.0
