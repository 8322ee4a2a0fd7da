"""The shared decode queue: calls from several threads batched, each caller its own results.
The inner decoder here is a stand-in that records its batches (pure queueing logic); the
robot session tests run the queue with the real Whisper decoder."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from stt.decode_queue import DecodeQueue, DecodeQueueClosed
from stt.transcriber import Segment


class Recorder:
    """Answers each clip with its length as text; slow enough for calls to pile up."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, str | None]] = []

    def transcribe_clips(
        self, clips: Sequence[np.ndarray], language: str | None, prompt: str | None = None
    ) -> list[Segment | None]:
        self.batches.append((len(clips), language))
        time.sleep(0.05)
        if any(len(c) == 13 for c in clips):
            raise RuntimeError("bad clip")
        return [
            Segment(
                start=0.0,
                end=1.0,
                text=str(len(c)),
                words=(),
                avg_logprob=0.0,
                no_speech_prob=0.0,
                language=language,
            )
            for c in clips
        ]


def test_concurrent_calls_share_batches_and_get_their_own_results() -> None:
    inner = Recorder()
    q = DecodeQueue(inner)
    got: dict[int, list[str]] = {}

    def call(i: int) -> None:
        res = q.transcribe_clips([np.zeros(100 + i), np.zeros(200 + i)], "en")
        got[i] = [s.text for s in res if s is not None]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert got == {i: [str(100 + i), str(200 + i)] for i in range(6)}
    assert sum(n for n, _ in inner.batches) == 12
    assert len(inner.batches) < 6  # calls that waited were decoded together
    q.close()


def test_languages_apart_and_errors_reach_only_their_batch() -> None:
    inner = Recorder()
    q = DecodeQueue(inner)
    results: dict[str, Any] = {}

    def call(name: str, clip_len: int, language: str) -> None:
        try:
            results[name] = q.transcribe_clips([np.zeros(clip_len)], language)[0]
        except RuntimeError as exc:
            results[name] = exc

    ts = [
        threading.Thread(target=call, args=a)
        for a in (("en", 10, "en"), ("fr", 11, "fr"), ("bad", 13, "de"))
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join(5)
    assert isinstance(results["bad"], RuntimeError)
    assert results["en"].language == "en" and results["fr"].language == "fr"
    assert all(lang in ("en", "fr", "de") for _, lang in inner.batches)
    with pytest.raises(RuntimeError):
        q.transcribe_clips([np.zeros(13)], "de")  # the loop survived the error
    q.close()


def test_a_call_after_close_is_refused_not_left_waiting() -> None:
    inner = Recorder()
    q = DecodeQueue(inner)
    answered: list[str] = []

    def call() -> None:
        res = q.transcribe_clips([np.zeros(40)], "en")
        answered.extend(s.text for s in res if s is not None)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.01)  # queued (or decoding) before the close: still answered
    q.close()
    t.join(5)
    assert answered == ["40"]
    outcome: list[object] = []

    def late_call() -> None:
        try:
            outcome.append(q.transcribe_clips([np.zeros(50)], "en"))
        except DecodeQueueClosed as exc:
            outcome.append(exc)

    late = threading.Thread(target=late_call)
    late.start()
    late.join(5)
    assert not late.is_alive(), "a call after close waits forever"
    assert isinstance(outcome[0], DecodeQueueClosed)
