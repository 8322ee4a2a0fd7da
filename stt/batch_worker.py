"""The batch worker: recording.ready in; transcript artifacts, utterances and
transcript.ready out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from pipeline.catalog import CallManifest, load_manifest, recording_manifest, save_manifest
from pipeline.events import Event, MediaChunk, RecordingReady, Utterance
from pipeline.logs import ctx
from pipeline.media.audio_file import AudioError, AudioLimits, DecodedAudio, load_audio, write_wav
from pipeline.media.resample import resample
from pipeline.services import Services
from pipeline.store import ObjectNotFound, StoreError
from pipeline.worker import BadInput, Output, ProcessingError, Stage
from recordings.audio_masks import mask_audio
from recordings.category_store import call_tags
from recordings.redaction import masked_spans, redact_for
from recordings.transcripts import finish_transcript, stored_presses
from stt.batch import ChannelMismatch, info_dict, transcribe_recording, with_progress
from stt.speakers import split_mono
from stt.transcriber import transcriber_of

log = logging.getLogger(__name__)

# What a redacted recording is stored as, in the call's folder (it replaces the upload).
REDACTED_RECORDING = "recording.wav"


class BatchStage(Stage):
    """Transcribes each finished recording, one leg per channel."""

    name = "batch"
    topics = ("recordings",)
    # How often a running job's progress is written to its manifest (an object store write).
    progress_every_s = 2.0

    def __init__(self, services: Services) -> None:
        self.services = services

    def process(self, event: Event | MediaChunk) -> Iterator[Output]:
        """One recording.ready -> its utterances and a transcript.ready."""
        if not isinstance(event, RecordingReady):
            return
        store = self.services.store
        metrics = self.services.metrics
        try:
            key = store.key_from_uri(event.uri)
            data = store.get(key)
        except ObjectNotFound:
            metrics.inc("batch_errors_total", reason="missing_object")
            raise BadInput(f"recording not found: {event.uri}") from None
        except StoreError as exc:
            raise ProcessingError(
                f"store error reading {event.uri}: {exc}", retriable=exc.retriable
            ) from exc
        self._set_status(event, "running", progress=0.0)
        try:
            audio = load_audio(
                data, AudioLimits(max_seconds=self.services.settings.max_recording_s)
            )
        except AudioError as exc:
            metrics.inc("batch_errors_total", reason="bad_audio")
            raise BadInput(f"bad audio: {exc}") from None
        transcriber = transcriber_of(self.services)
        language = self.services.settings.stt.language_for(event.tenant, event.language)
        try:
            utterances_iter, info = transcribe_recording(
                transcriber, audio, event.channels, event.tenant, event.call_id, language
            )
            utterances = list(with_progress(utterances_iter, info.duration, self._reporter(event)))
            if event.channels == "mono":
                utterances = split_mono(self.services, utterances, audio.mono(), event.direction)
            utterances = redact_for(self.services, utterances)
        except ChannelMismatch as exc:
            metrics.inc("batch_errors_total", reason="channels")
            raise BadInput(str(exc)) from None
        manifest = load_manifest(store, event.tenant, event.call_id) or recording_manifest(
            event, key
        )
        update = self._mask_recording(event, manifest, key, audio, utterances)
        tags = call_tags(self.services, event.tenant, event.call_id, utterances, info.duration)
        ready = finish_transcript(
            store,
            manifest,
            utterances,
            info_dict(info),
            "batch",
            info.duration,
            info.language,
            stored_presses(store, manifest),
            tags,
            update=update,
        )
        metrics.inc("recordings_transcribed_total")
        metrics.inc("audio_seconds_total", info.duration, source="batch")
        log.info(
            "transcribed %.1f s into %d utterances (%s)",
            info.duration,
            len(utterances),
            info.language,
            **ctx(event.tenant, event.call_id),
        )
        yield from utterances
        yield ready

    def _mask_recording(
        self,
        event: RecordingReady,
        manifest: CallManifest,
        key: str,
        audio: DecodedAudio,
        utterances: list[Utterance],
    ) -> dict[str, object]:
        """With redaction on, the recording replaced by one whose audio over the masked
        words is silenced or toned (`redaction.audio`); the manifest's new key, if any."""
        settings = self.services.settings.redaction
        spans = masked_spans(utterances)
        if not spans or settings.audio == "off" or not settings.applies_to(event.tenant):
            return {}
        legs = (
            None if event.channels == "mono" else {int(c): leg for c, leg in event.channels.items()}
        )
        channels = mask_audio(
            audio.channels, audio.rate, spans, legs, settings.audio, settings.audio_pad_s
        )
        rate = min(audio.source_rate, audio.rate)
        if rate != audio.rate:
            channels = [resample(c, audio.rate, rate) for c in channels]
        new_key = manifest.prefix + REDACTED_RECORDING
        try:
            self.services.store.put(new_key, write_wav(channels, rate), "audio/wav")
            if new_key != key:
                self.services.store.delete(key)
        except StoreError as exc:
            raise ProcessingError(
                f"store error writing the redacted recording: {exc}", retriable=exc.retriable
            ) from exc
        self.services.metrics.inc("pii_audio_masked_total", len(spans))
        log.info(
            "masked %d stretches of the recording (%s)",
            len(spans),
            settings.audio,
            **ctx(event.tenant, event.call_id),
        )
        return {"recording_key": new_key}

    def failed(self, event: Event | MediaChunk, reason: str) -> None:
        """A recording given up on: its manifest says `failed` and why."""
        if isinstance(event, RecordingReady):
            self._set_status(event, "failed", reason)

    def _reporter(self, event: RecordingReady) -> Callable[[float], None]:
        """Writes the job's progress now and then (finish_transcript writes the end)."""
        last = time.monotonic()

        def report(done: float) -> None:
            nonlocal last
            if done < 1.0 and time.monotonic() - last >= self.progress_every_s:
                last = time.monotonic()
                self._set_status(event, "running", progress=round(done, 3))

        return report

    def _set_status(
        self,
        event: RecordingReady,
        status: str,
        error: str | None = None,
        progress: float | None = None,
    ) -> None:
        store = self.services.store
        manifest = load_manifest(store, event.tenant, event.call_id)
        if manifest is not None:
            update = {"status": status, "error": error, "progress": progress}
            save_manifest(store, manifest.model_copy(update=update))


def stages(services: Services) -> list[Stage]:
    """Workers of the `batch` role."""
    return [BatchStage(services)]
