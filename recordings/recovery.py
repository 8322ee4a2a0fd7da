"""Embedded mode after a crash: everything answered 202 is done, every cut call is closed.

The in-process bus is memory: a `kill -9` loses the recordings queued on it and the calls in
progress. Their manifests say so (`queued`/`running`, `live`), so at start every such
manifest is re-driven: a recording.ready is published again for each recording (its audio
is already in the store), and a call.ended (reason `restart`) for each live call, which the
live worker closes from its checkpoint: the finals emitted, the audio stored in parts, the
transcript and the recording written. Distributed mode needs none of this: Kafka keeps the
jobs, and a live call whose worker died is taken over from its checkpoint.
"""

from __future__ import annotations

import logging
import threading

from pipeline.catalog import MANIFEST_DIR, CallManifest
from pipeline.events import CallEnded, RecordingReady
from pipeline.logs import ctx
from pipeline.services import Services
from pipeline.store import StoreError

log = logging.getLogger(__name__)

RESTART_REASON = "restart"


def orphans(services: Services) -> list[CallManifest]:
    """Manifests of jobs and calls that nothing in this (new) process is working on."""
    out = []
    for info in services.store.list(""):
        parts = info.key.split("/")
        if len(parts) != 3 or parts[1] != MANIFEST_DIR or not parts[2].endswith(".json"):
            continue
        try:
            m = CallManifest.model_validate_json(services.store.get(info.key))
        except (StoreError, ValueError):
            log.warning("unreadable manifest %s left alone", info.key)
            continue
        if m.status in ("queued", "running", "live"):
            out.append(m)
    return out


def redrive(services: Services) -> int:
    """Publish again what the manifests say was accepted and not finished; how many."""
    producer = services.bus.producer()
    topics = services.topics
    n = 0
    for m in orphans(services):
        if m.status == "live":
            ev: CallEnded | RecordingReady = CallEnded(
                tenant=m.tenant, call_id=m.call_id, reason=RESTART_REASON
            )
            producer.send(topics.calls, ev.key, ev.encode())
        elif m.recording_key:
            ev = RecordingReady(
                **m.details(),
                uri=services.store.uri(m.recording_key),
                channels=m.channels,  # type: ignore[arg-type]
            )
            producer.send(topics.recordings, ev.key, ev.encode())
        else:
            continue
        n += 1
        log.info("re-driven after a restart (%s)", m.status, **ctx(m.tenant, m.call_id))
    producer.flush(30.0)
    services.metrics.inc("recovered_jobs_total", n)
    return n


def background(services: Services, stop: threading.Event) -> list[threading.Thread]:
    """Role `recovery` (embedded mode only): re-drive once, at start."""
    if services.settings.mode != "embedded":
        return []
    t = threading.Thread(target=redrive, args=(services,), name="recovery", daemon=True)
    t.start()
    return [t]
