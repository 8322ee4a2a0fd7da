"""What this process knows of calls in progress: their finals so far, and who watches them.

A LiveHub consumes the transcripts and calls topics (only new records, a group of its own
per process) in one thread. It keeps the finals and key presses of each live call until
its live transcript.ready, and hands every event of a call to that call's subscribers (WebSockets)
through the fan-out (pipeline/api/fanout.py: a bounded queue per subscriber, a slow client
only loses its own messages). `live_so_far` also reads the live worker's checkpoint,
so finals emitted before this process started are not missing.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from pipeline.api.fanout import Fanout, Subscriber
from pipeline.bus.tail import BusTail
from pipeline.events import (
    CallEnded,
    CallStarted,
    DtmfReceived,
    Event,
    TranscriptReady,
    Utterance,
)
from pipeline.services import Services
from pipeline.store import StoreError
from recordings.transcripts import interleave
from stt.live_call import call_from_checkpoint, load_checkpoint, press_key

CallKey = tuple[str, str]
QUEUE_SIZE = 256
_POLL_S = 0.5


Watcher = Subscriber[CallKey, Event]


class LiveHub:
    """The transcripts/calls consumer of this process, its live finals and subscribers."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._finals: dict[CallKey, dict[str, Utterance]] = {}
        self._presses: dict[CallKey, list[DtmfReceived]] = {}
        self.watchers: Fanout[CallKey, Event] = Fanout(
            services.metrics, "live_ws_dropped_total", QUEUE_SIZE
        )
        self._lock = threading.Lock()
        t = services.topics
        self._tail = BusTail(
            services.bus,
            services.metrics,
            [t.transcripts, t.calls],
            f"{services.settings.topic_prefix}live-view",
            self.handle,
            name="live-hub",
            metric_prefix="live_view",
            poll_s=_POLL_S,
            commit=True,
        )

    def start(self) -> None:
        """Start the consumer thread (once)."""
        self._tail.start()

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the consumer has joined and polled (events from then on are seen)."""
        return self._tail.wait_ready(timeout_s)

    def handle(self, event: Event) -> None:
        """Keep a live final, forget a finished call, and pass the event to its watchers."""
        key = (event.tenant, event.call_id)
        with self._lock:
            if isinstance(event, CallStarted):
                self._finals.setdefault(key, {})
            elif isinstance(event, Utterance) and event.source == "live":
                if event.final:
                    self._finals.setdefault(key, {})[event.utterance_id] = event
            elif isinstance(event, DtmfReceived):
                if key in self._finals:
                    self._presses.setdefault(key, []).append(event)
            elif isinstance(event, TranscriptReady) and event.source == "live":
                self._finals.pop(key, None)
                self._presses.pop(key, None)
            elif not isinstance(event, CallEnded):
                return
            # Under the lock: a watcher subscribing now sees this final either in
            # `finals` or from the fan-out.
            self.watchers.publish(key, event)

    def finals(self, tenant: str, call_id: str) -> list[Utterance] | None:
        """Finals seen so far of a live call (None when this hub does not know it live)."""
        with self._lock:
            got = self._finals.get((tenant, call_id))
            return None if got is None else list(got.values())

    def presses(self, tenant: str, call_id: str) -> list[DtmfReceived]:
        """Key presses seen so far of a live call."""
        with self._lock:
            return list(self._presses.get((tenant, call_id), ()))

    def subscribe(self, tenant: str, call_id: str, loop: asyncio.AbstractEventLoop) -> Watcher:
        """Watch one call's events."""
        with self._lock:
            return self.watchers.subscribe((tenant, call_id), loop)

    def unsubscribe(self, sub: Watcher) -> None:
        """Stop watching."""
        self.watchers.unsubscribe(sub)

    def close(self) -> None:
        """Stop the consumer thread."""
        self._tail.close()


def live_hub(services: Services) -> LiveHub:
    """The process's hub (created on first use; `start()` it to consume)."""
    return services.component("stt.live_hub", lambda: LiveHub(services))


@dataclass(frozen=True)
class SoFar:
    """A call in progress as far as it went: finals in speaking order, key presses in
    time order."""

    finals: list[Utterance]
    presses: list[DtmfReceived]


def live_so_far(services: Services, tenant: str, call_id: str) -> SoFar | None:
    """A call in progress so far (the live worker's checkpoint merged with this process's
    hub, one checkpoint read); None when it is not live."""
    hub = live_hub(services)
    seen = hub.finals(tenant, call_id)
    try:
        doc = load_checkpoint(services.store, tenant, call_id)
    except (ValueError, StoreError):  # not a valid call id, or no readable checkpoint
        return None
    if doc is None and seen is None:
        return None
    kept = call_from_checkpoint(doc) if doc is not None else None
    finals: dict[str, Utterance] = dict(kept.finals) if kept is not None else {}
    for u in seen or ():
        finals[u.utterance_id] = u
    presses = {
        press_key(p): p for p in [*(kept.presses if kept else []), *hub.presses(tenant, call_id)]
    }
    return SoFar(interleave(finals.values()), sorted(presses.values(), key=lambda p: p.start))
