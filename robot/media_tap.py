"""One consumer per process reads the `media` and `calls` topics and hands each robot
session the chunks and DTMF of its own call.

A session registers its call with the ingest like any live call; the ingest publishes the
caller's decoded audio on `media`. Rather than a consumer per session (a group join per
call), the tap joins once with a group of its own (every partition, from the end) and
dispatches by call id; records it has no session for are skipped.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from pipeline.events import (
    CallEnded,
    DtmfReceived,
    EventError,
    MediaChunk,
    decode_event,
    decode_media,
)
from pipeline.services import Services

log = logging.getLogger(__name__)

Handler = Callable[[MediaChunk | DtmfReceived | CallEnded], None]


class MediaTap:
    """Dispatches media, DTMF and call ends to per-call handlers, in a daemon thread."""

    def __init__(self, services: Services) -> None:
        self.services = services
        topics = services.topics
        self._media, self._calls = topics.media, topics.calls
        self._consumer = services.bus.consumer(
            [self._media, self._calls],
            f"robot-tap-{uuid.uuid4().hex[:12]}",
            from_beginning=False,
        )
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="robot-media-tap", daemon=True)
        self._thread.start()

    def subscribe(self, call_id: str, handler: Handler) -> None:
        """Deliver this call's records to `handler` (called in the tap's thread)."""
        with self._lock:
            self._handlers[call_id] = handler

    def unsubscribe(self, call_id: str) -> None:
        """Stop delivering a call's records."""
        with self._lock:
            self._handlers.pop(call_id, None)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msgs = self._consumer.poll(0.05, 500)
            except Exception:  # a bus hiccup must not end every session's audio
                log.exception("robot media tap: poll failed")
                self._stop.wait(0.5)
                continue
            for msg in msgs:
                with self._lock:
                    handler = self._handlers.get(msg.key or "")
                if handler is None:
                    continue
                try:
                    if msg.topic == self._media:
                        handler(decode_media(msg.value))
                    else:
                        ev = decode_event(msg.value)
                        if isinstance(ev, DtmfReceived | CallEnded):
                            handler(ev)
                except EventError as exc:
                    self.services.metrics.inc("robot_bad_media_total")
                    log.warning("robot media tap: skipping a bad record: %s", exc)
                except Exception:  # one session's bug must not stop the others' audio
                    log.exception("robot media tap: handler failed for %s", msg.key)
            if msgs:
                try:
                    self._consumer.commit()  # lets the in-process bus drop what was read
                except Exception:
                    log.exception("robot media tap: commit failed")

    def close(self) -> None:
        """Stop the thread and leave the group."""
        self._stop.set()
        self._thread.join(2.0)
        self._consumer.close()


def media_tap(services: Services) -> MediaTap:
    """The process's tap."""
    return services.component("robot.media_tap", lambda: MediaTap(services))
