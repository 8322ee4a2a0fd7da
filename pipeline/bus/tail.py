"""Tail topics from now on in a thread of this process (the live view, the hint hub).

Each tail is its own consumer group (every process sees every event), joins at the end of
the topics, hands each decoded event to a handler, and rejoins after a bus error; a
malformed event is counted and skipped.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from pipeline.bus.base import Bus, BusError, Consumer
from pipeline.events import Event, EventError, decode_event
from pipeline.metrics import Metrics

log = logging.getLogger(__name__)


class BusTail:
    """A consumer thread: `start()`, `wait_ready()` (joined: what comes next is seen), `close()`."""

    def __init__(
        self,
        bus: Bus,
        metrics: Metrics,
        topics: list[str],
        group_prefix: str,
        handle: Callable[[Event], None],
        *,
        name: str,
        metric_prefix: str,
        poll_s: float,
        commit: bool = False,
    ) -> None:
        self.bus = bus
        self.metrics = metrics
        self.topics = topics
        self.group = f"{group_prefix}-{uuid.uuid4().hex[:12]}"
        self.handle = handle
        self.name = name
        self.metric_prefix = metric_prefix
        self.poll_s = poll_s
        self.commit = commit  # only to let the embedded bus drop what every group has read
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the consumer thread (once)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the consumer has joined and polled (events from then on are seen)."""
        return self._ready.wait(timeout_s)

    def close(self) -> None:
        """Stop the consumer thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        consumer: Consumer | None = None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = self.bus.consumer(self.topics, self.group, from_beginning=False)
                msgs = consumer.poll(self.poll_s, 500)
                self._ready.set()
                for msg in msgs:
                    try:
                        event = decode_event(msg.value)
                    except EventError as exc:
                        self.metrics.inc(f"{self.metric_prefix}_bad_events_total")
                        log.warning("%s: skipped a malformed event: %s", self.name, exc)
                        continue
                    self.handle(event)
                if msgs and self.commit:
                    consumer.commit()
            except BusError as exc:
                log.warning("%s: bus error, rejoining: %s", self.name, exc)
                self.metrics.inc(f"{self.metric_prefix}_bus_errors_total")
                if consumer is not None:
                    try:
                        consumer.close()
                    except BusError:
                        pass
                    consumer = None
                self._stop.wait(1.0)
        if consumer is not None:
            consumer.close()
