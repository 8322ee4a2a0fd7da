"""IVR sessions on live calls: a session opened for a call (POST /v1/ivr/{menu}/sessions
with `call_id`) takes that call's key presses as its input, whatever transport carries
them, and plays its prompts back over the call's own bidirectional stream (Twilio,
AudioSocket) when this process holds one. Its steps are kept for
GET /v1/ivr/{menu}/sessions/{sid}; the call's end ends the binding.

One bus tail (the `calls` topic, a group of its own) per process; the session engine is
the process's, as for sessions walked over HTTP.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.bus.tail import BusTail
from pipeline.events import CallEnded, DtmfReceived, Event
from pipeline.logs import ctx
from pipeline.services import Services
from tts.ivr.engine import Engine, SessionExpired, SessionFinished

log = logging.getLogger(__name__)

# (prompt id "node" or "node:kind") -> mu-law 8 kHz audio
Render = Callable[[str], bytes]


@dataclass
class Binding:
    """One session bound to one leg of one live call."""

    tenant: str
    call_id: str
    leg: str
    session: str
    menu: str
    render: Render
    steps: list[dict[str, Any]] = field(default_factory=list)
    digits: str = ""
    ended: bool = False


class LiveIvr:
    """The sessions of this process bound to live calls."""

    def __init__(self, services: Services, engine: Engine) -> None:
        self.services = services
        self.engine = engine
        self._by_call: dict[tuple[str, str], Binding] = {}
        self._by_session: dict[str, Binding] = {}
        self._lock = threading.Lock()
        self._tail = BusTail(
            services.bus,
            services.metrics,
            [services.topics.calls],
            f"{services.settings.topic_prefix}ivr-live",
            self.handle,
            name="ivr-live",
            metric_prefix="ivr_live",
            poll_s=0.1,
            commit=True,
        )

    def bind(self, binding: Binding, first: dict[str, Any]) -> None:
        """Bind an opened session to its call (its first step already taken)."""
        self._tail.start()
        self._tail.wait_ready(10.0)
        with self._lock:
            old = self._by_call.get((binding.tenant, binding.call_id))
            if old is not None:
                old.ended = True
            self._by_call[(binding.tenant, binding.call_id)] = binding
            self._by_session[binding.session] = binding
        self._step(binding, first)

    def binding(self, session: str) -> Binding | None:
        """The binding of a session (None: not bound in this process)."""
        with self._lock:
            return self._by_session.get(session)

    def state(self, session: str) -> dict[str, Any] | None:
        """What a bound session did so far (None: not bound in this process)."""
        with self._lock:
            b = self._by_session.get(session)
            if b is None:
                return None
            return {
                "session": b.session,
                "call_id": b.call_id,
                "leg": b.leg,
                "digits": b.digits,
                "ended": b.ended,
                "steps": list(b.steps),
                "last": b.steps[-1] if b.steps else None,
            }

    def handle(self, event: Event) -> None:
        """A key press of a bound call's leg is the session's input; its end unbinds it."""
        key = (event.tenant, event.call_id)
        with self._lock:
            b = self._by_call.get(key)
        if b is None or b.ended:
            return
        if isinstance(event, CallEnded):
            self._unbind(b)
        elif isinstance(event, DtmfReceived) and event.leg == b.leg:
            b.digits += event.digit
            try:
                step = self.engine.input(b.session, dtmf=event.digit)
            except (SessionExpired, SessionFinished) as exc:
                log.info("IVR session over: %s", exc, **ctx(b.tenant, b.call_id))
                self._unbind(b)
                return
            if step is not None:
                self.services.metrics.inc("ivr_live_inputs_total")
                self._step(b, step)

    def _step(self, b: Binding, step: dict[str, Any]) -> None:
        b.steps.append(step)
        # The ingest of this process, if it has one (none is started for this): only there
        # can a call's stream be, to play the prompts back.
        ingest = self.services.existing("ingest")
        stream = ingest.stream(b.tenant, b.call_id) if ingest is not None else None
        outbound = stream.outbound if stream is not None else None
        if outbound is not None:
            for prompt in step.get("prompts", []):
                try:
                    outbound.play(b.render(prompt))
                except Exception:  # a prompt that cannot be had must not end the menu
                    log.exception("IVR prompt %s", prompt, **ctx(b.tenant, b.call_id))
        if step.get("finished"):
            self._unbind(b)

    def _unbind(self, b: Binding) -> None:
        with self._lock:
            b.ended = True
            if self._by_call.get((b.tenant, b.call_id)) is b:
                del self._by_call[(b.tenant, b.call_id)]

    def close(self) -> None:
        """Stop the bus tail."""
        self._tail.close()
