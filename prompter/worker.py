"""The prompter worker (`callpipe worker prompter`): call events and live utterances in,
hints out on the hints topic.

One CallSession per call, created at call.started (or at the first utterance when the
call.started is missing) with the tenant's rules of that moment. Batch utterances are
ignored: a finished call has no agent to prompt. Timers (absences, silences) run in
`tick`, between polls.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

from pipeline.database import DatabaseError
from pipeline.events import CallEnded, CallStarted, Event, Hint, MediaChunk, Utterance
from pipeline.logs import ctx
from pipeline.services import Services
from pipeline.worker import BadInput, Output, Stage
from prompter.bundles import BundleCache
from prompter.engine import CallInfo, CallSession
from prompter.store import prompter_store

log = logging.getLogger(__name__)

CallKey = tuple[str, str]
MAX_TEXT_CHARS = 5000
# A call.ended is remembered this many calls long, so its late finals do not revive it.
ENDED_MEMORY = 10_000


class PrompterStage(Stage):
    """Keeps per-call souffleur state and emits hints."""

    name = "prompter"
    topics = ("calls", "transcripts")

    def __init__(self, services: Services, clock: Callable[[], float] = time.time) -> None:
        self.services = services
        self.settings = services.settings.prompter
        self.metrics = services.metrics
        self.store = prompter_store(services)
        self.bundles = BundleCache(self.store, self.settings, self.metrics)
        self.clock = clock
        self.sessions: dict[CallKey, CallSession] = {}
        self._ended: OrderedDict[CallKey, None] = OrderedDict()
        self._max_call_s = services.settings.live.max_call_s

    def process(self, event: Event | MediaChunk) -> Iterator[Output]:
        """call.started / call.ended manage sessions; live utterances may yield hints."""
        if isinstance(event, CallStarted):
            self._start(event)
        elif isinstance(event, CallEnded):
            self._end((event.tenant, event.call_id))
        elif isinstance(event, Utterance):
            yield from self._utterance(event)

    def _start(self, event: CallStarted) -> None:
        key = (event.tenant, event.call_id)
        if key in self._ended:
            return
        session = self.sessions.get(key)
        if session is not None:
            session.update(event)
            return
        self.sessions[key] = CallSession(
            self.bundles.get(event.tenant), CallInfo.of(event), self.settings
        )
        self.metrics.set("prompter_calls_active", len(self.sessions))

    def _end(self, key: CallKey) -> None:
        self.sessions.pop(key, None)
        self._ended[key] = None
        while len(self._ended) > ENDED_MEMORY:
            self._ended.popitem(last=False)
        self.metrics.set("prompter_calls_active", len(self.sessions))

    def _utterance(self, utt: Utterance) -> Iterator[Hint]:
        if utt.source != "live":
            self.metrics.inc("prompter_ignored_total", reason="batch")
            return
        if len(utt.text) > MAX_TEXT_CHARS:
            self.metrics.inc("prompter_rejected_total", reason="text_too_long")
            raise BadInput(f"utterance text longer than {MAX_TEXT_CHARS} characters")
        if utt.start < 0 or utt.end < utt.start:
            self.metrics.inc("prompter_rejected_total", reason="times")
            raise BadInput(f"utterance times are not 0 <= start <= end ({utt.start}, {utt.end})")
        key = (utt.tenant, utt.call_id)
        if key in self._ended:
            self.metrics.inc("prompter_ignored_total", reason="call_ended")
            return
        now = self.clock()
        session = self.sessions.get(key)
        if session is None:
            # No call.started seen (worker started mid-call): anchor the clock on this one.
            info = CallInfo(utt.tenant, utt.call_id, started_wall=now - utt.end, from_start=False)
            session = CallSession(self.bundles.get(utt.tenant), info, self.settings)
            self.sessions[key] = session
            self.metrics.set("prompter_calls_active", len(self.sessions))
        self.metrics.inc("prompter_utterances_total", final=str(utt.final).lower())
        before = session.regex_timeouts
        hints = session.process(utt, now)
        if session.regex_timeouts > before:
            self.metrics.inc("prompter_regex_timeouts_total", session.regex_timeouts - before)
        yield from self._emit(hints)

    def _emit(self, hints: list[Hint]) -> list[Hint]:
        if not hints:
            return hints
        for h in hints:
            self.metrics.inc("prompter_hints_total", kind=h.kind)
            log.info(
                "hint %s (%s) for agent %s",
                h.hint_id,
                h.trigger.rule,
                h.agent_id,
                **ctx(h.tenant, h.call_id),
            )
        try:
            self.store.record_hints(hints)
        except DatabaseError as exc:  # stats lose a row; the agent still gets the hint
            self.metrics.inc("prompter_store_errors_total")
            log.warning("could not record hints: %s", exc, **ctx(hints[0].tenant, hints[0].call_id))
        return hints

    def tick(self, now: float) -> Iterator[Output]:
        """Absence and silence hints that fell due; calls never ended are dropped."""
        hints: list[Hint] = []
        for key, session in list(self.sessions.items()):
            if now - session.info.started_wall > self._max_call_s + 60:
                self._end(key)
                continue
            hints.extend(session.tick(now))
        yield from self._emit(hints)

    def revoked(self, partitions: set[tuple[str, int]]) -> Iterator[Output]:
        """Another worker now owns some calls; which ones is not knowable here, so every
        session is dropped (a kept one could fire timers twice) and rebuilt on demand."""
        self.sessions.clear()
        self.metrics.set("prompter_calls_active", 0)
        return iter(())


def stages(services: Services) -> list[Stage]:
    """The prompter role: one stage."""
    return [PrompterStage(services)]
