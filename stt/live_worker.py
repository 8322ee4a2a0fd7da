"""The live worker (`callpipe worker live`): media and call events in, utterances out.

LiveStage keeps the calls' lifecycle: call.started and media open a call (or take it over
from its checkpoint), call.ended or silence close it, a rebalance hands every call over.
Per call and leg a LegStream endpoints the audio and keeps a StreamingRecognizer; each
`tick` lets the scheduler (stt/live_scheduler.py) apply what the decode lanes finished and
hand them the clips now due. A closed call's recording and transcript are stored by
stt/live_artifacts.py, and a transcript.ready (source live) is emitted.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from functools import partial

from pipeline.catalog import load_manifest, save_manifest
from pipeline.events import (
    CallEnded,
    CallStarted,
    DtmfReceived,
    Event,
    MediaChunk,
    Utterance,
    utterance_id,
)
from pipeline.logs import ctx
from pipeline.media import SAMPLE_RATE
from pipeline.services import Services
from pipeline.store import StoreError
from pipeline.worker import Output, ProcessingError, Stage
from recordings.category_store import call_tags
from recordings.redaction import redact_for
from stt.live_artifacts import store_finished_call
from stt.live_call import (
    LegStream,
    LiveCall,
    call_from_checkpoint,
    ensure_manifest,
    load_checkpoint,
    provisional_start,
    save_checkpoint,
    save_part,
    to_16k,
)
from stt.live_decoder import streaming_options
from stt.live_scheduler import CallKey, Decoded, LiveScheduler
from stt.streaming import ClipDecoder, Hypothesis
from stt.words import join_words

log = logging.getLogger(__name__)

# After call.ended, media still in flight on the other topic is waited for this long.
END_GRACE_S = 1.0
# Audio is stored in parts of this length, so a long call never sits in memory whole and a
# crash loses at most this much of a call's recording.
PART_S = 10.0
# A call.ended for a finished call, or its late media, are recognised this long.
FINISHED_MEMORY = 10_000


class LiveStage(Stage):
    """Streams every leg of the calls this worker owns into partial and final utterances."""

    name = "live"
    topics = ("calls", "media")
    # Decoded batches come back from the lanes at any time: look for them often.
    poll_timeout_s = 0.02

    def __init__(
        self,
        services: Services,
        decoder: ClipDecoder | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.services = services
        self.options = streaming_options(services.settings)
        # A decoder given to the stage decodes everything; else each kind loads its own.
        self.scheduler = LiveScheduler(services, decoder)
        self._clock = clock
        self.calls: dict[CallKey, LiveCall] = {}
        self._finished: OrderedDict[CallKey, float] = OrderedDict()
        self._idle_s = 2 * services.settings.live.rtp_timeout_s

    # -- events in -----------------------------------------------------------------------
    def process(self, event: Event | MediaChunk) -> Iterator[Output]:
        """call.started / call.ended bookkeeping; media into its leg."""
        if isinstance(event, MediaChunk):
            yield from self._media(event)
        elif isinstance(event, CallStarted):
            self._started(event)
        elif isinstance(event, CallEnded):
            yield from self._ended(event)
        elif isinstance(event, DtmfReceived):
            self._press(event)

    def _press(self, ev: DtmfReceived) -> None:
        """A key press goes into the call's transcript (transcript.json `dtmf`)."""
        key = (ev.tenant, ev.call_id)
        if key in self._finished:
            return
        call = self.calls.get(key) or self._restore(ev.tenant, ev.call_id)
        if call is None:
            self.services.metrics.inc("live_unknown_calls_total", cause="dtmf")
            return
        self.calls[key] = call
        if call.press(ev):
            self._store_call(call)

    def _started(self, ev: CallStarted) -> None:
        key = (ev.tenant, ev.call_id)
        if key in self._finished:
            return  # a replayed call.started of a call already finished
        call = self.calls.get(key) or self._restore(ev.tenant, ev.call_id)
        if call is None:
            manifest = load_manifest(self.services.store, ev.tenant, ev.call_id)
            if manifest is not None and manifest.status in ("transcribed", "failed"):
                # a replayed call.started must not reopen (and later overwrite) a finished call
                self.services.metrics.inc("live_replayed_starts_total")
                self._remember_finished(key)
                return
            call = LiveCall(
                tenant=ev.tenant,
                call_id=ev.call_id,
                started_at=ev.started_at,
                language=self.services.settings.stt.language_for(ev.tenant, ev.language),
            )
        call.apply_started(ev)
        call.record = self.services.settings.live.record_for(ev.tenant, ev.record)
        call.last_media = call.last_media or self._clock()
        self.calls[key] = call
        self._store_call(call)
        log.info("live call started (%d legs)", len(ev.legs), **ctx(ev.tenant, ev.call_id))

    def _store_call(self, call: LiveCall) -> None:
        store = self.services.store
        try:
            m = ensure_manifest(store, call)
            if (
                call.known
                and m.status == "live"
                and (m.agent_id, m.caller) != (call.agent_id, call.caller)
            ):
                save_manifest(store, m.model_copy(update=call.who()))
            save_checkpoint(store, call)
        except StoreError as exc:
            raise ProcessingError(
                f"store error for live call: {exc}", retriable=exc.retriable
            ) from exc

    def _restore(self, tenant: str, call_id: str) -> LiveCall | None:
        """A call another worker (or this one before a restart) checkpointed."""
        doc = load_checkpoint(self.services.store, tenant, call_id)
        if doc is None:
            return None
        call = call_from_checkpoint(doc)
        call.last_media = self._clock()
        log.info("live call taken over with %d finals", len(call.finals), **ctx(tenant, call_id))
        self.services.metrics.inc("live_calls_restored_total")
        return call

    def _ended(self, ev: CallEnded) -> Iterator[Output]:
        key = (ev.tenant, ev.call_id)
        if key in self._finished:
            return
        call = self.calls.get(key)
        if call is None:
            call = self._restore(ev.tenant, ev.call_id)
            if call is None:
                self.services.metrics.inc("live_unknown_calls_total", cause="ended")
                return
            self.calls[key] = call
        # Media of the call's last moments may still come on the media topic: `tick`
        # finishes the call once that has been quiet for END_GRACE_S.
        call.ended_at = self._clock()
        call.end_reason = ev.reason
        return
        yield

    def _media(self, chunk: MediaChunk) -> Iterator[Output]:
        metrics = self.services.metrics
        key = (chunk.tenant, chunk.call_id)
        if key in self._finished:
            metrics.inc("live_late_media_total")
            return
        call = self.calls.get(key)
        if call is None:
            call = self._adopt(chunk)
            if call is None:
                return
        if chunk.sample_rate not in (8000, 16000, 48000):
            metrics.inc("live_bad_media_total", cause="sample_rate")
            return
        now = self._clock()
        call.last_media = now
        leg = call.legs.get(chunk.leg)
        if leg is None:
            leg = call.legs[chunk.leg] = LegStream(
                chunk.leg, self.options, to_16k(chunk.start_sample, chunk.sample_rate)
            )
        dropped = leg.audio.dropped_samples
        leg.feed(chunk)
        if leg.audio.dropped_samples > dropped:
            metrics.inc("live_overlap_samples_total", leg.audio.dropped_samples - dropped)
        metrics.inc("audio_seconds_total", len(chunk.pcm) / 2 / chunk.sample_rate, source="live")
        ready = leg.recogniser.take_ready()
        if ready:
            # the pass run during the hangover was the final: no decode after the end
            metrics.inc("live_finals_prepared_total", len(ready))
        yield from self._utterances(call, leg.leg, ready)

    def _adopt(self, chunk: MediaChunk) -> LiveCall | None:
        """First media of a call this worker holds nothing of."""
        call = self._restore(chunk.tenant, chunk.call_id)
        if call is None:
            manifest = load_manifest(self.services.store, chunk.tenant, chunk.call_id)
            if manifest is not None and manifest.status in ("transcribed", "failed"):
                # media of a call already transcribed: not ours to reopen
                self.services.metrics.inc("live_late_media_total")
                self._remember_finished((chunk.tenant, chunk.call_id))
                return None
            started = manifest.started_at if manifest else provisional_start(chunk)
            call = LiveCall(
                tenant=chunk.tenant,
                call_id=chunk.call_id,
                started_at=started,
                language=self.services.settings.stt.language_for(chunk.tenant),
            )
            self.services.metrics.inc("live_unknown_calls_total", cause="media")
            self._store_call(call)
        self.calls[(chunk.tenant, chunk.call_id)] = call
        return call

    # -- decoding ------------------------------------------------------------------------
    def tick(self, now: float) -> Iterator[Output]:
        """Apply what the lanes decoded, hand them what is due, then store parts and
        checkpoints and finish ended calls."""
        yield from self._events(self.scheduler.step(self.calls))
        for call in list(self.calls.values()):
            for leg in call.legs.values():
                if leg.track_len >= PART_S * SAMPLE_RATE:
                    leg.cut_part()
                self._store_parts(call, leg)
            if call.dirty:
                save_checkpoint(self.services.store, call)
            quiet_since = max(call.ended_at or 0.0, call.last_media)
            if call.ended_at is not None and now - quiet_since >= END_GRACE_S:
                yield from self._finish(call, call.end_reason)
            elif call.ended_at is None and now - call.last_media >= self._idle_s:
                self.services.metrics.inc("live_calls_timed_out_total")
                log.warning(
                    "no media for %.0f s and no call.ended: closing the call",
                    now - call.last_media,
                    **ctx(call.tenant, call.call_id),
                )
                yield from self._finish(call, "timeout")

    def _events(self, decoded: Iterable[Decoded]) -> list[Output]:
        """Utterances of decoded hypotheses; finals are kept in their call."""
        return [u for call, leg, hyps in decoded for u in self._utterances(call, leg, hyps)]

    def _utterances(self, call: LiveCall, leg: str, hyps: list[Hypothesis]) -> list[Output]:
        out: list[Output] = []
        for h in hyps:
            u = Utterance(
                tenant=call.tenant,
                call_id=call.call_id,
                leg=leg,  # type: ignore[arg-type]
                utterance_id=utterance_id(call.call_id, leg, h.start),
                start=round(h.start / SAMPLE_RATE, 3),
                end=round(h.end / SAMPLE_RATE, 3),
                text=h.text,
                words=h.words,
                final=h.final,
                language=h.language or call.language_of(leg),
                source="live",
                revision=h.revision,
                tentative=join_words(h.tentative),
            )
            (u,) = redact_for(self.services, [u])
            if h.final:
                call.finals[u.utterance_id] = u
                call.dirty = True
                self.services.metrics.inc("live_finals_total")
            else:
                self.services.metrics.inc("live_partials_total")
            out.append(u)
        return out

    def _store_parts(self, call: LiveCall, leg: LegStream) -> None:
        while leg.ready_parts:
            start, pcm = leg.ready_parts[0]
            save_part(self.services.store, call, leg.leg, start, pcm)
            leg.ready_parts.pop(0)

    def _close_legs(self, call: LiveCall) -> list[Output]:
        """Every leg's utterance in progress ends now and gets its final."""
        out: list[Output] = []
        for leg in call.legs.values():
            leg.close()
            out.extend(self._utterances(call, leg.leg, leg.recogniser.take_ready()))
        for _ in range(3):  # a final whose pass was due, then the final itself
            if not any(leg.recogniser.busy for leg in call.legs.values()):
                break
            out.extend(self._events(self.scheduler.drain(call, self.calls)))
        return out

    # -- the end of a call ---------------------------------------------------------------
    def _finish(self, call: LiveCall, reason: str) -> Iterator[Output]:
        yield from self._close_legs(call)
        redaction = self.services.settings.redaction
        masking = redaction if redaction.applies_to(call.tenant) else None
        ready, recording = store_finished_call(
            self.services.store,
            call,
            reason,
            self.options,
            masking,
            partial(call_tags, self.services, call.tenant, call.call_id),
        )
        key = (call.tenant, call.call_id)
        self.calls.pop(key, None)
        self._remember_finished(key)
        self.services.metrics.inc("live_calls_finished_total", reason=reason)
        log.info(
            "live call finished (%s): %d finals, %.1f s",
            reason,
            ready.utterances,
            ready.duration,
            **ctx(call.tenant, call.call_id),
        )
        yield ready
        if recording is not None:
            # Opted in: the recording is transcribed in batch as an upload is (whole legs,
            # beam 5), and that transcript replaces the live one.
            yield recording

    def _remember_finished(self, key: CallKey) -> None:
        self._finished[key] = self._clock()
        while len(self._finished) > FINISHED_MEMORY:
            self._finished.popitem(last=False)

    # -- handing calls over --------------------------------------------------------------
    def _hand_over(self) -> list[Output]:
        """Flush every call (finals of utterances in progress, audio, checkpoint), drop it."""
        out: list[Output] = []
        for call in list(self.calls.values()):
            try:
                out.extend(self._close_legs(call))
                for leg in call.legs.values():
                    leg.cut_part()
                    self._store_parts(call, leg)
                save_checkpoint(self.services.store, call)
            except Exception:  # one call's failure must not keep the others' state
                log.exception("handing the call over failed", **ctx(call.tenant, call.call_id))
        self.calls.clear()
        return out

    def revoked(self, partitions: set[tuple[str, int]]) -> list[Output]:
        """Partitions moved: every call is flushed and checkpointed; its new owner (maybe
        this worker again) resumes it from the checkpoint."""
        mine = {self.services.topics.name(t) for t in self.topics}
        if not any(topic in mine for topic, _ in partitions):
            return []
        return self._hand_over()

    def close(self) -> list[Output]:
        """The worker stops: nothing emitted is lost, nothing in progress is dropped."""
        out = self._hand_over()
        self.scheduler.close()
        return out


def stages(services: Services) -> list[Stage]:
    """Workers of the `live` role."""
    return [LiveStage(services)]
