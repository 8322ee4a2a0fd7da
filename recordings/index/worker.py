"""The `index` stage: final utterances and call metadata into the transcript index.

Consumes `transcripts` (final utterances, live or batch, and transcript.ready with the
call's statistics and categories), `calls` (call.started metadata) and `recordings`
(recording.ready metadata). Every write is an
UPSERT keyed by tenant and utterance id or call id, so a replay overwrites.

Utterances are written in batches (one transaction per poll round, in `tick`, which the
runner calls before it commits offsets): one transaction per utterance caps SQLite FTS5
at about 3,000 a second, a batch reaches several times that. A batch that fails to write
stays in memory and is retried each round; it is lost only if the process also dies
before a retry succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pipeline.catalog import load_manifest
from pipeline.events import (
    CallStarted,
    Event,
    MediaChunk,
    RecordingReady,
    TranscriptReady,
    Utterance,
)
from pipeline.ids import call_prefix, check_id, parse_key
from pipeline.logs import ctx
from pipeline.services import Services
from pipeline.store import ObjectNotFound, StoreError
from pipeline.worker import BadInput, Output, ProcessingError, Stage
from recordings.index import index_of
from recordings.index.base import CallMeta, TranscriptIndex, UtteranceRow

log = logging.getLogger(__name__)


class IndexStage(Stage):
    """Keeps the search index in step with what the pipeline transcribes."""

    name = "index"
    topics = ("transcripts", "calls", "recordings")

    #: write the batch from `process` once it holds this many utterances
    max_pending = 500

    def __init__(self, services: Services, index: TranscriptIndex) -> None:
        self.services = services
        self.index = index
        self._pending: dict[tuple[str, str], UtteranceRow] = {}

    def tick(self, now: float) -> Iterable[Output]:
        """End of a poll round: write what was buffered before offsets are committed."""
        try:
            self._flush()
        except Exception:  # keep the batch and retry next round
            log.exception("writing %d utterances to the index failed", len(self._pending))
            self.services.metrics.inc("index_flush_errors_total")
        return ()

    def revoked(self, partitions: set[tuple[str, int]]) -> Iterable[Output]:
        """Partitions move away: write what this worker buffered for them."""
        self._flush()
        return ()

    def close(self) -> Iterable[Output]:
        """The worker stops: write the last batch."""
        self._flush()
        return ()

    def _flush(self) -> None:
        if not self._pending:
            return
        rows = list(self._pending.values())
        self.index.upsert_utterances(rows)
        self._pending.clear()
        for row in rows:
            self.services.metrics.inc("index_utterances_total", source=row.source)

    def process(self, event: Event | MediaChunk) -> Iterable[Output]:
        """Index one event; nothing is produced downstream."""
        if isinstance(event, MediaChunk):
            return ()
        try:
            check_id(event.tenant, "tenant")
            check_id(event.call_id, "call_id")
        except ValueError as exc:
            self.services.metrics.inc("index_rejected_total", reason="bad_id")
            raise BadInput(str(exc)) from None
        if isinstance(event, Utterance):
            self._utterance(event)
        elif isinstance(event, CallStarted):
            self.index.upsert_call(
                CallMeta.of(
                    event,
                    prefix=call_prefix(event.tenant, event.call_id, event.started_at),
                    source="live",
                )
            )
            self.services.metrics.inc("index_calls_total", type=event.type)
        elif isinstance(event, RecordingReady):
            self._recording(event)
        elif isinstance(event, TranscriptReady):
            self._transcript(event)
        return ()

    def _utterance(self, u: Utterance) -> None:
        if not u.final:
            self.services.metrics.inc("index_skipped_total", reason="partial")
            return
        if not u.text.strip():
            self.services.metrics.inc("index_skipped_total", reason="empty")
            return
        if u.end < u.start or u.start < 0:
            self.services.metrics.inc("index_rejected_total", reason="times")
            raise BadInput(f"utterance {u.utterance_id} ends ({u.end}) before it starts")
        self._pending[(u.tenant, u.utterance_id)] = UtteranceRow(
            tenant=u.tenant,
            call_id=u.call_id,
            utterance_id=u.utterance_id,
            leg=u.leg,
            start=u.start,
            end=u.end,
            text=u.text.strip(),
            source=u.source,
        )
        if len(self._pending) >= self.max_pending:
            self._flush()

    def _recording(self, ev: RecordingReady) -> None:
        try:
            key = self.services.store.key_from_uri(ev.uri)
        except ObjectNotFound:
            key = None  # a foreign URI: keep the metadata, the audio stays unknown
        self.index.upsert_call(
            CallMeta.of(
                ev,
                prefix=call_prefix(ev.tenant, ev.call_id, ev.started_at),
                recording_key=key,
                source="batch",
            )
        )
        self.services.metrics.inc("index_calls_total", type=ev.type)

    def _transcript(self, ev: TranscriptReady) -> None:
        """The call's artifacts are written: take its manifest as the call's metadata."""
        try:
            manifest = load_manifest(self.services.store, ev.tenant, ev.call_id)
        except StoreError as exc:
            raise ProcessingError(
                f"store error reading the manifest: {exc}", retriable=exc.retriable
            ) from exc
        if manifest is not None:
            meta = CallMeta.of(
                manifest,
                prefix=manifest.prefix,
                recording_key=manifest.recording_key,
                duration=ev.duration,
                source=ev.source,
            )
        else:
            meta = self._meta_from_uri(ev)
        self.index.upsert_call(meta)
        if ev.facts or ev.tags:
            self.index.set_analysis(ev.tenant, ev.call_id, ev.facts, ev.tags)
        self.services.metrics.inc("index_calls_total", type=ev.type)
        log.info(
            "indexed call metadata (%s, %d utterances)",
            ev.source,
            ev.utterances,
            **ctx(ev.tenant, ev.call_id),
        )

    def _meta_from_uri(self, ev: TranscriptReady) -> CallMeta:
        """No manifest: the transcript's key still tells the call's folder and day."""
        prefix = None
        try:
            key = self.services.store.key_from_uri(ev.json_uri)
            parsed = parse_key(key)
            if parsed is not None and parsed[0] == ev.tenant and parsed[2] == ev.call_id:
                prefix = key.rsplit("/", 1)[0] + "/"
        except ObjectNotFound:
            pass
        return CallMeta(
            tenant=ev.tenant,
            call_id=ev.call_id,
            prefix=prefix,
            duration=ev.duration,
            source=ev.source,
        )


def stages(services: Services) -> list[Stage]:
    """Workers of the `index` role."""
    return [IndexStage(services, index_of(services))]
