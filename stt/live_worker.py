"""The live worker (`callpipe worker live`): media and call events in, utterances out.

Per call and leg a LegStream endpoints the audio and keeps a StreamingRecognizer; each
`tick` collects every clip due (finals first, then partial passes) across all legs and
calls and decodes them in one Whisper batch. At call.ended the legs are finished, the
transcript (transcript.json/.vtt) and the two-channel recording are stored, and a
transcript.ready (source live) is emitted.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator

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
from pipeline.worker import Output, ProcessingError, Stage
from recordings.catalog import load_manifest, save_manifest
from recordings.store.base import StoreError
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
from stt.streaming import (
    SAMPLE_RATE,
    ClipDecoder,
    DecodeRequest,
    Hypothesis,
    StreamingOptions,
    join_words,
)

log = logging.getLogger(__name__)

RECORDING_NAME = "recording.wav"
# After call.ended, media still in flight on the other topic is waited for this long.
END_GRACE_S = 1.0
# Audio is stored in parts of this length, so a long call never sits in memory whole.
PART_S = 60.0
# A call.ended for a finished call, or its late media, are recognised this long.
FINISHED_MEMORY = 10_000
# Partial passes decoded in one Whisper batch: a final due meanwhile waits for at most this.
PARTIALS_PER_ROUND = 4
# A partial pass may wait this long past its time: for a second pass to batch with (when
# Whisper is loaded), or for the final pass of a leg that has just fallen silent.
PARTIAL_SLACK_S = 0.3
# Whisper is loaded when it decoded more than half of this last stretch of time.
LOAD_WINDOW_S = 2.0
# Only a final this long fixes the call's language (short answers are often misdetected).
LANGUAGE_MIN_S = 2.0

CallKey = tuple[str, str]


def streaming_options(services: Services) -> StreamingOptions:
    """StreamingOptions from the live and stt settings."""
    live, stt = services.settings.live, services.settings.stt
    return StreamingOptions(
        vad_aggressiveness=stt.vad_aggressiveness,
        hangover_ms=live.hangover_ms,
        min_speech_ms=live.min_speech_ms,
        speech_pad_ms=stt.speech_pad_ms,
        max_utterance_s=live.max_utterance_s,
        partial_interval_s=live.partial_interval_s,
        early_final=live.early_final,
        noise_margin_db=live.vad_noise_margin_db,
        tentative_partials=live.tentative_partials,
    )


def live_decoder_of(
    services: Services, *, final: bool = False, beam_size: int | None = None
) -> ShortWindowDecoder:
    """The process's live decoders (sharing the one Whisper model): greedy for partial
    passes, `live.beam_size` for finals and the passes likely to become finals. Finals are
    decoded in a window of at least `stt.final_min_window_s`. `beam_size` overrides."""
    stt = services.settings.stt
    beam = beam_size or (services.settings.live.beam_size if final else 1)
    min_frames = int(stt.final_min_window_s * 100) if final else 0
    return services.component(
        f"stt.live_decoder.beam{beam}.min{min_frames}",
        lambda: ShortWindowDecoder(
            services.whisper_model(),
            DecoderOptions(
                beam_size=beam,
                batch_size=max(stt.batch_size, 8),
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
        self._clock = clock
        self.calls: dict[CallKey, LiveCall] = {}
        self._finished: OrderedDict[CallKey, float] = OrderedDict()
        self._idle_s = 2 * services.settings.live.rtp_timeout_s
        self.decode_rounds = 0  # Whisper batches this stage asked for
        self._max_partials = PARTIALS_PER_ROUND
        self._partial_slack = int(PARTIAL_SLACK_S * SAMPLE_RATE)
        self._rounds: deque[tuple[float, float]] = deque()  # (end, seconds) of recent rounds
        self._hold_decoding = False

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
                language=self.services.settings.stt.language,
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
            self._hold_decoding = True
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
                language=self.services.settings.stt.language,
            )
            self.services.metrics.inc("live_unknown_calls_total", cause="media")
            self._store_call(call)
        self.calls[(chunk.tenant, chunk.call_id)] = call
        return call

    # -- decoding ------------------------------------------------------------------------
    def tick(self, now: float) -> Iterator[Output]:
        """One decode round over every leg, then parts, checkpoints and ended calls."""
        if self._hold_decoding:
            # A final is ready: let the runner publish it now rather than after a round.
            self._hold_decoding = False
        else:
            yield from self._decode_round(list(self.calls.values()))
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

    def _decode_round(self, calls: Iterable[LiveCall], everything: bool = False) -> list[Output]:
        """One Whisper batch: the finals (and passes that will likely be finals) when any
        are due, else the most overdue partial passes, so a final never waits behind more
        than one batch of partials."""
        calls = list(calls)
        due: list[tuple[LiveCall, str, DecodeRequest]] = []
        for call in calls:
            for ls in call.legs.values():
                due.extend((call, ls.leg, r) for r in ls.recogniser.requests())
        if not everything:
            urgent = [d for d in due if d[2].urgent]
            if urgent:
                due = urgent
            else:
                due.sort(key=lambda d: d[2].end - d[2].utterance.next_pass, reverse=True)
                due = due[: self._max_partials]
                if self._hold_partials(calls, due):
                    return []
        out: list[Output] = []
        by_language: dict[str | None, list[tuple[LiveCall, str, DecodeRequest]]] = {}
        for item in due:
            by_language.setdefault(item[0].language, []).append(item)
        finals_round = everything or any(r.urgent for _, _, r in due)
        decoder = self.final_decoder if finals_round else self.decoder
        for language, items in by_language.items():
            self.decode_rounds += 1
            started = time.perf_counter()
            segments = decoder.transcribe_clips([r.audio for _, _, r in items], language)
            took = time.perf_counter() - started
            self._recent_decode_s(took)
            self.services.metrics.inc("live_decode_seconds_total", took)
            self.services.metrics.inc("live_decoded_clips_total", len(items))
            for (call, leg, req), seg in zip(items, segments, strict=True):
                stream = call.legs[leg]
                hyps = stream.recogniser.apply(req, seg)
                if not req.final and any(h.final for h in hyps):
                    # the pass decoded in the first silence ended a sentence
                    self.services.metrics.inc("live_finals_early_total")
                out.extend(self._events(call, leg, hyps))
        return out

    def _hold_partials(
        self, calls: list[LiveCall], due: list[tuple[LiveCall, str, DecodeRequest]]
    ) -> bool:
        """Whether the partial passes due wait a little (at most PARTIAL_SLACK_S): while a
        leg's final pass is about to be due, so it finds Whisper free; and, when Whisper is
        loaded, a lone pass waits for a second (two clips cost about 1.4 times one)."""
        if not due or not due[0][2].utterance.confirmed:
            return False  # nothing shown yet for that utterance: its first partial goes now
        if due[0][2].end - due[0][2].utterance.next_pass >= self._partial_slack:
            return False
        if any(ls.recogniser.final_pass_soon for c in calls for ls in c.legs.values()):
            return True
        return len(due) == 1 and self._recent_decode_s() > LOAD_WINDOW_S / 2

    def _recent_decode_s(self, took: float = 0.0) -> float:
        """Whisper seconds spent in the last LOAD_WINDOW_S (after recording `took` more)."""
        now = time.monotonic()
        if took:
            self._rounds.append((now, took))
        while self._rounds and self._rounds[0][0] < now - LOAD_WINDOW_S:
            self._rounds.popleft()
        return sum(t for _, t in self._rounds)

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
                language=h.language or call.language,
                source="live",
                revision=h.revision,
                tentative=join_words(h.tentative),
            )
            if h.final:
                call.finals[u.utterance_id] = u
                call.dirty = True
                if (
                    call.language is None
                    and h.language
                    and (h.end - h.start) / SAMPLE_RATE >= LANGUAGE_MIN_S
                ):
                    call.language = h.language
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
            out.extend(self._decode_round([call], everything=True))
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
        update: dict[str, object] = {
            "status": "transcribed",
            "language": call.language,
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
            "language": call.language,
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
            language=call.language,
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
        return self._hand_over()


def stages(services: Services) -> list[Stage]:
    """Workers of the `live` role."""
    return [LiveStage(services)]
