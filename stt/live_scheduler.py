"""Live decoding off the worker's thread, on two lanes: finals never wait behind partials.

Each lane is one thread driving one decoder; the Whisper model runs `stt.workers` decodes at
once (one CTranslate2 worker of one thread each, bench/decode_speed.py), so the two lanes
decode in parallel on two cores. The finals lane takes finals and the passes run in an
utterance's trailing silence (the likely finals); the partials lane takes the most overdue
partial passes, and finals too when finals wait and it is idle. While a lane decodes, the
worker keeps reading media, endpointing and emitting finals already decoded, so a final's
wait is at most the rest of one other final's decode.

The worker owns every recogniser: lanes only read the clips; results are handed back with
`collect()` and applied on the worker's thread. A request whose utterance already has a pass
of the same kind in flight is not sent again until that pass is back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from stt.streaming import ClipDecoder, DecodeRequest
from stt.transcriber import Segment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Due:
    """A request of one leg, with what it is decoded with."""

    owner: Hashable  # the worker's key of the leg (call, leg)
    request: DecodeRequest
    language: str | None
    prompt: str | None = None


@dataclass
class Done:
    """A decoded batch: segments in the order of `items`, or the decoder's error."""

    items: list[Due]
    segments: list[Segment | None] = field(default_factory=list)
    error: Exception | None = None
    seconds: float = 0.0
    lane: str = ""


def _flight_key(d: Due) -> tuple[int, bool]:
    return id(d.request.utterance), d.request.urgent


class Lane:
    """One decoder in one thread, taking one batch at a time."""

    def __init__(self, name: str, decoder: ClipDecoder, done: queue.Queue[Done]) -> None:
        self.name = name
        self.decoder = decoder
        self._done = done
        self._jobs: queue.Queue[list[Due] | None] = queue.Queue(maxsize=1)
        self.busy = False
        self._thread = threading.Thread(target=self._run, name=f"live-{name}", daemon=True)
        self._thread.start()

    def submit(self, items: list[Due]) -> None:
        """Decode `items` (one language, one prompt) next; the lane must be idle."""
        self.busy = True
        self._jobs.put(items)

    def _run(self) -> None:
        while True:
            items = self._jobs.get()
            if items is None:
                return
            began = time.perf_counter()
            result = Done(items, lane=self.name)
            try:
                result.segments = self.decoder.transcribe_clips(
                    [d.request.audio for d in items], items[0].language, items[0].prompt
                )
            except Exception as exc:  # handed back: the worker decides what it means
                log.exception("live decode failed on the %s lane", self.name)
                result.error = exc
            result.seconds = time.perf_counter() - began
            self._done.put(result)

    def close(self) -> None:
        """Stop after the batch in progress."""
        self._jobs.put(None)
        self._thread.join(30)


class DecodeLanes:
    """The finals lane and the partials lane of one live worker."""

    def __init__(self, partial: ClipDecoder, final: ClipDecoder, max_partials: int = 4) -> None:
        self._done: queue.Queue[Done] = queue.Queue()
        self.finals = Lane("finals", final, self._done)
        self.partials = Lane("partials", partial, self._done)
        self.max_partials = max_partials
        self._flying: list[Due] = []  # sent to a lane, not yet collected

    @property
    def idle(self) -> bool:
        """Nothing decoding and nothing waiting to be collected."""
        return not (self.finals.busy or self.partials.busy) and self._done.empty()

    def in_flight(self, owner: Hashable) -> bool:
        """Whether a batch holding a request of `owner` is decoding or not yet collected."""
        return any(d.owner == owner for d in self._flying)

    def collect(self, wait_s: float = 0.0) -> list[Done]:
        """Batches decoded since the last call (waiting up to `wait_s` for the first)."""
        out: list[Done] = []
        try:
            out.append(self._done.get(timeout=wait_s) if wait_s > 0 else self._done.get_nowait())
            while True:
                out.append(self._done.get_nowait())
        except queue.Empty:
            pass
        for d in out:
            (self.finals if d.lane == self.finals.name else self.partials).busy = False
            self._flying = [f for f in self._flying if all(f is not i for i in d.items)]
        return out

    def schedule(self, due: Sequence[Due]) -> None:
        """Hand due requests to idle lanes: finals first (to either lane), partials only to
        the partials lane, the most overdue first."""
        flying = {_flight_key(d) for d in self._flying}
        waiting = [d for d in due if _flight_key(d) not in flying]
        urgent = [d for d in waiting if d.request.urgent]
        partial = [d for d in waiting if not d.request.urgent]
        partial.sort(key=lambda d: d.request.end - d.request.utterance.next_pass, reverse=True)
        for lane in (self.finals, self.partials):
            if lane.busy:
                continue
            if urgent:
                batch = _one_group(urgent)
                urgent = [d for d in urgent if d not in batch]
            elif lane is self.partials and partial:
                batch = _one_group(partial)[: self.max_partials]
            else:
                continue
            self._flying.extend(batch)
            lane.submit(batch)

    def close(self) -> None:
        """Stop both lanes (after the batches in progress)."""
        self.finals.close()
        self.partials.close()


def _one_group(items: list[Due]) -> list[Due]:
    """The items that share the first item's language and prompt (one decoder call)."""
    first = items[0]
    return [d for d in items if (d.language, d.prompt) == (first.language, first.prompt)]
