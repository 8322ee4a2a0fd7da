"""Live decoding off the worker's thread, on two lanes: finals never wait behind partials;
and `LiveScheduler`, which hands the lanes the clips due and applies what comes back.

Each lane is one thread decoding one batch at a time; the Whisper model runs `stt.workers`
decodes at once (one CTranslate2 worker of one thread each, bench/decode_speed.py), so the
two lanes decode in parallel on two cores. The finals lane takes finals and the passes run in
an utterance's trailing silence (the likely finals); the partials lane takes the most overdue
partial passes, and finals too when finals wait and it is idle (with the finals' decoder,
so that a final reads the same whichever lane decodes it). While a lane decodes, the
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
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from pipeline.media import SAMPLE_RATE
from pipeline.services import Services
from stt.live_call import LiveCall
from stt.live_decoder import ShortWindowDecoder, live_decoder_of
from stt.streaming import ClipDecoder, DecodeRequest, Hypothesis
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
    """One thread decoding one batch at a time, with the decoder the batch is sent with."""

    def __init__(self, name: str, done: queue.Queue[Done]) -> None:
        self.name = name
        self._done = done
        self._jobs: queue.Queue[tuple[ClipDecoder, list[Due]] | None] = queue.Queue(maxsize=1)
        self.busy = False
        self._thread = threading.Thread(target=self._run, name=f"live-{name}", daemon=True)
        self._thread.start()

    def submit(self, items: list[Due], decoder: ClipDecoder) -> None:
        """Decode `items` (one language, one prompt) with `decoder` next; the lane must be
        idle."""
        self.busy = True
        self._jobs.put((decoder, items))

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            decoder, items = job
            began = time.perf_counter()
            result = Done(items, lane=self.name)
            try:
                result.segments = decoder.transcribe_clips(
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
    """The finals lane and the partials lane of one live worker. Finals and the passes
    likely to become finals are decoded with the finals' decoder on whichever lane takes
    them: read greedily when they fell to the partials lane, a final's words depended on
    the load (the same call over two transports read 27 % apart)."""

    def __init__(self, partial: ClipDecoder, final: ClipDecoder, max_partials: int = 4) -> None:
        self._done: queue.Queue[Done] = queue.Queue()
        self.partial_decoder, self.final_decoder = partial, final
        self.finals = Lane("finals", self._done)
        self.partials = Lane("partials", self._done)
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
                decoder = self.final_decoder
                batch = _one_group(urgent, decoder)
                urgent = [d for d in urgent if d not in batch]
            elif lane is self.partials and partial:
                decoder = self.partial_decoder
                batch = _one_group(partial, decoder)[: self.max_partials]
            else:
                continue
            self._flying.extend(batch)
            lane.submit(batch, decoder)

    def close(self) -> None:
        """Stop both lanes (after the batches in progress)."""
        self.finals.close()
        self.partials.close()


def _one_group(items: list[Due], decoder: ClipDecoder) -> list[Due]:
    """The items read as the first one is (one decoder call): same language, same prompt,
    and, for the short-window decoder, the same window and penalty. That decoder runs one
    Whisper call per reading, one after the other, so a final batched with another call's
    final of another reading would wait for it on one lane; left out of the batch, it goes
    to the other lane if that one is free."""

    def reading(d: Due) -> Hashable:
        if isinstance(decoder, ShortWindowDecoder):
            return decoder.reading(len(d.request.audio))
        return None

    first = (items[0].language, items[0].prompt, reading(items[0]))
    return [d for d in items if (d.language, d.prompt, reading(d)) == first]


CallKey = tuple[str, str]
# Hypotheses decoded for one leg of one call, to become its utterances.
Decoded = tuple[LiveCall, str, list[Hypothesis]]
# Partial passes decoded in one batch on the partials lane.
PARTIALS_PER_ROUND = 4
# A leg's language is detected once, on a clip at least this long (short answers are often
# misdetected), then held; until then only its finals are decoded (detecting on their clip).
LANGUAGE_MIN_S = 2.0


class LiveScheduler:
    """The live worker's decoding: which clips of which legs are due, on which lane, and the
    decoded hypotheses back into the legs' recognisers (on the worker's thread)."""

    def __init__(self, services: Services, decoder: ClipDecoder | None = None) -> None:
        self.services = services
        # A decoder given to the scheduler decodes everything; else each kind loads its own.
        self._decoder = decoder
        self._final_decoder = decoder
        self._lanes: DecodeLanes | None = None
        self.decode_rounds = 0  # decoder batches asked for

    @property
    def decoder(self) -> ClipDecoder:
        """The partial-pass decoder (loaded on first use)."""
        if self._decoder is None:
            self._decoder = live_decoder_of(self.services)
        return self._decoder

    @property
    def final_decoder(self) -> ClipDecoder:
        """The decoder of finals (the one given, else beam search)."""
        if self._final_decoder is None:
            self._final_decoder = live_decoder_of(self.services, final=True)
        return self._final_decoder

    @property
    def lanes(self) -> DecodeLanes:
        """The finals and partials lanes (started on first use)."""
        if self._lanes is None:
            self._lanes = DecodeLanes(self.decoder, self.final_decoder, PARTIALS_PER_ROUND)
        return self._lanes

    def step(self, calls: Mapping[CallKey, LiveCall]) -> list[Decoded]:
        """Apply what the lanes decoded, then hand them what is due now."""
        if not calls and self._lanes is None:
            return []
        out = self._apply(self.lanes.collect(), calls)
        self.lanes.schedule(self._due(calls.values()))
        return out

    def drain(self, call: LiveCall, calls: Mapping[CallKey, LiveCall]) -> list[Decoded]:
        """Everything the call's legs wait for, decoded on this thread (the call ends or is
        handed over): its batches on the lanes first come back and are applied."""
        out: list[Decoded] = []
        if self._lanes is not None:
            owners = [((call.tenant, call.call_id), leg) for leg in call.legs]
            while any(self._lanes.in_flight(o) for o in owners):
                out.extend(self._apply(self._lanes.collect(wait_s=0.1), calls))
        for due in self._due([call]):
            seg = self.final_decoder.transcribe_clips([due.request.audio], due.language)[0]
            self.decode_rounds += 1
            leg = call.legs[due.owner[1]]  # type: ignore[index]
            out.append((call, leg.leg, leg.recogniser.apply(due.request, seg)))
        return out

    def _due(self, calls: Iterable[LiveCall]) -> list[Due]:
        """Every leg's clips due now. A leg whose language is not known yet waits for a
        clip long enough to detect it on (or its final)."""
        due: list[Due] = []
        min_clip = int(LANGUAGE_MIN_S * SAMPLE_RATE)
        for call in calls:
            for ls in call.legs.values():
                language = call.language_of(ls.leg)
                for r in ls.recogniser.requests():
                    if language is None and not r.final and r.end - r.start < min_clip:
                        continue
                    due.append(Due(((call.tenant, call.call_id), ls.leg), r, language))
        return due

    def _apply(self, batches: list[Done], calls: Mapping[CallKey, LiveCall]) -> list[Decoded]:
        """Decoded batches into their legs' recognisers; the hypotheses they complete."""
        out: list[Decoded] = []
        metrics = self.services.metrics
        for batch in batches:
            self.decode_rounds += 1
            metrics.inc("live_decode_seconds_total", batch.seconds, lane=batch.lane)
            metrics.inc("live_decoded_clips_total", len(batch.items), lane=batch.lane)
            if batch.error is not None:
                # the clips stay due and are decoded again in a later round
                metrics.inc("live_decode_errors_total", lane=batch.lane)
                continue
            for item, seg in zip(batch.items, batch.segments, strict=True):
                call_key, leg = cast(tuple[CallKey, str], item.owner)
                call = calls.get(call_key)
                stream = call.legs.get(leg) if call is not None else None
                if call is None or stream is None or not stream.recogniser.owns(item.request):
                    continue  # the call ended or was handed over meanwhile
                req = item.request
                if item.language is None and seg is not None and seg.language:
                    if req.end - req.start >= LANGUAGE_MIN_S * SAMPLE_RATE:
                        call.leg_languages.setdefault(leg, seg.language)
                        call.dirty = True
                hyps = stream.recogniser.apply(req, seg)
                if not req.final and any(h.final for h in hyps):
                    # the pass decoded in the first silence ended the utterance
                    metrics.inc("live_finals_early_total")
                out.append((call, leg, hyps))
        return out

    def close(self) -> None:
        """Stop the lanes (after the batches in progress)."""
        if self._lanes is not None:
            self._lanes.close()
