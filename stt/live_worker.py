"""The live worker (`callpipe worker live`): media and call events in, utterances out.

Per call and leg a LegStream endpoints the audio and keeps a StreamingRecognizer; each
`tick` applies what the decode lanes (stt/live_scheduler.py) finished and hands them the
clips now due (finals to the finals lane, partial passes across all legs and calls to the
partials lane). At call.ended the legs are finished, the transcript (transcript.json/.vtt)
and the two-channel recording are stored, and a transcript.ready (source live) is emitted.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import cast

from pipeline.catalog import load_manifest, save_manifest
from pipeline.events import (
    CallEnded,
    CallStarted,
    Event,
    MediaChunk,
    TranscriptReady,
    Utterance,
    utterance_id,
)
from pipeline.logs import ctx
from pipeline.services import Services
from pipeline.store import StoreError
from pipeline.worker import Output, ProcessingError, Stage
from recordings.transcripts import JSON_NAME, write_transcript
from stt.audio import write_wav
from stt.live_call import (
    LEGS,
    LegStream,
    LiveCall,
    assemble,
    call_from_checkpoint,
    delete_live_objects,
    ensure_manifest,
    load_checkpoint,
    load_parts,
    provisional_start,
    save_checkpoint,
    save_part,
    to_16k,
)
from stt.live_decoder import DecoderOptions, ShortWindowDecoder
from stt.live_scheduler import DecodeLanes, Done, Due
from stt.streaming import (
    SAMPLE_RATE,
    ClipDecoder,
    Hypothesis,
    StreamingOptions,
)
from stt.words import join_words

log = logging.getLogger(__name__)

RECORDING_NAME = "recording.wav"
# After call.ended, media still in flight on the other topic is waited for this long.
END_GRACE_S = 1.0
# Audio is stored in parts of this length, so a long call never sits in memory whole and a
# crash loses at most this much of a call's recording.
PART_S = 10.0
# A call.ended for a finished call, or its late media, are recognised this long.
FINISHED_MEMORY = 10_000
# Partial passes decoded in one batch on the partials lane.
PARTIALS_PER_ROUND = 4
# A leg's language is detected once, on a clip at least this long (short answers are often
# misdetected), then held; until then only its finals are decoded (detecting on their clip).
LANGUAGE_MIN_S = 2.0

CallKey = tuple[str, str]


def streaming_options(services: Services) -> StreamingOptions:
    """StreamingOptions from the live and stt settings."""
    live, stt = services.settings.live, services.settings.stt
    return StreamingOptions(
        vad_model=live.vad,
        vad_aggressiveness=stt.vad_aggressiveness,
        hangover_ms=live.hangover_ms,
        min_speech_ms=live.min_speech_ms,
        speech_pad_ms=stt.speech_pad_ms,
        onset_pad_ms=stt.onset_pad_ms,
        max_utterance_s=live.max_utterance_s,
        partial_interval_s=live.partial_interval_s,
        early_final=live.early_final,
        noise_margin_db=live.vad_noise_margin_db,
        tentative_partials=live.tentative_partials,
    )


def live_decoder_of(
    services: Services,
    *,
    final: bool = False,
    beam_size: int | None = None,
    min_window_s: float | None = None,
) -> ShortWindowDecoder:
    """The process's live decoders (sharing the one Whisper model): greedy for partial
    passes, `live.beam_size` for finals and the passes likely to become finals. Finals are
    decoded in a window of at least `stt.final_min_window_s`. `beam_size` and
    `min_window_s` override."""
    stt = services.settings.stt
    beam = beam_size or (services.settings.live.beam_size if final else 1)
    window = min_window_s if min_window_s is not None else stt.final_min_window_s
    min_frames = int(window * 100) if final else 0
    return services.component(
        f"stt.live_decoder.beam{beam}.min{min_frames}",
        lambda: ShortWindowDecoder(
            services.whisper_model(),
            DecoderOptions(
                beam_size=beam,
                batch_size=8,
                no_speech_threshold=stt.no_speech_threshold,
                min_word_probability=stt.min_word_probability,
                min_frames=min_frames,
            ),
        ),
    )


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
        self.options = streaming_options(services)
        # A decoder given to the stage decodes everything; else each kind loads its own.
        self._decoder = decoder
        self._final_decoder = decoder
        self._lanes: DecodeLanes | None = None
        self._clock = clock
        self.calls: dict[CallKey, LiveCall] = {}
        self._finished: OrderedDict[CallKey, float] = OrderedDict()
        self._idle_s = 2 * services.settings.live.rtp_timeout_s
        self.decode_rounds = 0  # decoder batches this stage asked for

    @property
    def decoder(self) -> ClipDecoder:
        """The partial-pass decoder (loaded on first use)."""
        if self._decoder is None:
            self._decoder = live_decoder_of(self.services)
        return self._decoder

    @property
    def final_decoder(self) -> ClipDecoder:
        """The decoder of finals (the one given to the stage, else beam search)."""
        if self._final_decoder is None:
            self._final_decoder = live_decoder_of(self.services, final=True)
        return self._final_decoder

    @property
    def lanes(self) -> DecodeLanes:
        """The finals and partials lanes (started on first use)."""
        if self._lanes is None:
            self._lanes = DecodeLanes(self.decoder, self.final_decoder, PARTIALS_PER_ROUND)
        return self._lanes

    # -- events in -----------------------------------------------------------------------
    def process(self, event: Event | MediaChunk) -> Iterator[Output]:
        """call.started / call.ended bookkeeping; media into its leg."""
        if isinstance(event, MediaChunk):
            yield from self._media(event)
        elif isinstance(event, CallStarted):
            self._started(event)
        elif isinstance(event, CallEnded):
            yield from self._ended(event)

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
                save_manifest(
                    store,
                    m.model_copy(
                        update={
                            "agent_id": call.agent_id,
                            "direction": call.direction,
                            "caller": call.caller,
                            "callee": call.callee,
                        }
                    ),
                )
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
        yield from self._events(call, leg.leg, ready)

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
        if self.calls or self._lanes is not None:
            yield from self._apply(self.lanes.collect())
            self.lanes.schedule(self._due(self.calls.values()))
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

    def _apply(self, batches: list[Done]) -> list[Output]:
        """Decoded batches into their legs' recognisers; the events they complete."""
        out: list[Output] = []
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
                call = self.calls.get(call_key)
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
                out.extend(self._events(call, leg, hyps))
        return out

    def _decode_now(self, call: LiveCall) -> list[Output]:
        """Everything the call's legs wait for, decoded on this thread (the call ends or is
        handed over): its batches on the lanes first come back and are applied."""
        out: list[Output] = []
        if self._lanes is not None:
            owners = [((call.tenant, call.call_id), leg) for leg in call.legs]
            while any(self._lanes.in_flight(o) for o in owners):
                out.extend(self._apply(self._lanes.collect(wait_s=0.1)))
        for due in self._due([call]):
            seg = self.final_decoder.transcribe_clips([due.request.audio], due.language)[0]
            self.decode_rounds += 1
            leg = call.legs[due.owner[1]]  # type: ignore[index]
            out.extend(self._events(call, leg.leg, leg.recogniser.apply(due.request, seg)))
        return out

    def _events(self, call: LiveCall, leg: str, hyps: list[Hypothesis]) -> list[Output]:
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
            out.extend(self._events(call, leg.leg, leg.recogniser.take_ready()))
        for _ in range(3):  # a final whose pass was due, then the final itself
            if not any(leg.recogniser.busy for leg in call.legs.values()):
                break
            out.extend(self._decode_now(call))
        return out

    # -- the end of a call ---------------------------------------------------------------
    def _finish(self, call: LiveCall, reason: str) -> Iterator[Output]:
        yield from self._close_legs(call)
        store = self.services.store
        for leg in call.legs.values():
            leg.cut_part()
        parts = load_parts(store, call)
        for leg in call.legs.values():
            parts.setdefault(leg.leg, []).extend(leg.ready_parts)
            leg.ready_parts.clear()
        channels = [assemble(parts.get(leg, [])) for leg in LEGS]
        duration = max(len(c) for c in channels) / SAMPLE_RATE
        manifest = ensure_manifest(store, call)
        language = call.language or next(iter(call.leg_languages.values()), None)
        update: dict[str, object] = {
            "status": "transcribed",
            "end_reason": reason,
            "language": language,
            "error": None,
            "transcript_key": manifest.prefix + JSON_NAME,
        }
        if duration > 0:
            update["recording_key"] = manifest.prefix + RECORDING_NAME
            update["channels"] = {"0": "agent", "1": "customer"}
            store.put(
                manifest.prefix + RECORDING_NAME, write_wav(channels, SAMPLE_RATE), "audio/wav"
            )
        finals = list(call.finals.values())
        info = {
            "source": "live",
            "language": language,
            "leg_languages": call.leg_languages,
            "duration": duration,
            "reason": reason,
            "options": {
                "hangover_ms": self.options.hangover_ms,
                "min_speech_ms": self.options.min_speech_ms,
                "max_utterance_s": self.options.max_utterance_s,
            },
        }
        json_uri, vtt_uri = write_transcript(
            store, call.tenant, call.call_id, call.started_at, finals, info, "live"
        )
        save_manifest(store, manifest.model_copy(update=update))
        delete_live_objects(store, call)
        key = (call.tenant, call.call_id)
        self.calls.pop(key, None)
        self._remember_finished(key)
        self.services.metrics.inc("live_calls_finished_total", reason=reason)
        log.info(
            "live call finished (%s): %d finals, %.1f s",
            reason,
            len(finals),
            duration,
            **ctx(call.tenant, call.call_id),
        )
        yield TranscriptReady(
            tenant=call.tenant,
            call_id=call.call_id,
            json_uri=json_uri,
            vtt_uri=vtt_uri,
            utterances=len(finals),
            source="live",
            duration=duration,
            language=language,
        )

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
        if self._lanes is not None:
            self._lanes.close()
        return out


def stages(services: Services) -> list[Stage]:
    """Workers of the `live` role."""
    return [LiveStage(services)]
