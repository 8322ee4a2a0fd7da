"""Topic names (prefix configurable) and which topic each event type travels on."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.events import DeadLetter, Event, MediaChunk

_TOPIC_OF_TYPE = {
    "call.started": "calls",
    "call.ended": "calls",
    "dtmf": "calls",
    "recording.ready": "recordings",
    "utterance": "transcripts",
    "transcript.ready": "transcripts",
    "hint": "hints",
    "robot.start": "robot",
    "robot.step": "robot",
    "robot.outcome": "robot",
    "robot.refused": "robot",
    "media": "media",
    "deadletter": "deadletter",
}


@dataclass(frozen=True)
class Topics:
    """The seven topics of the design, under one prefix."""

    prefix: str = "callpipe."

    def name(self, short: str) -> str:
        """Full topic name for a short name such as `media`."""
        return f"{self.prefix}{short}"

    @property
    def calls(self) -> str:
        return self.name("calls")

    @property
    def media(self) -> str:
        return self.name("media")

    @property
    def recordings(self) -> str:
        return self.name("recordings")

    @property
    def transcripts(self) -> str:
        return self.name("transcripts")

    @property
    def hints(self) -> str:
        return self.name("hints")

    @property
    def robot(self) -> str:
        return self.name("robot")

    @property
    def deadletter(self) -> str:
        return self.name("deadletter")

    def all(self) -> list[str]:
        """Every topic, for creating them up front."""
        return [self.name(s) for s in sorted(set(_TOPIC_OF_TYPE.values()))]

    def for_event(self, event: Event | MediaChunk | DeadLetter) -> str:
        """The topic an event is published on."""
        return self.name(short_topic(event.type))


def short_topic(event_type: str) -> str:
    """The short name of the topic an event type travels on (KeyError for none)."""
    return _TOPIC_OF_TYPE[event_type]
