"""Whisper decode loops shared by many threads (robot sessions).

Each robot session runs its own recogniser in its own thread; decoding their clips one
call at a time would queue them on the model (and oversubscribe the cores, each call
wanting every thread). Clips submitted while the loops are busy are decoded together in the
next batch, as the live worker batches legs, and each caller gets its own results back.
There are as many loops as the model runs decodes at once (`stt.workers`): on two cores
two single-threaded decodes go side by side.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from stt.streaming import ClipDecoder
from stt.transcriber import Segment

log = logging.getLogger(__name__)


class DecodeQueueClosed(RuntimeError):
    """The queue was closed: nothing decodes a clip sent after that."""


@dataclass
class _Job:
    clips: list[np.ndarray]
    language: str | None
    prompt: str | None
    done: Future[list[Segment | None]] = field(default_factory=Future)


class DecodeQueue:
    """A `ClipDecoder` whose calls from several threads are batched into one decode."""

    def __init__(self, inner: ClipDecoder, max_clips: int = 16, loops: int = 1) -> None:
        self.inner = inner
        self.max_clips = max_clips
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._closing = threading.Lock()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"decode-queue-{i}", daemon=True)
            for i in range(max(1, loops))
        ]
        for t in self._threads:
            t.start()

    def transcribe_clips(
        self, clips: Sequence[np.ndarray], language: str | None, prompt: str | None = None
    ) -> list[Segment | None]:
        """Decode `clips` (with whatever other threads sent meanwhile); blocks until done.

        Raises DecodeQueueClosed after `close` (a caller would otherwise wait forever).
        """
        if not clips:
            return []
        job = _Job(list(clips), language, prompt)
        with self._closing:
            if self._closed:
                raise DecodeQueueClosed("the decode queue is closed")
            self._jobs.put(job)
        return job.done.result()

    def close(self) -> None:
        """Stop the loop once the jobs already queued are done."""
        with self._closing:
            self._closed = True
            for _ in self._threads:
                self._jobs.put(None)  # one stop for each loop
        for t in self._threads:
            t.join(10)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is None:
                return
            jobs = [first]
            size = len(first.clips)
            while size < self.max_clips:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                jobs.append(more)
                size += len(more.clips)
            # Jobs with the same language and prompt share one batch.
            groups: dict[tuple[str | None, str | None], list[_Job]] = {}
            for job in jobs:
                groups.setdefault((job.language, job.prompt), []).append(job)
            for (language, prompt), members in groups.items():
                self._decode(members, language, prompt)

    def _decode(self, jobs: list[_Job], language: str | None, prompt: str | None) -> None:
        clips = [c for job in jobs for c in job.clips]
        try:
            results = self.inner.transcribe_clips(clips, language, prompt)
        except Exception as exc:  # each caller gets the error; the loop goes on
            log.exception("decoding %d clips failed", len(clips))
            for job in jobs:
                job.done.set_exception(exc)
            return
        at = 0
        for job in jobs:
            job.done.set_result(results[at : at + len(job.clips)])
            at += len(job.clips)
