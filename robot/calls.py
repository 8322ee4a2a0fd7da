"""Placing a robot call, as POST /v1/robot/calls, the `robot.start` worker and campaigns
all do it: resolve the scenario, check the variables, run the guard (outbound calls),
then open and start a media session. Sessions live in the process's `SessionManager`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pipeline.events import RobotOutcome, RobotStart, RobotStep
from pipeline.logs import ctx
from pipeline.services import Services
from robot.components import guard_of
from robot.guard import Decision
from robot.prompts import PiperPrompts, PromptAudio
from robot.scenario import Scenario
from robot.session import RobotSession
from robot.store import robot_store
from robot.validate import ScenarioError, ScenarioInvalid, load_scenario
from stt.decode_queue import DecodeQueue
from stt.live_decoder import live_decoder_of

log = logging.getLogger(__name__)


class CallRefused(Exception):
    """The guard refused the call; `decision` names the rule."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"{decision.rule}: {decision.reason}")
        self.decision = decision


class BadCall(ValueError):
    """The request cannot be run (unknown scenario, missing variable, missing media...)."""


def is_inline(ref: str) -> bool:
    """A scenario given as text (YAML/JSON) rather than by name."""
    return "\n" in ref or ref.lstrip().startswith("{")


def resolve_scenario(services: Services, tenant: str, ref: str) -> Scenario:
    """A scenario by name (stored for the tenant) or inline text; ScenarioInvalid/BadCall."""
    if is_inline(ref):
        return load_scenario(ref)
    source = robot_store(services).scenario(tenant, ref)
    if source is None:
        raise BadCall(f"unknown scenario {ref!r}")
    return load_scenario(source)


def check_variables(scenario: Scenario, variables: dict[str, Any]) -> None:
    """Every declared variable must be given (BadCall names the missing ones)."""
    missing = [v for v in scenario.variables if v not in variables]
    if missing:
        raise BadCall(f"missing variables for scenario {scenario.name!r}: {', '.join(missing)}")


def prompts_of(services: Services) -> PromptAudio:
    """The process's prompt renderer."""
    return services.component("robot.prompts", lambda: PiperPrompts(services.piper_voice()))


class SessionManager:
    """The robot sessions of this process, by call id; publishes their events."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._sessions: dict[str, RobotSession] = {}
        self._lock = threading.Lock()
        self._producer = services.bus.producer()
        self._plock = threading.Lock()

    def publish(self, ev: RobotStep | RobotOutcome) -> None:
        """Send a session's event on the robot topic and keep the state for the API."""
        with self._plock:
            self._producer.send(self.services.topics.robot, ev.key, ev.encode())
            if isinstance(ev, RobotOutcome):
                self._producer.flush(5.0)
        self.services.metrics.inc("robot_events_total", type=ev.type)

    def place(
        self,
        start: RobotStart,
        *,
        kind: str = "call",
        guard: bool = True,
        on_end: Callable[[RobotSession], None] | None = None,
        on_packet: Callable[[int, float], None] | None = None,
    ) -> RobotSession:
        """Guard (outbound; `guard=False` when the caller already ran it), then open and start
        a session. Raises CallRefused, BadCall or ScenarioInvalid."""
        services = self.services
        if start.media is None:
            raise BadCall(
                "media is required: {host, port, codec} for RTP, or {transport: twilio |"
                " audiosocket} to speak over the call's own stream"
            )
        with self._lock:
            if start.call_id in self._sessions and not self._sessions[start.call_id].done:
                raise BadCall(f"call {start.call_id!r} already has a robot session")
        scenario = resolve_scenario(services, start.tenant, start.scenario)
        check_variables(scenario, start.variables)
        if start.callee and guard:
            if not start.caller_id or not start.sector:
                raise BadCall("an outbound call needs caller_id and sector for the guard")
            decision = guard_of(services).check(
                start.tenant,
                start.callee,
                start.caller_id,
                start.sector,
                kind=kind,
                place_call_id=start.call_id,
                campaign_id=start.campaign_id,
            )
            if not decision.allowed:
                raise CallRefused(decision)
        session = RobotSession(
            services,
            start,
            scenario,
            prompts=prompts_of(services),
            decoder=robot_decoder_of(services),
            on_event=self.publish,
            on_packet=on_packet,
        )
        try:
            session.open()
        except ValueError as exc:  # an AudioSocket call id that is no UUID
            raise BadCall(str(exc)) from None
        # Where the caller's media must go: the bus's way of answering a robot.start.
        self.publish(
            RobotStep(
                tenant=start.tenant,
                call_id=start.call_id,
                step=scenario.first,
                action="media",
                answer=session.media_answer(),
            )
        )
        with self._lock:
            self._sessions[start.call_id] = session
        self._save(session)
        session.start()
        threading.Thread(
            target=self._watch,
            args=(session, on_end),
            daemon=True,
            name=f"robot-watch-{start.call_id}",
        ).start()
        log.info(
            "robot session started: scenario %s, caller media %s",
            scenario.name,
            session.media_answer(),
            **ctx(start.tenant, start.call_id),
        )
        return session

    def _save(self, session: RobotSession) -> None:
        robot_store(self.services).put_session(session.tenant, session.call_id, session.state())

    def _watch(self, session: RobotSession, on_end: Callable[[RobotSession], None] | None) -> None:
        while not session.wait(2.0):
            self._save(session)
        self._save(session)
        if on_end is not None:
            on_end(session)

    def get(self, call_id: str) -> RobotSession | None:
        """A session of this process."""
        with self._lock:
            return self._sessions.get(call_id)

    def active(self) -> int:
        """Sessions still running."""
        with self._lock:
            return sum(1 for s in self._sessions.values() if not s.done)

    def close(self) -> None:
        """Hang up every session (shutdown)."""
        with self._lock:
            sessions = list(self._sessions.values())
        for s in sessions:
            if not s.done:
                s.hang_up("shutdown")
        for s in sessions:
            s.wait(5.0)


def robot_decoder_of(services: Services) -> DecodeQueue:
    """Whisper for robot sessions: one queue batching every session's clips. Every pass may
    decide an answer, so all get a window of `robot.decode_window_s`, greedily for speed."""
    window = services.settings.robot.decode_window_s
    return services.component(
        "robot.decoder",
        lambda: DecodeQueue(
            live_decoder_of(services, final=True, beam_size=1, min_window_s=window),
            loops=services.settings.stt.workers,
        ),
    )


def sessions_of(services: Services) -> SessionManager:
    """The process's session manager."""
    return services.component("robot.sessions", lambda: SessionManager(services))


def scenario_errors(exc: ScenarioInvalid) -> list[dict[str, str]]:
    """API shape of a scenario's errors."""
    return [e.as_dict() for e in exc.errors]


__all__ = ["BadCall", "CallRefused", "ScenarioError", "SessionManager", "sessions_of"]
