"""Role `robot` (`callpipe worker robot`): `robot.start` commands from the `robot` topic,
handled as POST /v1/robot/calls does (guard, then a session).

The stage returns at once: the session runs in its own threads and publishes its
`robot.step` events (the first, action `media`, says where the caller's RTP must go) and
its `robot.outcome` through the session manager. A refusal is published by the guard as
`robot.refused`. A command that cannot run (unknown or invalid scenario, missing
variable, a callee that is not a number) is dead-lettered with the reason. A replayed
command for a call that already has a session is ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pipeline.events import Event, MediaChunk, RobotStart
from pipeline.ingest.receiver import CallExists, NoFreePort
from pipeline.logs import ctx
from pipeline.services import Services
from pipeline.worker import BadInput, Output, ProcessingError, Stage
from robot.calls import BadCall, CallRefused, sessions_of
from robot.numbers import NumberError
from robot.store import robot_store
from robot.validate import ScenarioInvalid

log = logging.getLogger(__name__)


class RobotStage(Stage):
    """Starts a robot session per `robot.start`."""

    name = "robot"
    topics = ("robot",)

    def __init__(self, services: Services) -> None:
        self.services = services

    def process(self, event: Event | MediaChunk) -> Iterable[Output]:
        """robot.start: place the call; every other robot event is someone else's."""
        if not isinstance(event, RobotStart):
            return ()
        metrics = self.services.metrics
        sessions = sessions_of(self.services)
        if (
            sessions.get(event.call_id) is not None
            or robot_store(self.services).session(event.tenant, event.call_id) is not None
        ):
            metrics.inc("robot_replays_total")
            return ()
        try:
            sessions.place(event)
        except CallRefused as exc:
            log.info(
                "robot.start refused (%s)", exc.decision.rule, **ctx(event.tenant, event.call_id)
            )
        except (BadCall, NumberError, ScenarioInvalid, CallExists) as exc:
            metrics.inc("robot_bad_commands_total")
            raise BadInput(f"robot.start cannot run: {exc}") from exc
        except NoFreePort as exc:
            raise ProcessingError(str(exc)) from exc
        return ()

    def close(self) -> Iterable[Output]:
        """Hang up the sessions of this worker."""
        sessions_of(self.services).close()
        return ()


def stages(services: Services) -> list[Stage]:
    """Role `robot`."""
    return [RobotStage(services)]
